//! A TCP proxy a test can cut and heal, to make a backend unreachable for a while without
//! stopping it for everybody else: cutting closes every open connection through it and makes
//! it close new ones at once; stalling closes the open ones too but holds new ones open
//! without an answer (a server that stopped answering, as in a partition, rather than one
//! that refuses); healing lets connections through again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    held: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free local port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let held: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let links: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let accept = {
            let (up, stalled, held, links) =
                (up.clone(), stalled.clone(), held.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        if stalled.load(Ordering::SeqCst) {
                            held.lock().unwrap().push(client);
                        }
                        continue;
                    }
                    links.lock().await.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            up,
            stalled,
            held,
            links,
            accept,
        }
    }

    /// Closes every connection and refuses new ones until [`Proxy::heal`].
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut links = self.links.lock().await;
        links.abort_all();
        while links.join_next().await.is_some() {}
    }

    /// Closes every connection and holds new ones open, unanswered, until [`Proxy::heal`].
    pub async fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.cut().await;
    }

    /// Lets connections through again (closing those a stall held).
    pub fn heal(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

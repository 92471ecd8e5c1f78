//! The serve loop: accepts TCP connections and runs each as an HTTP/1.1 connection of hyper on
//! the [`Router`], with what `axum::serve` cannot do (ADR 0019):
//!
//! - a header-read time-out (a client that has not sent a whole request head within
//!   [`ServeOptions::header_timeout`] of connecting, or of the first byte of its next request,
//!   is closed) and an idle time-out (a keep-alive connection with no request for
//!   [`ServeOptions::idle_timeout`] is closed); a connection is never closed by either while a
//!   request is being handled or its answer written ([`conn`]);
//! - a cap on open connections ([`ServeOptions::max_connections`]): at the cap the loop stops
//!   accepting and new connections wait in the kernel's backlog;
//! - accept errors (out of file descriptors, say) back off from 10 ms to 1 s instead of
//!   spinning, and are logged at most every few seconds;
//! - hyper's own answers to requests it cannot parse (431, 414, 400 with an empty body) are
//!   replaced by the envelope ([`refusal`]).
//!
//! As before: TCP_NODELAY on every connection, HTTP/1.1 keep-alive (axum served no HTTP/2
//! here), and a graceful shutdown: when `shutdown` completes the listener is closed, every
//! connection finishes the request it is on and closes, and [`serve`] returns once all have.

mod conn;
mod refusal;

use axum::Router;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The read buffer of a connection holds at most this much; a request head that does not fit
/// is refused with 431 (or 414 when its request line alone does not fit).
pub const HEAD_BUFFER: usize = 64 * 1024;

/// How [`serve`] treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The longest a client may take to send a whole request head, from connecting or from the
    /// first byte of a later request on the same connection.
    pub header_timeout: Duration,
    /// The longest a keep-alive connection may stay open with no request on it.
    pub idle_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1_024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains: stops accepting,
/// lets every connection finish its request in flight, and returns when all are closed.
///
/// # Errors
/// None so far: errors accepting a connection are logged and retried after a back-off. The
/// `Result` is kept so that a later fatal condition can be reported without changing callers.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let (drain, draining) = watch::channel(());
    let http = Arc::new(conn::builder());
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        // At the cap, do not accept: the kernel's backlog holds the next connections.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => {
                backoff.accepted();
                tcp
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        nodelay(&tcp);
        let connection = conn::Connection {
            http: Arc::clone(&http),
            router: router.clone(),
            options,
            draining: draining.clone(),
        };
        tokio::spawn(async move {
            connection.run(tcp).await;
            drop(permit);
        });
    }
    drop(listener);
    drop(draining);
    let _ = drain.send(());
    drain.closed().await;
    Ok(())
}

/// Answers are small and each is one write: send them at once rather than waiting on the
/// client's acknowledgement of the previous segment (Nagle).
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
    }
}

/// Errors of one connection that failed between the kernel and `accept`: the next one may be
/// fine, so they are retried at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The pause after an accept error (out of file descriptors or memory): doubling from
/// [`Backoff::FIRST`] to [`Backoff::LONGEST`] while errors go on, with one warning per
/// [`Backoff::LOG_EVERY`] saying how many there were.
#[derive(Debug, Default)]
struct Backoff {
    /// Errors since the last accepted connection.
    errors: u64,
    pause: Duration,
    logged: Option<Instant>,
    /// Errors since the last warning.
    unlogged: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(5);

    fn failed(&mut self, e: &io::Error) -> Duration {
        self.errors += 1;
        self.unlogged += 1;
        self.pause = if self.pause.is_zero() {
            Self::FIRST
        } else {
            (self.pause * 2).min(Self::LONGEST)
        };
        if self.logged.is_none_or(|at| at.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(
                error = %e,
                errors = self.unlogged,
                pause_ms = u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX),
                "cannot accept connections; backing off"
            );
            self.logged = Some(Instant::now());
            self.unlogged = 0;
        }
        self.pause
    }

    fn accepted(&mut self) {
        if self.errors > 0 {
            tracing::info!(errors = self.errors, "accepting connections again");
            *self = Backoff::default();
        }
    }
}

#[cfg(test)]
mod tests;

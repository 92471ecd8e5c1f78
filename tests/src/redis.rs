//! Redis for tests: the shared server at `REDIS_URL` (default `redis://127.0.0.1:6379`) with a
//! key namespace per test, and clusters of independent `redis-server` processes on free ports
//! for Redlock tests that stop nodes.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .and_then(|u| u.split(',').next().map(str::to_owned))
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or run) uses.
pub fn namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test:{}:{}:{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Independent Redis masters, each its own process; dropped, they are all stopped.
#[derive(Debug)]
pub struct Nodes {
    children: Vec<Option<Child>>,
    pub urls: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Nodes {
    /// Starts `n` nodes that keep nothing on disk.
    pub async fn start(n: usize) -> Nodes {
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..n {
            let port = free_port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (it is installed with Redis)");
            children.push(Some(child));
            urls.push(format!("redis://127.0.0.1:{port}"));
        }
        let nodes = Nodes { children, urls };
        for url in &nodes.urls {
            let client = redis::Client::open(url.as_str()).expect("valid url");
            let mut ready = false;
            for _ in 0..100 {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                    {
                        ready = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(ready, "redis node {url} did not start");
        }
        nodes
    }

    /// Starts node `i` again on its port (after [`Nodes::kill`]), empty as a restarted node
    /// without persistence is.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        let port = self.urls[i].rsplit(':').next().expect("a port").to_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.children[i] = Some(child);
        let client = redis::Client::open(self.urls[i].as_str()).expect("valid url");
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis node {} did not restart", self.urls[i]);
    }

    /// Stops node `i` at once (SIGKILL: no goodbye, as a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

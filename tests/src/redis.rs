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

/// A `redis-server` on `port` that keeps nothing on disk.
fn spawn_node(port: u16) -> Child {
    Command::new("redis-server")
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
        .expect("redis-server starts (it is installed with Redis)")
}

/// Waits until the node at `url` answers PING (2 s at most).
async fn wait_ready(url: &str) {
    let client = redis::Client::open(url).expect("valid url");
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
    panic!("redis node {url} did not start");
}

impl Nodes {
    /// Starts `n` nodes that keep nothing on disk.
    pub async fn start(n: usize) -> Nodes {
        let mut nodes = Nodes {
            children: Vec::new(),
            urls: Vec::new(),
        };
        for _ in 0..n {
            let port = free_port();
            nodes.children.push(Some(spawn_node(port)));
            nodes.urls.push(format!("redis://127.0.0.1:{port}"));
        }
        for url in &nodes.urls {
            wait_ready(url).await;
        }
        nodes
    }

    /// Starts node `i` again on its port (after [`Nodes::kill`]), empty as a restarted node
    /// without persistence is.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        let port: u16 = self.urls[i]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        self.children[i] = Some(spawn_node(port));
        wait_ready(&self.urls[i]).await;
    }

    /// Freezes (`thaw = false`, SIGSTOP) or thaws (SIGCONT) node `i`: a frozen node keeps its
    /// connections open and answers nothing, as a hung or partitioned server.
    pub fn freeze(&self, i: usize, thaw: bool) {
        if let Some(child) = &self.children[i] {
            let signal = if thaw { "-CONT" } else { "-STOP" };
            let status = std::process::Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "could not signal redis node {i}");
        }
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

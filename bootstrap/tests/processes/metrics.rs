//! Metrics memory: with nobody scraping `/metrics`, the recorder's histogram samples must not
//! pile up (they are folded into fixed buckets by a periodic upkeep).

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Keep-alive connections driving the instance at once.
const CONNECTIONS: usize = 4;
/// Requests written at once on a connection (HTTP/1.1 pipelining keeps the client cheap).
const BATCH: usize = 64;
/// Requests measured after the warm-up.
const MEASURED: usize = 1_200_000;

/// The resident set of `pid`, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `total` cheap requests (`GET /health`) over [`CONNECTIONS`] keep-alive connections and
/// waits for every answer.
fn drive(addr: &str, total: usize) {
    let per_connection = total / CONNECTIONS;
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let batch = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(BATCH);
                let marker = b"HTTP/1.1 200";
                let mut buf = vec![0u8; 64 * 1024];
                // The last bytes of the previous read, so a marker cut in two is still counted.
                let mut carry: Vec<u8> = Vec::new();
                let mut sent = 0;
                let mut answered = 0;
                while sent < per_connection {
                    stream.write_all(batch.as_bytes()).unwrap();
                    sent += BATCH;
                    while answered < sent {
                        let n = stream.read(&mut buf).unwrap();
                        assert!(n > 0, "the instance closed the connection");
                        let mut window = std::mem::take(&mut carry);
                        window.extend_from_slice(&buf[..n]);
                        answered += window.windows(marker.len()).filter(|w| w == marker).count();
                        carry = window[window.len().saturating_sub(marker.len() - 1)..].to_vec();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Without the upkeep every request left its latency sample queued in the recorder, about 10-20
/// bytes each: 1.2 million requests grew the process by over 20 MiB (37.7 MiB for 2 million). With it the growth is noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_under_load_without_a_scraper() {
    // A million requests load both cores: the tests that time their answers wait their turn.
    let _turn = ONE_AT_A_TIME.lock().await;
    let instance = spawn(&[] as &[&str]);
    wait_until_ok(&instance, "/health").await;
    let addr = instance.base.trim_start_matches("http://").to_owned();
    let pid = instance.child.id();
    let measured = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        drive(&addr, 200_000);
        let warm = rss_kib(pid);
        let warm_at = Instant::now();
        drive(&addr, MEASURED);
        let rate = MEASURED as f64 / warm_at.elapsed().as_secs_f64();
        // Past one upkeep period, so what is queued now is at most a second's samples.
        std::thread::sleep(Duration::from_millis(1_500));
        (warm, rss_kib(pid), started.elapsed(), rate)
    })
    .await
    .unwrap();
    let (warm, after, took, rate) = measured;
    let grown_mib = (after as f64 - warm as f64) / 1024.0;
    eprintln!(
        "RSS after warm-up {warm} KiB, after {MEASURED} more requests {after} KiB (+{grown_mib:.1} MiB), \
         {rate:.0} req/s, {took:?}"
    );
    assert!(
        grown_mib < 6.0,
        "RSS grew by {grown_mib:.1} MiB over {MEASURED} requests with nobody scraping /metrics"
    );
}

//! Connection hardening of the real binary (memory profile): idle and slow connections are
//! closed, kept-alive connections in use are not, the connection cap holds, the service does
//! not spin when it runs out of file descriptors, and it raises its own open-file limit.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUTS: [&str; 4] = ["--http-header-timeout", "1", "--http-idle-timeout", "2"];

fn addr(instance: &Instance) -> String {
    instance.base.trim_start_matches("http://").to_owned()
}

fn connect(instance: &Instance) -> TcpStream {
    let tcp = TcpStream::connect(addr(instance)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

/// Blocks until the server closes `tcp` (EOF or reset); how long that took.
fn closed_after(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("not closed within {:?}", started.elapsed())
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("not closed within {:?}", started.elapsed())
            }
            Err(_) => return started.elapsed(),
        }
    }
}

/// One keep-alive GET /health on `tcp`; whether it was answered 200.
fn health(tcp: &mut TcpStream) -> bool {
    if tcp
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(tcp.read(&mut buf), Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_busy_ones_kept() {
    // Timing-sensitive: not alongside the other process tests, which load the machine.
    let _one = ONE_AT_A_TIME.lock().await;
    let instance = spawn(&TIMEOUTS);
    wait_until_ok(&instance, "/health").await;
    tokio::task::spawn_blocking(move || {
        // A connection that never sends: the header time-out.
        let mut idle = connect(&instance);
        let took = closed_after(&mut idle);
        assert!(took < Duration::from_millis(2_000), "{took:?}");

        // After an answer, the idle time-out.
        let mut kept = connect(&instance);
        assert!(health(&mut kept));
        let took = closed_after(&mut kept);
        assert!(
            took >= Duration::from_millis(1_800) && took < Duration::from_millis(3_500),
            "{took:?}"
        );

        // One byte per 300 ms, never finishing the head.
        let mut slow = connect(&instance);
        let started = Instant::now();
        let mut cut = false;
        for byte in b"GET /health HTTP/1.1\r\nx-slow: "
            .iter()
            .chain([b'a'; 64].iter())
        {
            if slow.write_all(&[*byte]).is_err() {
                cut = true;
                break;
            }
            slow.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 256];
            match slow.read(&mut buf) {
                Ok(_) => {
                    cut = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        assert!(cut, "the slow sender was never cut off");
        assert!(started.elapsed() < Duration::from_millis(2_500));

        // A kept-alive connection in use stays open well past both time-outs.
        let mut busy = connect(&instance);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            assert!(health(&mut busy), "a connection in use was closed");
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_health_answers_once_idle_sockets_time_out() {
    // Timing-sensitive: not alongside the other process tests, which load the machine.
    let _one = ONE_AT_A_TIME.lock().await;
    let instance = spawn(&[&TIMEOUTS[..], &["--max-connections", "20"]].concat());
    wait_until_ok(&instance, "/health").await;
    let sockets: Vec<TcpStream> = (0..50).map(|_| connect(&instance)).collect();
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer = client
        .get(format!("{}/health", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // 50 idle sockets over a cap of 20: /health waited for header time-outs to free places.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    drop(sockets);
}

/// Starts `stockade serve` through `sh` with `ulimit` applied first.
fn spawn_limited(ulimit: &str, args: &[&str]) -> Instance {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_stockade"));
    spawn_via(sh, args, |cmd| {
        cmd.stderr(Stdio::null());
    })
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat; after the name, 12 and 13 (from 1).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_service_backs_off_and_recovers() {
    // Timing-sensitive: not alongside the other process tests, which load the machine.
    let _one = ONE_AT_A_TIME.lock().await;
    let instance = spawn_limited(
        "-n 64",
        &[
            "--http-header-timeout",
            "4",
            "--http-idle-timeout",
            "4",
            "--max-connections",
            "1000",
        ],
    );
    wait_until_ok(&instance, "/health").await;
    let pid = instance.child.id();
    let sockets: Vec<TcpStream> = (0..120).map(|_| connect(&instance)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - before;
    // A loop retrying accept at once would burn close to 2 s (200 ticks) here.
    assert!(
        spent < 30,
        "{spent} ticks of CPU in 2 s while out of descriptors"
    );
    drop(sockets);
    wait_until_ok(&instance, "/health").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    // Timing-sensitive: not alongside the other process tests, which load the machine.
    let _one = ONE_AT_A_TIME.lock().await;
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        hard > 200,
        "the hard limit {hard} leaves no room for the test"
    );
    let instance = spawn_limited("-S -n 200", &[]);
    wait_until_ok(&instance, "/health").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", instance.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard differ: {line}");
    assert_eq!(fields[4], hard.to_string(), "{line}");
}

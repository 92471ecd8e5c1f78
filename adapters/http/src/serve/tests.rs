//! The serve loop over real sockets: refusals in the envelope, valid traffic untouched, the
//! time-outs, the connection cap and the drain.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_support;
use axum::routing::get;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const HEAD: Duration = Duration::from_millis(400);
const IDLE: Duration = Duration::from_millis(900);

fn options() -> ServeOptions {
    ServeOptions {
        header_timeout: HEAD,
        idle_timeout: IDLE,
        max_connections: 64,
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<io::Result<()>>,
}

async fn start(router: Router, options: ServeOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        served,
    }
}

async fn service() -> Running {
    start(crate::router(test_support::state()), options()).await
}

/// A router with a handler slower than both time-outs.
fn slow_router() -> Router {
    Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(HEAD + IDLE).await;
            "done"
        }),
    )
}

/// Everything the server sends until it closes (or 10 s pass).
async fn read_all(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    out
}

/// Sends `request` (ignoring a write the server cut short) and returns the first answer's
/// status and parsed body.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(request).await;
    let raw = read_all(&mut tcp).await;
    parse(&raw)
}

fn parse(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_owned(), body)
}

fn assert_envelope(answer: &(u16, String, Value), status: u16, code: &str) {
    let (got, head, body) = answer;
    assert_eq!(*got, status, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let stamp = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok(),
        "{body}"
    );
}

fn get_request(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: test\r\n{headers}\r\n").into_bytes()
}

#[tokio::test]
async fn a_target_over_8_kib_is_414_in_the_envelope() {
    let s = service().await;
    // Within hyper's buffer: refused by the middleware.
    let target = format!("/health?q={}", "a".repeat(9 * 1024));
    let a = exchange(s.addr, &get_request(&target, "")).await;
    assert_envelope(&a, 414, "URI_TOO_LONG");
    // Beyond it: hyper's own refusal, replaced.
    let target = format!("/health?q={}", "a".repeat(100 * 1024));
    let a = exchange(s.addr, &get_request(&target, "")).await;
    assert_envelope(&a, 414, "URI_TOO_LONG");
    // Just under the limit is served.
    let target = format!("/health?q={}", "a".repeat(8 * 1024 - 100));
    let a = exchange(s.addr, &get_request(&target, "connection: close\r\n")).await;
    assert_eq!(a.0, 200, "{}", a.1);
}

#[tokio::test]
async fn headers_over_32_kib_are_431_in_the_envelope() {
    let s = service().await;
    let forty_kib: String = (0..5)
        .map(|i| format!("x-filler-{i}: {}\r\n", "v".repeat(8 * 1024)))
        .collect();
    let a = exchange(s.addr, &get_request("/health", &forty_kib)).await;
    assert_envelope(&a, 431, "HEADERS_TOO_LARGE");
    // A 1 MiB header block: far beyond hyper's buffer.
    let one_mib: String = (0..128)
        .map(|i| format!("x-filler-{i}: {}\r\n", "v".repeat(8 * 1024 - 20)))
        .collect();
    let a = exchange(s.addr, &get_request("/health", &one_mib)).await;
    assert_envelope(&a, 431, "HEADERS_TOO_LARGE");
    // 30 KiB of headers are served.
    let thirty_kib: String = (0..3)
        .map(|i| format!("x-filler-{i}: {}\r\n", "v".repeat(10 * 1024)))
        .collect();
    let headers = format!("{thirty_kib}connection: close\r\n");
    let a = exchange(s.addr, &get_request("/health", &headers)).await;
    assert_eq!(a.0, 200, "{}", a.1);
}

#[tokio::test]
async fn bytes_that_are_not_http_are_400_invalid_input_in_the_envelope() {
    let s = service().await;
    let requests: [&[u8]; 5] = [
        b"GET /health HTTP/1.1\r\nhost: test\r\nx-bad: a\x01b\r\n\r\n",
        b"GET /api/v1/products/1 2 HTTP/1.1\r\nhost: test\r\n\r\n",
        b"GET /api/v1/products/\x7f HTTP/1.1\r\nhost: test\r\n\r\n",
        b"GET /api/v1/products/\xff\xfe HTTP/1.1\r\nhost: test\r\n\r\n",
        b"GET /health HTTP/1.1\r\nhost: test\r\nbad header: x\r\n\r\n",
    ];
    for request in requests {
        let a = exchange(s.addr, request).await;
        assert_envelope(&a, 400, "INVALID_INPUT");
    }
    // Valid HTTP whose path is not UTF-8 once decoded: the router's extractors refuse it.
    let a = exchange(
        s.addr,
        b"GET /api/v1/products/%FF HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_envelope(&a, 400, "INVALID_INPUT");
}

#[tokio::test]
async fn pipelined_keep_alive_requests_are_all_answered() {
    let s = service().await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut requests = Vec::new();
    for _ in 0..5 {
        requests.extend(get_request("/health", ""));
    }
    requests.extend(get_request("/api/v1/products", "connection: close\r\n"));
    tcp.write_all(&requests).await.unwrap();
    let raw = String::from_utf8(read_all(&mut tcp).await).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 6, "{raw}");
}

fn product_body(padding: usize) -> String {
    format!(
        "{{\"name\": \"big\", \"price\": 100, \"stock\": 1, \"maxPerOrder\": 1{}}}",
        " ".repeat(padding)
    )
}

#[tokio::test]
async fn bodies_up_to_1_mib_and_chunked_bodies_are_served() {
    let s = service().await;
    let auth = format!("authorization: Bearer {}\r\n", test_support::admin_token());
    let body = product_body(1024 * 1024 - product_body(0).len());
    assert_eq!(body.len(), 1024 * 1024);
    let request = format!(
        "POST /api/v1/admin/products HTTP/1.1\r\nhost: test\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let a = exchange(s.addr, request.as_bytes()).await;
    assert_eq!(a.0, 201, "{}\n{}", a.1, a.2);

    let body = product_body(100_000);
    let mut chunked = String::new();
    for piece in body.as_bytes().chunks(7_000) {
        chunked.push_str(&format!("{:x}\r\n", piece.len()));
        chunked.push_str(std::str::from_utf8(piece).unwrap());
        chunked.push_str("\r\n");
    }
    chunked.push_str("0\r\n\r\n");
    let request = format!(
        "POST /api/v1/admin/products HTTP/1.1\r\nhost: test\r\n{auth}content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunked}"
    );
    let a = exchange(s.addr, request.as_bytes()).await;
    assert_eq!(a.0, 201, "{}\n{}", a.1, a.2);
}

/// Waits until the server closes `tcp` (reads 0 bytes), returning how long that took.
async fn closed_after(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_time_out() {
    let s = service().await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let took = closed_after(&mut tcp, Duration::from_secs(5)).await;
    let took = took.expect("the server never closed an idle new connection");
    assert!(took >= HEAD - Duration::from_millis(50), "{took:?}");
    assert!(took < HEAD + Duration::from_millis(1_000), "{took:?}");
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let s = service().await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nhost: test\r\nx-slow: ".to_vec();
    let mut bytes = head.into_iter().chain(std::iter::repeat(b'a'));
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(5) {
        let byte = bytes.next().unwrap_or(b'a');
        if tcp.write_all(&[byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow head was never cut off");
    assert!(started.elapsed() < HEAD + Duration::from_millis(1_000));
}

#[tokio::test]
async fn keep_alive_waits_longer_than_the_header_time_out_but_not_than_the_idle_one() {
    let s = service().await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..4 {
        tcp.write_all(&get_request("/health", "")).await.unwrap();
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Longer than the header time-out, shorter than the idle one: still open.
        tokio::time::sleep(HEAD + Duration::from_millis(150)).await;
    }
    let took = closed_after(&mut tcp, Duration::from_secs(5)).await;
    let took = took.expect("the server never closed an idle keep-alive connection");
    let waited = HEAD + Duration::from_millis(150) + took;
    assert!(waited >= IDLE - Duration::from_millis(50), "{waited:?}");
    assert!(waited < IDLE + Duration::from_millis(1_000), "{waited:?}");
}

#[tokio::test]
async fn a_request_slower_than_both_time_outs_is_answered() {
    let s = start(slow_router(), options()).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&get_request("/slow", "connection: close\r\n"))
        .await
        .unwrap();
    let a = read_all(&mut tcp).await;
    let text = String::from_utf8_lossy(&a);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
}

#[tokio::test]
async fn at_the_cap_new_connections_wait_until_one_closes() {
    let s = start(
        crate::router(test_support::state()),
        ServeOptions {
            max_connections: 2,
            ..options()
        },
    )
    .await;
    let _idle = [
        TcpStream::connect(s.addr).await.unwrap(),
        TcpStream::connect(s.addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let a = exchange(s.addr, &get_request("/health", "connection: close\r\n")).await;
    assert_eq!(a.0, 200);
    // Served only once the header time-out closed one of the idle connections.
    assert!(started.elapsed() >= HEAD - Duration::from_millis(100));
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let mut s = start(slow_router(), options()).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&get_request("/slow", "")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.stop.take().unwrap().send(());
    let a = read_all(&mut tcp).await;
    let text = String::from_utf8_lossy(&a);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), s.served).await;
    assert!(matches!(served, Ok(Ok(Ok(())))));
    // The listener is closed.
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[test]
fn accept_errors_back_off_doubling_up_to_a_second() {
    let mut backoff = Backoff::default();
    let e = io::Error::from_raw_os_error(24);
    let pauses: Vec<u128> = (0..9).map(|_| backoff.failed(&e).as_millis()).collect();
    assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    backoff.accepted();
    assert_eq!(backoff.failed(&e).as_millis(), 10);
    assert!(!is_connection_error(&e));
    assert!(is_connection_error(&io::Error::from(
        io::ErrorKind::ConnectionAborted
    )));
}

//! Cross-cutting work, done once per request in one layer: the request id and its span, the
//! body limit, a request time-out, a panic guard (each answering in the envelope), and request
//! metrics with error logging.

use crate::error::{ApiError, ErrorCause};
use crate::readiness::Readiness;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use stockade_domain::ErrorCode;
use tracing::Instrument;

/// The largest body any route accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The longest request target (path and query) the API takes: longer is 414 `URI_TOO_LONG`.
pub const TARGET_LIMIT: usize = 8 * 1024;

/// The most header bytes (names, values and their separators) the API takes: more is 431
/// `HEADERS_TOO_LARGE`. Heads too large for the server's read buffer are refused by the serve
/// loop with the same answer (ADR 0019).
pub const HEADERS_LIMIT: usize = 32 * 1024;

/// The header that carries a request's id, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every request passes through here once:
/// - it keeps the `x-request-id` it came with (or gets a UUID v4), runs inside a `request` span
///   carrying it, and the answer echoes it back;
/// - a declared body over [`BODY_LIMIT`] is refused before any handler sees it;
/// - the handler gets at most `limit` to answer, and a handler that panics answers 500;
/// - every answer is counted by route and status with its latency and logged at `info` on the
///   `stockade::access` target (5xx causes, which bodies never show, go to the log).
///
/// One layer rather than one per concern: each layer boxes and moves the request's future again
/// and re-wraps the response body, which cost about an eighth of the cheapest routes' time
/// (ADR 0008).
pub async fn edge(
    axum::extract::State(edge): axum::extract::State<Arc<Edge>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_index(req.method());
    let route = edge.series.route(req.extensions().get::<MatchedPath>());
    // A client's id is kept when it looks like one (short, visible ASCII); anything else is
    // replaced, so the log never carries whatever a client put in the header.
    let id = match req
        .headers()
        .get(&REQUEST_ID)
        .filter(|id| usable_request_id(id))
    {
        Some(id) => id.clone(),
        None => {
            let id = new_request_id();
            req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id.to_str().unwrap_or("-"),
    );
    // The panic guard covers everything the request runs here (the body drain, the time-out
    // and dropping a handler that overran it), not only the handler.
    let mut response = guard_panics(async {
        if let Some(refused) = refuse_oversize_head(&req) {
            return refused;
        }
        if let Some(refused) = refuse_while_starting(&edge.readiness, &req) {
            return refused;
        }
        match refuse_oversize(req).await {
            Err(refused) => refused,
            Ok(req) => time_out(edge.limit, next.run(req)).await,
        }
    })
    .instrument(span.clone())
    .await;
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    span.in_scope(|| edge.series.observe(method, route, started, &response));
    response
}

/// What [`edge`] needs: the time-out, whether the process serves business requests yet, and
/// the request metrics' handles of one router.
#[derive(Debug)]
pub struct Edge {
    pub limit: Duration,
    pub readiness: Readiness,
    pub series: Series,
}

impl Edge {
    pub fn new(limit: Duration, readiness: Readiness) -> Self {
        Edge {
            limit,
            readiness,
            series: Series::new(),
        }
    }
}

/// Until the start-up work is done, a business request (under `/api/`) answers 503
/// `BACKEND_UNAVAILABLE` with the reason: a FLASH gate that is not yet reconciled with the
/// store could admit more claims than the coupon has (docs/decisions/0020). The operational
/// routes answer as usual.
fn refuse_while_starting(readiness: &Readiness, req: &Request) -> Option<Response> {
    let reason = readiness.starting()?;
    if !req.uri().path().starts_with("/api/") {
        return None;
    }
    Some(
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(ErrorCode::BackendUnavailable, reason)
        }
        .into_response(),
    )
}

/// Up to 128 bytes of visible ASCII.
fn usable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// A request that panics answers 500 in the envelope instead of dropping the connection.
async fn guard_panics(answer: impl std::future::Future<Output = Response>) -> Response {
    AssertUnwindSafe(answer)
        .catch_unwind()
        .await
        .unwrap_or_else(panic_response)
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];

/// The statuses the service answers with; any other is labelled as it comes.
const STATUSES: [(u16, &str); 15] = [
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (409, "409"),
    (413, "413"),
    (414, "414"),
    (422, "422"),
    (431, "431"),
    (500, "500"),
    (503, "503"),
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The request metrics' handles for every route, method and known status. The `metrics`
/// macros build the key and look it up in the recorder on every call, which showed in profiles
/// of the cheapest routes; here each series is looked up once, on its first request, so the
/// recorder must be installed before the router serves (the binary installs it at start-up).
pub struct Series {
    /// Route template -> index in `labels`; the last label is `unmatched`.
    routes: HashMap<&'static str, usize>,
    labels: Vec<&'static str>,
    /// `labels.len() * METHODS.len()` cells, by route then method.
    cells: Vec<Cell>,
}

#[derive(Default)]
struct Cell {
    duration: OnceLock<Histogram>,
    counts: [OnceLock<Counter>; STATUSES.len()],
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("routes", &self.labels.len())
            .finish_non_exhaustive()
    }
}

impl Series {
    fn new() -> Self {
        let mut labels: Vec<&'static str> = Vec::new();
        for path in crate::routes::paths() {
            if !labels.contains(&path.as_str()) {
                labels.push(path.as_str());
            }
        }
        let routes = labels.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        labels.push("unmatched");
        let cells = (0..labels.len() * METHODS.len())
            .map(|_| Cell::default())
            .collect();
        Series {
            routes,
            labels,
            cells,
        }
    }

    fn route(&self, matched: Option<&MatchedPath>) -> usize {
        matched
            .and_then(|m| self.routes.get(m.as_str()).copied())
            .unwrap_or(self.labels.len() - 1)
    }

    fn observe(&self, method: usize, route: usize, started: Instant, response: &Response) {
        let status = response.status();
        let elapsed = started.elapsed().as_secs_f64();
        let (m, r) = (METHODS[method], self.labels[route]);
        // The access log: one line per request, inside the `request` span (its id). Never a
        // header's value or a body. Its own target, so `RUST_LOG=info,stockade::access=off`
        // keeps the rest of the log.
        tracing::info!(
            target: "stockade::access",
            method = m,
            route = r,
            status = status.as_u16(),
            latency_ms = elapsed * 1e3,
            "answered"
        );
        let cell = &self.cells[route * METHODS.len() + method];
        match STATUSES.iter().position(|(code, _)| *code == status.as_u16()) {
            Some(i) => cell.counts[i]
                .get_or_init(|| {
                    metrics::counter!("http_requests_total", "method" => m, "route" => r, "status" => STATUSES[i].1)
                })
                .increment(1),
            None => metrics::counter!("http_requests_total", "method" => m, "route" => r, "status" => status.as_u16().to_string())
                .increment(1),
        }
        cell.duration
            .get_or_init(|| {
                metrics::histogram!("http_request_duration_seconds", "method" => m, "route" => r)
            })
            .record(elapsed);
        let cause = response.extensions().get::<ErrorCause>();
        if status == StatusCode::SERVICE_UNAVAILABLE && cause.is_none() {
            // Refused by design, not failed: a starting instance's requests and probes (a
            // load balancer polls /ready many times a second during a restart).
            tracing::debug!(method = %m, route = %r, status = status.as_u16(), "request refused: not ready");
        } else if status.is_server_error() {
            let cause = cause.map_or("-", |c| c.0.as_str());
            tracing::error!(method = %m, route = %r, status = status.as_u16(), %cause, "request failed");
        } else if let Some(cause) = cause {
            tracing::warn!(method = %m, route = %r, status = status.as_u16(), cause = %cause.0, "request refused");
        }
    }
}

/// Bodies up to this size are read to the end before a 413 is sent, so that the client, still
/// writing, gets the answer instead of a reset connection; larger ones are cut off.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The longest a refused body is read for before the 413 is sent anyway.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Refuses a declared body over [`BODY_LIMIT`] without handing it to a handler (bodies without
/// a length are limited while being read by the JSON extractor).
/// A request target over [`TARGET_LIMIT`] or headers over [`HEADERS_LIMIT`] are refused in
/// the envelope before anything reads them.
fn refuse_oversize_head(req: &Request) -> Option<Response> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > TARGET_LIMIT {
        return Some(
            ApiError::new(
                ErrorCode::UriTooLong,
                "the request target is longer than 8 KiB",
            )
            .into_response(),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > HEADERS_LIMIT {
        return Some(
            ApiError::new(
                ErrorCode::HeadersTooLarge,
                "the request's headers are larger than 32 KiB in all",
            )
            .into_response(),
        );
    }
    None
}

async fn refuse_oversize(req: Request) -> Result<Request, Response> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > BODY_LIMIT as u64) {
        if n <= DRAIN_LIMIT as u64 {
            // Bounded in time too: a client that declares a large body and sends it a byte at
            // a time must not hold its connection (and its place under the cap) for long.
            let drain = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT);
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        }
        return Err(
            ApiError::new(ErrorCode::PayloadTooLarge, "the body is larger than 1 MiB")
                .into_response(),
        );
    }
    Ok(req)
}

/// Ends a request that takes longer than `limit` with 503 `BACKEND_UNAVAILABLE`.
async fn time_out(
    limit: Duration,
    answer: impl std::future::Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => ApiError {
            cause: Some(format!("request exceeded {limit:?}")),
            ..ApiError::new(
                ErrorCode::BackendUnavailable,
                "the request took too long; try again",
            )
        }
        .into_response(),
    }
}

/// A handler that panicked answers 500 in the envelope; the panic goes to the log.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned());
    ApiError {
        cause: Some(format!("handler panicked: {detail}")),
        ..ApiError::new(ErrorCode::InternalError, "internal error")
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[test]
    fn only_a_short_visible_request_id_is_kept() {
        let ok = |s: &str| usable_request_id(&HeaderValue::from_str(s).expect("value"));
        assert!(ok("e2e-request-7"));
        assert!(ok(&"a".repeat(128)));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok("two words"));
        assert!(!ok(""));
        assert!(!usable_request_id(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").expect("value")
        ));
    }

    fn app(limit: Duration) -> Router {
        app_with(limit, Readiness::serving())
    }

    fn app_with(limit: Duration, readiness: Readiness) -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/api/v1/products", get(|| async { "products" }))
            .route(
                "/boom",
                get(|| async {
                    if BODY_LIMIT > 0 {
                        panic!("the handler broke");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Edge::new(limit, readiness)),
                edge,
            ))
    }

    async fn send(app: Router, req: axum::http::Request<Body>) -> (Response, serde_json::Value) {
        let response = app.oneshot(req).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (Response::from_parts(parts, Body::empty()), json)
    }

    fn get_req(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(path)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn a_request_id_is_kept_when_given_and_made_when_not() {
        let mut req = get_req("/ok");
        req.headers_mut()
            .insert(REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        let (r, _) = send(app(Duration::from_secs(5)), req).await;
        assert_eq!(r.headers()[&REQUEST_ID], "abc-123");

        let (r1, _) = send(app(Duration::from_secs(5)), get_req("/ok")).await;
        let (r2, _) = send(app(Duration::from_secs(5)), get_req("/ok")).await;
        let id1 = r1.headers()[&REQUEST_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        let id2 = r2.headers()[&REQUEST_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id1).is_ok(), "{id1}");
        assert_ne!(id1, id2);
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope_with_its_request_id() {
        let (r, body) = send(app(Duration::from_secs(5)), get_req("/boom")).await;
        assert_eq!(r.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
        assert!(!body.to_string().contains("the handler broke"), "{body}");
        assert!(r.headers().contains_key(&REQUEST_ID));
        let cause = r
            .extensions()
            .get::<ErrorCause>()
            .expect("cause for the log");
        assert!(cause.0.contains("the handler broke"), "{}", cause.0);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_answers_503() {
        let (r, body) = send(app(Duration::from_millis(200)), get_req("/slow")).await;
        assert_eq!(r.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE");
        assert!(r.headers().contains_key(&REQUEST_ID));
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused_before_the_handler() {
        let req = axum::http::Request::get("/ok")
            .header(CONTENT_LENGTH, BODY_LIMIT + 1)
            .body(Body::from(vec![b'x'; BODY_LIMIT + 1]))
            .expect("request");
        let (r, body) = send(app(Duration::from_secs(5)), req).await;
        assert_eq!(r.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    }

    #[tokio::test]
    async fn business_requests_answer_503_until_the_start_up_work_is_done() {
        let readiness = Readiness::new(
            Some("starting: reconciling coupon gates".to_owned()),
            Duration::from_millis(100),
            Vec::new(),
        );
        let app = app_with(Duration::from_secs(5), readiness.clone());
        let (r, body) = send(app.clone(), get_req("/api/v1/products")).await;
        assert_eq!(r.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE");
        assert_eq!(
            body["error"]["message"],
            "starting: reconciling coupon gates"
        );
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        let (r, _) = send(app.clone(), get_req("/ok")).await;
        assert_eq!(r.status(), axum::http::StatusCode::OK);
        readiness.mark_ready();
        let (r, _) = send(app, get_req("/api/v1/products")).await;
        assert_eq!(r.status(), axum::http::StatusCode::OK);
    }
}

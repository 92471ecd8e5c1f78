//! Cross-cutting layers: the body limit, a request time-out, request metrics and error
//! logging in one, and a panic guard — each answering in the envelope.

use crate::error::{ApiError, ErrorCause};
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};
use stockade_domain::ErrorCode;

/// The largest body any route accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Every request passes through here once: a declared body over [`BODY_LIMIT`] is refused
/// before any handler sees it, the rest get at most `limit` to answer, and every answer is
/// counted by route and status with its latency (5xx causes, which bodies never show, go to the
/// log). One layer rather than three: each `from_fn` layer boxes and moves the request's future
/// again, which showed in profiles of the cheapest routes.
pub async fn edge(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = route_label(req.extensions().get::<MatchedPath>());
    let response = match refuse_oversize(req).await {
        Err(refused) => refused,
        Ok(req) => time_out(limit, next.run(req)).await,
    };
    observe(method, route, started, &response);
    response
}

fn observe(method: &'static str, route: &'static str, started: Instant, response: &Response) {
    let status = response.status();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status_label(status)).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    if status.is_server_error() {
        let cause = response
            .extensions()
            .get::<ErrorCause>()
            .map_or("-", |c| c.0.as_str());
        tracing::error!(%method, %route, status = status.as_u16(), %cause, "request failed");
    } else if let Some(cause) = response.extensions().get::<ErrorCause>() {
        tracing::warn!(%method, %route, status = status.as_u16(), cause = %cause.0, "request refused");
    }
}

/// Labels are `&'static str` where they can be, so that recording a request allocates nothing.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|m| {
            crate::openapi::ROUTES
                .iter()
                .find(|r| r.path == m.as_str())
                .map(|r| r.path)
        })
        .unwrap_or("unmatched")
}

fn status_label(status: StatusCode) -> metrics::SharedString {
    let s: &'static str = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        422 => "422",
        500 => "500",
        503 => "503",
        other => return metrics::SharedString::from(other.to_string()),
    };
    metrics::SharedString::from(s)
}

/// Bodies up to this size are read to the end before a 413 is sent, so that the client, still
/// writing, gets the answer instead of a reset connection; larger ones are cut off.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Refuses a declared body over [`BODY_LIMIT`] without handing it to a handler (bodies without
/// a length are limited while being read by the JSON extractor).
async fn refuse_oversize(req: Request) -> Result<Request, Response> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > BODY_LIMIT as u64) {
        if n <= DRAIN_LIMIT as u64 {
            let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
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
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
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

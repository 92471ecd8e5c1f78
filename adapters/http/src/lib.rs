//! # stockade-http
//!
//! The HTTP API of docs/api.md on axum. [`router`] builds the whole service from an [`AppState`];
//! the binary serves it and tests drive it on an ephemeral port.
//!
//! - Every answer, 404 and 405 included, is the envelope of [`envelope`]; the only mapping
//!   from an outcome to a status is [`error::status_of`].
//! - Extractors ([`extract`]) turn malformed JSON, wrong types, bad paths and bad queries into
//!   400 `INVALID_INPUT` naming the field, and oversized bodies into 413.
//! - [`routes::routes`] is the one route table: each handler's `#[utoipa::path]` gives both its
//!   route and its operation in `/openapi.json`; the shapes it names are in [`schema`], and
//!   `/docs` renders the document with the Swagger UI vendored in `assets/` (ADR 0016).
//! - [`serve`] runs the router on a listener: time-outs for request heads and idle connections,
//!   a connection cap, accept back-off, and hyper's own refusals in the envelope (ADR 0019).

pub mod auth;
mod business;
pub mod cors;
pub mod envelope;
pub mod error;
pub mod extract;
mod handlers;
pub mod jwks;
mod middleware;
pub mod paging;
pub mod readiness;
pub mod routes;
pub mod schema;
pub mod serve;
#[cfg(test)]
mod test_support;

pub use auth::{issue_token, JwtSecret, TokenRules};
pub use cors::CorsOrigins;
pub use readiness::{Readiness, ReadyCheck};
pub use serve::{serve, ServeOptions};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use stockade_application::{AppError, Stockade};

/// Puts the demo data back (only wired in the demo profile).
#[async_trait]
pub trait Reset: Send + Sync + std::fmt::Debug {
    async fn reset(&self) -> Result<(), AppError>;
}

/// What every handler reaches.
#[derive(Debug, Clone)]
pub struct AppState {
    pub app: Stockade,
    pub jwt: JwtSecret,
    pub metrics: Option<PrometheusHandle>,
    pub reset: Option<Arc<dyn Reset>>,
    /// The longest a request may take.
    pub request_timeout: Duration,
    /// Origins browsers may call the API from (off by default).
    pub cors: CorsOrigins,
    /// Whether business requests are served yet, and what `/ready` checks and reports.
    pub readiness: Readiness,
}

/// How often the recorder's histogram samples are folded into their buckets (see
/// [`metrics_handle`]).
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The process-wide Prometheus recorder (installed on first use), with its upkeep running.
///
/// A histogram sample is first queued as a raw value and only folded into the fixed buckets
/// below by `PrometheusHandle::run_upkeep`. A scrape runs it, but nothing else does when the
/// recorder is installed with `install_recorder`, so without a scraper the queue would grow by
/// every request's samples. The first call therefore also starts a thread that runs the upkeep
/// every [`METRICS_UPKEEP_EVERY`] for the life of the process: whoever installs the recorder
/// through this function (the binary, an embedder, a test) gets it, with or without a Tokio
/// runtime (ADR 0021).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            describe_metrics();
            spawn_upkeep(handle.clone(), METRICS_UPKEEP_EVERY);
            Some(handle)
        })
        .clone()
}

/// `# HELP` for the families this crate publishes.
fn describe_metrics() {
    metrics::describe_counter!(
        "http_requests_total",
        "answers, by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "time to answer, by method and route template"
    );
    business::describe();
}

/// Runs `handle.run_upkeep()` every `every` on a thread of its own, until the process ends.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            handle.run_upkeep();
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "could not start the metrics upkeep: histogram samples will \
            pile up between scrapes of /metrics");
    }
}

/// The state as the router holds it: axum clones the state for every request (each route and
/// every `State` extractor), so it is one reference count rather than one per field.
pub(crate) type Shared = Arc<Served>;

/// What the router serves from: the caller's state plus what the router derives once.
#[derive(Debug)]
pub(crate) struct Served {
    state: AppState,
    /// The rendered OpenAPI document; every `/openapi.json` answer is a clone of these bytes.
    pub(crate) document: Bytes,
}

impl std::ops::Deref for Served {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
    }
}

/// The whole service.
pub fn router(state: AppState) -> Router {
    let (router, api) = routes::routes().split_for_parts();
    let document = api
        .to_json()
        .map(|json| Bytes::from(json.into_bytes()))
        .unwrap_or_else(|_| Bytes::from_static(b"{}"));
    let timeout = state.request_timeout;
    let cors = state.cors.layer();
    let router = router
        .fallback(handlers::ops::not_found)
        .method_not_allowed_fallback(handlers::ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(middleware::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(middleware::Edge::new(timeout, state.readiness.clone())),
            middleware::edge,
        ))
        .with_state(Arc::new(Served { state, document }));
    // Outermost: a preflight is answered before routing (no route answers OPTIONS).
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

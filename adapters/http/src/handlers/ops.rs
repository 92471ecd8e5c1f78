//! Operational endpoints and the envelope for unknown routes and methods.

use crate::envelope::Reply;
use crate::error::ApiError;
use crate::schema::errors::error_set;
use crate::schema::views::{Envelope, Ready, Status};
use crate::Shared;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stockade_domain::ErrorCode;

error_set!(
    /// Only what every operation can answer.
    Plain: []
);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "alive", body = Envelope<Status>), Plain))]
pub async fn health() -> Reply {
    Reply::ok(&json!({ "status": "ok" }))
}

/// Readiness: the start-up work is done and every backend answers within the probe's
/// time-out (503 `BACKEND_UNAVAILABLE` with the reason otherwise). `warnings` lists what the
/// process serves with but an operator should know, such as a FLASH gate whose Redis keeps no
/// append-only file (docs/operations.md).
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "every backend answers", body = Envelope<Ready>), Plain))]
pub async fn ready(State(s): State<Shared>) -> Result<Reply, ApiError> {
    if let Some(reason) = s.readiness.starting() {
        return Err(ApiError::new(ErrorCode::BackendUnavailable, reason));
    }
    let limit = s.readiness.probe_timeout();
    match tokio::time::timeout(limit, s.app.ready()).await {
        Ok(answered) => answered?,
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::BackendUnavailable,
                format!(
                    "the backends did not answer within {} ms",
                    limit.as_millis()
                ),
            ))
        }
    }
    let warnings = s.readiness.warnings().await;
    Ok(Reply::ok(
        &json!({ "status": "ready", "warnings": warnings }),
    ))
}

/// Prometheus exposition (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text", body = String,
        content_type = "text/plain"), Plain))]
pub async fn metrics(State(s): State<Shared>) -> Response {
    let text = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

/// This document: OpenAPI 3.1, derived from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "the OpenAPI document", body = Object,
        content_type = "application/json"), Plain))]
pub async fn openapi_json(State(s): State<Shared>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        s.document.clone(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

//! Operational endpoints and the envelope for unknown routes and methods.

use crate::envelope::Reply;
use crate::error::ApiError;
use crate::openapi;
use crate::Shared;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stockade_domain::ErrorCode;

pub async fn health() -> Reply {
    Reply::ok(&json!({ "status": "ok" }))
}

pub async fn ready(State(s): State<Shared>) -> Result<Reply, ApiError> {
    s.app.ready().await?;
    Ok(Reply::ok(&json!({ "status": "ready" })))
}

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

pub async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi::document().to_string(),
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

//! `GET /docs`: an interactive page over `/openapi.json` (Swagger UI).
//!
//! Every byte of it is in the binary: the page, its script and its styles come from
//! `adapters/http/assets/` (swagger-ui-dist, vendored with its licence; ADR 0016), so the page
//! works offline and loads nothing from another host.

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::schema::errors::error_set;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stockade_domain::ErrorCode;
use utoipa::ToSchema;

error_set!(DocsErrors: []);
error_set!(AssetErrors: [NotFound]);

const PAGE: &str = include_str!("../../assets/docs.html");

/// The files the page loads, by the name it asks for.
pub const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "docs-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/docs-init.js"),
    ),
    (
        "favicon-32x32.png",
        "image/png",
        include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
    ),
];

/// The name of one of the page's files.
#[derive(Debug, ToSchema)]
#[schema(as = DocsAsset)]
#[allow(dead_code)] // Documentation type: read by utoipa's derive, never built.
pub enum AssetName {
    #[schema(rename = "swagger-ui-bundle.js")]
    Bundle,
    #[schema(rename = "swagger-ui.css")]
    Styles,
    #[schema(rename = "docs-init.js")]
    Init,
    #[schema(rename = "favicon-32x32.png")]
    Icon,
}

/// The interactive API page.
#[utoipa::path(get, path = "/docs", tag = "ops",
    responses((status = 200, description = "the page", body = String, content_type = "text/html"),
        DocsErrors))]
pub async fn page() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        PAGE,
    )
        .into_response()
}

/// A script, style sheet or icon of the page.
#[utoipa::path(get, path = "/docs/{asset}", tag = "ops",
    params(("asset" = inline(AssetName), Path, description = "a file of the page")),
    responses((status = 200, description = "the file", content(
        (String = "text/javascript"), (String = "text/css"), (String = "image/png"))),
        AssetErrors))]
pub async fn asset(ApiPath(name): ApiPath<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::new(ErrorCode::NotFound, "no such file of the docs page").into_response(),
    }
}

#[cfg(test)]
mod tests;

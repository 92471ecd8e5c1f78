//! Extractors whose rejections are API errors in the envelope (never axum's plain text).

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use stockade_domain::{ErrorCode, IdempotencyKey};

/// A JSON body. Malformed JSON, a wrong content type, a wrong field type or a missing field is
/// a 400 `INVALID_INPUT` naming the field; an oversized body is a 413 `PAYLOAD_TOO_LARGE`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::PayloadTooLarge, "the body is larger than 1 MiB");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid("the body must be JSON with Content-Type: application/json")
        }
        JsonRejection::JsonDataError(e) => ApiError::invalid(clean(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::invalid(clean(&e.body_text())),
        other => ApiError::invalid(clean(&other.body_text())),
    }
}

/// axum's texts start with a generic preamble; keep the part that names the field.
fn clean(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
        .unwrap_or(text);
    format!("invalid body: {text}")
}

/// Path parameters; a parameter that does not parse is a 400 `INVALID_INPUT`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| {
                ApiError::invalid(format!("invalid path parameter: {}", e.body_text()))
            })
    }
}

/// Query parameters; one that does not parse is a 400 `INVALID_INPUT`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| {
                ApiError::invalid(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// The `Idempotency-Key` header, if sent: bare (`abc`) or a structured-field string (`"abc"`).
#[derive(Debug, Clone)]
pub struct IdemKey(pub Option<IdempotencyKey>);

impl IdemKey {
    /// # Errors
    /// 400 `IDEMPOTENCY_KEY_MISSING` when the header was not sent.
    pub fn required(self) -> Result<IdempotencyKey, ApiError> {
        self.0.ok_or_else(|| {
            ApiError::new(
                ErrorCode::IdempotencyKeyMissing,
                "this request needs an Idempotency-Key header",
            )
        })
    }
}

/// Unwraps an RFC 8941 sf-string (`"a\"b"` -> `a"b`); a bare key is returned as it is.
pub fn parse_key(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(raw.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| ApiError::invalid("Idempotency-Key: unterminated string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => return Err(ApiError::invalid("Idempotency-Key: bad escape")),
            },
            '"' => return Err(ApiError::invalid("Idempotency-Key: stray quote")),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdemKey(None));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key: must be visible ASCII"))?;
        let key = IdempotencyKey::parse(&parse_key(text)?)?;
        Ok(IdemKey(Some(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_keys_name_the_same_key() {
        assert_eq!(parse_key("abc").ok(), Some("abc".to_owned()));
        assert_eq!(parse_key("\"abc\"").ok(), Some("abc".to_owned()));
        assert_eq!(parse_key(r#""a\"b""#).ok(), Some("a\"b".to_owned()));
        assert!(parse_key("\"abc").is_err());
        assert!(parse_key(r#""a\x""#).is_err());
    }
}

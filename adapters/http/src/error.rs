//! The API's error answers: the one place where an outcome becomes an HTTP status.

use crate::envelope::failure_body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use stockade_application::AppError;
use stockade_domain::{DomainError, ErrorCode};

/// The status of every error code (the table of docs/api.md). The only such mapping in the project.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidInput
        | IdempotencyKeyMissing
        | InsufficientStock
        | ExceededLimitedQuantity
        | CartEmpty
        | InvalidCoupon
        | InvalidOrderState
        | AmountMismatch
        | InsufficientBalance
        | ChargeLimitExceeded => StatusCode::BAD_REQUEST,
        Unauthorized | InvalidCredentials => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        NotFound | ProductNotFound | OrderNotFound | CouponNotFound | UserNotFound => {
            StatusCode::NOT_FOUND
        }
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        CouponSoldOut | CouponAlreadyIssued | RequestInProgress | LockTimeout | EmailTaken
        | PurchaseLimitReached => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UriTooLong => StatusCode::URI_TOO_LONG,
        HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        PaymentFailed => StatusCode::BAD_GATEWAY,
        BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The cause of a 5xx, kept out of the body and handed to the logging middleware.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

/// An error answer: code, a message for people, and what headers it needs.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Whether this repeats a stored idempotent outcome.
    pub replayed: bool,
    /// For the log only.
    pub cause: Option<String>,
    /// A 401 about a token the client sent (RFC 6750 `error="invalid_token"`), rather than one
    /// about a missing token.
    pub invalid_token: bool,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            replayed: false,
            cause: None,
            invalid_token: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidInput, message)
    }

    /// 401 for a request without usable credentials (no token, or not a Bearer one).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    /// 401 for a token that was sent and is not valid (bad signature, expired, odd claims).
    pub fn invalid_token(message: impl Into<String>) -> Self {
        ApiError {
            invalid_token: true,
            ..ApiError::new(ErrorCode::Unauthorized, message)
        }
    }
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.as_secs() == 0))
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let code = e.code();
        match e {
            AppError::Unavailable(b) => {
                let mut cause = b.to_string();
                let mut source = std::error::Error::source(&b);
                while let Some(s) = source {
                    cause.push_str(": ");
                    cause.push_str(&s.to_string());
                    source = s.source();
                }
                ApiError {
                    cause: Some(cause),
                    ..ApiError::new(code, "a backend service is unavailable; try again shortly")
                }
            }
            AppError::Internal(detail) => ApiError {
                cause: Some(detail),
                ..ApiError::new(code, "internal error")
            },
            AppError::RequestInProgress { retry_after } => ApiError {
                retry_after: Some(retry_secs(retry_after)),
                ..ApiError::new(
                    code,
                    "a request with this idempotency key is still in progress",
                )
            },
            AppError::TooManyRequests { retry_after } => ApiError {
                retry_after: Some(retry_secs(retry_after)),
                ..ApiError::new(code, e.to_string())
            },
            AppError::LockTimeout => ApiError {
                retry_after: Some(1),
                ..ApiError::new(code, e.to_string())
            },
            AppError::Replayed { message, .. } => ApiError {
                replayed: true,
                ..ApiError::new(code, message)
            },
            other => ApiError::new(code, other.to_string()),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            failure_body(self.code, &self.message),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 section 3: every 401 names the scheme; a rejected token says so.
            let challenge = if self.invalid_token {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            } else {
                HeaderValue::from_static("Bearer")
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_status_of_the_api_table() {
        for code in ErrorCode::ALL {
            let s = status_of(code).as_u16();
            assert!(matches!(
                s,
                400 | 401 | 403 | 404 | 405 | 409 | 413 | 414 | 422 | 429 | 431 | 500 | 502 | 503
            ));
        }
        assert_eq!(status_of(ErrorCode::IdempotencyKeyReused).as_u16(), 422);
        assert_eq!(status_of(ErrorCode::InvalidCredentials).as_u16(), 401);
        assert_eq!(status_of(ErrorCode::EmailTaken).as_u16(), 409);
        assert_eq!(status_of(ErrorCode::PurchaseLimitReached).as_u16(), 409);
        assert_eq!(status_of(ErrorCode::TooManyRequests).as_u16(), 429);
        assert_eq!(status_of(ErrorCode::PaymentFailed).as_u16(), 502);
        assert_eq!(status_of(ErrorCode::UriTooLong).as_u16(), 414);
        assert_eq!(status_of(ErrorCode::HeadersTooLarge).as_u16(), 431);
    }

    #[test]
    fn every_401_names_the_bearer_scheme_and_says_when_a_token_was_refused() {
        let header = |e: ApiError| {
            let r = e.into_response();
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        assert_eq!(
            header(ApiError::unauthorized("no token")).as_deref(),
            Some("Bearer")
        );
        assert_eq!(
            header(ApiError::invalid_token("expired")).as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(
            header(ApiError::new(ErrorCode::InvalidCredentials, "wrong")).as_deref(),
            Some("Bearer")
        );
        assert_eq!(
            header(ApiError::new(ErrorCode::Forbidden, "admins only")),
            None
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1_500)), 2);
        assert_eq!(retry_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_secs(Duration::ZERO), 1);
    }
}

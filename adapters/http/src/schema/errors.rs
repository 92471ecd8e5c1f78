//! Error answers in the document: per operation, every status it can answer and, for each, the
//! API codes that status can carry there.
//!
//! The statuses are not written by hand: each operation names its codes (next to its handler,
//! in [`crate::handlers`]) and [`status_of`] — the one code → status mapping — groups them, so
//! the document cannot give a code a status the service does not answer with. Every operation
//! can also answer 413 (a declared body over 1 MiB is refused before routing), 414 and 431 (a
//! request target over 8 KiB, headers over 32 KiB), 500 and 503 (time-outs and unreachable
//! backends); [`ALWAYS`] adds those.

use crate::error::status_of;
use std::collections::BTreeMap;
use stockade_domain::ErrorCode;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, Response, ResponseBuilder, Schema};

/// Codes every operation can answer with, whatever it does.
pub const ALWAYS: [ErrorCode; 5] = [
    ErrorCode::PayloadTooLarge,
    ErrorCode::UriTooLong,
    ErrorCode::HeadersTooLarge,
    ErrorCode::InternalError,
    ErrorCode::BackendUnavailable,
];

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// The failure envelope of docs/api.md with `error.code` limited to `codes`.
pub fn envelope(codes: &[ErrorCode]) -> Schema {
    let code = string().enum_values(Some(codes.iter().map(|c| c.as_str())));
    let error = ObjectBuilder::new()
        .property("code", code)
        .required("code")
        .property(
            "message",
            string().description(Some("for people; never backend details")),
        )
        .required("message");
    ObjectBuilder::new()
        .property(
            "success",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([false])),
        )
        .required("success")
        .property("error", error)
        .required("error")
        .property(
            "timestamp",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("timestamp")
        .into()
}

/// The error responses of an operation that names `codes` (plus [`ALWAYS`]), keyed by status.
pub fn responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes.iter().chain(ALWAYS.iter()) {
        let list = by_status.entry(status_of(*code).as_u16()).or_default();
        if !list.contains(code) {
            list.push(*code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let mut response = ResponseBuilder::new()
                .description(description(status))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(envelope(&codes))).build(),
                );
            if codes
                .iter()
                .any(|c| {
                    matches!(
                        c,
                        ErrorCode::RequestInProgress
                            | ErrorCode::LockTimeout
                            | ErrorCode::TooManyRequests
                    )
                })
            {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some(
                            "seconds to wait before retrying (REQUEST_IN_PROGRESS, LOCK_TIMEOUT, TOO_MANY_REQUESTS)",
                        ))
                        .build(),
                );
            }
            if status == 401 {
                response = response.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some(
                            "`Bearer`, or `Bearer error=\"invalid_token\"` when a token was sent and refused (RFC 6750)",
                        ))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

fn description(status: u16) -> &'static str {
    match status {
        400 => "the request is not valid, or the business rules refuse it",
        401 => "no valid bearer token, or (sign-in) the email or password is not correct",
        403 => "the token may not do this",
        404 => "what the path names does not exist (or is not the caller's)",
        409 => "a conflict: sold out, already issued, in progress, a lock time-out or an email already taken",
        413 => "the body is larger than 1 MiB",
        414 => "the request target is longer than 8 KiB",
        431 => "the request's headers are larger than 32 KiB in all",
        422 => "the Idempotency-Key was used for a different request",
        429 => "too many failed sign-ins for this email; wait Retry-After seconds",
        500 => "an internal error; the body carries no detail",
        502 => "the payment platform failed; everything was compensated",
        503 => "a backend is unavailable or the request took too long",
        _ => "an error in the envelope",
    }
}

/// Declares an operation's error set: a type for `responses(...)` of `#[utoipa::path]`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: [$($code:ident),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::schema::errors::responses(&[$(stockade_domain::ErrorCode::$code),*])
            }
        }
    };
}
pub(crate) use error_set;

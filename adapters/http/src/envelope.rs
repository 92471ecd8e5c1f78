//! The response envelope of docs/api.md: `{success, data | error, timestamp}` on every answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stockade_domain::ErrorCode;
use time::format_description::well_known::Rfc3339;

pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    success: bool,
    data: &'a T,
    timestamp: String,
}

#[derive(Serialize)]
struct Failure<'a> {
    success: bool,
    error: ErrorBody<'a>,
    timestamp: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

pub fn failure_body(code: ErrorCode, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Failure {
        success: false,
        error: ErrorBody {
            code: code.as_str(),
            message,
        },
        timestamp: timestamp(),
    })
    .unwrap_or_else(|_| b"{\"success\":false}".to_vec())
}

/// A success answer.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    replayed: bool,
    location: Option<String>,
    link: Option<String>,
}

impl Reply {
    pub fn ok<T: Serialize>(data: &T) -> Reply {
        Reply::with_status(StatusCode::OK, data)
    }

    pub fn created<T: Serialize>(data: &T) -> Reply {
        Reply::with_status(StatusCode::CREATED, data)
    }

    pub fn with_status<T: Serialize>(status: StatusCode, data: &T) -> Reply {
        let body = serde_json::to_vec(&Success {
            success: true,
            data,
            timestamp: timestamp(),
        })
        .unwrap_or_else(|_| b"{\"success\":true,\"data\":null}".to_vec());
        Reply {
            status,
            body,
            replayed: false,
            location: None,
            link: None,
        }
    }

    /// The path of what a 201 created (`Location`).
    pub fn at(mut self, location: String) -> Reply {
        self.location = Some(location);
        self
    }

    /// The `Link` header (a list's next page).
    pub fn link(mut self, link: Option<String>) -> Reply {
        self.link = link;
        self
    }

    /// Marks the answer as the replay of a stored idempotent outcome.
    pub fn replayed(mut self, replayed: bool) -> Reply {
        self.replayed = replayed;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::try_from(l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(link) = self.link.and_then(|l| HeaderValue::try_from(l).ok()) {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

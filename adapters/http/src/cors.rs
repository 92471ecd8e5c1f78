//! Cross-origin requests from browsers (CORS), off unless origins are configured.
//!
//! With origins configured, a browser page served from one of them may call the API with a
//! bearer token: preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered 204
//! before routing, and answers carry `Access-Control-Allow-Origin` for an allowed origin only.
//! Credentials (cookies) are never allowed: the API authenticates with the `Authorization`
//! header, which the page sets itself.

use axum::http::header::{
    AUTHORIZATION, CONTENT_TYPE, LINK, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all (the default): browsers keep pages of other origins out.
    #[default]
    Off,
    /// Any origin (`*`).
    Any,
    /// These exact origins (`scheme://host[:port]`).
    List(Vec<HeaderValue>),
}

/// A configured origin that is not `*` or `scheme://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("not a CORS origin (want `*` or scheme://host[:port], e.g. https://shop.example): {0:?}")]
pub struct BadOrigin(pub String);

impl CorsOrigins {
    /// From the configured values: none is off, `*` is any origin, else each must be an origin.
    ///
    /// # Errors
    /// [`BadOrigin`] naming the first value that is not an origin.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<CorsOrigins, BadOrigin> {
        let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        if values.is_empty() {
            return Ok(CorsOrigins::Off);
        }
        if values.contains(&"*") {
            return Ok(CorsOrigins::Any);
        }
        values
            .iter()
            .map(|v| origin(v).ok_or_else(|| BadOrigin((*v).to_owned())))
            .collect::<Result<_, _>>()
            .map(CorsOrigins::List)
    }

    /// The layer answering preflights and marking answers, or `None` when off.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            CorsOrigins::Off => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    AUTHORIZATION,
                    CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    LOCATION,
                    LINK,
                    RETRY_AFTER,
                    WWW_AUTHENTICATE,
                    HeaderName::from_static("idempotent-replayed"),
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// `scheme://host[:port]` with an http(s) scheme, no path, query or trailing slash: exactly
/// what a browser sends in `Origin`.
fn origin(value: &str) -> Option<HeaderValue> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if !(host_ok && port_ok) {
        return None;
    }
    // Browsers send the scheme and host in lower case.
    HeaderValue::from_str(&value.to_ascii_lowercase()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(CorsOrigins::parse::<&str>(&[]).ok(), Some(CorsOrigins::Off));
        assert_eq!(CorsOrigins::parse(&["*"]).ok(), Some(CorsOrigins::Any));
        let list = CorsOrigins::parse(&["https://Shop.Example", "http://localhost:3000"]);
        assert!(matches!(list, Ok(CorsOrigins::List(ref l)) if l.len() == 2));
        let Ok(CorsOrigins::List(list)) = list else {
            unreachable!()
        };
        assert_eq!(list[0], "https://shop.example");
        for bad in [
            "shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "ftp://shop.example",
            "https://",
            "https://shop.example:port",
            "https://shop example",
        ] {
            assert!(CorsOrigins::parse(&[bad]).is_err(), "{bad}");
        }
    }
}

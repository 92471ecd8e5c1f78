//! hyper answers a request head it cannot parse by itself, before any service sees it: 431 for
//! a head too large for its buffer (or with too many headers), 414 for a target too long, 400
//! for bytes that are not HTTP; each with an empty body, then it closes the connection. Those
//! are the only bytes hyper writes on a connection with no request in flight, so the socket
//! ([`super::conn::Tracked`]) recognises them there and sends the envelope in their place.

use crate::envelope::failure_body;
use crate::error::status_of;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use stockade_domain::ErrorCode;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// The envelope answer being written in place of hyper's.
#[derive(Debug)]
pub(super) struct Refusal {
    bytes: Vec<u8>,
    written: usize,
}

impl Refusal {
    /// Writes what is left of the answer.
    pub(super) fn poll_write_to(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.bytes.len() {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.bytes[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The envelope answer for hyper's head `head`, if it is one of hyper's refusals.
/// `line_seen`: whether the request line had ended when hyper gave up (a head too large
/// without a complete request line is a target too long).
pub(super) fn replacing(head: &[u8], line_seen: bool) -> Option<Refusal> {
    let (code, message) = match status(head)? {
        400 => (
            ErrorCode::InvalidInput,
            "the request is not valid HTTP: a byte that is not allowed in the request line or a header",
        ),
        414 => (ErrorCode::UriTooLong, "the request target is longer than 8 KiB"),
        431 if !line_seen => (ErrorCode::UriTooLong, "the request target is longer than 8 KiB"),
        431 => (
            ErrorCode::HeadersTooLarge,
            "the request's headers are larger than 32 KiB in all",
        ),
        _ => return None,
    };
    Some(Refusal {
        bytes: answer(code, message),
        written: 0,
    })
}

/// The status of an HTTP/1.x response head.
fn status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let digits = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A whole HTTP/1.1 answer in the envelope, closing the connection.
fn answer(code: ErrorCode, message: &str) -> Vec<u8> {
    let status = status_of(code);
    let body = failure_body(code, message);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(refusal: &Refusal) -> (String, serde_json::Value) {
        let text = String::from_utf8_lossy(&refusal.bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        (
            head.to_owned(),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    #[test]
    fn hypers_refusals_become_envelope_answers() {
        let cases = [
            (
                &b"HTTP/1.1 400 Bad Request\r\n"[..],
                true,
                400,
                "INVALID_INPUT",
            ),
            (b"HTTP/1.1 414 URI Too Long\r\n", true, 414, "URI_TOO_LONG"),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                true,
                431,
                "HEADERS_TOO_LARGE",
            ),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                false,
                414,
                "URI_TOO_LONG",
            ),
        ];
        for (head, line_seen, status, code) in cases {
            let refusal = replacing(head, line_seen).unwrap_or_else(|| panic!("{status} {code}"));
            let (head, body) = code_of(&refusal);
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains("content-type: application/json"), "{head}");
            assert!(head.contains("connection: close"), "{head}");
            assert_eq!(body["success"], false);
            assert_eq!(body["error"]["code"], code);
            assert!(body["timestamp"].is_string());
        }
    }

    #[test]
    fn other_heads_are_left_alone() {
        for head in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"HTTP/1.1 408 Request Timeout\r\n",
            b"HTTP/1.1 4",
            b"",
            b"{\"success\":false}",
        ] {
            assert!(replacing(head, true).is_none(), "{head:?}");
        }
    }
}

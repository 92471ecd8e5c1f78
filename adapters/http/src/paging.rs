//! Lists a page at a time: the `limit` and `cursor` query parameters, and the
//! `Link: <...>; rel="next"` header of a page that has a next one (RFC 8288, ADR 0024).
//!
//! A cursor is opaque to clients: the key of the last item of the page and a tag of the list it
//! belongs to (a hash of the path and the filters), in URL-safe base64. Only the exact form
//! this service writes is read back, and only on the list that wrote it: a cursor taken to
//! another list, or sent with other filters, is refused rather than read as a key of the wrong
//! kind.

use crate::envelope::Reply;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use stockade_application::paging::{Page, PageRequest};
use utoipa::IntoParams;

/// The paging parameters every list takes (documentation; [`Paged`] reads them).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by utoipa's derive, never built.
pub struct PageParams {
    /// How many items a page holds (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Where the page starts: the `cursor` of the previous page's `Link: rel="next"`.
    #[param(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// A list request's page, and what its next page's link keeps of the request.
#[derive(Debug, Clone)]
pub struct Paged {
    request: PageRequest,
    path: String,
    /// The query's other parameters (the list's filters), in the order sent.
    keep: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paged {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::invalid("invalid query: not URL-encoded"))?;
        let mut limit = None;
        let mut raw_cursor = None;
        let mut keep = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "limit" if limit.is_none() => limit = Some(parse_limit(&v)?),
                "cursor" if raw_cursor.is_none() => raw_cursor = Some(v),
                "limit" | "cursor" => {
                    return Err(ApiError::invalid(format!(
                        "invalid query: `{k}` given twice"
                    )))
                }
                _ => keep.push((k, v)),
            }
        }
        let path = parts.uri.path().to_owned();
        let tag = list_tag(&path, &keep);
        let cursor = raw_cursor.map(|c| decode_cursor(&c, tag)).transpose()?;
        Ok(Paged {
            request: PageRequest::new(limit, cursor)?,
            path,
            keep,
        })
    }
}

impl Paged {
    pub fn request(&self) -> PageRequest {
        self.request
    }

    /// Refuses a query parameter the list does not know (a misspelt filter must not silently
    /// list everything): `filters` are the list's own, besides `limit` and `cursor`.
    ///
    /// # Errors
    /// 400 `INVALID_INPUT` naming the first unknown parameter.
    pub fn only(self, filters: &[&str]) -> Result<Self, ApiError> {
        match self
            .keep
            .iter()
            .find(|(k, _)| !filters.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ApiError::invalid(format!(
                "invalid query: unknown parameter `{k}`"
            ))),
            None => Ok(self),
        }
    }

    /// The page's items as the answer's data, with `Link: rel="next"` when more remain.
    pub fn reply<T: Serialize>(&self, page: &Page<T>) -> Reply {
        Reply::ok(&page.items).link(page.next.map(|key| self.next_link(key)))
    }

    /// `<path?filters&limit=N&cursor=C>; rel="next"`.
    fn next_link(&self, key: i64) -> String {
        let limit = self.request.limit().to_string();
        let cursor = encode_cursor(key, list_tag(&self.path, &self.keep));
        let mut pairs: Vec<(&str, &str)> = self
            .keep
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("limit", &limit));
        pairs.push(("cursor", &cursor));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("<{}?{query}>; rel=\"next\"", self.path)
    }
}

fn parse_limit(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "limit: must be an integer 1..={}",
                PageRequest::MAX_LIMIT
            ))
        })
}

/// Names a list: its path and its filters (in any order), FNV-1a over both. Not a secret: it
/// only tells one list's cursors from another's.
fn list_tag(path: &str, filters: &[(String, String)]) -> u64 {
    let mut sorted: Vec<&(String, String)> = filters.iter().collect();
    sorted.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(path.as_bytes());
    for (k, v) in sorted {
        eat(b"\0");
        eat(k.as_bytes());
        eat(b"=");
        eat(v.as_bytes());
    }
    hash
}

/// The cursor of the page after the item with `key` on the list `tag` names.
fn encode_cursor(key: i64, tag: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{key}.{tag:016x}"))
}

/// The key a cursor names, if it is one this service wrote for the list `tag` names.
fn decode_cursor(raw: &str, tag: u64) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid("cursor: not a cursor of this list");
    if raw.is_empty() || raw.len() > 64 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let key = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.split_once('.'))
        .and_then(|(k, _)| k.parse::<i64>().ok())
        .filter(|k| *k >= 1)
        .ok_or_else(bad)?;
    if encode_cursor(key, tag) != raw {
        return Err(bad());
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn paged(uri: &str) -> Result<Paged, ApiError> {
        let (mut parts, ()) = Request::builder().uri(uri).body(()).unwrap().into_parts();
        Paged::from_request_parts(&mut parts, &()).await
    }

    #[test]
    fn a_cursor_reads_back_only_in_the_form_it_was_written_and_on_its_own_list() {
        let orders = list_tag("/api/v1/orders", &[]);
        for key in [1, 42, 1_000_001, i64::MAX] {
            assert_eq!(
                decode_cursor(&encode_cursor(key, orders), orders).unwrap(),
                key
            );
        }
        let padded = format!("{}=", encode_cursor(5, orders));
        let leading_zero = URL_SAFE_NO_PAD.encode(format!("05.{orders:016x}"));
        let signed = URL_SAFE_NO_PAD.encode(format!("+5.{orders:016x}"));
        let zero = URL_SAFE_NO_PAD.encode(format!("0.{orders:016x}"));
        let negative = URL_SAFE_NO_PAD.encode(format!("-5.{orders:016x}"));
        let bare = URL_SAFE_NO_PAD.encode("5");
        for bad in [
            "",
            "!!",
            "abc",
            &padded,
            &leading_zero,
            &signed,
            &zero,
            &negative,
            &bare,
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw",
        ] {
            assert!(
                decode_cursor(bad, orders).is_err(),
                "{bad:?} was read as a cursor"
            );
        }
        // Another list's, or this list's with other filters.
        let products = list_tag("/api/v1/products", &[]);
        let with = |status: &str| list_tag("/api/v1/orders", &[("status".into(), status.into())]);
        assert!(decode_cursor(&encode_cursor(9, products), orders).is_err());
        assert!(decode_cursor(&encode_cursor(9, with("PAID")), with("CANCELLED")).is_err());
        assert!(decode_cursor(&encode_cursor(9, with("PAID")), orders).is_err());
        // The filters' order does not matter.
        let ab = list_tag("/x", &[("a".into(), "1".into()), ("b".into(), "2".into())]);
        let ba = list_tag("/x", &[("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(ab, ba);
    }

    #[tokio::test]
    async fn limit_and_cursor_are_checked_and_the_next_link_keeps_the_filters() {
        let p = paged("/api/v1/admin/orders?status=PAID&userId=7")
            .await
            .unwrap();
        assert_eq!(p.request().limit(), 100);
        assert_eq!(p.request().cursor(), None);
        let link = p.next_link(90);
        let tag = list_tag(
            "/api/v1/admin/orders",
            &[
                ("status".into(), "PAID".into()),
                ("userId".into(), "7".into()),
            ],
        );
        let cursor = encode_cursor(90, tag);
        assert_eq!(
            link,
            format!("</api/v1/admin/orders?status=PAID&userId=7&limit=100&cursor={cursor}>; rel=\"next\"")
        );
        let next = paged(&link[1..link.find('>').unwrap()]).await.unwrap();
        assert_eq!(next.request().cursor(), Some(90));
        assert_eq!(next.request().limit(), 100);
        assert_eq!(next.next_link(80).matches("cursor=").count(), 1);

        for bad in [
            "/x?limit=0",
            "/x?limit=501",
            "/x?limit=abc",
            "/x?limit=-1",
            "/x?limit=",
            "/x?cursor=zz",
            "/x?limit=5&limit=6",
            "/x?cursor=",
            "/x?limit=1.5",
        ] {
            assert!(paged(bad).await.is_err(), "{bad} was accepted");
        }
        assert_eq!(paged("/x?limit=500").await.unwrap().request().limit(), 500);
        let known = paged("/x?status=PAID").await.unwrap().only(&["status"]);
        assert!(known.is_ok());
        let typo = paged("/x?stauts=PAID").await.unwrap().only(&["status"]);
        assert!(typo.is_err());
    }
}

//! Conversions between domain values and column values.

use crate::error::corrupt;
use stockade_application::ports::store::StoreError;
use stockade_domain::{DomainError, Money, Quantity, Timestamp};
use time::OffsetDateTime;

pub(crate) fn at(ts: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.millis()) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_millis(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}

pub(crate) fn money(v: i64) -> Money {
    Money::from_trusted(v)
}

pub(crate) fn qty(v: i32) -> Result<Quantity, StoreError> {
    Quantity::new(i64::from(v), "quantity").map_err(|_| corrupt("quantity"))
}

pub(crate) fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn id<T>(v: i64, make: fn(i64) -> Result<T, DomainError>) -> Result<T, StoreError> {
    make(v).map_err(|_| corrupt("id"))
}

/// `payment:12` -> (`payment`, `12`); a reference without a colon is its own id.
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    reference.split_once(':').unwrap_or(("ref", reference))
}

pub(crate) fn join_reference(ref_type: Option<String>, ref_id: Option<String>) -> Option<String> {
    match (ref_type, ref_id) {
        (Some(t), Some(i)) if t == "ref" => Some(i),
        (Some(t), Some(i)) => Some(format!("{t}:{i}")),
        _ => None,
    }
}

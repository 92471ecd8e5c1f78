//! Parameters and small request schemas shared by several operations.
//!
//! An `Idempotency-Key` is documented in its bare form: visible ASCII, no space at either end,
//! not starting with a quote (the structured-field form `"abc"` is accepted too, and names the
//! same key). Where it is required, each operation states it inline with its own example, so
//! the examples of different operations never reuse one key.

#![allow(dead_code)] // Documentation types: read by utoipa's derive, never built.

use std::borrow::Cow;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// The `Idempotency-Key` header where it is optional (coupon issue).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyOptional {
    /// Replays the stored answer of the first request with this key (`Idempotent-Replayed`).
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!#-~]([ -~]*[!-~])?$",
        example = "issue-example"
    )]
    pub key: Option<String>,
}

/// An id: a positive integer.
#[derive(Debug)]
pub struct PositiveId;

impl PartialSchema for PositiveId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .into()
    }
}

impl ToSchema for PositiveId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PositiveId")
    }
}

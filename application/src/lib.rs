//! # stockade-application
//!
//! Stockade's use cases, written once against [`ports`] so the same code runs on the in-memory
//! adapters (tests, demos, one node) and on Postgres + Redis (production, many nodes).
//!
//! The entry point is [`Stockade`]: build it from a [`Ports`] bundle and [`Settings`], then call
//! one method per use case. Where things are:
//! - [`usecases`]: one module per use case (`create_order`, `process_payment`, ...), each with
//!   its command, its `# Errors` and its `execute`;
//! - `engine` (crate-private): what the use cases share: the context they run against, the write
//!   path's sections, idempotent execution (`run_keyed`), the combined turns, the payment
//!   saga's second half, the sold-out marks;
//! - [`ports`]: the traits every backend adapter implements, with their contracts;
//! - [`views`]: what the use cases answer; [`AppError`]: how they fail.
//!
//! Every write path follows one ordering rule (docs/decisions/0002): **acquire locks → begin
//! the unit of work → check fencing tokens → write → commit → release locks**; a lock is never
//! released before the commit it protects.
//!
//! Charge, create-order, pay and keyed issuance take an optional [`IdempotencyKey`]: with one,
//! the effect happens at most once and every retry gets the first answer (docs/decisions/0003).

mod engine;
mod error;
mod facade;
pub mod paging;
pub mod ports;
mod settings;
pub mod usecases;
pub mod views;

pub use engine::outcome::Replayable;
pub use engine::section::FencedSections;
pub use error::{AppError, BackendError};
pub use facade::Stockade;
pub use ports::Ports;
pub use settings::Settings;

use stockade_domain::IdempotencyKey;

/// Parses an optional raw idempotency key (for callers holding strings).
///
/// # Errors
/// `INVALID_INPUT` for an empty, over-long or malformed key.
pub fn idempotency_key(raw: Option<&str>) -> Result<Option<IdempotencyKey>, AppError> {
    Ok(raw.map(IdempotencyKey::parse).transpose()?)
}

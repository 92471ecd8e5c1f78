//! # stockade-tests
//!
//! Tests that cross crates:
//! - [`contracts`]: one suite per port, written once as async functions and instantiated for
//!   every adapter with the `*_contract!` macros (see `tests/memory_contracts.rs`);
//! - [`harness`]: an application on the memory backend with helpers to seed data and to check
//!   the invariants of docs/design.md after a run;
//! - the files under `tests/`: the instantiations, the concurrency scenarios through the
//!   application, use-case tests with mocks, and properties.
//!
//! Contract functions take freshly built ports and panic (via `assert!`) on a violation, so
//! they are only for tests.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod combining;
pub mod contracts;
pub mod e2e;
pub mod harness;
pub mod http;
pub mod pg;
pub mod proxy;
pub mod redis;
pub mod scenarios;
pub mod workload;

#[doc(hidden)]
pub use proptest as __proptest;

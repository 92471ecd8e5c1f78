//! # stockade-tests
//!
//! Tests that cross crates:
//! - [`contracts`]: one suite per port, written once as async functions and instantiated for
//!   every adapter with the `*_contract!` macros (see `tests/engine/memory/contracts.rs`);
//! - [`harness`]: an application on the memory backend with helpers to seed data and to check
//!   the invariants of docs/design.md after a run;
//! - two test binaries under `tests/`, one module per area so that a module path selects an
//!   area (`cargo test -p stockade-tests --test engine postgres::`):
//!   - `engine`: the contract instantiations per backend (`memory::`, `postgres::`, `redis::`),
//!     the concurrency scenarios and random workloads, what each backend promises beyond the
//!     contracts, `regressions::`, and the use-case tests with mocks (`usecase_mocks::`, one
//!     module per use case);
//!   - `http`: the HTTP end-to-end suite on the memory backend (`memory::`) and on the others
//!     (`backends::postgres::`, `backends::production::`).
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
pub mod redis_cluster;
pub mod replay;
pub mod scenarios;
pub mod workload;

#[doc(hidden)]
pub use proptest as __proptest;

/// docs/architecture.md, whose Rust example (embedding Stockade as a library) runs as a
/// doctest of this crate, so the document cannot drift from the API it shows.
#[cfg(doctest)]
#[doc = include_str!("../../docs/architecture.md")]
pub struct ArchitectureDoc;

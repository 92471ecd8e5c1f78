//! Port contract suites. Each module holds the checks of one port's contract (as stated in the
//! port's rustdoc) and a macro that turns them into tests for one adapter.
//!
//! The module that invokes a macro declares `const CONTRACT_TIME: Time`:
//! - [`Time::Paused`] for adapters whose time is tokio's (the memory adapters): every test runs
//!   on a current-thread runtime with `tokio::time::pause()`, so the suites' waits, leases and
//!   TTLs pass in virtual time — deterministic and instant;
//! - [`Time::Real`] for adapters whose time lives in a server (a Redis TTL, a Postgres clock):
//!   a two-worker runtime and real time, with margins that stay well clear of 50 ms.

pub mod accounts;
pub mod changes;
pub mod fixtures;
pub mod gate;
pub mod idempotency;
pub mod limits;
pub mod lock;
pub mod queue;
pub mod section;
pub mod store;
pub mod store_pages;

use std::future::Future;

/// How a contract test's time passes; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    Paused,
    Real,
}

/// Runs one contract test body on the runtime `time` asks for.
pub fn run<F: Future<Output = ()>>(time: Time, body: F) {
    let runtime = match time {
        Time::Paused => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build(),
        Time::Real => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    };
    runtime.expect("a test runtime").block_on(body);
}

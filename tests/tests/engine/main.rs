//! The engine's integration tests, in one binary so that the workspace links the world once:
//! the port contract suites over every adapter, the concurrency scenarios, the random
//! workloads, what each backend promises beyond the shared contracts, the pinned regressions
//! and the use-case tests with mocked ports.
//!
//! One module per area, so a module path selects an area:
//! `cargo test -p stockade-tests --test engine postgres::` runs everything on Postgres,
//! `... --test engine usecase_mocks::process_payment::` the payment use case's mock tests.
//!
//! Every test keeps to its own state (a Postgres schema, a Redis key namespace or Redis
//! processes of its own, fresh memory adapters), so the tests run as threads of this one
//! process exactly as they ran as separate binaries.
//!
//! Proptest keeps the seeds of past failures under `tests/tests/proptest-regressions/`, at the
//! module's path below this directory (it looks for them next to the `main.rs` of the binary).

mod memory;
mod postgres;
mod redis;
mod regressions;
mod usecase_mocks;

//! Port contract suites. Each module holds the checks of one port's contract (as stated in the
//! port's rustdoc) and a macro that turns them into `#[tokio::test]`s for one adapter.

pub mod gate;
pub mod idempotency;
pub mod lock;
pub mod queue;
pub mod store;

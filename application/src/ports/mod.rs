//! The ports: what the use cases need from the outside world, as traits.
//!
//! Each module states the contract every adapter MUST meet; the contract suites in the `tests`
//! crate check them against every adapter. Ports are used as `Arc<dyn Port>` and bundled in
//! [`Ports`], which bootstrap builds.

pub mod accounts;
pub mod changes;
pub mod clock;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod lock;
pub mod platform;
pub mod popularity;
pub mod queue;
pub mod section;
pub mod store;

use std::sync::Arc;

/// Every port a running Stockade needs.
#[derive(Debug, Clone)]
pub struct Ports {
    pub store: Arc<dyn store::Store>,
    pub locks: Arc<dyn lock::LockManager>,
    /// The write path; `None`: [`crate::FencedSections`] over `locks` and `store`. A backend
    /// whose own sections do better (Postgres: units on the lock's session, outcomes in the
    /// same transaction) sets its own.
    pub sections: Option<Arc<dyn section::Sections>>,
    pub idempotency: Arc<dyn idempotency::IdempotencyStore>,
    pub gate: Arc<dyn gate::CouponGate>,
    pub queue: Arc<dyn queue::IssuanceQueue>,
    pub platform: Arc<dyn platform::DataPlatform>,
    pub popularity: Arc<dyn popularity::PopularityCache>,
    /// Where sales are counted for the ranking; `None`: ranked from the store's paid orders.
    pub sales: Option<Arc<dyn popularity::SalesCounter>>,
    pub clock: Arc<dyn clock::Clock>,
    pub ids: Arc<dyn clock::IdGenerator>,
    /// How instances tell each other of restocks (drops sold-out marks).
    pub changes: Arc<dyn changes::ChangeFeed>,
    /// Accounts and failed sign-ins (follows the store's backend).
    pub accounts: Arc<dyn accounts::AccountStore>,
}

//! # stockade-memory
//!
//! In-memory adapters of every Stockade port. They are the default backend of the `stockade`
//! binary (demo profile), the backend of the fast test suites, and a reference for what each
//! port's contract means. They need nothing installed and keep nothing across restarts.
//!
//! [`MemoryBackend::new`] builds the whole set; its fields give tests the concrete adapters
//! (to inject faults or inspect state) while [`MemoryBackend::ports`] gives the application
//! its `Arc<dyn Port>` bundle.

mod accounts;
mod changes;
mod gate;
mod idempotency;
mod lock;
mod queue;
mod store;
mod support;

pub use accounts::MemoryAccounts;
pub use changes::MemoryChangeFeed;
pub use gate::MemoryCouponGate;
pub use idempotency::MemoryIdempotencyStore;
pub use lock::MemoryLockManager;
pub use queue::MemoryIssuanceQueue;
pub use store::{MemoryStore, StoreFaults};
pub use support::{
    ManualClock, MemoryPlatform, MemoryPopularityCache, PlatformMode, ProcessIds, SystemClock,
    TokioClock,
};

use std::sync::Arc;
use stockade_application::ports::clock::{Clock, IdGenerator};
use stockade_application::Ports;

/// Every in-memory adapter, sharing one clock.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    pub store: MemoryStore,
    pub locks: MemoryLockManager,
    pub idempotency: MemoryIdempotencyStore,
    pub gate: MemoryCouponGate,
    pub queue: MemoryIssuanceQueue,
    pub platform: MemoryPlatform,
    pub popularity: MemoryPopularityCache,
    pub changes: MemoryChangeFeed,
    pub accounts: MemoryAccounts,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
}

impl MemoryBackend {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let ids: Arc<dyn IdGenerator> = Arc::new(ProcessIds::default());
        MemoryBackend {
            store: MemoryStore::new(),
            locks: MemoryLockManager::new(),
            idempotency: MemoryIdempotencyStore::new(clock.clone(), ids.clone()),
            gate: MemoryCouponGate::new(),
            queue: MemoryIssuanceQueue::default(),
            platform: MemoryPlatform::new(),
            popularity: MemoryPopularityCache::new(clock.clone()),
            changes: MemoryChangeFeed::default(),
            accounts: MemoryAccounts::new(),
            clock,
            ids,
        }
    }

    /// The application's view of these adapters.
    pub fn ports(&self) -> Ports {
        Ports {
            store: Arc::new(self.store.clone()),
            locks: Arc::new(self.locks.clone()),
            sections: None,
            idempotency: Arc::new(self.idempotency.clone()),
            gate: Arc::new(self.gate.clone()),
            queue: Arc::new(self.queue.clone()),
            platform: Arc::new(self.platform.clone()),
            popularity: Arc::new(self.popularity.clone()),
            sales: None,
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            changes: Arc::new(self.changes.clone()),
            accounts: Arc::new(self.accounts.clone()),
        }
    }
}

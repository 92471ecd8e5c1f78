//! Every port contract suite, run against the memory adapters.

use std::sync::Arc;
use stockade_application::ports::lock::LockManager;
use stockade_application::ports::store::Store;
use stockade_memory::{MemoryLockManager, MemoryStore};

mod lock {
    use super::*;
    stockade_tests::lock_contract!(
        async { Arc::new(MemoryLockManager::new()) as Arc<dyn LockManager> },
        async { Arc::new(MemoryStore::new()) as Arc<dyn Store> },
        fair
    );
}

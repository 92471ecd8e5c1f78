//! Failure injection: switches a test flips to make the store fail at a chosen point, so it can
//! check that a unit which fails half-way leaves nothing half-written.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use stockade_application::ports::store::StoreError;
use stockade_application::BackendError;

/// Failure injection for tests. All switches start off.
#[derive(Debug, Default)]
pub struct StoreFaults {
    /// `begin` fails while set.
    pub unavailable: AtomicBool,
    /// When >= 0: repository operations succeed this many more times, then fail.
    pub fail_ops_after: AtomicI64,
    /// `commit` fails while set.
    pub fail_commit: AtomicBool,
}

impl StoreFaults {
    pub(super) fn new() -> Self {
        StoreFaults {
            fail_ops_after: AtomicI64::new(-1),
            ..Default::default()
        }
    }

    /// Turns every switch off.
    pub fn clear(&self) {
        self.unavailable.store(false, Ordering::SeqCst);
        self.fail_ops_after.store(-1, Ordering::SeqCst);
        self.fail_commit.store(false, Ordering::SeqCst);
    }

    pub(super) fn op(&self) -> Result<(), StoreError> {
        let left = self.fail_ops_after.load(Ordering::SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            return Err(injected());
        }
        self.fail_ops_after.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

pub(super) fn injected() -> StoreError {
    StoreError::Unavailable(BackendError::new("memory store", "injected failure"))
}

//! The in-memory [`ChangeFeed`]: one process, one broadcast channel.

use async_trait::async_trait;
use stockade_application::ports::changes::{Change, ChangeFeed};
use stockade_application::BackendError;
use tokio::sync::broadcast;

/// A [`ChangeFeed`] for one process. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct MemoryChangeFeed {
    tx: broadcast::Sender<Change>,
}

impl Default for MemoryChangeFeed {
    fn default() -> Self {
        MemoryChangeFeed {
            tx: broadcast::channel(1_024).0,
        }
    }
}

#[async_trait]
impl ChangeFeed for MemoryChangeFeed {
    async fn publish(&self, change: Change) -> Result<(), BackendError> {
        // No subscriber is not a failure: nobody has anything to drop.
        let _ = self.tx.send(change);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

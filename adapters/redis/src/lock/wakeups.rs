//! Release announcements: one subscription per node to the namespace's channel, and the
//! wakers of the waiting heads it notifies, so a head tries again the moment the key it waits
//! for is released instead of sleeping out a backoff.

use super::places::Place;
use super::Inner;
use futures::stream::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(super) type Wakers = Arc<parking_lot::Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Notify>>>>;

/// Follows the release announcements of one node for as long as the manager lives,
/// reconnecting after a failure.
pub(super) async fn listen(client: redis::Client, channel: String, wakers: Wakers) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let resource: Vec<u8> = message.get_payload_bytes().to_vec();
                        let waker = wakers.lock().get(&resource).cloned();
                        if let Some(waker) = waker {
                            waker.notify_waiters();
                        }
                    }
                }
                tracing::debug!("lock release subscription ended; subscribing again");
            }
            Err(e) => tracing::debug!(error = %e, "lock release subscription failed"),
        }
        // Meanwhile waiters fall back on their recheck.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Inner {
    /// The waker of `resource`'s waiting head.
    pub(super) fn waker(&self, resource: &[u8]) -> Arc<tokio::sync::Notify> {
        self.wakers
            .lock()
            .entry(resource.to_vec())
            .or_default()
            .clone()
    }

    /// Forgets `resource`'s waker once nobody waits on it.
    pub(super) fn forget_waker(&self, resource: &[u8]) {
        let mut wakers = self.wakers.lock();
        if wakers
            .get(resource)
            .is_some_and(|w| Arc::strong_count(w) == 1)
        {
            wakers.remove(resource);
        }
    }
}

/// A waiting head's hold on its waker; the waker is forgotten when nobody waits on it.
/// Also takes the waiter's place out of the key's queues (in the background) when it gives up;
/// a granted waiter's place goes with its release.
pub(super) struct WakerRef<'a> {
    pub(super) waker: Arc<tokio::sync::Notify>,
    pub(super) inner: &'a Arc<Inner>,
    pub(super) resource: Vec<u8>,
    pub(super) place: Place,
    /// Granted: the place goes with the release.
    pub(super) served: bool,
}

impl Drop for WakerRef<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.inner.dequeue(&self.resource, &self.place);
        }
        let resource = std::mem::take(&mut self.resource);
        // Our own reference goes first, so that the count seen is the others'.
        self.waker = Arc::new(tokio::sync::Notify::new());
        self.inner.forget_waker(&resource);
    }
}

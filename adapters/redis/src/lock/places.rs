//! A waiter's place in a key's queue on the nodes: how it is named and scored, and how it is
//! taken out when the waiter gives up.

use super::Inner;
use futures::future::join_all;
use std::sync::Arc;

/// The queue of a lock resource, and the liveness of its places.
pub(super) fn queue_keys(resource: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut queue = resource.to_vec();
    queue.extend_from_slice(b":queue");
    let mut alive = resource.to_vec();
    alive.extend_from_slice(b":alive");
    (queue, alive)
}

/// A waiter's place in a key's queue on every node: ordered by its arrival, the same on every
/// node (so every node serves the same head), and alive while it keeps trying.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) id: String,
    /// Microseconds since the epoch when the acquisition began.
    pub(super) score: u64,
    pub(super) alive_ms: u64,
}

impl Inner {
    /// Takes `place` out of `resource`'s queue on every node, in the background.
    pub(super) fn dequeue(self: &Arc<Self>, resource: &[u8], place: &Place) {
        let (queue, alive) = queue_keys(resource);
        let (inner, id) = (self.clone(), place.id.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            join_all(inner.nodes.iter().map(|node| {
                let mut node = node.clone();
                let script = inner.dequeue_script.clone();
                let (queue, alive, id) = (queue.clone(), alive.clone(), id.clone());
                let node_timeout = inner.node_timeout;
                async move {
                    let _ = tokio::time::timeout(
                        node_timeout,
                        script
                            .key(queue)
                            .key(alive)
                            .arg(id)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await;
                }
            }))
            .await;
        });
    }
}

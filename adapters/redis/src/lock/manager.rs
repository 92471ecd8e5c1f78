//! The [`LockManager`] port: a readiness check over the nodes, and acquisition — first in this
//! process's queues (in key order), then on Redis, waiting for the release announcement or the
//! recheck between attempts.

use super::held::{Held, RedisHeld};
use super::places::Place;
use super::wakeups::WakerRef;
use super::RedisLockManager;
use async_trait::async_trait;
use futures::future::join_all;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stockade_application::ports::lock::{
    normalize_keys, Fence, FencingToken, LockError, LockGuard, LockKey, LockManager, LockOptions,
};
use tokio::time::Instant;

#[async_trait]
impl LockManager for RedisLockManager {
    /// Every node is pinged at once; ready when a majority answers within the node time-out.
    async fn check(&self) -> Result<(), LockError> {
        let answers = join_all(self.inner.nodes.iter().map(|node| {
            let mut node = node.clone();
            async move {
                tokio::time::timeout(
                    self.inner.node_timeout * 4,
                    redis::cmd("PING").query_async::<String>(&mut node),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            }
        }))
        .await;
        let up = answers.iter().filter(|ok| **ok).count();
        if up >= self.quorum() {
            Ok(())
        } else {
            Err(LockError::Backend(stockade_application::BackendError::new(
                "redis",
                format!(
                    "{up} of {} lock nodes answer; {} needed",
                    answers.len(),
                    self.quorum()
                ),
            )))
        }
    }

    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let deadline = Instant::now() + options.wait;
        let keys = normalize_keys(keys);
        let mut held = Held {
            inner: self.inner.clone(),
            locks: Vec::new(),
            queued: Vec::new(),
            keys: keys.clone(),
        };
        // First in this process's queues (in key order, so they cannot deadlock), then in Redis.
        for key in &keys {
            let queue = self.inner.queue(key);
            match tokio::time::timeout_at(deadline, queue.lock_owned()).await {
                Ok(turn) => held.queued.push(turn),
                // `held` is dropped: the places taken so far are given up.
                Err(_) => return Err(LockError::Timeout),
            }
        }
        let mut fences = Vec::new();
        let recheck = Duration::from_millis(self.inner.recheck_ms.load(Ordering::Relaxed));
        // Where this acquisition stands in each key's queue: it arrived now.
        let arrived = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        for key in keys {
            let resource = self.inner.resource(&key);
            let place = Place {
                id: self.inner.rs.get_unique_lock_id().map_or_else(
                    |_| {
                        format!(
                            "{arrived}-{}",
                            self.inner.jitter(Duration::from_secs(3600)).as_micros()
                        )
                    },
                    |id| id.iter().map(|b| format!("{b:02x}")).collect(),
                ),
                score: arrived,
                // Three rechecks without an attempt: the waiter is gone.
                alive_ms: u64::try_from((recheck * 3).as_millis()).unwrap_or(u64::MAX),
            };
            let mut waker = WakerRef {
                waker: self.inner.waker(&resource),
                inner: &self.inner,
                resource,
                place: place.clone(),
                served: false,
            };
            let (lock, token) = loop {
                // Listening before the attempt: a release announced while it runs still wakes.
                let released = waker.waker.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(granted) = self
                    .inner
                    .attempt(key.clone(), options.lease, deadline, place.clone())
                    .await
                {
                    break granted;
                }
                let now = Instant::now();
                if now >= deadline {
                    // `held` is dropped: what was taken is released.
                    return Err(LockError::Timeout);
                }
                // Until the holder's release is announced, or the recheck (jittered, so that
                // processes that missed the same message do not all ask at once).
                let pause = (recheck / 2 + self.inner.jitter(recheck / 2)).min(deadline - now);
                tokio::select! {
                    () = &mut released => {}
                    () = tokio::time::sleep(pause) => {}
                }
            };
            held.locks.push((lock, place.id.clone()));
            waker.served = true;
            fences.push(Fence {
                key,
                token: FencingToken(token),
            });
        }
        Ok(LockGuard::new(
            fences,
            Box::new(RedisHeld::new(held, options.lease)),
        ))
    }
}

//! One acquisition attempt over every node, decided as soon as a majority granted or can no
//! longer grant, and the release over every node; an attempt abandoned half-way releases
//! whatever it gets.

use super::places::{queue_keys, Place};
use super::Inner;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::LockKey;
use tokio::task::JoinHandle;
use tokio::time::Instant;

impl Inner {
    /// Deletes the lock's key on every node where it still holds the lock's value, on the
    /// connections already open (one round trip per node).
    async fn unlock(&self, lock: &rslock::Lock) {
        self.unlock_leaving(lock, "").await;
    }

    /// [`Self::unlock`], also taking `place` (a waiter's id; empty: none) out of the key's
    /// queue: a holder's place goes with its release, on every node, in the same round trip.
    pub(super) async fn unlock_leaving(&self, lock: &rslock::Lock, place: &str) {
        // Done once a majority deleted the key (or every node answered): a hung node's delete is
        // left to finish in the background instead of adding its time-out to every release.
        let quorum = self.nodes.len() / 2 + 1;
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .map(|node| {
                let mut node = node.clone();
                let script = self.release_script.clone();
                let (resource, val) = (lock.resource.clone(), lock.val.clone());
                let (queue, alive) = queue_keys(&resource);
                let channel = self.channel.clone();
                let place = place.to_owned();
                let node_timeout = self.node_timeout;
                async move {
                    tokio::time::timeout(
                        node_timeout,
                        script
                            .key(resource.as_slice())
                            .key(queue.as_slice())
                            .key(alive.as_slice())
                            .arg(val.as_slice())
                            .arg(channel.as_str())
                            .arg(place.as_str())
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok())
                }
            })
            .collect();
        let mut answered = 0;
        while let Some(ok) = pending.next().await {
            if ok {
                answered += 1;
                if answered >= quorum {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
    }

    /// One quorum attempt, abandoned at `deadline` without leaving anything held: the lock and
    /// its fencing token, or nothing.
    pub(super) async fn attempt(
        self: &Arc<Self>,
        key: LockKey,
        lease: Duration,
        deadline: Instant,
        place: Place,
    ) -> Option<(rslock::Lock, u64)> {
        let inner = self.clone();
        let mut task = Attempt(
            Some(tokio::spawn(async move {
                inner.acquire_once(&key, lease, &place).await
            })),
            self.clone(),
        );
        let handle = task.0.as_mut()?;
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(Some(granted))) => {
                task.0 = None;
                Some(granted)
            }
            Ok(_) => {
                task.0 = None;
                None
            }
            // `task` is dropped here: its Drop releases a lock the attempt may still get.
            Err(_) => None,
        }
    }

    /// Sets the key with a fresh value on every node and, in the same script, increments the
    /// namespace's fence counter there (also where the key was busy, so that the counters of
    /// live nodes move together). Granted on a majority within the validity time: the token is
    /// the largest counter any node answered, written back to the nodes that answered less, so
    /// that every later majority answers more. Otherwise the nodes that granted are released.
    async fn acquire_once(
        self: &Arc<Self>,
        key: &LockKey,
        lease: Duration,
        place: &Place,
    ) -> Option<(rslock::Lock, u64)> {
        let resource = self.resource(key);
        let counter = format!("{}:fence", self.namespace);
        let (queue, alive) = queue_keys(&resource);
        let value = self.rs.get_unique_lock_id().ok()?;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let started = Instant::now();
        // Every node is asked at once; the attempt is decided as soon as a majority granted or
        // a majority can no longer be reached, so a dead or slow node never adds its time-out to
        // the acquisition. The answers still on their way are awaited in the background (a late
        // grant is removed by the release that follows a failed attempt or ends the guard).
        let quorum = self.nodes.len() / 2 + 1;
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut node = node.clone();
                let script = self.acquire_script.clone();
                let (resource, counter, value) = (resource.clone(), counter.clone(), value.clone());
                let (queue, alive) = (queue.clone(), alive.clone());
                let (score, alive_ms, id) = (place.score, place.alive_ms, place.id.clone());
                let node_timeout = self.node_timeout;
                async move {
                    let answer = tokio::time::timeout(
                        node_timeout,
                        script
                            .key(resource)
                            .key(counter)
                            .key(queue)
                            .key(alive)
                            .arg(value)
                            .arg(lease_ms)
                            .arg(score)
                            .arg(alive_ms)
                            .arg(id)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok);
                    (i, answer)
                }
            })
            .collect();
        let mut answers: Vec<Option<i64>> = vec![None; self.nodes.len()];
        let (mut yes, mut no) = (0, 0);
        while let Some((i, answer)) = pending.next().await {
            answers[i] = answer;
            if answer.is_some_and(|t| t > 0) {
                yes += 1;
            } else {
                no += 1;
            }
            if yes >= quorum || no > self.nodes.len() - quorum {
                break;
            }
        }
        let granted = answers.iter().flatten().filter(|t| **t > 0).count();
        let token = answers
            .iter()
            .flatten()
            .map(|t| t.unsigned_abs())
            .max()
            .unwrap_or(0);
        let drift = lease / 100 + Duration::from_millis(2);
        let validity = lease.checked_sub(started.elapsed() + drift);
        let lock = rslock::Lock {
            resource,
            val: value,
            validity_time: validity.map_or(0, |v| usize::try_from(v.as_millis()).unwrap_or(0)),
            lock_manager: self.rs.clone(),
        };
        let failed = granted < quorum || validity.is_none() || token == 0;
        if !pending.is_empty() {
            // A grant that arrives after a failed attempt was released is released too; one that
            // arrives for a granted lock is part of it, and goes with its release.
            let (inner, resource, val) = (self.clone(), lock.resource.clone(), lock.val.clone());
            tokio::spawn(async move {
                let mut late = false;
                while let Some((_, answer)) = pending.next().await {
                    late |= answer.is_some_and(|t| t > 0);
                }
                if late && failed {
                    let lock = rslock::Lock {
                        resource,
                        val,
                        validity_time: 0,
                        lock_manager: inner.rs.clone(),
                    };
                    inner.unlock(&lock).await;
                }
            });
        }
        if failed {
            self.unlock(&lock).await;
            return None;
        }
        // Raise the nodes that answered less (they and the rest of the answering majority then
        // all hold at least `token`); nodes that did not answer cannot be raised now, and need
        // not be: the answering majority is enough for every later majority to meet one of them.
        let behind: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.filter(|t| t.unsigned_abs() < token).map(|_| i))
            .collect();
        if !behind.is_empty() {
            let raised = join_all(behind.iter().map(|&i| {
                let mut node = self.nodes[i].clone();
                let script = self.raise_script.clone();
                let counter = counter.clone();
                async move {
                    tokio::time::timeout(
                        self.node_timeout,
                        script
                            .key(counter)
                            .arg(token)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                }
            }))
            .await;
            let answered = answers.iter().flatten().count();
            let missed = raised.iter().filter(|r| r.is_none()).count();
            if answered - missed < quorum {
                self.unlock(&lock).await;
                return None;
            }
        }
        Some((lock, token))
    }
}

/// An rslock attempt in flight; dropped unfinished, it releases whatever the attempt gets.
struct Attempt(Option<JoinHandle<Option<(rslock::Lock, u64)>>>, Arc<Inner>);

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let inner = self.1.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Ok(Some((lock, _))) = handle.await {
                        inner.unlock(&lock).await;
                    }
                });
            }
        }
    }
}

//! What only the memory lock manager promises beyond the shared contract: idle entries are
//! removed, re-entrancy, and lease hand-over under paused time.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use stockade_application::ports::lock::{LockManager, LockOwner};
use stockade_memory::MemoryLockManager;
use stockade_tests::contracts::lock::{key, opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_distinct_keys_leave_an_empty_table() {
    let m = MemoryLockManager::new();
    let mut tasks = Vec::new();
    for shard in 0..4u32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250_000u32 {
                let g = m
                    .acquire(&[key(&format!("k:{shard}:{i}"))], opts(1_000, 30_000))
                    .await
                    .unwrap();
                if i % 2 == 0 {
                    g.release().await.unwrap();
                } else {
                    drop(g);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(m.table_len(), 0, "idle keys were kept");
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_lease_goes_to_the_first_waiter_with_a_larger_token() {
    let m = MemoryLockManager::new();
    let stale = m.acquire(&[key("k")], opts(0, 1_000)).await.unwrap();
    let started = tokio::time::Instant::now();
    let fresh = m.acquire(&[key("k")], opts(10_000, 30_000)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1_000));
    assert!(fresh.fences()[0].token > stale.fences()[0].token);
    assert!(stale.check().is_err());
    drop(stale);
    // The stale drop released nothing: the key is still held.
    assert!(m.acquire(&[key("k")], opts(10, 30_000)).await.is_err());
    fresh.release().await.unwrap();
    assert_eq!(m.table_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn reentrant_grants_need_every_release() {
    let m = MemoryLockManager::new();
    let mut o = opts(10, 30_000);
    o.owner = Some(LockOwner("request-1".into()));
    let outer = m.acquire(&[key("a"), key("b")], o.clone()).await.unwrap();
    let inner = m.acquire(&[key("b")], o.clone()).await.unwrap();
    outer.release().await.unwrap();
    assert!(
        m.acquire(&[key("b")], opts(10, 30_000)).await.is_err(),
        "b is still held once"
    );
    assert!(m.acquire(&[key("a")], opts(10, 30_000)).await.is_ok());
    inner.release().await.unwrap();
    assert!(m.acquire(&[key("b")], opts(10, 30_000)).await.is_ok());
}

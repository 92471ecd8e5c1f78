//! The `LockManager` contract.
//!
//! Timing: every check uses real time with short waits and leases so it runs unchanged against
//! a lock service over the network; no check relies on a margin under 50 ms.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{LockError, LockKey, LockManager, LockOptions};
use stockade_application::ports::store::{Store, StoreError};
use tokio::time::Instant;

pub fn key(name: &str) -> LockKey {
    LockKey::new(name).unwrap()
}

pub fn opts(wait_ms: u64, lease_ms: u64) -> LockOptions {
    LockOptions::new(
        Duration::from_millis(wait_ms),
        Duration::from_millis(lease_ms),
    )
}

/// 500 tasks increment a counter with a read, a yield and a write, under one key: with mutual
/// exclusion no increment is lost and no two holders ever overlap.
pub async fn mutual_exclusion(locks: Arc<dyn LockManager>) {
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (locks, counter, inside, overlaps) = (
            locks.clone(),
            counter.clone(),
            inside.clone(),
            overlaps.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let guard = locks
                .acquire(&[key("contract:mx")], opts(60_000, 30_000))
                .await
                .expect("acquired within the wait");
            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let seen = counter.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            counter.store(seen + 1, Ordering::SeqCst);
            inside.fetch_sub(1, Ordering::SeqCst);
            guard.release().await.expect("released");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 500, "an increment was lost");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders overlapped");
}

/// Waiters are served in the order they queued (fair adapters only).
pub async fn fifo_order(locks: Arc<dyn LockManager>) {
    let holder = locks
        .acquire(&[key("contract:fifo")], opts(1_000, 30_000))
        .await
        .unwrap();
    let order = Arc::new(parking_order::Order::default());
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (locks, order) = (locks.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let g = locks
                .acquire(&[key("contract:fifo")], opts(30_000, 30_000))
                .await
                .unwrap();
            order.push(i);
            g.release().await.unwrap();
        }));
        // Let waiter i queue before waiter i + 1 asks.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    holder.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(order.take(), (0..10).collect::<Vec<_>>());
}

/// A tiny ordered log shared by tasks.
mod parking_order {
    #[derive(Default)]
    pub struct Order(std::sync::Mutex<Vec<usize>>);
    impl Order {
        pub fn push(&self, i: usize) {
            self.0.lock().unwrap().push(i);
        }
        pub fn take(&self) -> Vec<usize> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }
}

/// A held key makes another acquirer give up after its wait, and a multi-key acquisition that
/// times out holds none of its keys afterwards.
pub async fn wait_timeout_takes_nothing(locks: Arc<dyn LockManager>) {
    let held = locks
        .acquire(&[key("contract:b")], opts(1_000, 30_000))
        .await
        .unwrap();
    let started = Instant::now();
    let r = locks
        .acquire(&[key("contract:a"), key("contract:b")], opts(200, 30_000))
        .await;
    let waited = started.elapsed();
    assert!(matches!(r, Err(LockError::Timeout)), "{r:?}");
    assert!(
        waited >= Duration::from_millis(180),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited far past the wait: {waited:?}"
    );
    // `a` was free and must not have been kept.
    let a = locks.acquire(&[key("contract:a")], opts(100, 30_000)).await;
    assert!(a.is_ok(), "the timed-out acquisition kept a key: {a:?}");
    held.release().await.unwrap();
}

/// Dropping an `acquire` future while it waits leaves nothing held and nothing queued.
pub async fn cancel_safe(locks: Arc<dyn LockManager>) {
    let held = locks
        .acquire(&[key("contract:cb")], opts(1_000, 30_000))
        .await
        .unwrap();
    // Takes `ca` then waits for `cb`; cancelled by the time-out.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(150),
        locks.acquire(
            &[key("contract:cb"), key("contract:ca")],
            opts(60_000, 30_000),
        ),
    )
    .await;
    assert!(cancelled.is_err(), "should still have been waiting");
    let a = locks
        .acquire(&[key("contract:ca")], opts(200, 30_000))
        .await;
    assert!(a.is_ok(), "a cancelled acquisition kept a key");
    drop(a);
    held.release().await.unwrap();
    let b = locks
        .acquire(&[key("contract:cb")], opts(500, 30_000))
        .await;
    assert!(b.is_ok(), "a cancelled waiter blocked the key: {b:?}");
}

/// A guard that is dropped without `release` frees its keys in the background.
pub async fn drop_releases(locks: Arc<dyn LockManager>) {
    let g = locks
        .acquire(&[key("contract:drop")], opts(1_000, 30_000))
        .await
        .unwrap();
    drop(g);
    let again = locks
        .acquire(&[key("contract:drop")], opts(2_000, 30_000))
        .await;
    assert!(again.is_ok(), "a dropped guard kept its key: {again:?}");
}

/// Tokens grow strictly per key, across grants and across keys.
pub async fn tokens_increase(locks: Arc<dyn LockManager>) {
    let mut last = 0;
    for i in 0..50 {
        let name = if i % 2 == 0 {
            "contract:t1"
        } else {
            "contract:t2"
        };
        let g = locks
            .acquire(&[key(name)], opts(1_000, 30_000))
            .await
            .unwrap();
        let token = g.fences()[0].token.0;
        assert!(token > last, "token {token} after {last}");
        last = token;
        g.release().await.unwrap();
    }
}

/// Keys are sorted and de-duplicated inside: the fences come back sorted, one per key.
pub async fn keys_sorted_and_deduplicated(locks: Arc<dyn LockManager>) {
    let g = locks
        .acquire(
            &[key("contract:z"), key("contract:a"), key("contract:z")],
            opts(1_000, 30_000),
        )
        .await
        .unwrap();
    let names: Vec<&str> = g.fences().iter().map(|f| f.key.as_str()).collect();
    assert_eq!(names, vec!["contract:a", "contract:z"]);
    g.release().await.unwrap();
}

/// A holder that outlives its lease loses the key to a waiter with a larger token; the old
/// holder's guard reports the loss and the store refuses its stale token.
pub async fn lease_expiry_and_stale_token(locks: Arc<dyn LockManager>, store: Arc<dyn Store>) {
    let k = key("contract:lease");
    let stale = locks
        .acquire(std::slice::from_ref(&k), opts(1_000, 300))
        .await
        .unwrap();
    let fresh = locks
        .acquire(std::slice::from_ref(&k), opts(5_000, 30_000))
        .await
        .unwrap();
    assert!(fresh.fences()[0].token > stale.fences()[0].token);
    assert!(
        stale.check().is_err(),
        "the stale holder must learn it lost the lease"
    );
    assert!(fresh.check().is_ok());
    // The new holder writes first.
    let mut uow = store.begin().await.unwrap();
    uow.check_fences(fresh.fences()).await.unwrap();
    uow.commit().await.unwrap();
    // The stale holder's write is refused.
    let mut uow = store.begin().await.unwrap();
    let refused = uow.check_fences(stale.fences()).await;
    assert!(
        matches!(refused, Err(StoreError::StaleFence { .. })),
        "stale token accepted: {refused:?}"
    );
    drop(uow);
    fresh.release().await.unwrap();
    // Releasing the stale guard must not free a key someone else holds now.
    let third = locks
        .acquire(std::slice::from_ref(&k), opts(1_000, 30_000))
        .await
        .unwrap();
    let _ = stale.release().await;
    let fourth = locks.acquire(&[k], opts(200, 30_000)).await;
    assert!(
        matches!(fourth, Err(LockError::Timeout)),
        "a stale release freed the new holder's key"
    );
    third.release().await.unwrap();
}

/// Random overlapping multi-key sets acquired by many tasks at once never deadlock: every
/// acquisition succeeds within a generous wait.
pub async fn multi_key_sets_never_deadlock(locks: Arc<dyn LockManager>, sets: Vec<Vec<u8>>) {
    let mut tasks = Vec::new();
    for set in sets {
        let locks = locks.clone();
        tasks.push(tokio::spawn(async move {
            // Deliberately unsorted and possibly repeated.
            let keys: Vec<LockKey> = set
                .iter()
                .map(|i| key(&format!("contract:dl:{i}")))
                .collect();
            let g = locks.acquire(&keys, opts(20_000, 30_000)).await?;
            let distinct: BTreeSet<_> = set.iter().collect();
            assert_eq!(g.fences().len(), distinct.len());
            tokio::task::yield_now().await;
            g.release().await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_ok(), "acquisition failed (deadlock?): {r:?}");
    }
}

/// Instantiates the lock contract for one adapter. `$make` is an expression (evaluated per
/// test) yielding a future of `Arc<dyn LockManager>`; `$store` one yielding `Arc<dyn Store>`
/// (for fencing checks). Add `fair` to include the FIFO check.
#[macro_export]
macro_rules! lock_contract {
    ($make:expr, $store:expr $(, $fair:ident)?) => {
        #[test]
        fn lock_mutual_exclusion() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::mutual_exclusion($make.await).await;
            });
        }
        #[test]
        fn lock_wait_timeout_takes_nothing() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::wait_timeout_takes_nothing($make.await).await;
            });
        }
        #[test]
        fn lock_cancel_safe() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::cancel_safe($make.await).await;
            });
        }
        #[test]
        fn lock_drop_releases() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::drop_releases($make.await).await;
            });
        }
        #[test]
        fn lock_tokens_increase() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::tokens_increase($make.await).await;
            });
        }
        #[test]
        fn lock_keys_sorted_and_deduplicated() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::keys_sorted_and_deduplicated($make.await).await;
            });
        }
        #[test]
        fn lock_lease_expiry_and_stale_token() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::lock::lease_expiry_and_stale_token($make.await, $store.await).await;
            });
        }
        #[test]
        fn lock_multi_key_sets_never_deadlock() {
            use $crate::__proptest::prelude::*;
            let config = ProptestConfig { cases: 12, ..ProptestConfig::default() };
            proptest!(config, |(sets in prop::collection::vec(
                prop::collection::vec(0u8..8, 1..5), 20..60))| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2).enable_all().build().unwrap();
                rt.block_on(async {
                    $crate::contracts::lock::multi_key_sets_never_deadlock($make.await, sets).await;
                });
            });
        }
        $(
            #[test]
            fn lock_fifo_order() {
                let _ = stringify!($fair);
                $crate::contracts::run(CONTRACT_TIME, async {
                    $crate::contracts::lock::fifo_order($make.await).await;
                });
            }
        )?
    };
}

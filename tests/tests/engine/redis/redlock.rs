//! Redlock over three independent Redis processes: losing one node, losing two, a holder that
//! outlives its lease, and the watchdog.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{LockError, LockManager};
use stockade_application::ports::store::{Store, StoreError};
use stockade_memory::MemoryStore;
use stockade_redis::RedisLockManager;
use stockade_tests::contracts::lock::{key, opts};
use stockade_tests::redis::{namespace, Nodes};

async fn manager(nodes: &Nodes, watchdog: bool) -> Arc<dyn LockManager> {
    Arc::new(
        RedisLockManager::connect(&nodes.urls, namespace(), watchdog)
            .await
            .unwrap(),
    )
}

/// 200 tasks increment a non-atomic counter under one key while one of the three nodes is
/// killed: locking goes on with the other two, and no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_three_nodes_mid_storm_keeps_mutual_exclusion() {
    let mut nodes = Nodes::start(3).await;
    let locks = manager(&nodes, true).await;
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (locks, counter, inside, overlaps, done) = (
            locks.clone(),
            counter.clone(),
            inside.clone(),
            overlaps.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let g = locks
                .acquire(&[key("storm")], opts(60_000, 5_000))
                .await
                .unwrap();
            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let seen = counter.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            counter.store(seen + 1, Ordering::SeqCst);
            inside.fetch_sub(1, Ordering::SeqCst);
            g.release().await.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    while done.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes.kill(1);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 200, "an increment was lost");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders overlapped");
}

/// One of three nodes hung (it keeps its connections and answers nothing): every acquisition is
/// decided by the two that answer, without waiting out the hung node's time-out (50 ms) each
/// time. The median acquisition stays well below that time-out, which it could not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_adds_no_time_out_to_acquisitions() {
    let nodes = Nodes::start(3).await;
    let locks = manager(&nodes, false).await;
    // Connections open first, then the node hangs.
    locks
        .acquire(&[key("warm")], opts(1_000, 5_000))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    nodes.freeze(2, false);
    let mut took = Vec::new();
    for i in 0..21 {
        let started = tokio::time::Instant::now();
        let g = locks
            .acquire(&[key(&format!("hung-{i}"))], opts(2_000, 5_000))
            .await
            .unwrap();
        took.push(started.elapsed());
        g.release().await.unwrap();
    }
    nodes.freeze(2, true);
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(25),
        "acquisitions waited for the hung node: median {median:?}"
    );
}

/// With two of three nodes gone there is no majority: acquisitions fail within their wait and
/// nothing is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_of_three_nodes_grants_nothing() {
    let mut nodes = Nodes::start(3).await;
    let locks = manager(&nodes, false).await;
    nodes.kill(0);
    nodes.kill(2);
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let r = locks.acquire(&[key("minority")], opts(500, 5_000)).await;
        let waited = started.elapsed();
        assert!(
            matches!(r, Err(LockError::Timeout | LockError::Backend(_))),
            "granted without a majority: {r:?}"
        );
        assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    }
}

/// A holder paused past its lease (watchdog off) loses the key to a waiter with a larger token,
/// learns it lost the lease, and the store refuses its stale token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_past_its_lease_has_its_stale_token_refused() {
    let nodes = Nodes::start(3).await;
    let locks = manager(&nodes, false).await;
    let store = MemoryStore::new();
    let stale = locks
        .acquire(&[key("paused")], opts(1_000, 400))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fresh = locks
        .acquire(&[key("paused")], opts(2_000, 10_000))
        .await
        .unwrap();
    assert!(fresh.fences()[0].token > stale.fences()[0].token);
    assert!(stale.check().is_err());
    let mut uow = store.begin().await.unwrap();
    uow.check_fences(fresh.fences()).await.unwrap();
    uow.commit().await.unwrap();
    let mut uow = store.begin().await.unwrap();
    assert!(matches!(
        uow.check_fences(stale.fences()).await,
        Err(StoreError::StaleFence { .. })
    ));
}

/// The watchdog keeps a 2-second lease alive through a 10-second critical section: nobody else
/// gets the key, and the holder never learns of a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_keeps_a_short_lease_alive_through_a_long_section() {
    let nodes = Nodes::start(3).await;
    let locks = manager(&nodes, true).await;
    let holder = locks
        .acquire(&[key("long")], opts(1_000, 2_000))
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(holder.check().is_ok(), "the lease was lost");
        let other = locks.acquire(&[key("long")], opts(0, 2_000)).await;
        assert!(
            matches!(other, Err(LockError::Timeout)),
            "someone else got the key"
        );
    }
    holder.release().await.unwrap();
    assert!(locks
        .acquire(&[key("long")], opts(2_000, 2_000))
        .await
        .is_ok());
}

/// Readiness follows the quorum: ready with all three nodes, still with one hung, not with
/// two gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_follows_the_quorum() {
    let mut nodes = Nodes::start(3).await;
    let locks = manager(&nodes, false).await;
    locks.check().await.unwrap();
    nodes.freeze(1, false);
    locks.check().await.unwrap();
    nodes.freeze(1, true);
    nodes.kill(0);
    nodes.kill(2);
    assert!(matches!(locks.check().await, Err(LockError::Backend(_))));
}

/// Two instances on the same nodes: a waiter of one is woken by the other's release, announced
/// on the namespace's channel, rather than by its own recheck (set here far beyond what the
/// test waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_waiters_of_other_instances() {
    let nodes = Nodes::start(3).await;
    let ns = namespace();
    let first = RedisLockManager::connect(&nodes.urls, ns.clone(), false)
        .await
        .unwrap();
    let second = RedisLockManager::connect(&nodes.urls, ns, false)
        .await
        .unwrap();
    second.set_recheck(Duration::from_secs(120));
    // The subscriptions are made in the background as the managers start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holder = first
        .acquire(&[key("wake")], opts(1_000, 60_000))
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        second
            .acquire(&[key("wake")], opts(100_000, 60_000))
            .await
            .map(|g| (g, tokio::time::Instant::now()))
    });
    // The waiter has tried once and is waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished());
    let released = tokio::time::Instant::now();
    holder.release().await.unwrap();
    let (guard, granted) = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("woken by the release, not by its two-minute recheck")
        .unwrap()
        .unwrap();
    assert!(granted >= released);
    guard.release().await.unwrap();
}

/// Five instances on the same three nodes queue for one key, one after another, while a sixth
/// holds it: they are served in the order they arrived, across processes, though every
/// release wakes all of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_several_instances_are_served_in_arrival_order() {
    let nodes = Nodes::start(3).await;
    let ns = namespace();
    let mut instances = Vec::new();
    for _ in 0..6 {
        instances.push(Arc::new(
            RedisLockManager::connect(&nodes.urls, ns.clone(), false)
                .await
                .unwrap(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holder = instances[0]
        .acquire(&[key("fifo")], opts(1_000, 60_000))
        .await
        .unwrap();
    let served = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for (n, locks) in instances.iter().enumerate().skip(1) {
        let (locks, served) = (locks.clone(), served.clone());
        waiters.push(tokio::spawn(async move {
            let guard = locks
                .acquire(&[key("fifo")], opts(30_000, 60_000))
                .await
                .unwrap();
            served.lock().unwrap().push(n);
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await.unwrap();
        }));
        // Each has tried once (and is queued) before the next arrives.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    holder.release().await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("every waiter is served")
            .unwrap();
    }
    assert_eq!(*served.lock().unwrap(), vec![1, 2, 3, 4, 5]);
}

/// Two instances race for one key over three nodes with one of them down: every acquisition
/// is served within its wait (the nodes' queues agree on one head even after attempts that
/// split the two live nodes between the instances), and no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_a_node_down_are_all_served() {
    let mut nodes = Nodes::start(3).await;
    let ns = namespace();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(Arc::new(
            RedisLockManager::connect(&nodes.urls, ns.clone(), true)
                .await
                .unwrap(),
        ));
    }
    nodes.kill(2);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (locks, counter) = (instances[i % 2].clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let guard = locks
                .acquire(&[key("split")], opts(20_000, 30_000))
                .await
                .expect("served within the wait");
            let seen = counter.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            counter.store(seen + 1, Ordering::SeqCst);
            guard.release().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 100);
}

//! The `IssuanceQueue` contract: at-least-once delivery, delayed retries, attempt counting,
//! visible dead letters.
//!
//! Every check needs a fresh, empty queue (its depth is asserted). The main checks need one whose
//! redelivery of unacked messages (visibility time-out, pending-entry claim) takes longer than a
//! few seconds; the redelivery checks one that redelivers after 200 to 500 ms.
//! Timing: real time, delays of 300 ms, no margin under 50 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockade_application::ports::queue::{Delivery, IssuanceQueue, IssuanceRequest, QueueDepth};
use stockade_domain::{CouponId, Timestamp, UserId};
use tokio::time::Instant;

use super::store::unique_id;

/// 2026-01-01T00:00:00Z.
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn request(coupon: CouponId, user: i64) -> IssuanceRequest {
    IssuanceRequest {
        coupon_id: coupon,
        user_id: UserId::new(user).unwrap(),
        reserved_at: NOW.plus_millis(user),
    }
}

fn fresh_coupon() -> CouponId {
    CouponId::new(unique_id()).unwrap()
}

fn depth(ready: u64, in_flight: u64, dead: u64) -> QueueDepth {
    QueueDepth {
        ready,
        in_flight,
        dead,
    }
}

/// Receives until `n` deliveries arrived (an adapter may hand out fewer than `max` at once).
async fn receive_n(queue: &Arc<dyn IssuanceQueue>, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} delivered",
            got.len()
        );
        got.extend(
            queue
                .receive(n - got.len(), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    assert_eq!(got.len(), n, "received more than asked for");
    got
}

async fn assert_nothing_delivered(queue: &Arc<dyn IssuanceQueue>, wait: Duration) {
    let got = queue.receive(10, wait).await.unwrap();
    assert!(got.is_empty(), "unexpected delivery: {got:?}");
}

/// A published request is received with attempt 1, and counted in the depth meanwhile.
pub async fn publish_then_receive(queue: Arc<dyn IssuanceQueue>) {
    let r = request(fresh_coupon(), 1);
    queue.publish(r).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), depth(1, 0, 0));
    let got = receive_n(&queue, 1).await;
    assert_eq!(got[0].request, r);
    assert_eq!(got[0].attempt, 1);
    assert_eq!(queue.depth().await.unwrap(), depth(0, 1, 0));
    queue.ack(&got[0]).await.unwrap();
    assert!(queue.depth().await.unwrap().is_drained());
}

/// An empty queue makes `receive` wait about `wait` and return nothing; a request published
/// during the wait ends it early.
pub async fn receive_waits_when_empty(queue: Arc<dyn IssuanceQueue>) {
    let started = Instant::now();
    let got = queue.receive(10, Duration::from_millis(300)).await.unwrap();
    let waited = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        waited >= Duration::from_millis(250),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited far past the wait: {waited:?}"
    );

    let r = request(fresh_coupon(), 2);
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = queue.receive(10, Duration::from_secs(10)).await.unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.publish(r).await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].request, r);
    assert!(
        waited < Duration::from_secs(5),
        "a waiting receive missed the publish: {waited:?}"
    );
    queue.ack(&got[0]).await.unwrap();
}

/// An acked request is never delivered again.
pub async fn ack_is_final(queue: Arc<dyn IssuanceQueue>) {
    let coupon = fresh_coupon();
    for u in 1..=3 {
        queue.publish(request(coupon, u)).await.unwrap();
    }
    for d in receive_n(&queue, 3).await {
        queue.ack(&d).await.unwrap();
    }
    assert_nothing_delivered(&queue, Duration::from_millis(500)).await;
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
}

/// `ack_all` settles every delivery it is given at once, 600 of them too (and none when given
/// none).
pub async fn ack_all_is_final(queue: Arc<dyn IssuanceQueue>) {
    let coupon = fresh_coupon();
    for u in 1..=600 {
        queue.publish(request(coupon, u)).await.unwrap();
    }
    let got = receive_n(&queue, 600).await;
    queue.ack_all(&[]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), depth(0, 600, 0));
    queue.ack_all(&got).await.unwrap();
    assert_nothing_delivered(&queue, Duration::from_millis(500)).await;
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
}

/// `retry` keeps a request away for its delay, then delivers it again with the next attempt.
pub async fn retry_waits_out_the_delay(queue: Arc<dyn IssuanceQueue>) {
    let r = request(fresh_coupon(), 4);
    queue.publish(r).await.unwrap();
    let first = receive_n(&queue, 1).await.remove(0);
    assert_eq!(first.attempt, 1);

    let retried_at = Instant::now();
    queue
        .retry(&first, Duration::from_millis(300))
        .await
        .unwrap();
    // Waiting out a retry delay counts as ready.
    assert_eq!(queue.depth().await.unwrap(), depth(1, 0, 0));
    assert_nothing_delivered(&queue, Duration::from_millis(100)).await;

    let second = receive_n(&queue, 1).await.remove(0);
    let after = retried_at.elapsed();
    assert!(
        after >= Duration::from_millis(290),
        "redelivered {after:?} after a retry of 300 ms"
    );
    assert!(
        after < Duration::from_secs(3),
        "redelivered late: {after:?}"
    );
    assert_eq!(second.request, r);
    assert_eq!(second.attempt, 2);

    // And once more, without a delay.
    queue.retry(&second, Duration::ZERO).await.unwrap();
    let third = receive_n(&queue, 1).await.remove(0);
    assert_eq!((third.request, third.attempt), (r, 3));
    queue.ack(&third).await.unwrap();
    assert_nothing_delivered(&queue, Duration::from_millis(200)).await;
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
}

/// A dead-lettered request is counted as dead and never delivered again.
pub async fn dead_letter_is_kept_and_final(queue: Arc<dyn IssuanceQueue>) {
    let coupon = fresh_coupon();
    queue.publish(request(coupon, 5)).await.unwrap();
    queue.publish(request(coupon, 6)).await.unwrap();
    for d in receive_n(&queue, 2).await {
        if d.request.user_id == UserId::new(5).unwrap() {
            assert!(queue.dead_letter(&d, "contract: poison").await.unwrap());
        } else {
            queue.ack(&d).await.unwrap();
        }
    }
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 1));
    assert_nothing_delivered(&queue, Duration::from_millis(400)).await;
    let d = queue.depth().await.unwrap();
    assert_eq!(d, depth(0, 0, 1));
    assert!(d.is_drained(), "dead letters do not keep a queue busy");
}

/// `depth` counts ready (including delayed retries), in-flight and dead requests.
pub async fn depth_counts(queue: Arc<dyn IssuanceQueue>) {
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
    let coupon = fresh_coupon();
    for u in 1..=3 {
        queue.publish(request(coupon, u)).await.unwrap();
    }
    assert_eq!(queue.depth().await.unwrap(), depth(3, 0, 0));
    let got = receive_n(&queue, 2).await;
    assert_eq!(queue.depth().await.unwrap(), depth(1, 2, 0));
    queue.ack(&got[0]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), depth(1, 1, 0));
    queue.retry(&got[1], Duration::from_secs(30)).await.unwrap();
    let d = queue.depth().await.unwrap();
    assert_eq!(d, depth(2, 0, 0));
    assert!(!d.is_drained());
    let last = receive_n(&queue, 1).await.remove(0);
    assert_ne!(last.request, got[1].request, "a retry came back early");
    assert_eq!(queue.depth().await.unwrap(), depth(1, 1, 0));
    assert!(queue.dead_letter(&last, "contract: depth").await.unwrap());
    assert_eq!(queue.depth().await.unwrap(), depth(1, 0, 1));
}

/// 1,000 requests published by 50 tasks while 4 consumers receive and ack: each request is
/// delivered and acked exactly once, and the queue ends drained.
pub async fn concurrent_publish_and_consume(queue: Arc<dyn IssuanceQueue>) {
    const PUBLISHERS: i64 = 50;
    const PER_PUBLISHER: i64 = 20;
    const TOTAL: usize = 1_000;
    let coupon = fresh_coupon();
    let seen: Arc<Mutex<HashMap<(CouponId, UserId), u32>>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let mut consumers = Vec::new();
    for _ in 0..4 {
        let (queue, seen, acked) = (queue.clone(), seen.clone(), acked.clone());
        consumers.push(tokio::spawn(async move {
            while acked.load(Ordering::SeqCst) < TOTAL
                && started.elapsed() < Duration::from_secs(20)
            {
                let got = queue.receive(32, Duration::from_millis(100)).await.unwrap();
                for d in got {
                    *seen
                        .lock()
                        .unwrap()
                        .entry((d.request.coupon_id, d.request.user_id))
                        .or_default() += 1;
                    queue.ack(&d).await.unwrap();
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let queue = queue.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                queue
                    .publish(request(coupon, 1 + p * PER_PUBLISHER + i))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in publishers {
        t.await.unwrap();
    }
    for t in consumers {
        t.await.unwrap();
    }
    assert_eq!(
        acked.load(Ordering::SeqCst),
        TOTAL,
        "not everything was acked"
    );
    assert_nothing_delivered(&queue, Duration::from_millis(300)).await;
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), TOTAL, "some requests were never delivered");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// A delivery whose consumer died (never acked) is delivered again with the next attempt, once
/// the adapter's redelivery time (at most 500 ms) has passed; once acked it stays done.
/// Needs a queue that redelivers unacked messages quickly.
pub async fn unacked_delivery_comes_back(queue: Arc<dyn IssuanceQueue>) {
    let r = request(fresh_coupon(), 7);
    queue.publish(r).await.unwrap();
    let first = receive_n(&queue, 1).await.remove(0);
    assert_eq!(first.attempt, 1);
    // The consumer dies here: no ack, no retry.
    let again = receive_n(&queue, 1).await.remove(0);
    assert_eq!((again.request, again.attempt), (r, 2));
    queue.ack(&again).await.unwrap();
    // Longer than any redelivery time: an acked message stays done.
    assert_nothing_delivered(&queue, Duration::from_millis(800)).await;
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
}

/// An ack that arrives after the redelivery time (the consumer was slow, not dead) is still
/// final: the request is not delivered after it, whoever else received it meanwhile.
pub async fn late_ack_is_final(queue: Arc<dyn IssuanceQueue>) {
    let coupon = fresh_coupon();
    let slow = request(coupon, 8);
    queue.publish(slow).await.unwrap();
    let first = receive_n(&queue, 1).await.remove(0);
    assert_eq!(first.request, slow);
    let other = request(coupon, 9);
    queue.publish(other).await.unwrap();
    // Let the redelivery time pass, then take one message (which one is the adapter's choice).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let taken = receive_n(&queue, 1).await.remove(0);
    // The slow consumer finishes and acks.
    queue.ack(&first).await.unwrap();
    if taken.request == other {
        queue.ack(&taken).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_millis(800);
    while Instant::now() < deadline {
        for d in queue.receive(10, Duration::from_millis(100)).await.unwrap() {
            assert_ne!(d.request, slow, "delivered again after its ack: {d:?}");
            queue.ack(&d).await.unwrap();
        }
    }
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 0));
}

/// A receiver too slow to settle its delivery before another took the request over cannot give
/// up on it (`dead_letter` answers false and moves nothing) nor retry it; the other receiver's
/// outcome decides.
pub async fn stale_delivery_cannot_give_up(queue: Arc<dyn IssuanceQueue>) {
    let r = request(fresh_coupon(), 10);
    queue.publish(r).await.unwrap();
    let slow = receive_n(&queue, 1).await.remove(0);
    let other = receive_n(&queue, 1).await.remove(0);
    assert_eq!((other.request, other.attempt), (r, 2));
    assert!(
        !queue
            .dead_letter(&slow, "contract: too late")
            .await
            .unwrap(),
        "a stale delivery was dead-lettered"
    );
    queue.retry(&slow, Duration::ZERO).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), depth(0, 1, 0));
    assert!(queue
        .dead_letter(&other, "contract: given up")
        .await
        .unwrap());
    assert_eq!(queue.depth().await.unwrap(), depth(0, 0, 1));
    assert_nothing_delivered(&queue, Duration::from_millis(800)).await;
}

/// Instantiates the queue contract for one adapter. `$make` is an expression (evaluated per
/// test) yielding a future of a fresh, empty `Arc<dyn IssuanceQueue>`. Add
/// `redelivery = $short` with `$short` yielding a queue that redelivers an unacked message after
/// 200 to 500 ms, to include the checks of redelivery.
#[macro_export]
macro_rules! queue_contract {
    ($make:expr, redelivery = $short:expr) => {
        $crate::queue_contract!($make);
        #[test]
        fn queue_unacked_delivery_comes_back() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::unacked_delivery_comes_back($short.await).await;
            });
        }
        #[test]
        fn queue_stale_delivery_cannot_give_up() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::stale_delivery_cannot_give_up($short.await).await;
            });
        }
        #[test]
        fn queue_late_ack_is_final() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::late_ack_is_final($short.await).await;
            });
        }
    };
    ($make:expr) => {
        #[test]
        fn queue_publish_then_receive() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::publish_then_receive($make.await).await;
            });
        }
        #[test]
        fn queue_receive_waits_when_empty() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::receive_waits_when_empty($make.await).await;
            });
        }
        #[test]
        fn queue_ack_is_final() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::ack_is_final($make.await).await;
            });
        }
        #[test]
        fn queue_ack_all_is_final() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::ack_all_is_final($make.await).await;
            });
        }
        #[test]
        fn queue_retry_waits_out_the_delay() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::retry_waits_out_the_delay($make.await).await;
            });
        }
        #[test]
        fn queue_dead_letter_is_kept_and_final() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::dead_letter_is_kept_and_final($make.await).await;
            });
        }
        #[test]
        fn queue_depth_counts() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::depth_counts($make.await).await;
            });
        }
        #[test]
        fn queue_concurrent_publish_and_consume() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::queue::concurrent_publish_and_consume($make.await).await;
            });
        }
    };
}

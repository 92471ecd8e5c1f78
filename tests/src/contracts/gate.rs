//! The `CouponGate` contract: one atomic reserve, `remaining + holders == quantity` always,
//! idempotent `init`, `rollback` and `restore`, an atomic `rebuild` with holders.
//!
//! Every check uses a fresh coupon id, so suites may share one backend. Time is passed in
//! explicitly, so nothing here sleeps.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome, GateStats};
use stockade_domain::{CouponId, Timestamp, UserId};

use super::store::unique_id;

/// 2026-01-01T00:00:00Z.
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn fresh_coupon() -> CouponId {
    CouponId::new(unique_id()).unwrap()
}

fn user(n: i64) -> UserId {
    UserId::new(n).unwrap()
}

fn open(quantity: u32) -> GateConfig {
    GateConfig {
        quantity,
        valid_from: None,
        valid_until: None,
    }
}

async fn stats(gate: &Arc<dyn CouponGate>, coupon: CouponId) -> GateStats {
    gate.stats(coupon).await.unwrap().expect("the gate exists")
}

async fn holders(gate: &Arc<dyn CouponGate>, coupon: CouponId) -> BTreeSet<UserId> {
    let list = gate.holders(coupon).await.unwrap();
    let set: BTreeSet<UserId> = list.iter().copied().collect();
    assert_eq!(set.len(), list.len(), "a holder is listed twice");
    set
}

/// `remaining + reserved == quantity` and the holders are as many as the reserved; returns the
/// stats.
async fn balanced(gate: &Arc<dyn CouponGate>, coupon: CouponId) -> GateStats {
    let s = stats(gate, coupon).await;
    assert_eq!(
        s.remaining + s.reserved,
        s.quantity,
        "unbalanced gate: {s:?}"
    );
    assert_eq!(
        holders(gate, coupon).await.len(),
        s.reserved as usize,
        "holders disagree with the counters: {s:?}"
    );
    s
}

/// Before `init` a gate does not exist: reserve says so and nothing creates it by accident.
pub async fn not_initialised_before_init(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::NotInitialised
    );
    assert!(!gate.rollback(coupon, user(1)).await.unwrap());
    assert!(!gate.restore(coupon, user(1)).await.unwrap());
    assert_eq!(gate.stats(coupon).await.unwrap(), None);
    assert!(gate.holders(coupon).await.unwrap().is_empty());

    gate.init(coupon, open(3)).await.unwrap();
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::Reserved
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.quantity, s.remaining, s.reserved), (3, 2, 1));
}

/// A second `init` (even with another quantity) never resets a gate.
pub async fn init_is_idempotent(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    gate.init(coupon, open(5)).await.unwrap();
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::Reserved
    );
    gate.init(coupon, open(100)).await.unwrap();
    gate.init(coupon, open(5)).await.unwrap();
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.quantity, s.remaining, s.reserved), (5, 4, 1));
    assert_eq!(holders(&gate, coupon).await, BTreeSet::from([user(1)]));
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::AlreadyIssued
    );
}

/// 500 distinct users race for 100: exactly 100 reserve, the rest are sold out, and the holders
/// are exactly the winners.
pub async fn concurrent_distinct_users_get_exactly_quantity(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    gate.init(coupon, open(100)).await.unwrap();
    let mut tasks = Vec::new();
    for u in 1..=500 {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            (u, gate.reserve(coupon, user(u), NOW).await.unwrap())
        }));
    }
    let mut winners = BTreeSet::new();
    let mut counts: HashMap<GateOutcome, usize> = HashMap::new();
    for t in tasks {
        let (u, outcome) = t.await.unwrap();
        *counts.entry(outcome).or_default() += 1;
        if outcome == GateOutcome::Reserved {
            winners.insert(user(u));
        }
    }
    assert_eq!(counts.get(&GateOutcome::Reserved), Some(&100), "{counts:?}");
    assert_eq!(counts.get(&GateOutcome::SoldOut), Some(&400), "{counts:?}");
    assert_eq!(holders(&gate, coupon).await, winners);
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.quantity, s.remaining, s.reserved), (100, 0, 100));
}

/// One user reserves once: a second try, and 50 concurrent tries, get `AlreadyIssued`.
pub async fn same_user_reserves_once(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    gate.init(coupon, open(10)).await.unwrap();
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::Reserved
    );
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::AlreadyIssued
    );

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            gate.reserve(coupon, user(2), NOW).await.unwrap()
        }));
    }
    let mut counts: HashMap<GateOutcome, usize> = HashMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_default() += 1;
    }
    assert_eq!(counts.get(&GateOutcome::Reserved), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get(&GateOutcome::AlreadyIssued),
        Some(&49),
        "{counts:?}"
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (8, 2));
    assert_eq!(
        holders(&gate, coupon).await,
        BTreeSet::from([user(1), user(2)])
    );
}

/// Outside `[valid_from, valid_until)` a reserve is `Expired` and takes nothing.
pub async fn validity_window(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    let from = NOW;
    let until = NOW.plus_millis(60_000);
    gate.init(
        coupon,
        GateConfig {
            quantity: 10,
            valid_from: Some(from),
            valid_until: Some(until),
        },
    )
    .await
    .unwrap();
    for (u, at) in [
        (1, from.minus_millis(1)),
        (2, from.minus_millis(86_400_000)),
        (3, until),
        (4, until.plus_millis(1)),
    ] {
        assert_eq!(
            gate.reserve(coupon, user(u), at).await.unwrap(),
            GateOutcome::Expired,
            "reserve at {at} (window {from}..{until})"
        );
    }
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (10, 0));

    assert_eq!(
        gate.reserve(coupon, user(1), from).await.unwrap(),
        GateOutcome::Reserved
    );
    assert_eq!(
        gate.reserve(coupon, user(3), until.minus_millis(1))
            .await
            .unwrap(),
        GateOutcome::Reserved
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (8, 2));

    // Only `valid_until`, only `valid_from`.
    let until_only = fresh_coupon();
    gate.init(
        until_only,
        GateConfig {
            quantity: 1,
            valid_from: None,
            valid_until: Some(until),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        gate.reserve(until_only, user(1), until).await.unwrap(),
        GateOutcome::Expired
    );
    assert_eq!(
        gate.reserve(until_only, user(1), from.minus_millis(1_000_000))
            .await
            .unwrap(),
        GateOutcome::Reserved
    );
    let from_only = fresh_coupon();
    gate.init(
        from_only,
        GateConfig {
            quantity: 1,
            valid_from: Some(from),
            valid_until: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        gate.reserve(from_only, user(1), from.minus_millis(1))
            .await
            .unwrap(),
        GateOutcome::Expired
    );
    assert_eq!(
        gate.reserve(from_only, user(1), until.plus_millis(1_000_000))
            .await
            .unwrap(),
        GateOutcome::Reserved
    );
}

/// `rollback` gives one reservation back (the user may reserve again) and is idempotent.
pub async fn rollback_frees_one(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    gate.init(coupon, open(2)).await.unwrap();
    for u in [1, 2] {
        assert_eq!(
            gate.reserve(coupon, user(u), NOW).await.unwrap(),
            GateOutcome::Reserved
        );
    }
    assert_eq!(
        gate.reserve(coupon, user(3), NOW).await.unwrap(),
        GateOutcome::SoldOut
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (0, 2));

    assert!(gate.rollback(coupon, user(1)).await.unwrap());
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (1, 1));
    assert_eq!(holders(&gate, coupon).await, BTreeSet::from([user(2)]));

    assert!(
        !gate.rollback(coupon, user(1)).await.unwrap(),
        "a second rollback changed something"
    );
    assert!(
        !gate.rollback(coupon, user(9)).await.unwrap(),
        "rolled back a user who held nothing"
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (1, 1));

    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::Reserved,
        "a rolled-back user may reserve again"
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.quantity, s.remaining, s.reserved), (2, 0, 2));
}

/// `restore` records a holder the gate lost; it refuses a user who holds one already and a gate
/// with none left, and is idempotent.
pub async fn restore_adds_a_holder(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    gate.init(coupon, open(2)).await.unwrap();
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::Reserved
    );
    assert!(
        !gate.restore(coupon, user(1)).await.unwrap(),
        "restored a holder"
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (1, 1));

    assert!(gate.restore(coupon, user(2)).await.unwrap());
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (0, 2));
    assert_eq!(
        holders(&gate, coupon).await,
        BTreeSet::from([user(1), user(2)])
    );

    assert!(
        !gate.restore(coupon, user(2)).await.unwrap(),
        "not idempotent"
    );
    assert!(
        !gate.restore(coupon, user(3)).await.unwrap(),
        "restored past the quantity"
    );
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (0, 2));
    assert_eq!(
        gate.reserve(coupon, user(2), NOW).await.unwrap(),
        GateOutcome::AlreadyIssued
    );

    // A restored holder can be rolled back like any other.
    assert!(gate.rollback(coupon, user(2)).await.unwrap());
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.remaining, s.reserved), (1, 1));
}

/// `rebuild` creates a lost gate with its holders already in it, all at once: 300 users racing
/// the rebuild can only ever take the places no holder has; a holder is refused as one; a
/// second rebuild, or one over a live gate, changes nothing; more holders than places leave
/// none.
pub async fn rebuild_creates_the_gate_with_its_holders(gate: Arc<dyn CouponGate>) {
    let coupon = fresh_coupon();
    let kept: Vec<UserId> = (1..=30).map(user).collect();
    let racers: Vec<_> = (1000..1300)
        .map(|n| {
            let gate = gate.clone();
            tokio::spawn(async move {
                loop {
                    match gate.reserve(coupon, user(n), NOW).await.unwrap() {
                        GateOutcome::NotInitialised => tokio::task::yield_now().await,
                        other => return (n, other),
                    }
                }
            })
        })
        .collect();
    assert!(gate.rebuild(coupon, open(50), &kept).await.unwrap());
    let mut winners = BTreeSet::new();
    for r in racers {
        let (n, outcome) = r.await.unwrap();
        match outcome {
            GateOutcome::Reserved => assert!(winners.insert(user(n))),
            GateOutcome::SoldOut => {}
            other => panic!("user {n}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 20, "places a holder still had were taken");
    let s = balanced(&gate, coupon).await;
    assert_eq!((s.quantity, s.remaining, s.reserved), (50, 0, 50));
    let all = holders(&gate, coupon).await;
    assert!(kept.iter().all(|k| all.contains(k)), "a holder was lost");
    assert_eq!(
        gate.reserve(coupon, user(1), NOW).await.unwrap(),
        GateOutcome::AlreadyIssued
    );
    assert!(!gate.rebuild(coupon, open(50), &[]).await.unwrap());
    assert_eq!(stats(&gate, coupon).await, s, "a rebuild reset a live gate");

    let live = fresh_coupon();
    gate.init(live, open(3)).await.unwrap();
    assert!(!gate
        .rebuild(live, open(3), &[user(7), user(8)])
        .await
        .unwrap());
    let s = balanced(&gate, live).await;
    assert_eq!((s.remaining, s.reserved), (3, 0));

    let over = fresh_coupon();
    assert!(gate
        .rebuild(over, open(2), &[user(1), user(2), user(3)])
        .await
        .unwrap());
    assert_eq!(stats(&gate, over).await.remaining, 0);
    assert_eq!(
        gate.reserve(over, user(4), NOW).await.unwrap(),
        GateOutcome::SoldOut
    );

    let empty = fresh_coupon();
    assert!(gate.rebuild(empty, open(2), &[]).await.unwrap());
    let s = balanced(&gate, empty).await;
    assert_eq!((s.remaining, s.reserved), (2, 0));
}

/// Instantiates the gate contract for one adapter. `$make` is an expression (evaluated per
/// test) yielding a future of `Arc<dyn CouponGate>`.
#[macro_export]
macro_rules! gate_contract {
    ($make:expr) => {
        #[test]
        fn gate_not_initialised_before_init() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::not_initialised_before_init($make.await).await;
            });
        }
        #[test]
        fn gate_init_is_idempotent() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::init_is_idempotent($make.await).await;
            });
        }
        #[test]
        fn gate_concurrent_distinct_users_get_exactly_quantity() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::concurrent_distinct_users_get_exactly_quantity(
                    $make.await,
                )
                .await;
            });
        }
        #[test]
        fn gate_same_user_reserves_once() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::same_user_reserves_once($make.await).await;
            });
        }
        #[test]
        fn gate_validity_window() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::validity_window($make.await).await;
            });
        }
        #[test]
        fn gate_rollback_frees_one() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::rollback_frees_one($make.await).await;
            });
        }
        #[test]
        fn gate_restore_adds_a_holder() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::restore_adds_a_holder($make.await).await;
            });
        }
        #[test]
        fn gate_rebuild_creates_the_gate_with_its_holders() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::gate::rebuild_creates_the_gate_with_its_holders($make.await)
                    .await;
            });
        }
    };
}

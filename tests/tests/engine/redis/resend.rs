//! A reserve run twice for one request (the cluster client sends a command again after a
//! connection error, not knowing whether the first one ran) answers "reserved" both times and
//! takes one unit; another request of the same user answers "already issued". Run on one
//! server (here) and on a cluster (`cluster_contracts`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome};
use stockade_domain::{CouponId, Timestamp, UserId};
use stockade_redis::{RedisConnection, RedisCouponGate, RedisTarget};
use stockade_tests::redis::{namespace, url};

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn open(quantity: u32) -> GateConfig {
    GateConfig {
        quantity,
        valid_from: None,
        valid_until: None,
    }
}

fn user(n: i64) -> UserId {
    UserId::new(n).unwrap()
}

/// One field of the coupon's hash (the `reserves`, `rollbacks`, `restores` counters).
async fn counter(conn: &mut RedisConnection, gate: &RedisCouponGate, c: CouponId, f: &str) -> i64 {
    let [meta, _, _] = gate.keys(c);
    redis::cmd("HGET")
        .arg(meta)
        .arg(f)
        .query_async(conn)
        .await
        .unwrap()
}

/// How many holders have a request token recorded.
async fn tokens(conn: &mut RedisConnection, gate: &RedisCouponGate, c: CouponId) -> i64 {
    let [_, _, tokens] = gate.keys(c);
    redis::cmd("HLEN")
        .arg(tokens)
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_reserve_answers_reserved_and_takes_one_unit() {
    resent_reserve(url().into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_racing_a_crowd_take_one_unit() {
    resends_race_a_crowd(url().into()).await;
}

/// The same command, byte for byte, sent again answers `Reserved` and changes nothing; another
/// token of the holder answers `AlreadyIssued`; rollback, restore and rebuild drop the tokens.
pub async fn resent_reserve(target: RedisTarget) {
    let gate = RedisCouponGate::connect(target.clone(), namespace())
        .await
        .unwrap();
    let mut conn = RedisConnection::connect(target).await.unwrap();
    let coupon = CouponId::new(7).unwrap();
    gate.init(coupon, open(3)).await.unwrap();
    let first: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0001;
    let sent = gate.reserve_command(coupon, user(42), NOW, first);
    for run in 0..6 {
        let answer: i64 = sent.query_async(&mut conn).await.unwrap();
        assert_eq!(answer, 0, "run {run} of one request answers reserved");
    }
    assert_eq!(
        gate.reserve_as(coupon, user(42), NOW, first).await.unwrap(),
        GateOutcome::Reserved,
        "the same token through the batching path"
    );
    assert_eq!(
        gate.reserve_as(coupon, user(42), NOW, first + 1)
            .await
            .unwrap(),
        GateOutcome::AlreadyIssued,
        "another request of the holder"
    );
    assert_eq!(
        gate.reserve(coupon, user(42), NOW).await.unwrap(),
        GateOutcome::AlreadyIssued
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((s.quantity, s.remaining, s.reserved), (3, 2, 1));
    assert_eq!(gate.holders(coupon).await.unwrap(), vec![user(42)]);
    assert_eq!(counter(&mut conn, &gate, coupon, "reserves").await, 1);
    assert_eq!(tokens(&mut conn, &gate, coupon).await, 1);

    // Rollback drops the token with the holder; a later request is a new reserve.
    assert!(gate.rollback(coupon, user(42)).await.unwrap());
    assert_eq!(tokens(&mut conn, &gate, coupon).await, 0);
    let second = first + 2;
    assert_eq!(
        gate.reserve_as(coupon, user(42), NOW, second)
            .await
            .unwrap(),
        GateOutcome::Reserved
    );
    assert_eq!(counter(&mut conn, &gate, coupon, "reserves").await, 2);

    // A restored holder has no token: no request of theirs answers reserved.
    assert!(gate.rollback(coupon, user(42)).await.unwrap());
    assert!(gate.restore(coupon, user(42)).await.unwrap());
    assert_eq!(tokens(&mut conn, &gate, coupon).await, 0);
    assert_eq!(
        gate.reserve_as(coupon, user(42), NOW, second)
            .await
            .unwrap(),
        GateOutcome::AlreadyIssued
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((s.quantity, s.remaining, s.reserved), (3, 2, 1));

    // A gate rebuilt from the store (its hash was lost, stale holders and tokens were left)
    // keeps no token.
    let other = user(43);
    let third = first + 3;
    assert_eq!(
        gate.reserve_as(coupon, other, NOW, third).await.unwrap(),
        GateOutcome::Reserved
    );
    let [meta, _, _] = gate.keys(coupon);
    redis::cmd("DEL")
        .arg(meta)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(gate.rebuild(coupon, open(3), &[other]).await.unwrap());
    assert_eq!(tokens(&mut conn, &gate, coupon).await, 0);
    assert_eq!(
        gate.reserve_as(coupon, other, NOW, third).await.unwrap(),
        GateOutcome::AlreadyIssued
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((s.quantity, s.remaining, s.reserved), (3, 2, 1));
    assert_eq!(gate.holders(coupon).await.unwrap(), vec![other]);
}

/// Hundreds of runs of one request race hundreds of other users for 100 units: the request's
/// runs all answer alike, it takes at most one unit, and the counters balance.
pub async fn resends_race_a_crowd(target: RedisTarget) {
    const QUANTITY: u32 = 100;
    const CROWD: i64 = 300;
    const RUNS: usize = 300;
    let gate = Arc::new(
        RedisCouponGate::connect(target.clone(), namespace())
            .await
            .unwrap(),
    );
    let conn = RedisConnection::connect(target).await.unwrap();
    let coupon = CouponId::new(8).unwrap();
    gate.init(coupon, open(QUANTITY)).await.unwrap();
    let sent = Arc::new(gate.reserve_command(coupon, user(1), NOW, 0xabcd));

    let runs: Vec<_> = (0..RUNS)
        .map(|_| {
            let (sent, mut conn) = (sent.clone(), conn.clone());
            tokio::spawn(async move { sent.query_async::<i64>(&mut conn).await.unwrap() })
        })
        .collect();
    let crowd: Vec<_> = (2..2 + CROWD)
        .map(|u| {
            let gate = gate.clone();
            tokio::spawn(async move { gate.reserve(coupon, user(u), NOW).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for r in runs {
        answers.push(r.await.unwrap());
    }
    let (mut reserved, mut sold_out) = (0u32, 0u32);
    for c in crowd {
        match c.await.unwrap() {
            GateOutcome::Reserved => reserved += 1,
            GateOutcome::SoldOut => sold_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let first = answers[0];
    assert!(
        answers.iter().all(|a| *a == first),
        "the runs of one request answer alike: {answers:?}"
    );
    let held = u32::from(first == 0);
    assert!(first == 0 || first == 1, "answer {first}");
    assert_eq!(reserved + held, QUANTITY);
    assert_eq!(i64::from(reserved + sold_out), CROWD);

    let mut conn = conn;
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!(
        (s.quantity, s.remaining, s.reserved),
        (QUANTITY, 0, QUANTITY)
    );
    let holders = gate.holders(coupon).await.unwrap();
    assert_eq!(holders.len(), QUANTITY as usize);
    assert_eq!(holders.contains(&user(1)), first == 0);
    assert_eq!(
        counter(&mut conn, &gate, coupon, "reserves").await,
        i64::from(QUANTITY)
    );
    assert_eq!(tokens(&mut conn, &gate, coupon).await, i64::from(QUANTITY));
}

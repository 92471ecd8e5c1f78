//! Concurrency scenarios through the application layer, written once and run on every
//! backend (see `tests/engine/memory/scenarios.rs` and `tests/engine/postgres/scenarios.rs`). Each spawns hundreds
//! of real tasks and checks the invariants of docs/design.md afterwards.

use crate::harness::{user, TestApp};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use stockade_application::usecases::charge_balance::ChargeBalance;
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::AppError;
use stockade_domain::{
    ChargeAmount, Discount, ErrorCode, IdempotencyKey, IssuanceMode, LineRequest, Money, OrderId,
    Quantity,
};

fn code<T>(r: &Result<T, AppError>) -> Option<ErrorCode> {
    r.as_ref().err().map(AppError::code)
}

/// `users` distinct users ask `per_user` times each, all at once, for a coupon of `quantity`.
pub async fn coupon_race(
    t: &TestApp,
    mode: IssuanceMode,
    users: i64,
    per_user: usize,
    quantity: i64,
) {
    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 1_000, None).unwrap(),
            0,
            quantity,
            mode,
        )
        .await;
    let mut tasks = Vec::new();
    for u in 1..=users {
        for _ in 0..per_user {
            let app = t.app.clone();
            tasks.push(tokio::spawn(async move {
                (u, app.issue_coupon(coupon, user(u)).await)
            }));
        }
    }
    let mut winners = Vec::new();
    let mut by_code: HashMap<ErrorCode, usize> = HashMap::new();
    for task in tasks {
        let (u, r) = task.await.unwrap();
        match r {
            Ok(view) => {
                let expected = if mode == IssuanceMode::Flash {
                    "RESERVED"
                } else {
                    "ISSUED"
                };
                assert_eq!(view.status, expected);
                winners.push(u);
            }
            Err(e) => *by_code.entry(e.code()).or_default() += 1,
        }
    }
    let distinct: HashSet<_> = winners.iter().collect();
    assert_eq!(winners.len(), quantity as usize, "winners");
    assert_eq!(distinct.len(), winners.len(), "a user won twice");
    let losers = (users as usize) * per_user - quantity as usize;
    let sold_out = by_code.get(&ErrorCode::CouponSoldOut).copied().unwrap_or(0);
    let twice = by_code
        .get(&ErrorCode::CouponAlreadyIssued)
        .copied()
        .unwrap_or(0);
    assert_eq!(sold_out + twice, losers, "unexpected outcomes: {by_code:?}");
    if per_user == 1 {
        assert_eq!(sold_out, losers);
    }
    t.drain().await;
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!(stock.persisted, quantity as u32);
    assert_eq!(stock.remaining, 0);
    assert_eq!(stock.failed, 0);
    let flash: Vec<_> = if mode == IssuanceMode::Flash {
        vec![coupon]
    } else {
        vec![]
    };
    t.assert_invariants(&flash).await;
    // Everybody who won holds exactly one coupon, visible in their list.
    for u in distinct {
        let mine = t.app.my_coupons(user(*u)).await.unwrap();
        assert_eq!(mine.len(), 1);
    }
}

pub async fn stock_rush_1200_buyers_for_1000_units(t: &TestApp) {
    let product = t.product(10_000, 1_000, 5).await;
    let mut tasks = Vec::new();
    for u in 1..=1_200 {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            app.create_order(
                CreateOrder {
                    user_id: user(u),
                    source: OrderSource::Lines(vec![LineRequest {
                        product_id: product,
                        quantity: Quantity::new(1, "quantity").unwrap(),
                        user_coupon_id: None,
                    }]),
                    user_coupon_ids: vec![],
                },
                None,
            )
            .await
        }));
    }
    let mut sold = 0;
    let mut refused = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match code(&r) {
            None => sold += 1,
            Some(ErrorCode::InsufficientStock) => refused += 1,
            Some(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((sold, refused), (1_000, 200));
    assert_eq!(t.app.product(product).await.unwrap().stock, 0);
    let report = t.app.audit().await.unwrap();
    assert_eq!(report.orders, 1_000);
    t.assert_invariants(&[]).await;
}

pub async fn hundred_concurrent_charges(t: &TestApp) {
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            app.charge(
                ChargeBalance {
                    user_id: user(7),
                    amount: ChargeAmount::new(1_000).unwrap(),
                },
                None,
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(t.app.balance(user(7)).await.unwrap().balance, 100_000);
    let ledger = t.app.transactions(user(7)).await.unwrap();
    assert_eq!(ledger.len(), 100);
    // Each entry's balance-after is distinct: no two charges saw the same balance.
    let afters: HashSet<_> = ledger.iter().map(|e| e.balance_after).collect();
    assert_eq!(afters.len(), 100);
    t.assert_invariants(&[]).await;
}

/// 200 keyed charges of 1,000,000 arrive together at a wallet 50.5 charges below its cap:
/// they run in combined turns (far fewer lock grants than charges), exactly 50 succeed, each
/// at its own balance, the other 150 are refused `CHARGE_LIMIT_EXCEEDED` with nothing written,
/// and every key sent again replays its first answer.
pub async fn charges_near_the_cap_run_in_combined_turns(t: TestApp) {
    use stockade_domain::wallet::{MAX_CHARGE, MAX_WALLET_BALANCE};
    use stockade_domain::IdempotencyKey;
    let start = MAX_WALLET_BALANCE - 50 * MAX_CHARGE - MAX_CHARGE / 2;
    let mut left = start;
    while left > 0 {
        let amount = left.min(MAX_CHARGE);
        t.charge(8, amount).await;
        left -= amount;
    }
    let (t, grants) = crate::combining::counting_grants(t);
    let send = |i: usize| {
        let app = t.app.clone();
        async move {
            let key = IdempotencyKey::parse(&format!("near-cap-{i}")).unwrap();
            app.charge(
                ChargeBalance {
                    user_id: user(8),
                    amount: ChargeAmount::new(MAX_CHARGE).unwrap(),
                },
                Some(&key),
            )
            .await
        }
    };
    let tasks: Vec<_> = (0..200).map(|i| tokio::spawn(send(i))).collect();
    let mut first = Vec::new();
    for task in tasks {
        first.push(task.await.unwrap());
    }
    let granted = grants.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        granted < 100,
        "{granted} grants for 200 charges: not combined"
    );
    let mut balances = Vec::new();
    for answer in &first {
        match answer {
            Ok(r) => balances.push(r.value.balance),
            Err(e) => assert_eq!(e.code().as_str(), "CHARGE_LIMIT_EXCEEDED", "{e:?}"),
        }
    }
    balances.sort_unstable();
    let expected: Vec<i64> = (1..=50).map(|k| start + k * MAX_CHARGE).collect();
    assert_eq!(balances, expected, "each success at its own balance");
    assert_eq!(
        t.app.balance(user(8)).await.unwrap().balance,
        start + 50 * MAX_CHARGE
    );
    for (i, answer) in first.iter().enumerate() {
        let again = send(i).await;
        match (answer, again) {
            (Ok(a), Ok(b)) => {
                assert!(b.replayed);
                assert_eq!(a.value, b.value);
            }
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
            (a, b) => panic!("request {i}: {a:?} then {b:?}"),
        }
    }
    t.assert_invariants(&[]).await;
}

pub async fn one_payment_key_sent_100_times_at_once(t: &TestApp) {
    let product = t.product(10_000, 100, 5).await;
    t.charge(1, 100_000).await;
    let order = t
        .app
        .create_order(
            CreateOrder {
                user_id: user(1),
                source: OrderSource::Lines(vec![LineRequest {
                    product_id: product,
                    quantity: Quantity::new(2, "quantity").unwrap(),
                    user_coupon_id: None,
                }]),
                user_coupon_ids: vec![],
            },
            None,
        )
        .await
        .unwrap()
        .value;
    let key = Arc::new(IdempotencyKey::parse("pay-once").unwrap());
    let pay = |app: stockade_application::Stockade, key: Arc<IdempotencyKey>| async move {
        app.pay(
            ProcessPayment {
                user_id: user(1),
                order_id: OrderId::new(order.order_id).unwrap(),
                amount: Money::new(order.total, "amount").unwrap(),
            },
            Some(&key),
        )
        .await
    };
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(pay(t.app.clone(), key.clone())));
    }
    let mut bodies = HashSet::new();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => {
                if !r.replayed {
                    fresh += 1;
                }
                bodies.insert(format!("{:?}", r.value));
            }
            Err(AppError::RequestInProgress { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran the payment");
    assert_eq!(bodies.len(), 1, "every answer is the same");
    // After it finished, every retry is a replay of the same answer.
    for _ in 0..10 {
        let r = pay(t.app.clone(), key.clone()).await.unwrap();
        assert!(r.replayed);
        assert!(bodies.contains(&format!("{:?}", r.value)));
    }
    assert_eq!(t.app.balance(user(1)).await.unwrap().balance, 80_000);
    let uses = t
        .app
        .transactions(user(1))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "USE")
        .count();
    assert_eq!(uses, 1);
    t.assert_invariants(&[]).await;
}

pub async fn twenty_payments_with_different_keys_pay_once(t: &TestApp) {
    let product = t.product(10_000, 100, 5).await;
    t.charge(1, 100_000).await;
    let order = t
        .app
        .create_order(
            CreateOrder {
                user_id: user(1),
                source: OrderSource::Lines(vec![LineRequest {
                    product_id: product,
                    quantity: Quantity::new(1, "quantity").unwrap(),
                    user_coupon_id: None,
                }]),
                user_coupon_ids: vec![],
            },
            None,
        )
        .await
        .unwrap()
        .value;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            let key = IdempotencyKey::parse(&format!("k{i}")).unwrap();
            app.pay(
                ProcessPayment {
                    user_id: user(1),
                    order_id: OrderId::new(order.order_id).unwrap(),
                    amount: Money::new(order.total, "amount").unwrap(),
                },
                Some(&key),
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match code(&r) {
            None => ok += 1,
            Some(ErrorCode::InvalidOrderState) => {}
            Some(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(t.app.balance(user(1)).await.unwrap().balance, 90_000);
    t.assert_invariants(&[]).await;
}

//! On Postgres: two instances sharing one database, a crash in the middle of payments followed by
//! recovery, and a kill in the middle of a stock rush.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use stockade_tests::pg::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_and_every_invariant_holds() {
    two_instances(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_and_redis_keep_every_invariant() {
    let ns = stockade_tests::redis::namespace();
    let url = stockade_tests::redis::url();
    two_instances(&[
        "--lock",
        "redis",
        "--idempotency",
        "redis",
        "--gate",
        "redis",
        "--queue",
        "redis",
        "--redis-url",
        &url,
        "--lock-namespace",
        &ns,
    ])
    .await;
}

/// With the gate on Redis, a FLASH coupon of 100 raced by 500 users over both instances has
/// exactly 100 winners, each persisted once (by whichever instance's consumer took it).
async fn flash_race_over(bases: &[String; 2], db: &TestDb) {
    let client = reqwest::Client::new();
    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", bases[1]), 1_000, None,
        Some(json!({"name": "DROP", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": 100, "mode": "FLASH"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = coupon["data"]["id"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for u in 1..=500i64 {
        let (client, base) = (client.clone(), bases[(u % 2) as usize].clone());
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/api/v1/coupons/{cid}/issue");
            call(&client, reqwest::Method::POST, url, u, None, None)
                .await
                .0
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        match t.await.unwrap() {
            202 | 200 => reserved += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(reserved, 100);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (persisted, distinct): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1",
        )
        .bind(cid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(persisted, distinct, "a user holds the coupon twice");
        if persisted == 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {persisted} persisted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for base in bases {
        let (status, stock) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/v1/admin/coupons/{cid}/stock"),
            1_000,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
        let d = &stock["data"];
        assert_eq!(
            (
                d["remaining"].as_i64(),
                d["reserved"].as_i64(),
                d["persisted"].as_i64(),
                d["failed"].as_i64()
            ),
            (Some(0), Some(100), Some(100), Some(0)),
            "{stock}"
        );
    }
}

async fn two_instances(extra: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    // Two instances' pools must fit the server's max_connections together.
    let flags = extra.to_vec();
    let a = start(&db, &flags).await;
    let b = start(&db, &flags).await;
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    // A LOCKED coupon of 100 raced by 500 users spread over both instances.
    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", bases[0]), 1_000, None,
        Some(json!({"name": "SHARED", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": 100, "mode": "LOCKED"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = coupon["data"]["id"].as_i64().unwrap();
    // A product of 300 raced by 400 buyers.
    let (_, product) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/admin/products", bases[1]),
        1_000,
        None,
        Some(json!({"name": "Rush", "price": 1_000, "stock": 300, "maxPerOrder": 1})),
    )
    .await;
    let pid = product["data"]["id"].as_i64().unwrap();

    let mut tasks = Vec::new();
    for u in 1..=500i64 {
        let (client, base) = (client.clone(), bases[(u % 2) as usize].clone());
        tasks.push(tokio::spawn(async move {
            call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/coupons/{cid}/issue"),
                u,
                None,
                None,
            )
            .await
            .0
        }));
    }
    let mut issued = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => issued += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(issued, 100);

    let mut tasks = Vec::new();
    for u in 1..=400i64 {
        let client = client.clone();
        let base = bases[(u % 2) as usize].clone();
        let other = bases[((u + 1) % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let (s, order) = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/orders"),
                u,
                Some(format!("rush-{u}")),
                Some(json!({"items": [{"productId": pid, "quantity": 1}]})),
            )
            .await;
            if s != 201 {
                return (s, None);
            }
            // Fund the wallet through the other instance.
            let total = order["data"]["total"].as_i64().unwrap();
            let id = order["data"]["orderId"].as_i64().unwrap();
            let (c, _) = call(
                &client,
                reqwest::Method::POST,
                format!("{other}/api/v1/users/me/balance/charge"),
                u,
                Some(format!("fund-{u}")),
                Some(json!({"amount": total})),
            )
            .await;
            assert_eq!(c, 200);
            (s, Some((id, total)))
        }));
    }
    let mut orders = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, Some(o)) => orders.push(o),
            (400, None) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((orders.len(), refused), (300, 100));
    // Pay every order on both instances at once with one key (a double click across the pair).
    let mut tasks = Vec::new();
    for (n, (id, total)) in orders.iter().copied().enumerate() {
        let user: i64 = sqlx::query_scalar("SELECT user_id FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        for base in bases.clone() {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                call(
                    &client,
                    reqwest::Method::POST,
                    format!("{base}/api/v1/orders/{id}/payment"),
                    user,
                    Some(format!("pay-{n}")),
                    Some(json!({"amount": total})),
                )
                .await
                .0
            }));
        }
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 409, "payment answered {s}");
    }
    // Invariants, read from the database.
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stock, 0);
    let holders: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1")
            .bind(cid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(holders, 100);
    let uses: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE kind = 'USE'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PAID'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(paid + pending, 300);
    assert_eq!(uses, paid, "one debit per paid order, never two");
    assert_wallets_match_ledgers(&db).await;
    if extra.contains(&"--gate") {
        flash_race_over(&bases, &db).await;
    }
    drop((a, b));
    db.drop_schema().await;
}

async fn crash_in_the_middle_of_payments(platform_after_restart: &str, expected: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    // The first instance's data platform never answers: payments stop after their debit.
    let first = start(
        &db,
        &[
            "--platform-mode",
            "hang",
            "--db-max-connections",
            "8",
            "--lock-max-connections",
            "32",
            "--platform-timeout-ms",
            "600000",
            "--request-timeout-secs",
            "600",
        ],
    )
    .await;
    let mut orders = Vec::new();
    for u in 1..=20i64 {
        let (s, _) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v1/users/me/balance/charge", first.base),
            u,
            Some(format!("c{u}")),
            Some(json!({"amount": 100_000})),
        )
        .await;
        assert_eq!(s, 200);
        let (s, o) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v1/orders", first.base),
            u,
            Some(format!("o{u}")),
            Some(json!({"items": [{"productId": 2, "quantity": 1}]})),
        )
        .await;
        assert_eq!(s, 201, "{o}");
        orders.push((
            u,
            o["data"]["orderId"].as_i64().unwrap(),
            o["data"]["total"].as_i64().unwrap(),
        ));
    }
    for (u, id, total) in orders.clone() {
        let (client, base) = (client.clone(), first.base.clone());
        tokio::spawn(async move {
            let _ = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/orders/{id}/payment"),
                u,
                Some(format!("p{u}")),
                Some(json!({"amount": total})),
            )
            .await;
        });
    }
    // Wait until every saga has debited, then kill the process.
    for _ in 0..400 {
        let debited: i64 =
            sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if debited == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let debited: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(debited, 20);
    drop(first); // SIGKILL
    let second = start(
        &db,
        &[
            "--platform-mode",
            platform_after_restart,
            "--saga-recovery-after-secs",
            "1",
        ],
    )
    .await;
    let mut settled = false;
    for _ in 0..300 {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if open == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "the recovery worker did not finish the sagas");
    for (u, id, _) in &orders {
        let (s, o) = call(
            &client,
            reqwest::Method::GET,
            format!("{}/api/v1/orders/{id}", second.base),
            *u,
            None,
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(o["data"]["status"], expected, "{o}");
    }
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = 2")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let sold = if expected == "PAID" { 20 } else { 0 };
    assert_eq!(stock, 1_000 - sold);
    assert_wallets_match_ledgers(&db).await;
    let balance_total: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0)::BIGINT FROM wallets")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let spent: i64 = orders.iter().map(|o| o.2).sum::<i64>() * i64::from(expected == "PAID");
    assert_eq!(balance_total, 20 * 100_000 - spent);
    drop(second);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_payment_is_finished_by_recovery() {
    crash_in_the_middle_of_payments("accept", "PAID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_payment_is_compensated_when_the_platform_refuses() {
    crash_in_the_middle_of_payments("fail", "PAYMENT_FAILED").await;
}

/// A stock rush on Postgres whose instance is killed (SIGKILL) while combined turns are in
/// flight, then started again: every buyer answered 201 holds an order, the store holds no more
/// orders than were answered 201 plus those that got no answer, stock + orders == the stock
/// put up, every outcome recorded as done has its order, and the buyers left without an answer
/// who retry with their keys end with exactly one order each or a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_rush_loses_nothing_answered() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    // Claims of requests that die with the instance hold their keys for 3 s.
    let mut first = start(&db, &["--idempotency-lease-secs", "3"]).await;
    let (s, product) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/admin/products", first.base),
        1_000,
        None,
        Some(json!({"name": "Rush", "price": 1_000, "stock": 600, "maxPerOrder": 1})),
    )
    .await;
    assert_eq!(s, 201, "{product}");
    let pid = product["data"]["id"].as_i64().unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for u in 1..=900i64 {
        let (client, base, answered) = (client.clone(), first.base.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let (s, _) = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/orders"),
                u,
                Some(format!("rush-{u}")),
                Some(json!({"items": [{"productId": pid, "quantity": 1}]})),
            )
            .await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (u, s)
        }));
    }
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut created = Vec::new();
    let mut unanswered = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (u, 201) => created.push(u),
            (u, 0 | 502 | 503) => unanswered.push(u),
            (_, 400) => {}
            (u, other) => panic!("buyer {u} answered {other}"),
        }
    }
    assert!(!unanswered.is_empty(), "the kill came after the rush ended");
    let users: Vec<i64> = sqlx::query_scalar("SELECT user_id FROM orders ORDER BY user_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let stock_left = || async {
        sqlx::query_scalar::<_, i64>("SELECT stock FROM products WHERE id = $1")
            .bind(pid)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    for u in &created {
        assert!(
            users.contains(u),
            "buyer {u} was answered 201 and holds no order"
        );
    }
    assert!(
        users.len() <= created.len() + unanswered.len(),
        "{} orders for {} answered 201 and {} unanswered",
        users.len(),
        created.len(),
        unanswered.len()
    );
    assert_eq!(
        stock_left().await + users.len() as i64,
        600,
        "stock is conserved"
    );
    let done_without_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys k
         WHERE k.state = 'DONE' AND k.ok
           AND NOT EXISTS (SELECT 1 FROM orders o
                           WHERE o.idempotency_ref = 'order:' || substr(k.scope, 6) || ':' || k.key)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        done_without_order, 0,
        "a recorded outcome without its order"
    );

    // Start again; the unanswered buyers retry with their keys (once their in-flight claims
    // have lapsed, answered 409 until then).
    let second = start(&db, &["--idempotency-lease-secs", "3"]).await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    for u in &unanswered {
        let mut status = 0;
        for _ in 0..100 {
            let (s, _) = call(
                &client,
                reqwest::Method::POST,
                format!("{}/api/v1/orders", second.base),
                *u,
                Some(format!("rush-{u}")),
                Some(json!({"items": [{"productId": pid, "quantity": 1}]})),
            )
            .await;
            status = s;
            if s != 409 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            status == 201 || status == 400,
            "retry of buyer {u} answered {status}"
        );
    }
    let per_user: Vec<i64> =
        sqlx::query_scalar("SELECT count(*) FROM orders GROUP BY user_id HAVING count(*) > 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(per_user.is_empty(), "a buyer holds two orders");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        stock_left().await + orders,
        600,
        "stock is conserved after the retries"
    );
    drop(second);
    db.drop_schema().await;
}

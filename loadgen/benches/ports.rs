//! Micro-benchmarks of the concurrency ports and the domain's pricing:
//! - lock acquire + release, uncontended and contended (16 tasks on one key), for the memory,
//!   Postgres and Redis (one node) lock managers, next to a bare `SELECT 1` round trip on one
//!   open Postgres connection;
//! - FLASH gate reserve (memory);
//! - idempotency begin + complete (memory, Postgres);
//! - pricing an order with item and cart coupons.
//!
//! Postgres benchmarks run when `DATABASE_URL`'s server answers (a schema of their own in the
//! `stockade_test` database); otherwise they are skipped with a note.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::gate::{CouponGate, GateConfig};
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, IdempotencyStore, Scope, StoredOutcome,
};
use stockade_application::ports::lock::{LockKey, LockManager, LockOptions};
use stockade_domain::order::{price_order, HeldCoupon, LineRequest};
use stockade_domain::{
    Coupon, CouponId, Discount, IdempotencyKey, Money, NewCoupon, Product, ProductId, Quantity,
    Timestamp, UserCoupon, UserCouponId, UserCouponStatus, UserId,
};
use stockade_memory::{
    MemoryCouponGate, MemoryIdempotencyStore, MemoryLockManager, ProcessIds, SystemClock,
};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn opts() -> LockOptions {
    LockOptions::new(Duration::from_secs(30), Duration::from_secs(30))
}

async fn once(locks: &dyn LockManager, key: &LockKey) {
    let g = locks
        .acquire(std::slice::from_ref(key), opts())
        .await
        .unwrap();
    g.release().await.unwrap();
}

/// 16 tasks take one key in turn; the iteration ends when all have had it.
async fn contended(locks: Arc<dyn LockManager>, key: LockKey) {
    let mut tasks = Vec::with_capacity(16);
    for _ in 0..16 {
        let (locks, key) = (locks.clone(), key.clone());
        tasks.push(tokio::spawn(async move { once(&*locks, &key).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn postgres(rt: &Runtime) -> Option<stockade_tests::pg::TestDb> {
    let db = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let url = stockade_tests::pg::url_for("postgres");
            sqlx::PgPool::connect(&url).await.ok()?;
            Some(stockade_tests::pg::TestDb::new().await)
        })
        .await
        .ok()
        .flatten()
    });
    if db.is_none() {
        eprintln!("note: Postgres did not answer at DATABASE_URL; skipping its benchmarks");
    }
    db
}

fn locks(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("lock_acquire_release");
    let mem: Arc<dyn LockManager> = Arc::new(MemoryLockManager::new());
    let key = LockKey::new("bench:key").unwrap();
    g.bench_function("memory/uncontended", |b| {
        b.to_async(&rt).iter(|| once(&*mem, &key))
    });
    g.bench_function("memory/contended_16_tasks_per_iter", |b| {
        b.to_async(&rt).iter(|| contended(mem.clone(), key.clone()))
    });
    if let Some(db) = postgres(&rt) {
        let pg: Arc<dyn LockManager> = Arc::new(rt.block_on(db.locks()));
        // The baseline is one round trip on one open connection: no pool checkout, and no check
        // of the connection on its way back.
        let conn = rt.block_on(async {
            let pool = db.pool(1).await;
            tokio::sync::Mutex::new(pool.acquire().await.unwrap().detach())
        });
        g.bench_function("postgres/select_1_round_trip", |b| {
            b.to_async(&rt).iter(|| async {
                let mut conn = conn.lock().await;
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            })
        });
        g.bench_function("postgres/uncontended", |b| {
            b.to_async(&rt).iter(|| once(&*pg, &key))
        });
        g.bench_function("postgres/contended_16_tasks_per_iter", |b| {
            b.to_async(&rt).iter(|| contended(pg.clone(), key.clone()))
        });
        rt.block_on(db.drop_schema());
    }
    let redis = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            stockade_redis::RedisLockManager::connect(
                &[stockade_tests::redis::url()],
                stockade_tests::redis::namespace(),
                false,
            ),
        )
        .await
        .ok()
        .and_then(Result::ok)
    });
    match redis {
        Some(r) => {
            let r: Arc<dyn LockManager> = Arc::new(r);
            g.bench_function("redis_1_node/uncontended", |b| {
                b.to_async(&rt).iter(|| once(&*r, &key))
            });
            g.bench_function("redis_1_node/contended_16_tasks_per_iter", |b| {
                b.to_async(&rt).iter(|| contended(r.clone(), key.clone()))
            });
        }
        None => eprintln!("note: Redis did not answer at REDIS_URL; skipping its benchmarks"),
    }
    g.finish();
}

fn gate(c: &mut Criterion) {
    let rt = runtime();
    let gate = MemoryCouponGate::new();
    let coupon = CouponId::new(1).unwrap();
    rt.block_on(gate.init(
        coupon,
        GateConfig {
            quantity: u32::MAX,
            valid_from: None,
            valid_until: None,
        },
    ))
    .unwrap();
    let next = AtomicI64::new(1);
    c.bench_function("gate_reserve/memory", |b| {
        b.to_async(&rt).iter(|| async {
            let user = UserId::new(next.fetch_add(1, Ordering::Relaxed)).unwrap();
            gate.reserve(coupon, user, Timestamp::from_millis(0))
                .await
                .unwrap()
        })
    });
}

async fn begin_complete(store: &dyn IdempotencyStore, n: i64) {
    let key = IdempotencyKey::parse(&format!("k{n}")).unwrap();
    let scope = Scope("user:1".into());
    let Begin::Started(ticket) = store
        .begin(
            &scope,
            &key,
            &Fingerprint("f".into()),
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    else {
        panic!("a fresh key starts")
    };
    store
        .complete(
            &ticket,
            StoredOutcome {
                ok: true,
                body: b"{}".to_vec(),
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
}

fn idempotency(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("idempotency_begin_complete");
    let ids = Arc::new(ProcessIds::default());
    let mem = MemoryIdempotencyStore::new(Arc::new(SystemClock), ids.clone());
    let next = AtomicI64::new(0);
    g.bench_function("memory", |b| {
        b.to_async(&rt)
            .iter(|| begin_complete(&mem, next.fetch_add(1, Ordering::Relaxed)))
    });
    if let Some(db) = postgres(&rt) {
        let pg = db.idempotency(ids);
        g.bench_function("postgres", |b| {
            b.to_async(&rt)
                .iter(|| begin_complete(&pg, next.fetch_add(1, Ordering::Relaxed)))
        });
        rt.block_on(db.drop_schema());
    }
    g.finish();
}

fn pricing(c: &mut Criterion) {
    let user = UserId::new(1).unwrap();
    let now = Timestamp::from_millis(1);
    let products: Vec<Product> = (1..=3)
        .map(|i| Product {
            id: ProductId::new(i).unwrap(),
            name: format!("p{i}"),
            price: Money::from_trusted(10_000 * i),
            stock: 100,
            max_per_order: 5,
            max_per_customer: None,
        })
        .collect();
    let coupon = |id: i64, kind: &str, d: Discount| {
        Coupon::from_new(
            CouponId::new(id).unwrap(),
            NewCoupon::new("c", kind, d, 0, 10, "LOCKED", None, None).unwrap(),
        )
    };
    let item = coupon(1, "CART_ITEM", Discount::new("FIXED", 3_000, None).unwrap());
    let cart = coupon(
        2,
        "CART",
        Discount::new("PERCENT", 10, Some(20_000)).unwrap(),
    );
    let held = |id: i64, c: &Coupon| UserCoupon {
        id: UserCouponId::new(id).unwrap(),
        coupon_id: c.id,
        user_id: user,
        status: UserCouponStatus::Issued,
        issued_at: now,
        expires_at: Timestamp::from_millis(i64::MAX),
        order_id: None,
    };
    let (uc_item, uc_cart) = (held(1, &item), held(2, &cart));
    c.bench_function("price_order/3_lines_2_coupons", |b| {
        b.iter(|| {
            let lines: Vec<_> = products
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let coupon = (i == 0).then_some(HeldCoupon {
                        user_coupon: &uc_item,
                        policy: &item,
                    });
                    let req = LineRequest {
                        product_id: p.id,
                        quantity: Quantity::new(2, "quantity").unwrap(),
                        user_coupon_id: coupon.map(|c| c.user_coupon.id),
                    };
                    (req, p, coupon)
                })
                .collect();
            price_order(
                user,
                &lines,
                &[HeldCoupon {
                    user_coupon: &uc_cart,
                    policy: &cart,
                }],
                now,
            )
            .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = locks, gate, idempotency, pricing
}
criterion_main!(benches);

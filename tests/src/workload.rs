//! Random mixed workloads (charge, cart, order, pay, cancel, issue, expire, platform faults)
//! run on many concurrent tasks against one application; every invariant of docs/design.md is
//! checked at the end. Used by `tests/engine/memory/workload.rs` (memory) and
//! `tests/engine/postgres/workload.rs`.

use crate::harness::{user, TestApp};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::usecases::charge_balance::ChargeBalance;
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::usecases::update_cart::CartChange;
use stockade_application::{AppError, Settings};
use stockade_domain::{
    ChargeAmount, CouponId, Discount, ErrorCode, IdempotencyKey, IssuanceMode, LineRequest, Money,
    OrderId, OrderStatus, ProductId, Quantity, UserCouponId, UserCouponStatus,
};
use stockade_memory::PlatformMode;
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub enum Op {
    Charge {
        user: i64,
        amount: i64,
    },
    AddToCart {
        user: i64,
        product: usize,
        qty: i64,
    },
    Order {
        user: i64,
        product: usize,
        qty: i64,
        item_coupon: bool,
        cart_coupon: bool,
    },
    OrderFromCart {
        user: i64,
        cart_coupon: bool,
    },
    Pay {
        user: i64,
        keyed: bool,
    },
    Cancel {
        user: i64,
    },
    Issue {
        user: i64,
        coupon: usize,
    },
    Tick,
    Platform {
        fail: bool,
    },
}

/// One random operation.
pub fn op() -> impl Strategy<Value = Op> {
    let u = 1i64..=6;
    prop_oneof![
        3 => (u.clone(), 1i64..=200_000).prop_map(|(user, amount)| Op::Charge { user, amount }),
        2 => (u.clone(), 0usize..3, 1i64..=4).prop_map(|(user, product, qty)| Op::AddToCart { user, product, qty }),
        4 => (u.clone(), 0usize..3, 1i64..=4, any::<bool>(), any::<bool>())
            .prop_map(|(user, product, qty, item_coupon, cart_coupon)| Op::Order { user, product, qty, item_coupon, cart_coupon }),
        1 => (u.clone(), any::<bool>()).prop_map(|(user, cart_coupon)| Op::OrderFromCart { user, cart_coupon }),
        4 => (u.clone(), any::<bool>()).prop_map(|(user, keyed)| Op::Pay { user, keyed }),
        1 => u.clone().prop_map(|user| Op::Cancel { user }),
        3 => (u, 0usize..3).prop_map(|(user, coupon)| Op::Issue { user, coupon }),
        1 => Just(Op::Tick),
        1 => prop::bool::weighted(0.3).prop_map(|fail| Op::Platform { fail }),
    ]
}

struct World {
    t: TestApp,
    products: Vec<(ProductId, u32)>,
    coupons: Vec<CouponId>,
    /// Orders each user created, oldest first.
    orders: Mutex<HashMap<i64, Vec<(OrderId, i64)>>>,
}

/// Codes a random workload may legitimately meet.
fn acceptable(e: &AppError) -> bool {
    !matches!(
        e.code(),
        ErrorCode::InternalError | ErrorCode::BackendUnavailable
    )
}

async fn issued_coupon(w: &World, u: i64, kind: &str) -> Option<UserCouponId> {
    let mine = w.t.app.my_coupons(user(u)).await.ok()?;
    mine.into_iter()
        .find(|c| c.kind == kind && c.status == UserCouponStatus::Issued.as_str())
        .map(|c| UserCouponId::new(c.user_coupon_id).unwrap())
}

async fn run(w: &World, op: Op, n: usize) -> Result<(), AppError> {
    let app = &w.t.app;
    match op {
        Op::Charge { user: u, amount } => {
            let amount = ChargeAmount::new(amount)?;
            app.charge(
                ChargeBalance {
                    user_id: user(u),
                    amount,
                },
                None,
            )
            .await?;
        }
        Op::AddToCart {
            user: u,
            product,
            qty,
        } => {
            let q = Quantity::new(qty, "quantity")?;
            app.update_cart(user(u), CartChange::Add(w.products[product].0, q))
                .await?;
        }
        Op::Order {
            user: u,
            product,
            qty,
            item_coupon,
            cart_coupon,
        } => {
            let item = if item_coupon {
                issued_coupon(w, u, "CART_ITEM").await
            } else {
                None
            };
            let cart: Vec<_> = if cart_coupon {
                issued_coupon(w, u, "CART").await.into_iter().collect()
            } else {
                vec![]
            };
            let cmd = CreateOrder {
                user_id: user(u),
                source: OrderSource::Lines(vec![LineRequest {
                    product_id: w.products[product].0,
                    quantity: Quantity::new(qty, "quantity")?,
                    user_coupon_id: item,
                }]),
                user_coupon_ids: cart,
            };
            let order = app.create_order(cmd, None).await?.value;
            w.orders
                .lock()
                .await
                .entry(u)
                .or_default()
                .push((OrderId::new(order.order_id).unwrap(), order.total));
        }
        Op::OrderFromCart {
            user: u,
            cart_coupon,
        } => {
            let cart: Vec<_> = if cart_coupon {
                issued_coupon(w, u, "CART").await.into_iter().collect()
            } else {
                vec![]
            };
            let cmd = CreateOrder {
                user_id: user(u),
                source: OrderSource::FromCart,
                user_coupon_ids: cart,
            };
            let order = app.create_order(cmd, None).await?.value;
            w.orders
                .lock()
                .await
                .entry(u)
                .or_default()
                .push((OrderId::new(order.order_id).unwrap(), order.total));
        }
        Op::Pay { user: u, keyed } => {
            let last = w
                .orders
                .lock()
                .await
                .get(&u)
                .and_then(|o| o.last().copied());
            if let Some((order_id, total)) = last {
                let key =
                    keyed.then(|| IdempotencyKey::parse(&format!("pay-{order_id}-{n}")).unwrap());
                let cmd = ProcessPayment {
                    user_id: user(u),
                    order_id,
                    amount: Money::new(total, "amount")?,
                };
                app.pay(cmd, key.as_ref()).await?;
            }
        }
        Op::Cancel { user: u } => {
            let first = w
                .orders
                .lock()
                .await
                .get(&u)
                .and_then(|o| o.first().copied());
            if let Some((order_id, _)) = first {
                app.cancel_order(user(u), order_id).await?;
            }
        }
        Op::Issue { user: u, coupon } => {
            app.issue_coupon(w.coupons[coupon], user(u)).await?;
        }
        Op::Tick => {
            w.t.clock.advance(Duration::from_secs(120));
            app.expire_orders(1_000).await?;
        }
        Op::Platform { fail } => {
            w.t.backend.platform.set_mode(if fail {
                PlatformMode::Fail
            } else {
                PlatformMode::Accept
            });
        }
    }
    Ok(())
}

/// The settings of a workload run: short order lifetimes so that ticks expire orders.
pub fn workload_settings() -> Settings {
    Settings {
        order_ttl: Duration::from_secs(300),
        lock_wait: Duration::from_secs(60),
        ..Settings::default()
    }
}

/// Runs `tasks` concurrently on `t` and checks every invariant at the end.
pub async fn scenario(t: TestApp, tasks: Vec<Vec<Op>>) {
    let mut products = Vec::new();
    for (stock, price) in [(50, 10_000), (30, 3_000), (10, 55_000)] {
        products.push((t.product(price, stock, 3).await, stock as u32));
    }
    let coupons = vec![
        t.coupon(
            "CART",
            Discount::new("FIXED", 1_000, None).unwrap(),
            0,
            5,
            IssuanceMode::Flash,
        )
        .await,
        t.coupon(
            "CART",
            Discount::new("PERCENT", 10, Some(5_000)).unwrap(),
            5_000,
            10,
            IssuanceMode::Locked,
        )
        .await,
        t.coupon(
            "CART_ITEM",
            Discount::new("FIXED", 500, None).unwrap(),
            0,
            10,
            IssuanceMode::Locked,
        )
        .await,
    ];
    let world = Arc::new(World {
        t,
        products,
        coupons,
        orders: Mutex::default(),
    });
    // The consumer runs concurrently with the workload, as in the service.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = {
        let app = world.t.app.clone();
        tokio::spawn(async move { app.run_issuance_consumer(stopped).await })
    };
    let mut handles = Vec::new();
    for ops in tasks {
        let w = world.clone();
        handles.push(tokio::spawn(async move {
            for (n, op) in ops.into_iter().enumerate() {
                if let Err(e) = run(&w, op.clone(), n).await {
                    assert!(acceptable(&e), "{op:?} failed with {} ({e})", e.code());
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    stop.send(true).unwrap();
    consumer.await.unwrap();

    // Let every unpaid order run out, then check everything.
    let w = &world;
    w.t.backend.platform.set_mode(PlatformMode::Accept);
    w.t.drain().await;
    w.t.clock.advance(Duration::from_secs(600));
    w.t.app.expire_orders(100_000).await.unwrap();
    w.t.assert_invariants(&w.coupons[..1]).await;

    let mut uow = w.t.app.ports().store.begin().await.unwrap();
    let orders = uow.orders().all().await.unwrap();
    let mut sold: HashMap<ProductId, u32> = HashMap::new();
    for o in &orders {
        assert_ne!(
            o.status,
            OrderStatus::PendingPayment,
            "order {} never ended",
            o.id
        );
        if o.status == OrderStatus::Paid {
            for l in &o.lines {
                *sold.entry(l.product_id).or_default() += l.quantity.get();
            }
        }
        assert_eq!(o.total.won(), o.subtotal.won() - o.discount.won());
    }
    for (id, initial) in &w.products {
        let p = uow.products().get(*id).await.unwrap().unwrap();
        assert_eq!(
            p.stock + sold.get(id).copied().unwrap_or(0),
            *initial,
            "stock of product {id}"
        );
    }
    for (i, coupon) in w.coupons.iter().enumerate() {
        let quantity = [5, 10, 10][i];
        let holders = uow.coupons().holders(*coupon).await.unwrap();
        assert!(holders.len() <= quantity, "coupon {coupon} over-issued");
    }
    // A USED coupon belongs to a PAID order; no other order holds one.
    for u in 1..=6 {
        for uc in uow.coupons().user_coupons(user(u)).await.unwrap() {
            if uc.status == UserCouponStatus::Used {
                let o = orders
                    .iter()
                    .find(|o| Some(o.id) == uc.order_id)
                    .expect("its order");
                assert_eq!(
                    o.status,
                    OrderStatus::Paid,
                    "user coupon {} used by a {:?} order",
                    uc.id,
                    o.status
                );
            }
        }
    }
}

//! The `Store` contract for per-customer limits and product changes:
//! [`OrderRepository::units_held`] counts exactly the units of live orders (not CANCELLED,
//! EXPIRED or PAYMENT_FAILED) of one user and one product, a unit's own inserts included;
//! [`ProductRepository::update`] sets the fields given, keeps the others (stock included) and
//! commits or drops with its unit. Run by `store_contract!` over every store.
//!
//! [`OrderRepository::units_held`]: stockade_application::ports::store::OrderRepository::units_held
//! [`ProductRepository::update`]: stockade_application::ports::store::ProductRepository::update

use super::fixtures::{fresh_user, new_order, unit, NOW};
use std::sync::Arc;
use stockade_application::ports::store::{NewOrder, Store};
use stockade_domain::{Money, NewProduct, OrderStatus, Product, ProductChanges, ProductId, UserId};

async fn limited_product(store: &Arc<dyn Store>, name: &str, max: Option<i64>) -> Product {
    let mut uow = unit(store).await;
    let new = NewProduct::new(name, 1_000, 100, 10)
        .unwrap()
        .limit_per_customer(max)
        .unwrap();
    let p = uow.products().insert(new).await.unwrap();
    uow.commit().await.unwrap();
    p
}

async fn held(store: &Arc<dyn Store>, user: UserId, product: ProductId) -> u64 {
    let mut uow = unit(store).await;
    uow.orders().units_held(user, product).await.unwrap()
}

/// Places `new` and moves it to `status` (from PENDING_PAYMENT), committed.
async fn placed(store: &Arc<dyn Store>, new: NewOrder, status: OrderStatus) {
    let mut uow = unit(store).await;
    let order = uow.orders().insert(new).await.unwrap();
    if status != OrderStatus::PendingPayment {
        let moved = uow
            .orders()
            .update_status(order.id, OrderStatus::PendingPayment, status, NOW)
            .await
            .unwrap();
        assert!(moved);
    }
    uow.commit().await.unwrap();
}

/// Live orders count, released ones give their units back; other users, other products and
/// other lines of the same orders do not count.
pub async fn units_held_counts_live_orders_only(store: Arc<dyn Store>) {
    let p = limited_product(&store, "limited", Some(100)).await;
    let other = limited_product(&store, "other", None).await;
    let (user, someone) = (fresh_user(), fresh_user());
    assert_eq!(held(&store, user, p.id).await, 0, "no orders yet");

    placed(&store, new_order(user, &p, 2), OrderStatus::PendingPayment).await;
    placed(&store, new_order(user, &p, 1), OrderStatus::Paid).await;
    placed(&store, new_order(user, &p, 3), OrderStatus::Cancelled).await;
    placed(&store, new_order(user, &p, 4), OrderStatus::Expired).await;
    placed(&store, new_order(user, &p, 5), OrderStatus::PaymentFailed).await;
    placed(&store, new_order(someone, &p, 7), OrderStatus::Paid).await;
    placed(&store, new_order(user, &other, 9), OrderStatus::Paid).await;
    // An order of two lines: the product's line counts, the other's does not.
    let mut two = new_order(user, &other, 6);
    let line = new_order(user, &p, 8).pricing.lines.remove(0);
    two.pricing.lines.push(line);
    two.pricing.subtotal = Money::from_trusted(14_000);
    two.pricing.total = Money::from_trusted(14_000);
    placed(&store, two, OrderStatus::PendingPayment).await;

    assert_eq!(held(&store, user, p.id).await, 2 + 1 + 8);
    assert_eq!(held(&store, someone, p.id).await, 7);
    assert_eq!(held(&store, user, other.id).await, 9 + 6);
    assert_eq!(held(&store, someone, other.id).await, 0);

    // A unit reads its own inserts; dropped, they never counted.
    let mut uow = unit(&store).await;
    uow.orders().insert(new_order(user, &p, 4)).await.unwrap();
    assert_eq!(uow.orders().units_held(user, p.id).await.unwrap(), 15);
    drop(uow);
    assert_eq!(held(&store, user, p.id).await, 11);

    // Cancelling a live order gives its units back.
    let mut uow = unit(&store).await;
    let order = uow.orders().insert(new_order(user, &p, 5)).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(held(&store, user, p.id).await, 16);
    let mut uow = unit(&store).await;
    assert!(uow
        .orders()
        .update_status(
            order.id,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
            NOW
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();
    assert_eq!(held(&store, user, p.id).await, 11);
}

/// A product is created with its per-customer limit; an update sets exactly the fields given.
pub async fn product_update_sets_given_fields(store: Arc<dyn Store>) {
    let p = limited_product(&store, "editable", Some(3)).await;
    assert_eq!(p.max_per_customer, Some(3));
    let read = |id| {
        let store = store.clone();
        async move {
            let mut uow = unit(&store).await;
            uow.products().get(id).await.unwrap().expect("product")
        }
    };
    assert_eq!(read(p.id).await, p, "the limit is stored");
    let no_limit = limited_product(&store, "unlimited", None).await;
    assert_eq!(read(no_limit.id).await.max_per_customer, None);

    let update = |changes: ProductChanges| {
        let store = store.clone();
        async move {
            let mut uow = unit(&store).await;
            let after = uow.products().update(p.id, &changes).await.unwrap();
            uow.commit().await.unwrap();
            after.expect("the product exists")
        }
    };
    // The price alone: everything else kept, stock included.
    let after = update(ProductChanges::new(None, Some(2_500), None, None).unwrap()).await;
    let expected = Product {
        price: Money::from_trusted(2_500),
        ..p.clone()
    };
    assert_eq!(after, expected);
    assert_eq!(read(p.id).await, expected);
    // The name and per-order limit.
    let after = update(ProductChanges::new(Some(" renamed "), None, Some(4), None).unwrap()).await;
    assert_eq!(
        (
            after.name.as_str(),
            after.max_per_order,
            after.max_per_customer
        ),
        ("renamed", 4, Some(3))
    );
    // A new per-customer limit, then none.
    let after = update(ProductChanges::new(None, None, None, Some(Some(7))).unwrap()).await;
    assert_eq!(after.max_per_customer, Some(7));
    let after = update(ProductChanges::new(None, None, None, Some(None)).unwrap()).await;
    assert_eq!(after.max_per_customer, None);
    let now = read(p.id).await;
    assert_eq!(
        (
            now.name.as_str(),
            now.price.won(),
            now.stock,
            now.max_per_order,
            now.max_per_customer
        ),
        ("renamed", 2_500, 100, 4, None)
    );

    // A dropped unit keeps nothing of its update.
    let mut uow = unit(&store).await;
    let changes = ProductChanges::new(None, Some(9), None, Some(Some(1))).unwrap();
    let inside = uow
        .products()
        .update(p.id, &changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(uow.products().get(p.id).await.unwrap(), Some(inside));
    drop(uow);
    assert_eq!(read(p.id).await, now);

    // An unknown product.
    let mut uow = unit(&store).await;
    let ghost = ProductId::new(987_654_321_987).unwrap();
    assert_eq!(uow.products().update(ghost, &changes).await.unwrap(), None);
}

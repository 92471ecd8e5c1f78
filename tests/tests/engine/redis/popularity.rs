//! Popular products on Redis: day-bucketed sales and the shared ranking cache.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::popularity::{PopularProduct, PopularityCache, SalesCounter};
use stockade_domain::{ProductId, Timestamp};
use stockade_redis::{RedisPopularityCache, RedisSalesCounter, RedisTarget};
use stockade_tests::harness::TestApp;
use stockade_tests::redis::{namespace, url};

const DAY: i64 = 24 * 60 * 60 * 1000;

fn p(id: i64) -> ProductId {
    ProductId::new(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_are_summed_over_the_days_of_the_window() {
    sales_are_summed(url().into()).await;
}

/// Sales summed over a window of days (also run on a cluster, `cluster_contracts`).
pub async fn sales_are_summed(target: RedisTarget) {
    let c = RedisSalesCounter::connect(target, namespace())
        .await
        .unwrap();
    let today = Timestamp::from_millis(100 * DAY + 5_000);
    c.record(&[(p(1), 2), (p(2), 5)], today).await.unwrap();
    c.record(&[(p(1), 4)], Timestamp::from_millis(99 * DAY + 1))
        .await
        .unwrap();
    c.record(&[(p(3), 50)], Timestamp::from_millis(90 * DAY))
        .await
        .unwrap();
    // Two days: today and yesterday; product 3 sold ten days ago is out of the window.
    assert_eq!(
        c.top(2, 10, today).await.unwrap(),
        vec![(p(1), 6), (p(2), 5)]
    );
    assert_eq!(
        c.top(1, 10, today).await.unwrap(),
        vec![(p(2), 5), (p(1), 2)]
    );
    assert_eq!(c.top(30, 1, today).await.unwrap(), vec![(p(3), 50)]);
    // A paid order taken back no longer counts; a product back to zero disappears.
    c.unrecord(&[(p(2), 5)], today).await.unwrap();
    assert_eq!(c.top(2, 10, today).await.unwrap(), vec![(p(1), 6)]);
    // Ties rank by product id.
    c.record(&[(p(9), 6)], today).await.unwrap();
    assert_eq!(
        c.top(2, 10, today).await.unwrap(),
        vec![(p(1), 6), (p(9), 6)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ranking_cache_keeps_an_answer_for_its_ttl_only() {
    ranking_cache_keeps_its_ttl(url().into()).await;
}

/// A cached ranking lives for its TTL and `clear` drops it (also run on a cluster).
pub async fn ranking_cache_keeps_its_ttl(target: RedisTarget) {
    let c = RedisPopularityCache::connect(target, namespace())
        .await
        .unwrap();
    let items = vec![PopularProduct {
        product_id: 1,
        name: "a".into(),
        sold_quantity: 3,
        rank: 1,
    }];
    assert_eq!(c.get(3, 5).await.unwrap(), None);
    c.put(3, 5, items.clone(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(c.get(3, 5).await.unwrap(), Some(items.clone()));
    assert_eq!(
        c.get(3, 6).await.unwrap(),
        None,
        "another limit is another answer"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(c.get(3, 5).await.unwrap(), None);
    c.put(3, 5, items.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    c.put(7, 2, items, Duration::from_secs(60)).await.unwrap();
    c.clear().await.unwrap();
    assert_eq!(c.get(3, 5).await.unwrap(), None);
    assert_eq!(
        c.get(7, 2).await.unwrap(),
        None,
        "clear drops every ranking"
    );
}

/// Through the application: a paid order counts in the ranking, a cancelled one stops counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_orders_rank_and_cancelled_ones_stop_counting() {
    use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
    use stockade_application::usecases::process_payment::ProcessPayment;
    use stockade_application::Stockade;
    use stockade_domain::{LineRequest, Money, OrderId, Quantity};
    use stockade_tests::harness::user;
    let t = TestApp::new();
    let ns = namespace();
    let mut ports = t.backend.ports();
    ports.sales = Some(Arc::new(
        RedisSalesCounter::connect(&url(), ns.clone())
            .await
            .unwrap(),
    ));
    ports.popularity = Arc::new(RedisPopularityCache::connect(&url(), ns).await.unwrap());
    let app = Stockade::new(ports, t.app.settings().clone());
    let product = t.product(1_000, 10, 5).await;
    t.charge(1, 10_000).await;
    let order = app
        .create_order(
            CreateOrder {
                user_id: user(1),
                source: OrderSource::Lines(vec![LineRequest {
                    product_id: product,
                    quantity: Quantity::new(3, "quantity").unwrap(),
                    user_coupon_id: None,
                }]),
                user_coupon_ids: vec![],
            },
            None,
        )
        .await
        .unwrap()
        .value;
    let id = OrderId::new(order.order_id).unwrap();
    app.pay(
        ProcessPayment {
            user_id: user(1),
            order_id: id,
            amount: Money::new(order.total, "amount").unwrap(),
        },
        None,
    )
    .await
    .unwrap();
    let ranked = app.popular_products(3, 5).await.unwrap();
    assert_eq!(ranked.len(), 1);
    assert_eq!(
        (ranked[0].product_id, ranked[0].sold_quantity),
        (product.get(), 3)
    );
    app.cancel_order(user(1), id).await.unwrap();
    app.ports().popularity.clear().await.unwrap();
    assert!(app.popular_products(3, 5).await.unwrap().is_empty());
}

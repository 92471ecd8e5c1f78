//! Creating an order (from lines or from the cart), and cancelling one, when the lock times out
//! or the store fails at any operation: nothing is half-written.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::faults::*;
use super::support::*;
use std::sync::Arc;
use stockade_application::{Settings, Stockade};
use stockade_domain::{ErrorCode, OrderId};

#[tokio::test]
async fn lock_timeout_on_create_and_cancel_order_touches_no_store() {
    let w = World::new().await;
    let order = w.create_order().await;
    let before = Snapshot::of(&w).await;

    let mut ports = w.ports();
    ports.store = Arc::new(untouched_store());
    ports.locks = Arc::new(timing_out_locks(2));
    let app = Stockade::new(ports, Settings::default());
    let r = app.create_order(w.order_cmd(), None).await;
    assert_code(&r, ErrorCode::LockTimeout, "create_order");
    let r = app
        .cancel_order(w.user, OrderId::new(order.order_id).unwrap())
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "cancel_order");
    drop(app);
    assert_eq!(Snapshot::of(&w).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_order_store_failure_leaves_nothing_half_written() {
    // get x3, get_user_coupon/get x2, deduct x3, insert, set_state x2 (and the fence check).
    assert!(check_all_or_nothing(Op::CreateOrder).await >= 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_order_from_cart_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CreateOrderFromCart).await >= 17);
}

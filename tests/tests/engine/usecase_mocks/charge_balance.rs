//! Charging a balance (and paying) when the lock times out: no store is opened.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::*;
use std::sync::Arc;
use stockade_application::ports::lock::{LockError, MockLockManager};
use stockade_application::usecases::charge_balance::ChargeBalance;
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::{Settings, Stockade};
use stockade_domain::{ChargeAmount, ErrorCode, OrderId};

#[tokio::test]
async fn lock_timeout_on_charge_and_pay_touches_no_store() {
    let w = World::new().await;
    let mut ports = w.ports();
    ports.store = Arc::new(untouched_store());
    let mut locks = MockLockManager::new();
    locks
        .expect_acquire()
        .times(1)
        .withf(|keys, _| keys.len() == 1 && keys[0].as_str() == "balance:user:7")
        .returning(|_, _| Err(LockError::Timeout));
    locks
        .expect_acquire()
        .times(1)
        .withf(|keys, _| {
            keys.iter().any(|k| k.as_str() == "payment:order:999")
                && keys.iter().any(|k| k.as_str() == "balance:user:7")
        })
        .returning(|_, _| Err(LockError::Timeout));
    ports.locks = Arc::new(locks);
    let app = Stockade::new(ports, Settings::default());

    let r = app
        .charge(
            ChargeBalance {
                user_id: w.user,
                amount: ChargeAmount::new(5_000).unwrap(),
            },
            None,
        )
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "charge");
    let r = app
        .pay(
            ProcessPayment {
                user_id: w.user,
                order_id: OrderId::new(999).unwrap(),
                amount: money(1_000),
            },
            None,
        )
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "pay");
}

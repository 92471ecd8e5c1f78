//! Store failures injected at every operation of a use case: each run either succeeds with the
//! effect of a clean run or leaves the store exactly as before, and a retry then has the effect
//! of a clean run.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::*;
use std::sync::atomic::Ordering;
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::update_cart::CartChange;
use stockade_application::views::OrderView;
use stockade_application::AppError;
use stockade_domain::{ErrorCode, OrderId};
use stockade_memory::StoreFaults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    CreateOrder,
    CreateOrderFromCart,
    Pay,
    CancelUnpaid,
    CancelPaid,
}

/// A world ready for `op`, and the order it acts on (if any).
pub(crate) async fn prepare(op: Op) -> (World, Option<OrderView>) {
    let w = World::new().await;
    let order = match op {
        Op::CreateOrder => None,
        Op::CreateOrderFromCart => {
            for (i, p) in w.products.iter().enumerate() {
                w.app()
                    .update_cart(w.user, CartChange::Add(*p, qty(i as i64 + 1)))
                    .await
                    .unwrap();
            }
            None
        }
        Op::Pay | Op::CancelUnpaid => Some(w.create_order().await),
        Op::CancelPaid => {
            let order = w.create_order().await;
            w.pay_with(w.app(), &order).await.unwrap();
            Some(order)
        }
    };
    (w, order)
}

pub(crate) async fn run(op: Op, w: &World, order: Option<&OrderView>) -> Result<(), AppError> {
    match op {
        Op::CreateOrder => w.app().create_order(w.order_cmd(), None).await.map(drop),
        Op::CreateOrderFromCart => w
            .app()
            .create_order(
                CreateOrder {
                    user_id: w.user,
                    source: OrderSource::FromCart,
                    user_coupon_ids: vec![w.cart_uc, w.item_uc],
                },
                None,
            )
            .await
            .map(drop),
        Op::Pay => w.pay_with(w.app(), order.unwrap()).await.map(drop),
        Op::CancelUnpaid | Op::CancelPaid => w
            .app()
            .cancel_order(w.user, OrderId::new(order.unwrap().order_id).unwrap())
            .await
            .map(drop),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    AfterOps(i64),
    Commit,
}

impl Fault {
    pub(crate) fn inject(self, faults: &StoreFaults) {
        match self {
            Fault::AfterOps(n) => faults.fail_ops_after.store(n, Ordering::SeqCst),
            Fault::Commit => faults.fail_commit.store(true, Ordering::SeqCst),
        }
    }
}

/// What one faulty run ended as.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Succeeded,
    RolledBack,
    /// Failed after the data platform was told (only the payment saga gets there).
    FailedAfterPlatform,
}

/// Runs `op` once with `fault` on a fresh world and checks: it either succeeds with the effect
/// of a clean run, or answers BACKEND_UNAVAILABLE with the store exactly as before, after which
/// a retry succeeds with the effect of a clean run. Failures after the platform was told are
/// checked by the retry test below.
pub(crate) async fn run_with_fault(op: Op, fault: Fault, expected: &Snapshot) -> Ended {
    let (w, order) = prepare(op).await;
    let before = Snapshot::of(&w).await;
    fault.inject(w.faults());
    let r = run(op, &w, order.as_ref()).await;
    w.faults().clear();
    let what = format!("{op:?} with {fault:?}");
    let ended = match r {
        Ok(()) => Ended::Succeeded,
        Err(_) if !w.t.backend.platform.received().is_empty() && op == Op::Pay => {
            assert_code(&r, ErrorCode::BackendUnavailable, &what);
            let report = w.app().audit().await.unwrap();
            assert!(report.violations.is_empty(), "{what}: {report:#?}");
            return Ended::FailedAfterPlatform;
        }
        Err(_) => {
            assert_code(&r, ErrorCode::BackendUnavailable, &what);
            assert_eq!(Snapshot::of(&w).await, before, "{what}: half-written");
            w.assert_audit_clean().await;
            run(op, &w, order.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{what}: retry after the fault failed: {e:?}"));
            Ended::RolledBack
        }
    };
    assert_eq!(
        &Snapshot::of(&w).await.normalized(),
        expected,
        "{what}: the effect differs from a clean run"
    );
    w.assert_audit_clean().await;
    ended
}

/// Every failure point of `op`, then a failing commit. Returns how many runs rolled back.
pub(crate) async fn check_all_or_nothing(op: Op) -> usize {
    let (clean, order) = prepare(op).await;
    let before = Snapshot::of(&clean).await;
    run(op, &clean, order.as_ref()).await.unwrap();
    let expected = Snapshot::of(&clean).await.normalized();
    assert_ne!(before.normalized(), expected, "{op:?} changed nothing");

    assert_eq!(
        run_with_fault(op, Fault::Commit, &expected).await,
        Ended::RolledBack,
        "{op:?}: a failing commit must roll back"
    );
    let mut rolled_back = 1;
    for n in 0.. {
        assert!(n < 200, "{op:?} never succeeded");
        match run_with_fault(op, Fault::AfterOps(n), &expected).await {
            Ended::Succeeded => break,
            Ended::RolledBack => rolled_back += 1,
            Ended::FailedAfterPlatform => {}
        }
    }
    rolled_back
}

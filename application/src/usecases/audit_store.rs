//! AuditStore: checks the invariants of docs/design.md that the store alone can show.
//!
//! Used by the test suites after every concurrency run and by operators. It reads everything,
//! so it is for tests and maintenance, not for a hot path.

use crate::engine::Context;
use crate::error::AppError;
use std::collections::HashMap;
use stockade_domain::{OrderStatus, PaymentStatus, UserCouponStatus};

/// What an audit found. `violations` is empty when every invariant holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub wallets: usize,
    pub total_balance: i64,
    pub total_charges: i64,
    pub total_uses: i64,
    pub total_refunds: i64,
    pub orders: usize,
    pub violations: Vec<String>,
}

/// Checks: every balance equals its ledger sum and is non-negative, the sum of balances is
/// charges − uses + refunds, every user coupon an order holds is USED by that order (and
/// released once the order ends), no user coupon is held by two live orders, a PAID order
/// has exactly one approved payment, and an ended order has no payment still holding funds.
/// Stock conservation (sold + remaining == initial) needs the initial levels, so callers
/// that know them check it themselves (see the workload properties).
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context) -> Result<AuditReport, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let mut report = AuditReport::default();
    for w in uow.wallets().audit().await? {
        report.wallets += 1;
        report.total_balance += w.balance;
        report.total_charges += w.charges;
        report.total_uses += w.uses;
        report.total_refunds += w.refunds;
        if w.balance != w.ledger_sum {
            report.violations.push(format!(
                "wallet {}: balance {} != ledger sum {}",
                w.user_id, w.balance, w.ledger_sum
            ));
        }
        if w.balance < 0 {
            report.violations.push(format!(
                "wallet {}: negative balance {}",
                w.user_id, w.balance
            ));
        }
    }
    if report.total_balance != report.total_charges - report.total_uses + report.total_refunds {
        report.violations.push(format!(
            "sum of balances {} != charges {} - uses {} + refunds {}",
            report.total_balance, report.total_charges, report.total_uses, report.total_refunds
        ));
    }
    let orders = uow.orders().all().await?;
    report.orders = orders.len();
    let mut coupon_orders = HashMap::new();
    for order in &orders {
        for id in order.user_coupon_ids() {
            if order.status.holds_reservations() {
                if let Some(prev) = coupon_orders.insert(id, order.id) {
                    report.violations.push(format!(
                        "user coupon {id} is held by orders {prev} and {}",
                        order.id
                    ));
                }
            }
            let uc = uow.coupons().get_user_coupon(id).await?;
            match uc {
                Some(uc) if order.status.holds_reservations() => {
                    if uc.status != UserCouponStatus::Used || uc.order_id != Some(order.id) {
                        report.violations.push(format!(
                            "order {} holds user coupon {id} but it is {}",
                            order.id,
                            uc.status.as_str()
                        ));
                    }
                }
                Some(uc) => {
                    if uc.status == UserCouponStatus::Used && uc.order_id == Some(order.id) {
                        report.violations.push(format!(
                            "{} order {} did not release user coupon {id}",
                            order.status.as_str(),
                            order.id
                        ));
                    }
                }
                None => report.violations.push(format!(
                    "order {} names a missing user coupon {id}",
                    order.id
                )),
            }
        }
        let payments = uow.payments().for_order(order.id).await?;
        let live = payments.iter().filter(|p| p.status.holds_funds()).count();
        let approved = payments
            .iter()
            .filter(|p| p.status == PaymentStatus::Approved)
            .count();
        match order.status {
            OrderStatus::Paid if approved != 1 || live != 1 => report.violations.push(format!(
                "paid order {} has {approved} approved payments",
                order.id
            )),
            OrderStatus::Cancelled | OrderStatus::Expired | OrderStatus::PaymentFailed
                if live != 0 =>
            {
                report.violations.push(format!(
                    "{} order {} still holds a payment",
                    order.status.as_str(),
                    order.id
                ))
            }
            _ => {}
        }
    }
    Ok(report)
}

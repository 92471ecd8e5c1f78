//! ReconcileCoupon: make a FLASH coupon's gate and store agree.
//!
//! For each user the gate holds but the store does not, the reservation is persisted now (the
//! consumer's persistence is idempotent, so racing it is harmless); only if the store refuses
//! (sold out, coupon gone) is it recorded as failed (the refusal's API code as the reason) and
//! rolled back, so the user may try again. For each user the store
//! holds but the gate lost (its backend restarted without persistence), the reservation is
//! restored in the gate. What reconciliation cannot recover: a reservation whose gate entry
//! was lost before the store ever saw it, and whose queue message was lost too — the user
//! simply holds nothing and may ask again.

use crate::engine::gate::init_gate;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::store::StoreError;
use crate::views::ReconcileReport;
use std::collections::HashSet;
use stockade_domain::{CouponId, DomainError, IssuanceMode, UserId};

/// Makes the gate and the store of one FLASH coupon agree (a LOCKED coupon has no gate:
/// nothing to do).
///
/// # Errors
/// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(coupon = %coupon_id))]
pub(crate) async fn execute(
    ctx: &Context,
    coupon_id: CouponId,
) -> Result<ReconcileReport, AppError> {
    let coupon = ctx.policy(coupon_id).await?;
    let mut report = ReconcileReport {
        checked: 0,
        repaired: 0,
        rolled_back: 0,
    };
    if coupon.mode != IssuanceMode::Flash {
        return Ok(report);
    }
    if ctx.ports.gate.stats(coupon_id).await?.is_none() {
        init_gate(ctx, &coupon).await?;
    }
    let gate: HashSet<UserId> = ctx
        .ports
        .gate
        .holders(coupon_id)
        .await?
        .into_iter()
        .collect();
    let stored: HashSet<UserId> = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.coupons()
            .holders(coupon_id)
            .await?
            .into_iter()
            .collect()
    };
    report.checked = u32::try_from(gate.union(&stored).count()).unwrap_or(u32::MAX);
    for user in gate.difference(&stored) {
        // Persist it (harmless if the consumer does too); roll it back only if the store
        // refuses. A failure recorded earlier does not decide: the user may have reserved
        // again since.
        let now = ctx.now();
        let mut uow = ctx.ports.store.begin().await?;
        match uow.coupons().issue(&coupon, *user, now).await {
            Ok(_) => {
                uow.commit().await?;
                report.repaired += 1;
            }
            Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => {}
            Err(StoreError::Rejected(e)) => {
                drop(uow);
                let mut uow = ctx.ports.store.begin().await?;
                uow.coupons()
                    .record_failure(coupon_id, *user, e.code().as_str(), now)
                    .await?;
                uow.commit().await?;
                if ctx.ports.gate.rollback(coupon_id, *user).await? {
                    report.rolled_back += 1;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    for user in stored.difference(&gate) {
        if ctx.ports.gate.restore(coupon_id, *user).await? {
            report.repaired += 1;
        }
    }
    Ok(report)
}

//! IssueCoupon: one coupon to one user, LOCKED or FLASH, with an optional idempotency key.

use crate::engine::coupon_turn;
use crate::engine::gate::init_gate;
use crate::engine::keyed::{run_keyed, Keyed};
use crate::engine::outcome::{Replayable, Settled};
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::gate::GateOutcome;
use crate::ports::queue::IssuanceRequest;
use crate::views::IssueView;
use std::sync::Arc;
use stockade_domain::{Coupon, CouponId, DomainError, IdempotencyKey, IssuanceMode, UserId};

/// Issues one coupon to `user`.
///
/// - LOCKED: lock `coupon:{id}` → check window, holder and quantity → persist → release, with
///   the requests for one coupon combined into turns (`engine::coupon_turn`).
/// - FLASH: one atomic gate reserve → enqueue; the issuance consumer persists it. If the
///   hand-off fails, the reservation is rolled back at once and the answer is
///   `BACKEND_UNAVAILABLE`, so nothing is lost silently.
///
/// # Errors
/// `COUPON_NOT_FOUND`, `INVALID_COUPON` (outside its window), `COUPON_SOLD_OUT`,
/// `COUPON_ALREADY_ISSUED`, `LOCK_TIMEOUT`, `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(coupon = %coupon_id, user = %user))]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    coupon_id: CouponId,
    user: UserId,
) -> Result<IssueView, AppError> {
    let coupon = ctx.policy(coupon_id).await?;
    match coupon.mode {
        IssuanceMode::Locked => coupon_turn::submit(ctx, &coupon, user).await,
        IssuanceMode::Flash => issue_flash(ctx, &coupon, user).await,
    }
}

/// [`execute`] with an optional idempotency key: a retry with the same key gets the first
/// answer again. Runs in the caller's task.
///
/// # Errors
/// As [`execute`], plus the idempotency outcomes.
pub(crate) async fn execute_keyed(
    ctx: &Arc<Context>,
    coupon_id: CouponId,
    user: UserId,
    key: Option<&IdempotencyKey>,
) -> Result<Replayable<IssueView>, AppError> {
    let keyed = Keyed {
        user,
        key: key.cloned(),
        op: "issue-coupon",
        canonical: format!("coupon={coupon_id}"),
        detach: false,
    };
    run_keyed(ctx, keyed, move |ctx, _ticket| async move {
        Settled::unrecorded(execute(&ctx, coupon_id, user).await)
    })
    .await
}

/// A FLASH issuance: reserve in the gate (rebuilding a lost gate first), then hand the
/// reservation to the queue.
async fn issue_flash(ctx: &Context, coupon: &Coupon, user: UserId) -> Result<IssueView, AppError> {
    let now = ctx.now();
    let mut outcome = ctx.ports.gate.reserve(coupon.id, user, now).await?;
    if outcome == GateOutcome::NotInitialised {
        // A gate lost with its backend (or never created on this one): rebuild it from the
        // store (its policy and everyone who already holds the coupon) before it serves.
        init_gate(ctx, coupon).await?;
        outcome = ctx.ports.gate.reserve(coupon.id, user, now).await?;
    }
    match outcome {
        GateOutcome::Reserved => {}
        GateOutcome::SoldOut => return Err(DomainError::CouponSoldOut.into()),
        GateOutcome::AlreadyIssued => return Err(DomainError::CouponAlreadyIssued.into()),
        GateOutcome::Expired => {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} is not valid at this time",
                coupon.id
            ))
            .into())
        }
        GateOutcome::NotInitialised => {
            return Err(AppError::Internal(format!(
                "gate of coupon {} could not be created",
                coupon.id
            )))
        }
    }
    let request = IssuanceRequest {
        coupon_id: coupon.id,
        user_id: user,
        reserved_at: now,
    };
    if let Err(e) = ctx.ports.queue.publish(request).await {
        tracing::warn!(error = %e, "issuance hand-off failed; rolling the reservation back");
        if let Err(rb) = ctx.ports.gate.rollback(coupon.id, user).await {
            tracing::error!(error = %rb, "rollback failed; reconciliation will repair it");
        }
        return Err(AppError::Unavailable(e));
    }
    Ok(IssueView {
        coupon_id: coupon.id.get(),
        user_id: user.get(),
        user_coupon_id: None,
        status: "RESERVED".to_owned(),
    })
}

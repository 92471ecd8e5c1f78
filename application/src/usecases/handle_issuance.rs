//! HandleIssuance: persist one FLASH reservation delivered by the queue.
//!
//! Persistence is idempotent (`COUPON_ALREADY_ISSUED` counts as success), so an at-least-once
//! queue yields exactly-once coupons. A delivery that fails for a passing reason (the store is
//! unavailable) is retried with exponential backoff; past `issuance_max_attempts`, or at once
//! for a permanent refusal, it is dead-lettered, recorded as a failure and rolled back in the
//! gate, so that the user may try again and reconciliation sees it. The failure's reason is the
//! API code of what went wrong (`COUPON_SOLD_OUT`, `BACKEND_UNAVAILABLE`…): admins read it
//! (`GET /api/v1/admin/coupons/{id}/failures`), so a backend's own message only goes to the log.

use crate::engine::Context;
use crate::error::AppError;
use crate::ports::queue::Delivery;
use crate::ports::store::StoreError;
use stockade_domain::{DomainError, ErrorCode};

/// What one delivery ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceOutcome {
    Persisted,
    Retried,
    DeadLettered,
    /// Given up by this consumer too late: another one had taken the request over.
    TakenOver,
}

/// Handles one delivery; see the module docs.
///
/// # Errors
/// `BACKEND_UNAVAILABLE` when the queue cannot be told the outcome (it will redeliver).
pub(crate) async fn execute(
    ctx: &Context,
    delivery: &Delivery,
) -> Result<IssuanceOutcome, AppError> {
    let req = delivery.request;
    let persisted = persist_issuance(ctx, delivery).await;
    match persisted {
        Ok(()) => {
            ctx.ports.queue.ack(delivery).await?;
            Ok(IssuanceOutcome::Persisted)
        }
        Err(Permanence::Passing(failure))
            if delivery.attempt < ctx.settings.issuance_max_attempts =>
        {
            let shift = delivery.attempt.saturating_sub(1).min(16);
            let delay = ctx.settings.issuance_backoff.saturating_mul(1 << shift);
            tracing::debug!(reason = %failure.detail, attempt = delivery.attempt, ?delay, "issuance retried");
            ctx.ports.queue.retry(delivery, delay).await?;
            Ok(IssuanceOutcome::Retried)
        }
        Err(Permanence::Passing(failure) | Permanence::Permanent(failure)) => {
            let reason = failure.code.as_str();
            if !ctx.ports.queue.dead_letter(delivery, reason).await? {
                // Another consumer took it over (this one was too slow); its outcome decides,
                // so nothing is recorded or given back here.
                tracing::info!(coupon = %req.coupon_id, user = %req.user_id, "issuance taken over by another consumer");
                return Ok(IssuanceOutcome::TakenOver);
            }
            tracing::warn!(%reason, detail = %failure.detail, coupon = %req.coupon_id, user = %req.user_id, "issuance dead-lettered");
            let recorded = async {
                let mut uow = ctx.ports.store.begin().await?;
                let now = ctx.now();
                uow.coupons()
                    .record_failure(req.coupon_id, req.user_id, reason, now)
                    .await?;
                uow.commit().await
            }
            .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "failure not recorded; the dead letter keeps it");
            }
            if let Err(e) = ctx.ports.gate.rollback(req.coupon_id, req.user_id).await {
                tracing::error!(error = %e, "gate rollback failed; reconciliation will repair it");
            }
            Ok(IssuanceOutcome::DeadLettered)
        }
    }
}

async fn persist_issuance(ctx: &Context, delivery: &Delivery) -> Result<(), Permanence> {
    let req = delivery.request;
    let coupon = match ctx.policy(req.coupon_id).await {
        Ok(c) => c,
        Err(e @ AppError::Rejected(_)) => return Err(Permanence::Permanent(Failure::of(&e))),
        Err(e) => return Err(Permanence::Passing(Failure::of(&e))),
    };
    let passing = |e: StoreError| Permanence::Passing(Failure::of(&AppError::from(e)));
    let mut uow = ctx.ports.store.begin().await.map_err(passing)?;
    match uow
        .coupons()
        .issue(&coupon, req.user_id, req.reserved_at)
        .await
    {
        Ok(_) => uow.commit().await.map_err(passing),
        Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => Ok(()),
        Err(StoreError::Rejected(e)) => Err(Permanence::Permanent(Failure::of(&e.into()))),
        Err(e) => Err(passing(e)),
    }
}

/// Why a delivery failed: the API code (what is recorded and shown) and the whole message
/// (for the log only).
struct Failure {
    code: ErrorCode,
    detail: String,
}

impl Failure {
    fn of(e: &AppError) -> Self {
        Failure {
            code: e.code(),
            detail: e.to_string(),
        }
    }
}

enum Permanence {
    Passing(Failure),
    Permanent(Failure),
}

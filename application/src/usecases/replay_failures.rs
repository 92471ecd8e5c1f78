//! ReplayFailures (admin): retry each recorded issuance failure of a coupon once.
//!
//! # Exactly once per user
//! A replay runs detached from the caller, under the lock `coupon-replay:{id}` (through the
//! `LockManager`, so across every instance): two replays of one coupon take turns, and the
//! second finds only what the first left failing. Every unit a replay writes to the store
//! checks the lock's fence, so a replay whose lease ran out (another took the lock) cannot
//! write there after the newer one (its gate calls are not fenced; see below). The failures are read in keyset pages by user id; a user issued leaves the list (the
//! store's `issue` clears the failure), a user failing again stays with `attempts` + 1 and is
//! not met again by this replay.
//!
//! # One user, FLASH
//! 1. Gate `reserve`: `Reserved` (this replay took a place) or `AlreadyIssued` (the user holds
//!    one already, e.g. reserved again since) go on; `SoldOut` and `Expired` record the
//!    failure again (`COUPON_SOLD_OUT`, `INVALID_COUPON`): still failing.
//! 2. Store `issue` in a unit of work: issued, or `COUPON_ALREADY_ISSUED` (the user holds it;
//!    the failure row is cleared) both count as issued. A refusal (`COUPON_SOLD_OUT`) gives back
//!    the place this replay took, and records the failure again: still failing. Any other
//!    failure (the backend, a lost fence) ends the replay with that error and keeps the place:
//!    the write may have happened anyway (a commit whose answer was lost; a newer replay that
//!    persisted the user), and a place given back for a stored coupon would let the gate hand
//!    out one more than the store can hold. What was replayed before stays done, the rest
//!    stays recorded.
//!
//! The gate and the store then agree: every user issued holds a gate place and a stored
//! coupon. A crash between the reserve and the store, or a failure kept as above, leaves a gate
//! holder the store may lack, which reconciliation persists (or, if the store refuses, records
//! and gives back). Reconciliation runs under the coupon's own lock, not this one: a user both
//! refuse at the same moment is recorded twice (`attempts` + 2); the gate's rollback is
//! idempotent, so no place is given back twice.
//!
//! # One user, LOCKED
//! A LOCKED coupon has no gate and normally no failures; any recorded are replayed by the
//! store's conditional `issue` alone (it never passes the quantity nor issues twice), after
//! the coupon's validity window is checked (`INVALID_COUPON` otherwise).

use crate::engine::gate::init_gate;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::gate::GateOutcome;
use crate::ports::lock::{keys, Fence, LockGuard, LockOptions};
use crate::ports::store::StoreError;
use crate::views::ReplayReport;
use std::sync::Arc;
use stockade_domain::{Coupon, CouponId, DomainError, ErrorCode, IssuanceMode, UserId};

/// How many failures one read of the store brings.
const PAGE: usize = 500;

/// Replays every failure recorded for `coupon_id` once; see the module docs.
///
/// # Errors
/// `COUPON_NOT_FOUND`; `LOCK_TIMEOUT` (another replay held the lock past the wait, or this
/// one lost it); `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(coupon = %coupon_id))]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    coupon_id: CouponId,
) -> Result<ReplayReport, AppError> {
    let coupon = ctx.policy(coupon_id).await?;
    ctx.detached(move |ctx| async move {
        let options = LockOptions::new(ctx.settings.lock_wait, ctx.settings.lock_lease);
        let guard = ctx
            .ports
            .locks
            .acquire(&[keys::coupon_replay(coupon.id)], options)
            .await?;
        let answer = replay(&ctx, &coupon, &guard).await;
        if let Err(e) = guard.release().await {
            tracing::debug!(error = %e, "replay lock not released; its lease bounds it");
        }
        answer
    })
    .await
}

async fn replay(
    ctx: &Context,
    coupon: &Coupon,
    guard: &LockGuard,
) -> Result<ReplayReport, AppError> {
    let mut report = ReplayReport {
        replayed: 0,
        issued: 0,
        still_failing: 0,
    };
    let mut after = None;
    loop {
        let page = {
            let mut uow = ctx.ports.store.begin().await?;
            uow.coupons()
                .failure_records(coupon.id, after, PAGE)
                .await?
        };
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.user_id);
        for failure in &page {
            guard.check()?;
            let issued = match coupon.mode {
                IssuanceMode::Flash => replay_flash(ctx, coupon, failure.user_id, guard).await?,
                IssuanceMode::Locked => replay_locked(ctx, coupon, failure.user_id, guard).await?,
            };
            report.replayed += 1;
            if issued {
                report.issued += 1;
            } else {
                report.still_failing += 1;
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    tracing::info!(
        replayed = report.replayed,
        issued = report.issued,
        still_failing = report.still_failing,
        "issuance failures replayed"
    );
    Ok(report)
}

/// One FLASH failure: gate, then store. True when the user now holds the coupon.
async fn replay_flash(
    ctx: &Context,
    coupon: &Coupon,
    user: UserId,
    guard: &LockGuard,
) -> Result<bool, AppError> {
    let now = ctx.now();
    let mut outcome = ctx.ports.gate.reserve(coupon.id, user, now).await?;
    if outcome == GateOutcome::NotInitialised {
        init_gate(ctx, coupon).await?;
        outcome = ctx.ports.gate.reserve(coupon.id, user, now).await?;
    }
    let took_place = match outcome {
        GateOutcome::Reserved => true,
        GateOutcome::AlreadyIssued => false,
        GateOutcome::SoldOut => {
            return fail_again(ctx, coupon.id, user, ErrorCode::CouponSoldOut, guard).await
        }
        GateOutcome::Expired => {
            return fail_again(ctx, coupon.id, user, ErrorCode::InvalidCoupon, guard).await
        }
        GateOutcome::NotInitialised => {
            return Err(AppError::Internal(format!(
                "gate of coupon {} could not be created",
                coupon.id
            )))
        }
    };
    match persist(ctx, coupon, user, guard.fences()).await {
        Ok(()) => Ok(true),
        Err(AppError::Rejected(refusal)) => {
            let failed = fail_again(ctx, coupon.id, user, refusal.code(), guard).await;
            if took_place {
                give_back(ctx, coupon.id, user).await;
            }
            failed
        }
        // The store did not say no: the write may have happened all the same (a commit whose
        // answer was lost, or a newer replay that persisted the user while this one's lease
        // ran out). Giving the place back could then leave the store holding a coupon the gate
        // counts as free, one more than it can hold; kept, the place is a gate holder the
        // store may lack, which reconciliation persists or rolls back.
        Err(e) => Err(e),
    }
}

/// One LOCKED failure: the store's conditional issue alone.
async fn replay_locked(
    ctx: &Context,
    coupon: &Coupon,
    user: UserId,
    guard: &LockGuard,
) -> Result<bool, AppError> {
    if let Err(refusal) = coupon.check_issuable(ctx.now()) {
        return fail_again(ctx, coupon.id, user, refusal.code(), guard).await;
    }
    match persist(ctx, coupon, user, guard.fences()).await {
        Ok(()) => Ok(true),
        Err(AppError::Rejected(refusal)) => {
            fail_again(ctx, coupon.id, user, refusal.code(), guard).await
        }
        Err(e) => Err(e),
    }
}

/// Issues the coupon to `user` in one unit (clearing the failure), fenced by the replay lock.
/// A user holding it already counts as issued: the failure row is cleared then too.
async fn persist(
    ctx: &Context,
    coupon: &Coupon,
    user: UserId,
    fences: &[Fence],
) -> Result<(), AppError> {
    ctx.retry_contention(|| async {
        let mut uow = ctx.ports.store.begin().await?;
        uow.check_fences(fences).await?;
        match uow.coupons().issue(coupon, user, ctx.now()).await {
            Ok(_) => {}
            Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => {
                uow.coupons().clear_failure(coupon.id, user).await?;
            }
            // Dropping the unit takes back whatever the refused issue wrote.
            Err(e) => return Err(e.into()),
        }
        uow.commit().await?;
        Ok(())
    })
    .await
}

/// Records the failure again (`attempts` + 1) with a stable reason. Always "not issued".
async fn fail_again(
    ctx: &Context,
    coupon: CouponId,
    user: UserId,
    reason: ErrorCode,
    guard: &LockGuard,
) -> Result<bool, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    uow.check_fences(guard.fences()).await?;
    uow.coupons()
        .record_failure(coupon, user, reason.as_str(), ctx.now())
        .await?;
    uow.commit().await?;
    Ok(false)
}

/// Gives back the gate place this replay took; a failure is left to reconciliation (it sees a
/// gate holder the store lacks).
async fn give_back(ctx: &Context, coupon: CouponId, user: UserId) {
    if let Err(e) = ctx.ports.gate.rollback(coupon, user).await {
        tracing::error!(error = %e, "gate rollback failed; reconciliation will repair it");
    }
}

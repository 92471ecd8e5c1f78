//! ProcessPayment: pay an order from the wallet, as an orchestrated saga.
//!
//! 1. Under the order's and the wallet's locks, in one unit of work: check the order is payable,
//!    record a PENDING payment and debit the wallet (USE). Commit.
//! 2. Tell the data platform, bounded by `platform_timeout`.
//! 3. Success: payment APPROVED, order PAID. Commit.
//!    Failure: compensate in reverse order in one unit of work (refund, release stock, restore
//!    coupons, record the failure: payment FAILED, order PAYMENT_FAILED) and answer
//!    `PAYMENT_FAILED`.
//!
//! The locks are held from step 1 to step 3, so no cancellation or expiry of the same order can
//! interleave. Each compensation is idempotent (see `engine::release::release_order`).
//!
//! A saga interrupted after step 1 (the store failed in step 3) leaves a PENDING payment. The
//! next `pay` of that order, or the expiry worker, finds it under the same locks and finishes
//! the saga from step 2 instead of refusing or refunding blindly (`engine::saga`).

use crate::engine::keyed::{run_keyed, Keyed};
use crate::engine::outcome::{Answered, Replayable};
use crate::engine::release::load_owned_with_payments;
use crate::engine::saga::finish_saga;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::idempotency::Ticket;
use crate::ports::lock::keys;
use crate::ports::store::LedgerChange;
use crate::views::PaymentReceipt;
use std::sync::Arc;
use stockade_domain::{
    DomainError, IdempotencyKey, LedgerKind, Money, OrderId, OrderStatus, PaymentStatus, UserId,
};

/// Pay an order from the wallet.
#[derive(Debug, Clone)]
pub struct ProcessPayment {
    pub user_id: UserId,
    pub order_id: OrderId,
    pub amount: Money,
}

/// Pays an order. See the module docs for the saga. Runs detached from the caller: a caller
/// that goes away mid-saga does not cut the saga (or its locks) off.
///
/// # Errors
/// `ORDER_NOT_FOUND`, `INVALID_ORDER_STATE`, `AMOUNT_MISMATCH`, `INSUFFICIENT_BALANCE` (the
/// order stays PENDING_PAYMENT), `PAYMENT_FAILED` (compensated), `LOCK_TIMEOUT`,
/// `BACKEND_UNAVAILABLE`, and the idempotency outcomes.
#[tracing::instrument(skip_all, fields(user = %cmd.user_id, order = %cmd.order_id))]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    cmd: ProcessPayment,
    key: Option<&IdempotencyKey>,
) -> Result<Replayable<PaymentReceipt>, AppError> {
    // The key also names the payment, so that a second execution of the same keyed request
    // (its idempotency record lost while the saga was finished without it) finds the payment
    // and answers with it.
    let reference = key.map(|k| format!("pay:{}:{k}", cmd.user_id));
    let keyed = Keyed {
        user: cmd.user_id,
        key: key.cloned(),
        op: "pay",
        canonical: format!("order={};amount={}", cmd.order_id, cmd.amount.won()),
        detach: true,
    };
    run_keyed(ctx, keyed, move |ctx, ticket| async move {
        ctx.retry_contention(|| pay_once(&ctx, cmd.clone(), reference.as_deref(), ticket.as_ref()))
            .await
            .into()
    })
    .await
}

/// Step 1 under the order's and the wallet's locks, then steps 2 and 3 (`engine::saga`).
async fn pay_once(
    ctx: &Context,
    cmd: ProcessPayment,
    reference: Option<&str>,
    ticket: Option<&Ticket>,
) -> Result<Answered<PaymentReceipt>, AppError> {
    let mut guard = ctx
        .enter(&[keys::payment(cmd.order_id), keys::balance(cmd.user_id)])
        .await?;

    // Step 1: debit.
    let uow = guard.begin().await?;
    let now = ctx.now();
    let (order, payments) = load_owned_with_payments(&mut *uow, cmd.user_id, cmd.order_id).await?;
    let made_by_this_request = payments.iter().find(|p| {
        p.status != PaymentStatus::Pending
            && reference.is_some()
            && p.reference.as_deref() == reference
            && p.amount == cmd.amount
    });
    if let Some(made) = made_by_this_request {
        // This keyed request ran before and its saga was settled without it (recovery, or
        // an expiry): answer as that run would have.
        if made.status == PaymentStatus::Failed {
            return Err(AppError::PaymentFailed);
        }
        let debit = uow
            .wallets()
            .find_entry(&made.ledger_reference(), LedgerKind::Use)
            .await?
            .ok_or_else(|| AppError::Internal(format!("payment {} has no debit entry", made.id)))?;
        return Ok(Answered {
            value: PaymentReceipt::new(made, debit.balance_after.won()),
            recorded: false,
        });
    }
    if let Some(pending) = payments.iter().find(|p| p.status == PaymentStatus::Pending) {
        // A saga interrupted after its debit (the store failed in step 3, or the process
        // stopped): finish it rather than refuse, so that a retry settles the payment.
        if order.status != OrderStatus::PendingPayment || pending.amount != cmd.amount {
            return Err(DomainError::InvalidOrderState {
                state: "PAYMENT_IN_PROGRESS",
                action: "paid",
            }
            .into());
        }
        let pending = pending.clone();
        guard.rollback();
        return finish_saga(ctx, guard, order, pending, None, ticket).await;
    }
    order.check_payable(cmd.amount, now)?;
    if payments.iter().any(|p| p.status.holds_funds()) {
        return Err(DomainError::InvalidOrderState {
            state: "PAID",
            action: "paid",
        }
        .into());
    }
    let payment = uow
        .payments()
        .insert_debited(&order, cmd.amount, reference, now)
        .await?;
    let debit = uow
        .wallets()
        .append(
            LedgerChange {
                user_id: cmd.user_id,
                kind: LedgerKind::Use,
                amount: cmd.amount,
                reference: Some(payment.ledger_reference()),
            },
            now,
        )
        .await?;
    guard.commit().await?;
    finish_saga(
        ctx,
        guard,
        order,
        payment,
        Some(debit.balance_after),
        ticket,
    )
    .await
}

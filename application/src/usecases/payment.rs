//! ProcessPayment: an orchestrated saga.
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
//! interleave. Each compensation is idempotent (see `orders::release_order`).
//!
//! A saga interrupted after step 1 (the store failed in step 3) leaves a PENDING payment. The
//! next `pay` of that order, or the expiry worker, finds it under the same locks and finishes
//! the saga from step 2 instead of refusing or refunding blindly.

use crate::idempotent::Answered;
use crate::ports::idempotency::Ticket;
use crate::ports::lock::keys;
use crate::ports::platform::PaidOrder;
use crate::ports::store::LedgerChange;
use crate::section::Guarded;
use crate::usecases::orders::{load_owned_with_payments, release_order};
use crate::views::PaymentReceipt;
use crate::{AppError, Replayable, Stockade};
use stockade_domain::{
    DomainError, IdempotencyKey, LedgerKind, Money, Order, OrderId, OrderStatus, Payment,
    PaymentStatus, UserId,
};

/// Pay an order from the wallet.
#[derive(Debug, Clone)]
pub struct ProcessPayment {
    pub user_id: UserId,
    pub order_id: OrderId,
    pub amount: Money,
}

impl Stockade {
    /// Pays an order. See the module docs for the saga.
    ///
    /// # Errors
    /// `ORDER_NOT_FOUND`, `INVALID_ORDER_STATE`, `AMOUNT_MISMATCH`, `INSUFFICIENT_BALANCE` (the
    /// order stays PENDING_PAYMENT), `PAYMENT_FAILED` (compensated), `LOCK_TIMEOUT`,
    /// `BACKEND_UNAVAILABLE`, and the idempotency outcomes.
    #[tracing::instrument(skip_all, fields(user = %cmd.user_id, order = %cmd.order_id))]
    pub async fn pay(
        &self,
        cmd: ProcessPayment,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<PaymentReceipt>, AppError> {
        let canonical = format!("order={};amount={}", cmd.order_id, cmd.amount.won());
        // The key also names the payment, so that a second execution of the same keyed request
        // (its idempotency record lost while the saga was finished without it) finds the
        // payment and answers with it.
        let reference = key.map(|k| format!("pay:{}:{k}", cmd.user_id));
        let key = key.cloned();
        // Detached: a caller that goes away mid-saga does not cut the saga (or its locks) off.
        self.detached(move |app| async move {
            let user = cmd.user_id;
            app.idempotent(user, key.as_ref(), "pay", canonical, |ticket| {
                let (app, cmd, reference) = (&app, &cmd, &reference);
                async move {
                    app.retry_contention(|| {
                        app.pay_once(cmd.clone(), reference.as_deref(), ticket.as_ref())
                    })
                    .await
                    .into()
                }
            })
            .await
        })
        .await
    }

    /// Finishes payment sagas interrupted after their debit (a crash, or a store failure in
    /// step 3) that have been open for at least `min_age`: each is resumed from step 2 under
    /// its order's locks. Returns how many were settled (paid or compensated).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` when the open sagas cannot be listed.
    pub async fn recover_sagas(
        &self,
        min_age: std::time::Duration,
        limit: usize,
    ) -> Result<usize, AppError> {
        let before = self
            .core
            .ports
            .clock
            .now()
            .minus_millis(crate::usecases::orders::duration_ms(min_age));
        let open = {
            let mut uow = self.core.ports.store.begin().await?;
            uow.payments().open_sagas(before, limit).await?
        };
        let mut settled = 0;
        for (order_id, user) in open {
            match self.resume_saga(order_id, user).await {
                Ok(true) => settled += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(order = %order_id, error = %e, "saga not recovered this round")
                }
            }
        }
        Ok(settled)
    }

    /// Tells the sales counter (if any) about a paid order, or a paid order taken back. Best
    /// effort: the order is committed either way; a missed count only skews the ranking.
    pub(crate) async fn count_sales(
        &self,
        order: &Order,
        at: stockade_domain::Timestamp,
        paid: bool,
    ) {
        let Some(counter) = &self.core.ports.sales else {
            return;
        };
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity.get()))
            .collect();
        let counted = if paid {
            counter.record(&lines, at).await
        } else {
            counter.unrecord(&lines, order.updated_at).await
        };
        if let Err(e) = counted {
            tracing::warn!(error = %e, order = %order.id, "sales not counted for the ranking");
        }
    }

    async fn resume_saga(&self, order_id: OrderId, user: UserId) -> Result<bool, AppError> {
        let mut guard = self
            .enter(&[keys::payment(order_id), keys::balance(user)])
            .await?;
        let uow = guard.begin().await?;
        let Some((order, payments)) = uow.order_with_payments(order_id).await? else {
            return Ok(false);
        };
        let pending = payments
            .into_iter()
            .find(|p| p.status == PaymentStatus::Pending);
        let Some(payment) = pending else {
            return Ok(false);
        };
        if order.status != OrderStatus::PendingPayment {
            return Err(AppError::Internal(format!(
                "order {order_id} is {} but its payment {} is PENDING",
                order.status.as_str(),
                payment.id
            )));
        }
        guard.rollback();
        tracing::info!(order = %order_id, payment = %payment.id, "resuming an interrupted payment saga");
        match self.finish_saga(guard, order, payment, None, None).await {
            Ok(_) | Err(AppError::PaymentFailed) => Ok(true),
            Err(e) => Err(e),
        }
    }

    async fn pay_once(
        &self,
        cmd: ProcessPayment,
        reference: Option<&str>,
        ticket: Option<&Ticket>,
    ) -> Result<Answered<PaymentReceipt>, AppError> {
        let mut guard = self
            .enter(&[keys::payment(cmd.order_id), keys::balance(cmd.user_id)])
            .await?;

        // Step 1: debit.
        let uow = guard.begin().await?;
        let now = self.core.ports.clock.now();
        let (order, payments) =
            load_owned_with_payments(&mut *uow, cmd.user_id, cmd.order_id).await?;
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
                .ok_or_else(|| {
                    AppError::Internal(format!("payment {} has no debit entry", made.id))
                })?;
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
            return self.finish_saga(guard, order, pending, None, ticket).await;
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
        self.finish_saga(guard, order, payment, Some(debit.balance_after), ticket)
            .await
    }

    /// Steps 2 and 3 of the saga for a PENDING payment whose debit is committed: tell the
    /// platform (the event carries the payment id, so a repeat after an interruption names the
    /// same payment), then confirm or compensate under the same locks. The confirmation
    /// records the outcome of the keyed request holding `ticket`, if any, with its commit.
    pub(crate) async fn finish_saga(
        &self,
        mut guard: Guarded,
        order: Order,
        mut payment: Payment,
        balance_after_debit: Option<Money>,
        ticket: Option<&Ticket>,
    ) -> Result<Answered<PaymentReceipt>, AppError> {
        // Step 2: tell the platform.
        let event = PaidOrder {
            order_id: order.id,
            payment_id: payment.id,
            user_id: payment.user_id,
            amount: payment.amount,
            paid_at: payment.created_at,
        };
        let told = tokio::time::timeout(
            self.core.settings.platform_timeout,
            self.core.ports.platform.order_paid(&event),
        )
        .await;
        let failure = match told {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the data platform did not answer in time".to_owned()),
        };

        // Step 3: confirm or compensate.
        let uow = guard.begin().await?;
        let now = self.core.ports.clock.now();
        match failure {
            None => {
                let mut paid = order.clone();
                paid.transition(OrderStatus::Paid, now)?;
                if !uow.payments().confirm(&payment, now).await? {
                    return Err(AppError::Internal(format!(
                        "order {} or payment {} changed while the saga held their locks",
                        order.id, payment.id
                    )));
                }
                payment.status = PaymentStatus::Approved;
                // Under the wallet's lock since step 1, the balance is what step 1 left, unless
                // this saga is being resumed (then read it).
                let balance = match balance_after_debit {
                    Some(b) => b,
                    None => uow.wallets().balance(payment.user_id).await?,
                };
                let receipt = PaymentReceipt::new(&payment, balance.won());
                let answered = guard.answer(ticket, receipt).await?;
                self.count_sales(&order, now, true).await;
                Ok(answered)
            }
            Some(reason) => {
                tracing::warn!(%reason, "data platform failed; compensating the payment");
                release_order(&mut *uow, &order, OrderStatus::PaymentFailed, now).await?;
                guard.finish().await?;
                self.restocked(order.lines.iter().map(|l| l.product_id).collect())
                    .await;
                Err(AppError::PaymentFailed)
            }
        }
    }
}

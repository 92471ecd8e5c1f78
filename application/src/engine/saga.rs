//! Steps 2 and 3 of the payment saga (see `usecases::process_payment`): tell the data
//! platform, then confirm or compensate. Shared by payment, cancellation, expiry and saga
//! recovery, which all finish a saga left open after its debit.

use super::context::Context;
use super::outcome::Answered;
use super::release::release_order;
use super::section::Guarded;
use crate::error::AppError;
use crate::ports::idempotency::Ticket;
use crate::ports::platform::PaidOrder;
use crate::views::PaymentReceipt;
use stockade_domain::{Money, Order, OrderStatus, Payment, PaymentStatus};

/// Steps 2 and 3 of the saga for a PENDING payment whose debit is committed: tell the
/// platform (the event carries the payment id, so a repeat after an interruption names the
/// same payment), then confirm or compensate under the same locks. The confirmation
/// records the outcome of the keyed request holding `ticket`, if any, with its commit.
pub(crate) async fn finish_saga(
    ctx: &Context,
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
        ctx.settings.platform_timeout,
        ctx.ports.platform.order_paid(&event),
    )
    .await;
    let failure = match told {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the data platform did not answer in time".to_owned()),
    };

    // Step 3: confirm or compensate.
    let uow = guard.begin().await?;
    let now = ctx.ports.clock.now();
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
            ctx.count_sales(&order, now, true).await;
            Ok(answered)
        }
        Some(reason) => {
            tracing::warn!(%reason, "data platform failed; compensating the payment");
            release_order(&mut *uow, &order, OrderStatus::PaymentFailed, now).await?;
            guard.finish().await?;
            ctx.restocked(order.lines.iter().map(|l| l.product_id).collect())
                .await;
            Err(AppError::PaymentFailed)
        }
    }
}

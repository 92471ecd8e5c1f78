//! ChargeBalance: add points to a wallet.

use crate::engine::charge_turn;
use crate::engine::keyed::{run_keyed, Keyed};
use crate::engine::lanes::ChargeJob;
use crate::engine::outcome::Replayable;
use crate::engine::Context;
use crate::error::AppError;
use crate::views::ChargeReceipt;
use std::sync::Arc;
use stockade_domain::{ChargeAmount, IdempotencyKey, UserId};

/// Add points to a wallet.
#[derive(Debug, Clone)]
pub struct ChargeBalance {
    pub user_id: UserId,
    pub amount: ChargeAmount,
}

/// Charges a wallet; charges of one wallet that arrive together run in one turn
/// (`engine::charge_turn`). With an idempotency key the charge happens at most once: the key is
/// also the ledger entry's reference, so even a retry that runs after its first attempt's
/// in-flight lease ran out cannot charge twice. Runs detached from the caller.
///
/// # Errors
/// `CHARGE_LIMIT_EXCEEDED` past the wallet cap; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`; the
/// idempotency outcomes.
#[tracing::instrument(skip_all, fields(user = %cmd.user_id, amount = cmd.amount.money().won()))]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    cmd: ChargeBalance,
    key: Option<&IdempotencyKey>,
) -> Result<Replayable<ChargeReceipt>, AppError> {
    let keyed = Keyed {
        user: cmd.user_id,
        key: key.cloned(),
        op: "charge",
        canonical: format!("amount={}", cmd.amount.money().won()),
        detach: true,
    };
    let job = ChargeJob {
        user_id: cmd.user_id,
        amount: cmd.amount,
        reference: key.map(|k| format!("charge:{}:{}", cmd.user_id, k)),
        ticket: None,
    };
    run_keyed(ctx, keyed, move |ctx, ticket| async move {
        charge_turn::submit(&ctx, ChargeJob { ticket, ..job }).await
    })
    .await
}

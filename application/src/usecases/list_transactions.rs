//! ListTransactions: a wallet's ledger.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::TransactionView;
use stockade_domain::UserId;

/// The ledger, newest first.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<Vec<TransactionView>, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let entries = uow.wallets().entries(user).await?;
    Ok(entries.iter().rev().map(TransactionView::from).collect())
}

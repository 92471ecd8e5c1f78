//! ListTransactions: a wallet's ledger.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::views::TransactionView;
use stockade_domain::{TransactionId, UserId};

/// The ledger, newest first.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<Vec<TransactionView>, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let entries = uow.wallets().entries(user).await?;
    Ok(entries.iter().rev().map(TransactionView::from).collect())
}

/// A page of the ledger, newest first.
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no transaction id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn page(
    ctx: &Context,
    user: UserId,
    page: PageRequest,
) -> Result<Page<TransactionView>, AppError> {
    let before = page.cursor().map(TransactionId::new).transpose()?;
    let mut uow = ctx.ports.store.begin().await?;
    let entries = uow
        .wallets()
        .entries_page(user, before, page.fetch())
        .await?;
    Ok(page
        .cut(entries, |e| e.id.get())
        .map(|e| TransactionView::from(&e)))
}

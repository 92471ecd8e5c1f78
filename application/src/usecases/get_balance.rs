//! GetBalance: a wallet's balance.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::BalanceView;
use stockade_domain::UserId;

/// The wallet balance (0 for a user seen for the first time).
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<BalanceView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let balance = uow.wallets().balance(user).await?;
    Ok(BalanceView {
        user_id: user.get(),
        balance: balance.won(),
    })
}

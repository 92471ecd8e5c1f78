//! GetCart: the user's cart.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::CartView;
use stockade_domain::UserId;

/// The cart as it is now (empty for a user seen for the first time).
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<CartView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    Ok(CartView::from(&uow.carts().get(user).await?))
}

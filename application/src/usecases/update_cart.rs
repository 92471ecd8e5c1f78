//! UpdateCart: add to a line, set a line, or remove one.

use crate::engine::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use crate::views::CartView;
use stockade_domain::{DomainError, ProductId, Quantity, UserId};

/// A change to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartChange {
    /// Add units to a line (creating it).
    Add(ProductId, Quantity),
    /// Set a line to exactly this many units.
    Set(ProductId, Quantity),
    Remove(ProductId),
}

/// Changes the cart under its lock, checking the product exists, its per-order limit and the
/// stock visible now (stock is only reserved when an order is created).
///
/// # Errors
/// `PRODUCT_NOT_FOUND`, `EXCEEDED_LIMITED_QUANTITY`, `INSUFFICIENT_STOCK`, `LOCK_TIMEOUT`,
/// `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(user = %user))]
pub(crate) async fn execute(
    ctx: &Context,
    user: UserId,
    change: CartChange,
) -> Result<CartView, AppError> {
    let mut guard = ctx.enter(&[keys::cart(user)]).await?;
    let uow = guard.begin().await?;
    let mut cart = uow.carts().get(user).await?;
    match change {
        CartChange::Add(id, q) | CartChange::Set(id, q) => {
            let product = uow
                .products()
                .get(id)
                .await?
                .ok_or(DomainError::ProductNotFound(id.get()))?;
            if matches!(change, CartChange::Add(..)) {
                cart.add(&product, q)?;
            } else {
                cart.set(&product, q)?;
            }
        }
        CartChange::Remove(id) => cart.remove(id),
    }
    uow.carts().save(&cart).await?;
    guard.finish().await?;
    Ok(CartView::from(&cart))
}

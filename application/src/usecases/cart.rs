//! AddToCart, UpdateCart (set a line), RemoveFromCart, GetCart.

use crate::ports::lock::keys;
use crate::views::{CartItemView, CartView};
use crate::{AppError, Stockade};
use stockade_domain::{Cart, DomainError, ProductId, Quantity, UserId};

/// A change to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartChange {
    /// Add units to a line (creating it).
    Add(ProductId, Quantity),
    /// Set a line to exactly this many units.
    Set(ProductId, Quantity),
    Remove(ProductId),
}

fn view(cart: &Cart) -> CartView {
    CartView {
        items: cart
            .items
            .iter()
            .map(|(p, q)| CartItemView {
                product_id: p.get(),
                quantity: q.get(),
            })
            .collect(),
    }
}

impl Stockade {
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn cart(&self, user: UserId) -> Result<CartView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        Ok(view(&uow.carts().get(user).await?))
    }

    /// Changes the cart, checking the product exists, its per-order limit and the stock visible
    /// now (stock is only reserved when an order is created).
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`, `EXCEEDED_LIMITED_QUANTITY`, `INSUFFICIENT_STOCK`, `LOCK_TIMEOUT`,
    /// `BACKEND_UNAVAILABLE`.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn update_cart(
        &self,
        user: UserId,
        change: CartChange,
    ) -> Result<CartView, AppError> {
        let mut guard = self.enter(&[keys::cart(user)]).await?;
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
        Ok(view(&cart))
    }
}

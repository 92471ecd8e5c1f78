//! SetStock (admin): set a product's stock level.

use crate::engine::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use crate::views::ProductView;
use stockade_domain::{DomainError, ProductId};

/// Sets a product's stock level, under the product's lock so no order deducts from a level
/// about to be overwritten; then tells every instance the product has stock again.
///
/// # Errors
/// `PRODUCT_NOT_FOUND`; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Context,
    id: ProductId,
    stock: u32,
) -> Result<ProductView, AppError> {
    let mut guard = ctx.enter(&[keys::stock(id)]).await?;
    let uow = guard.begin().await?;
    let product = uow
        .products()
        .set_stock(id, stock)
        .await?
        .ok_or(DomainError::ProductNotFound(id.get()))?;
    guard.finish().await?;
    ctx.restocked(vec![id]).await;
    Ok(ProductView::from(&product))
}

//! GetProduct: one product.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::ProductView;
use stockade_domain::{DomainError, ProductId};

/// The product `id`.
///
/// # Errors
/// `PRODUCT_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, id: ProductId) -> Result<ProductView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let product = uow
        .products()
        .get(id)
        .await?
        .ok_or(DomainError::ProductNotFound(id.get()))?;
    Ok(ProductView::from(&product))
}

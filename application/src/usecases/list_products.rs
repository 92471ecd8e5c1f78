//! ListProducts: the catalogue.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::ProductView;

/// Every product, by id.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context) -> Result<Vec<ProductView>, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let mut products = uow.products().list().await?;
    products.sort_by_key(|p| p.id);
    Ok(products.iter().map(ProductView::from).collect())
}

//! CreateProduct (admin): add a product to the catalogue.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::ProductView;
use stockade_domain::NewProduct;

/// Adds a product.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, new: NewProduct) -> Result<ProductView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let product = uow.products().insert(new).await?;
    uow.commit().await?;
    Ok(ProductView::from(&product))
}

//! ListProducts: the catalogue.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::views::ProductView;
use stockade_domain::ProductId;

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

/// A page of the catalogue, by id.
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no product id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn page(ctx: &Context, page: PageRequest) -> Result<Page<ProductView>, AppError> {
    let after = page.cursor().map(ProductId::new).transpose()?;
    let mut uow = ctx.ports.store.begin().await?;
    let products = uow.products().page(after, page.fetch()).await?;
    Ok(page
        .cut(products, |p| p.id.get())
        .map(|p| ProductView::from(&p)))
}

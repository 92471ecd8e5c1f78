//! UpdateProduct (admin): change a product's name, price or limits.

use crate::engine::Context;
use crate::error::AppError;
use crate::ports::changes::Change;
use crate::ports::lock::keys;
use crate::views::ProductView;
use stockade_domain::{DomainError, ProductChanges, ProductId};

/// Applies `changes` under the product's stock lock, the one every create-order turn holds
/// while it prices and checks its orders: a turn sees the product wholly before or wholly after
/// the change, never a price or limit changed between its checks and its writes. After the
/// commit it drops what instances kept of the product (its sold-out mark, which carries the
/// per-order limit), here and, through the change feed, everywhere; a new name also drops the
/// cached best-seller answers, which carry names.
///
/// # Errors
/// `PRODUCT_NOT_FOUND`; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Context,
    id: ProductId,
    changes: ProductChanges,
) -> Result<ProductView, AppError> {
    let mut guard = ctx.enter(&[keys::stock(id)]).await?;
    let uow = guard.begin().await?;
    let product = uow
        .products()
        .update(id, &changes)
        .await?
        .ok_or(DomainError::ProductNotFound(id.get()))?;
    guard.finish().await?;
    ctx.sold_out.forget(id);
    if let Err(e) = ctx.ports.changes.publish(Change::Edited(id)).await {
        tracing::warn!(error = %e, product = %id, "product change not published");
    }
    if changes.name.is_some() {
        if let Err(e) = ctx.ports.popularity.clear().await {
            tracing::warn!(error = %e, product = %id, "best sellers not forgotten after a rename");
        }
    }
    Ok(ProductView::from(&product))
}

//! PopularProducts: top N products by units sold in PAID orders over the last D days, cached.

use crate::engine::Context;
use crate::error::AppError;
use crate::ports::popularity::PopularProduct;
use stockade_domain::{DomainError, ProductId};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// The longest window and the most products one query may ask for.
pub const MAX_DAYS: u32 = 365;
pub const MAX_LIMIT: u32 = 100;

/// The ranking, from the cache when fresh. A cache failure is logged and bypassed.
///
/// # Errors
/// `INVALID_INPUT` for `days` outside 1..=365 or `limit` outside 1..=100;
/// `BACKEND_UNAVAILABLE` when the store fails.
pub(crate) async fn execute(
    ctx: &Context,
    days: u32,
    limit: u32,
) -> Result<Vec<PopularProduct>, AppError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(DomainError::invalid("days", format!("must be 1 to {MAX_DAYS}")).into());
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(DomainError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")).into());
    }
    match ctx.ports.popularity.get(days, limit).await {
        Ok(Some(hit)) => return Ok(hit),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "popularity cache unavailable; computing"),
    }
    let items = compute(ctx, days, limit).await?;
    if let Err(e) = ctx
        .ports
        .popularity
        .put(days, limit, items.clone(), ctx.settings.popularity_ttl)
        .await
    {
        tracing::warn!(error = %e, "popularity cache not updated");
    }
    Ok(items)
}

/// The ranking computed now: from the sales counter when there is one, else from the store's
/// paid orders; ties by product id so the ranking is stable.
pub(crate) async fn compute(
    ctx: &Context,
    days: u32,
    limit: u32,
) -> Result<Vec<PopularProduct>, AppError> {
    let now = ctx.now();
    let since = now.minus_millis(i64::from(days) * DAY_MS);
    let mut uow = ctx.ports.store.begin().await?;
    let mut sales = match &ctx.ports.sales {
        Some(counter) => counter.top(days, limit, now).await?,
        None => uow.orders().sales_since(since).await?,
    };
    // Most sold first; ties by product id so the ranking is stable.
    sales.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sales.truncate(limit as usize);
    let mut out = Vec::with_capacity(sales.len());
    for (rank, (product_id, sold)) in sales.into_iter().enumerate() {
        let name = uow
            .products()
            .get(product_id)
            .await?
            .map(|p| p.name)
            .unwrap_or_else(|| format!("product {}", ProductId::get(product_id)));
        out.push(PopularProduct {
            product_id: product_id.get(),
            name,
            sold_quantity: sold,
            rank: u32::try_from(rank + 1).unwrap_or(u32::MAX),
        });
    }
    Ok(out)
}

//! RefreshPopular: recompute and cache the ranking (the background refresher calls this).

use super::popular_products::compute;
use crate::engine::Context;
use crate::error::AppError;

/// Recomputes the ranking for `days` and `limit` and stores it in the cache.
///
/// # Errors
/// As `popular_products`, and `BACKEND_UNAVAILABLE` when the cache refuses it.
pub(crate) async fn execute(ctx: &Context, days: u32, limit: u32) -> Result<(), AppError> {
    let items = compute(ctx, days, limit).await?;
    ctx.ports
        .popularity
        .put(days, limit, items, ctx.settings.popularity_ttl)
        .await?;
    Ok(())
}

//! GetCouponStock (admin): a coupon's counters.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::CouponStockView;
use stockade_domain::{CouponId, IssuanceMode};

/// A coupon's counters. For FLASH, `remaining`/`reserved` come from the gate and
/// `persisted`/`failed` from the store; for LOCKED all come from the store.
///
/// # Errors
/// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Context,
    coupon_id: CouponId,
) -> Result<CouponStockView, AppError> {
    let coupon = ctx.policy(coupon_id).await?;
    let mut uow = ctx.ports.store.begin().await?;
    let persisted = uow.coupons().issued_count(coupon_id).await?;
    let failed = u32::try_from(uow.coupons().failures(coupon_id).await?.len()).unwrap_or(u32::MAX);
    drop(uow);
    let (remaining, reserved) = match coupon.mode {
        IssuanceMode::Locked => (coupon.quantity.saturating_sub(persisted), persisted),
        IssuanceMode::Flash => match ctx.ports.gate.stats(coupon_id).await? {
            Some(stats) => (stats.remaining, stats.reserved),
            None => (coupon.quantity.saturating_sub(persisted), persisted),
        },
    };
    Ok(CouponStockView {
        coupon_id: coupon_id.get(),
        quantity: coupon.quantity,
        remaining,
        reserved,
        persisted,
        failed,
    })
}

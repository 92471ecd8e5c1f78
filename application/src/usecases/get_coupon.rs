//! GetCoupon: one coupon policy.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::CouponView;
use stockade_domain::CouponId;

/// The policy of `coupon_id`, from the policy cache or the store.
///
/// # Errors
/// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, coupon_id: CouponId) -> Result<CouponView, AppError> {
    Ok(CouponView::from(&ctx.policy(coupon_id).await?))
}

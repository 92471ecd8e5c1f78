//! CreateCoupon (admin): a coupon policy, and for FLASH its gate.

use crate::engine::gate::gate_config;
use crate::engine::Context;
use crate::error::AppError;
use crate::views::CouponView;
use stockade_domain::{IssuanceMode, NewCoupon};

/// Creates a coupon policy (and, for FLASH, its gate), and caches the policy.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, new: NewCoupon) -> Result<CouponView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let coupon = uow.coupons().insert(new).await?;
    uow.commit().await?;
    if coupon.mode == IssuanceMode::Flash {
        // New: nobody holds it yet.
        ctx.ports.gate.init(coupon.id, gate_config(&coupon)).await?;
    }
    ctx.policies.write().insert(coupon.id, coupon.clone());
    Ok(CouponView::from(&coupon))
}

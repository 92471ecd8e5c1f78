//! ListMyCoupons: the coupons a user holds.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::UserCouponView;
use std::collections::HashMap;
use stockade_domain::{Coupon, CouponId, UserId};

/// The coupons `user` holds, with statuses as of now, by user-coupon id.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<Vec<UserCouponView>, AppError> {
    let now = ctx.now();
    let mut uow = ctx.ports.store.begin().await?;
    let held = uow.coupons().user_coupons(user).await?;
    let mut policies: HashMap<CouponId, Coupon> = HashMap::new();
    let mut out = Vec::with_capacity(held.len());
    for uc in &held {
        if !policies.contains_key(&uc.coupon_id) {
            if let Some(c) = uow.coupons().get(uc.coupon_id).await? {
                policies.insert(c.id, c);
            }
        }
        if let Some(c) = policies.get(&uc.coupon_id) {
            out.push(UserCouponView::new(uc, c, now));
        }
    }
    out.sort_by_key(|v| v.user_coupon_id);
    Ok(out)
}

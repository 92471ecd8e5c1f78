//! ListMyCoupons: the coupons a user holds.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::ports::store::UnitOfWork;
use crate::views::UserCouponView;
use std::collections::HashMap;
use stockade_domain::{Coupon, CouponId, UserCoupon, UserCouponId, UserId};

/// The coupons `user` holds, with statuses as of now, by user-coupon id.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context, user: UserId) -> Result<Vec<UserCouponView>, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let held = uow.coupons().user_coupons(user).await?;
    let mut out = views(ctx, &mut *uow, &held).await?;
    out.sort_by_key(|v| v.user_coupon_id);
    Ok(out)
}

/// A page of the coupons `user` holds, by user-coupon id.
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no user-coupon id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn page(
    ctx: &Context,
    user: UserId,
    page: PageRequest,
) -> Result<Page<UserCouponView>, AppError> {
    let after = page.cursor().map(UserCouponId::new).transpose()?;
    let mut uow = ctx.ports.store.begin().await?;
    let held = uow
        .coupons()
        .user_coupons_page(user, after, page.fetch())
        .await?;
    let cut = page.cut(held, |uc| uc.id.get());
    Ok(Page {
        items: views(ctx, &mut *uow, &cut.items).await?,
        next: cut.next,
    })
}

/// The views of `held`, with their policies' names and statuses as of now.
async fn views(
    ctx: &Context,
    uow: &mut dyn UnitOfWork,
    held: &[UserCoupon],
) -> Result<Vec<UserCouponView>, AppError> {
    let now = ctx.now();
    let mut policies: HashMap<CouponId, Coupon> = HashMap::new();
    let mut out = Vec::with_capacity(held.len());
    for uc in held {
        if !policies.contains_key(&uc.coupon_id) {
            if let Some(c) = uow.coupons().get(uc.coupon_id).await? {
                policies.insert(c.id, c);
            }
        }
        if let Some(c) = policies.get(&uc.coupon_id) {
            out.push(UserCouponView::new(uc, c, now));
        }
    }
    Ok(out)
}

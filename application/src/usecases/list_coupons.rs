//! ListCoupons: the catalogue a shopper can still get, and every policy for an admin; a page
//! at a time, by id.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::views::{CatalogueCouponView, CouponView};
use stockade_domain::{CouponId, IssuanceMode};

/// A page of every coupon policy (admin).
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no coupon id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn all(ctx: &Context, page: PageRequest) -> Result<Page<CouponView>, AppError> {
    let after = page.cursor().map(CouponId::new).transpose()?;
    let mut uow = ctx.ports.store.begin().await?;
    let coupons = uow.coupons().page(None, after, page.fetch()).await?;
    Ok(page
        .cut(coupons, |(c, _)| c.id.get())
        .map(|(c, _)| CouponView::from(&c)))
}

/// A page of the coupons that can be issued now: inside their validity window, with some
/// left. `remaining` is the store's count for a LOCKED coupon and the gate's for a FLASH one
/// (the store learns of FLASH issues a moment later); a FLASH coupon whose gate has none left
/// is left out, so a page may hold fewer than `limit` items while more remain.
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no coupon id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn issuable(
    ctx: &Context,
    page: PageRequest,
) -> Result<Page<CatalogueCouponView>, AppError> {
    let after = page.cursor().map(CouponId::new).transpose()?;
    let now = ctx.now();
    let rows = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.coupons().page(Some(now), after, page.fetch()).await?
    };
    let cut = page.cut(rows, |(c, _)| c.id.get());
    let mut items = Vec::with_capacity(cut.items.len());
    for (coupon, issued) in cut.items {
        let stored_left = coupon.quantity.saturating_sub(issued);
        let remaining = match coupon.mode {
            IssuanceMode::Locked => stored_left,
            IssuanceMode::Flash => ctx
                .ports
                .gate
                .stats(coupon.id)
                .await?
                .map_or(stored_left, |s| s.remaining),
        };
        if remaining > 0 {
            items.push(CatalogueCouponView::new(&coupon, remaining));
        }
    }
    Ok(Page {
        items,
        next: cut.next,
    })
}

//! ListFailures (admin): the FLASH issuances of a coupon that ended in the dead-letter queue.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::views::FailureView;
use stockade_domain::{CouponId, UserId};

/// The failures recorded for `coupon_id` (by `handle_issuance` when a reservation is
/// dead-lettered, by `reconcile_coupon` when the store refuses one, by `replay_failures` when a
/// replay fails again), by user id ascending: those after `after`, at most `limit`. Whatever
/// the coupon's mode, this is what the store has (a LOCKED coupon normally has none).
///
/// # Errors
/// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(coupon = %coupon_id))]
pub(crate) async fn execute(
    ctx: &Context,
    coupon_id: CouponId,
    after: Option<UserId>,
    limit: usize,
) -> Result<Vec<FailureView>, AppError> {
    ctx.policy(coupon_id).await?;
    let mut uow = ctx.ports.store.begin().await?;
    let records = uow
        .coupons()
        .failure_records(coupon_id, after, limit)
        .await?;
    Ok(records.iter().map(FailureView::from).collect())
}

/// [`execute`] as a page of a list (`limit`, and the last user id of the previous page as the
/// cursor).
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no user id; `COUPON_NOT_FOUND`;
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn page(
    ctx: &Context,
    coupon_id: CouponId,
    page: PageRequest,
) -> Result<Page<FailureView>, AppError> {
    let after = page.cursor().map(UserId::new).transpose()?;
    let views = execute(ctx, coupon_id, after, page.fetch()).await?;
    Ok(page.cut(views, |f| f.user_id))
}

//! ReconcileAll: reconcile every FLASH coupon (see `reconcile_coupon`).

use super::reconcile_coupon;
use crate::engine::Context;
use crate::error::AppError;
use crate::views::ReconcileReport;
use stockade_domain::IssuanceMode;

/// Reconciles every FLASH coupon; the report sums theirs.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(ctx: &Context) -> Result<ReconcileReport, AppError> {
    let coupons = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.coupons().list().await?
    };
    let mut total = ReconcileReport {
        checked: 0,
        repaired: 0,
        rolled_back: 0,
    };
    for coupon in coupons.iter().filter(|c| c.mode == IssuanceMode::Flash) {
        let r = reconcile_coupon::execute(ctx, coupon.id).await?;
        total.checked += r.checked;
        total.repaired += r.repaired;
        total.rolled_back += r.rolled_back;
    }
    Ok(total)
}

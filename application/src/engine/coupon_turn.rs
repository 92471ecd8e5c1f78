//! The LOCKED-issuance engine: issuances of one coupon that arrive together run in one turn
//! under the coupon's lock (docs/decisions/0012); `usecases::issue_coupon` hands LOCKED
//! requests to [`submit`].

use super::context::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use crate::views::IssueView;
use std::sync::Arc;
use stockade_domain::{Coupon, DomainError, UserCoupon, UserId};

/// A LOCKED issuance: under the coupon's lock, in one unit of work. Requests for one coupon
/// that arrive together share one grant, one unit and one commit (docs/decisions/0012),
/// each answered as if issued one after the other.
pub(crate) async fn submit(
    ctx: &Arc<Context>,
    coupon: &Coupon,
    user: UserId,
) -> Result<IssueView, AppError> {
    let now = ctx.ports.clock.now();
    coupon.check_issuable(now)?;
    if ctx.sold_out.coupon_sold_out(coupon.id) {
        metrics::counter!("stockade_fast_path_refusals_total", "use_case" => "issue_coupon")
            .increment(1);
        return Err(DomainError::CouponSoldOut.into());
    }
    let lanes = Arc::clone(ctx);
    ctx.coupon_lanes
        .submit(
            coupon.id,
            (coupon.clone(), user),
            move |jobs: Vec<(Coupon, UserId)>| {
                let ctx = lanes.clone();
                async move { issue_locked_batch(&ctx, jobs).await }
            },
        )
        .await
        .map_err(|_| AppError::Internal("the issuance's turn failed".into()))?
}

/// One turn of LOCKED issuances of one coupon.
async fn issue_locked_batch(
    ctx: &Context,
    jobs: Vec<(Coupon, UserId)>,
) -> Vec<Result<IssueView, AppError>> {
    metrics::histogram!("stockade_combine_batch_size", "use_case" => "issue_coupon")
        .record(jobs.len() as f64);
    let Some((coupon, _)) = jobs.first() else {
        return Vec::new();
    };
    let users: Vec<UserId> = jobs.iter().map(|(_, u)| *u).collect();
    match issue_turns(ctx, coupon, &users).await {
        Ok(answers) => {
            if answers
                .iter()
                .any(|a| matches!(a, Err(DomainError::CouponSoldOut)))
            {
                ctx.sold_out.mark_coupon(coupon.id);
            }
            answers
                .into_iter()
                .map(|a| {
                    a.map(|issued| IssueView {
                        coupon_id: issued.coupon_id.get(),
                        user_id: issued.user_id.get(),
                        user_coupon_id: Some(issued.id.get()),
                        status: "ISSUED".to_owned(),
                    })
                    .map_err(AppError::from)
                })
                .collect()
        }
        Err(e) => users.iter().map(|_| Err(e.shared())).collect(),
    }
}

/// Issues to `users` in order under the coupon's lock, running the turn again (up to three
/// times in all) while the store reports contention.
async fn issue_turns(
    ctx: &Context,
    coupon: &Coupon,
    users: &[UserId],
) -> Result<Vec<Result<UserCoupon, DomainError>>, AppError> {
    ctx.retry_contention(|| async {
        let now = ctx.ports.clock.now();
        let mut guard = ctx.enter(&[keys::coupon(coupon.id)]).await?;
        let uow = guard.begin().await?;
        let answers = uow.coupons().issue_each(coupon, users, now).await?;
        guard.finish().await?;
        Ok(answers)
    })
    .await
}

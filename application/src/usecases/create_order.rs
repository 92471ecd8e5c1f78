//! CreateOrder: reserve stock and coupons.
//!
//! The command is checked, made idempotent with `run_keyed` and handed to the create-order
//! engine (`engine::order_turn`), which combines the requests for one set of products into
//! turns (docs/decisions/0012).

use crate::engine::keyed::{run_keyed, Keyed};
use crate::engine::order_plan::OrderRequest;
use crate::engine::order_turn;
use crate::engine::outcome::{Replayable, Settled};
use crate::engine::Context;
use crate::error::AppError;
use crate::views::OrderView;
use std::sync::Arc;
use stockade_domain::{IdempotencyKey, UserCouponId, UserId};

pub use crate::engine::order_plan::OrderSource;

/// Create an order: reserve stock and coupons.
#[derive(Debug, Clone)]
pub struct CreateOrder {
    pub user_id: UserId,
    pub source: OrderSource,
    /// CART coupons, and CART_ITEM coupons to place on the line where each takes off most.
    pub user_coupon_ids: Vec<UserCouponId>,
}

impl CreateOrder {
    /// The command in a canonical text form: what the idempotency fingerprint is taken of.
    pub(crate) fn canonical(&self) -> String {
        let mut s = String::new();
        match &self.source {
            OrderSource::FromCart => s.push_str("fromCart"),
            OrderSource::Lines(lines) => {
                for l in lines {
                    s.push_str(&format!(
                        "{}x{}c{};",
                        l.product_id,
                        l.quantity,
                        l.user_coupon_id.map_or(0, |c| c.get())
                    ));
                }
            }
        }
        s.push('|');
        for c in &self.user_coupon_ids {
            s.push_str(&format!("{c};"));
        }
        s
    }
}

impl From<CreateOrder> for OrderRequest {
    fn from(cmd: CreateOrder) -> Self {
        OrderRequest {
            user_id: cmd.user_id,
            source: cmd.source,
            user_coupon_ids: cmd.user_coupon_ids,
        }
    }
}

/// Creates an order: deducts stock with guarded updates under the products' locks, prices it
/// and reserves its coupons, all in one unit of work. Requests for the same products that
/// arrive together share one lock grant, one unit of work and one commit. Runs detached from
/// the caller.
///
/// # Errors
/// `CART_EMPTY`, `INVALID_INPUT`, `PRODUCT_NOT_FOUND`, `EXCEEDED_LIMITED_QUANTITY`,
/// `INSUFFICIENT_STOCK`, `INVALID_COUPON`, `LOCK_TIMEOUT`, `BACKEND_UNAVAILABLE`, and the
/// idempotency outcomes.
#[tracing::instrument(skip_all, fields(user = %cmd.user_id))]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    cmd: CreateOrder,
    key: Option<&IdempotencyKey>,
) -> Result<Replayable<OrderView>, AppError> {
    let user = cmd.user_id;
    // The key also names the order itself, so that even a second execution of the same keyed
    // request (its idempotency record lost or taken over) finds the first order.
    let reference = key.map(|k| format!("order:{user}:{k}"));
    let keyed = Keyed {
        user,
        key: key.cloned(),
        op: "create-order",
        canonical: cmd.canonical(),
        detach: true,
    };
    run_keyed(ctx, keyed, move |ctx, ticket| async move {
        order_turn::submit(&ctx, cmd.into(), reference, ticket)
            .await
            .unwrap_or_else(|e| Settled::unrecorded(Err(e)))
    })
    .await
}

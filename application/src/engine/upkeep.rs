//! What a running process does besides answering use cases: readiness, the change feed that
//! keeps sold-out marks honest across instances, and forgetting caches after a reset.

use super::context::Context;
use crate::error::AppError;
use crate::ports::changes::Change;
use tokio::sync::broadcast::error::RecvError;

/// Whether the backends answer: the store opens a unit, the queue reports its depth and the
/// lock manager could grant (a Redlock majority answers).
pub(crate) async fn ready(ctx: &Context) -> Result<(), AppError> {
    drop(ctx.ports.store.begin().await?);
    ctx.ports.queue.depth().await?;
    ctx.ports.locks.check().await?;
    Ok(())
}

/// How many create-order and LOCKED-issue requests wait for a combined turn now, over every
/// key (docs/decisions/0012).
pub(crate) fn combining_queue_depth(ctx: &Context) -> usize {
    ctx.order_lanes.depth() + ctx.coupon_lanes.depth()
}

/// Forgets cached coupon policies and sold-out marks (after the store was reset underneath).
pub(crate) fn forget_cached_policies(ctx: &Context) {
    ctx.policies.write().clear();
    ctx.sold_out.forget_coupons();
    ctx.sold_out.forget_all();
}

/// Follows the change feed until `shutdown` turns true, dropping the sold-out marks of
/// products restocked or edited anywhere.
pub(crate) async fn follow_changes(
    ctx: &Context,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut changes = ctx.ports.changes.subscribe();
    // Marks made before the subscription may have missed a change.
    ctx.sold_out.forget_all();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(Change::Restocked(p) | Change::Edited(p)) => ctx.sold_out.forget(p),
                Ok(Change::Everything) | Err(RecvError::Lagged(_)) => {
                    ctx.sold_out.forget_all();
                }
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

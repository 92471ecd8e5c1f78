//! ConsumeIssuances: the issuance consumer, which persists FLASH reservations from the queue
//! in batches, one coupon at a time, and each delivery alone (`handle_issuance`) when a batch
//! cannot be persisted as a whole.

use super::handle_issuance;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::queue::Delivery;
use std::time::Duration;
use tokio::sync::watch;

/// Receives and handles one batch; returns how many deliveries it handled.
///
/// # Errors
/// `BACKEND_UNAVAILABLE` when the queue itself fails.
pub(crate) async fn execute(ctx: &Context, max: usize, wait: Duration) -> Result<usize, AppError> {
    let batch = ctx.ports.queue.receive(max, wait).await?;
    let n = batch.len();
    let mut first_error = None;
    for group in by_coupon(batch) {
        if group.len() > 1 && persist_together(ctx, &group).await {
            if let Err(e) = ctx.ports.queue.ack_all(&group).await {
                // Persisted: what was not acked comes back and is found already issued.
                tracing::warn!(error = %e, deliveries = group.len(), "issuance outcomes not acknowledged");
                first_error.get_or_insert(e.into());
            }
            continue;
        }
        for delivery in &group {
            // One delivery the queue could not be told about does not hold up the others;
            // it is delivered again after the queue's visibility time-out.
            if let Err(e) = handle_issuance::execute(ctx, delivery).await {
                tracing::warn!(error = %e, id = %delivery.id, "issuance outcome not acknowledged");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Persists every delivery of one coupon in one unit of work; false, with nothing
/// persisted, if that did not work out for all of them (a store refusal or failure), and
/// the deliveries are then handled one by one, each with its own retries and dead letter.
async fn persist_together(ctx: &Context, group: &[Delivery]) -> bool {
    let Some(first) = group.first() else {
        return true;
    };
    let claims: Vec<_> = group
        .iter()
        .map(|d| (d.request.user_id, d.request.reserved_at))
        .collect();
    let persisted = async {
        let coupon = ctx.policy(first.request.coupon_id).await?;
        let mut uow = ctx.ports.store.begin().await?;
        uow.coupons().issue_batch(&coupon, &claims).await?;
        uow.commit().await?;
        Ok::<_, AppError>(())
    }
    .await;
    match persisted {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, deliveries = group.len(), "issuances persisted one by one");
            false
        }
    }
}

/// Runs the consumer until `shutdown` turns true, finishing the batch in hand.
pub(crate) async fn run(ctx: &Context, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Not raced against shutdown: a batch in hand is finished (the receive itself waits
        // at most 250 ms), so shutdown never cuts a delivery between persist and ack.
        if let Err(e) = execute(ctx, 64, Duration::from_millis(250)).await {
            tracing::warn!(error = %e, "issuance queue unavailable; backing off");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// The deliveries grouped by coupon, each group in the order received.
fn by_coupon(batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    for d in batch {
        match groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|f| f.request.coupon_id == d.request.coupon_id)
        }) {
            Some(g) => g.push(d),
            None => groups.push(vec![d]),
        }
    }
    groups
}

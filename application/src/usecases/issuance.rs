//! The issuance consumer: persists FLASH reservations from the queue.
//!
//! Persistence is idempotent (`COUPON_ALREADY_ISSUED` counts as success), so an at-least-once
//! queue yields exactly-once coupons. A delivery that fails for a passing reason (the store is
//! unavailable) is retried with exponential backoff; past `issuance_max_attempts`, or at once
//! for a permanent refusal, it is dead-lettered, recorded as a failure and rolled back in the
//! gate, so that the user may try again and reconciliation sees it.

use crate::ports::queue::Delivery;
use crate::ports::store::StoreError;
use crate::{AppError, Stockade};
use std::time::Duration;
use stockade_domain::DomainError;
use tokio::sync::watch;

/// What one delivery ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceOutcome {
    Persisted,
    Retried,
    DeadLettered,
    /// Given up by this consumer too late: another one had taken the request over.
    TakenOver,
}

impl Stockade {
    /// Receives and handles one batch; returns how many deliveries it handled.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` when the queue itself fails.
    pub async fn consume_issuances(&self, max: usize, wait: Duration) -> Result<usize, AppError> {
        let batch = self.core.ports.queue.receive(max, wait).await?;
        let n = batch.len();
        let mut first_error = None;
        for group in by_coupon(batch) {
            if group.len() > 1 && self.persist_together(&group).await {
                if let Err(e) = self.core.ports.queue.ack_all(&group).await {
                    // Persisted: what was not acked comes back and is found already issued.
                    tracing::warn!(error = %e, deliveries = group.len(), "issuance outcomes not acknowledged");
                    first_error.get_or_insert(e.into());
                }
                continue;
            }
            for delivery in &group {
                // One delivery the queue could not be told about does not hold up the others;
                // it is delivered again after the queue's visibility time-out.
                if let Err(e) = self.handle_issuance(delivery).await {
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
    async fn persist_together(&self, group: &[Delivery]) -> bool {
        let Some(first) = group.first() else {
            return true;
        };
        let claims: Vec<_> = group
            .iter()
            .map(|d| (d.request.user_id, d.request.reserved_at))
            .collect();
        let persisted = async {
            let coupon = self.policy(first.request.coupon_id).await?;
            let mut uow = self.core.ports.store.begin().await?;
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
    pub async fn run_issuance_consumer(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Not raced against shutdown: a batch in hand is finished (the receive itself waits
            // at most 250 ms), so shutdown never cuts a delivery between persist and ack.
            if let Err(e) = self.consume_issuances(64, Duration::from_millis(250)).await {
                tracing::warn!(error = %e, "issuance queue unavailable; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Handles one delivery; see the module docs.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` when the queue cannot be told the outcome (it will redeliver).
    pub async fn handle_issuance(&self, delivery: &Delivery) -> Result<IssuanceOutcome, AppError> {
        let req = delivery.request;
        let persisted = self.persist_issuance(delivery).await;
        match persisted {
            Ok(()) => {
                self.core.ports.queue.ack(delivery).await?;
                Ok(IssuanceOutcome::Persisted)
            }
            Err(Permanence::Passing(reason))
                if delivery.attempt < self.core.settings.issuance_max_attempts =>
            {
                let shift = delivery.attempt.saturating_sub(1).min(16);
                let delay = self
                    .core
                    .settings
                    .issuance_backoff
                    .saturating_mul(1 << shift);
                tracing::debug!(%reason, attempt = delivery.attempt, ?delay, "issuance retried");
                self.core.ports.queue.retry(delivery, delay).await?;
                Ok(IssuanceOutcome::Retried)
            }
            Err(Permanence::Passing(reason) | Permanence::Permanent(reason)) => {
                if !self.core.ports.queue.dead_letter(delivery, &reason).await? {
                    // Another consumer took it over (this one was too slow); its outcome decides,
                    // so nothing is recorded or given back here.
                    tracing::info!(coupon = %req.coupon_id, user = %req.user_id, "issuance taken over by another consumer");
                    return Ok(IssuanceOutcome::TakenOver);
                }
                tracing::warn!(%reason, coupon = %req.coupon_id, user = %req.user_id, "issuance dead-lettered");
                let recorded = async {
                    let mut uow = self.core.ports.store.begin().await?;
                    let now = self.core.ports.clock.now();
                    uow.coupons()
                        .record_failure(req.coupon_id, req.user_id, &reason, now)
                        .await?;
                    uow.commit().await
                }
                .await;
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "failure not recorded; the dead letter keeps it");
                }
                if let Err(e) = self
                    .core
                    .ports
                    .gate
                    .rollback(req.coupon_id, req.user_id)
                    .await
                {
                    tracing::error!(error = %e, "gate rollback failed; reconciliation will repair it");
                }
                Ok(IssuanceOutcome::DeadLettered)
            }
        }
    }

    async fn persist_issuance(&self, delivery: &Delivery) -> Result<(), Permanence> {
        let req = delivery.request;
        let coupon = match self.policy(req.coupon_id).await {
            Ok(c) => c,
            Err(AppError::Rejected(e)) => return Err(Permanence::Permanent(e.to_string())),
            Err(e) => return Err(Permanence::Passing(e.to_string())),
        };
        let passing = |e: StoreError| Permanence::Passing(e.to_string());
        let mut uow = self.core.ports.store.begin().await.map_err(passing)?;
        match uow
            .coupons()
            .issue(&coupon, req.user_id, req.reserved_at)
            .await
        {
            Ok(_) => uow.commit().await.map_err(passing),
            Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => Ok(()),
            Err(StoreError::Rejected(e)) => Err(Permanence::Permanent(e.to_string())),
            Err(e) => Err(passing(e)),
        }
    }
}

enum Permanence {
    Passing(String),
    Permanent(String),
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

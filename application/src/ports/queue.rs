//! The `IssuanceQueue` port: the at-least-once hand-off from the gate to the store.
//!
//! # Contract (every adapter MUST)
//! - Deliver every published request at least once until it is acked or dead-lettered,
//!   including after the consumer that received it died (redeliver or let another claim it).
//! - Not deliver a request again before the delay given to `retry`.
//! - Count deliveries: [`Delivery::attempt`] is 1 on the first delivery and grows by one with
//!   each redelivery.
//! - Keep dead letters where an operator (and reconciliation) can see them.
//! - Let an `ack` settle a request whoever holds it now (it was persisted), but let `retry` and
//!   `dead_letter` act only for the latest delivery of a request (a receiver that was too slow
//!   must not give up on a request another receiver is handling).

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;
use stockade_domain::{CouponId, Timestamp, UserId};

/// One FLASH reservation to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssuanceRequest {
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub reserved_at: Timestamp,
}

/// A received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The adapter's id of the message (a stream entry id, a sequence number…).
    pub id: String,
    pub request: IssuanceRequest,
    pub attempt: u32,
}

/// How much is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Published and not yet received (or waiting out a retry delay).
    pub ready: u64,
    /// Received and not yet acked.
    pub in_flight: u64,
    pub dead: u64,
}

impl QueueDepth {
    /// Nothing left to persist (dead letters aside).
    pub fn is_drained(&self) -> bool {
        self.ready == 0 && self.in_flight == 0
    }
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IssuanceQueue: Send + Sync + fmt::Debug {
    async fn publish(&self, request: IssuanceRequest) -> Result<(), BackendError>;
    /// Up to `max` deliveries, waiting at most `wait` for the first.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError>;
    /// Done: never deliver it again.
    async fn ack(&self, delivery: &Delivery) -> Result<(), BackendError>;
    /// [`IssuanceQueue::ack`] for each of `deliveries`; an adapter that can settle them in one
    /// step overrides it. On an error some may be settled and others not (those come back).
    async fn ack_all(&self, deliveries: &[Delivery]) -> Result<(), BackendError> {
        for d in deliveries {
            self.ack(d).await?;
        }
        Ok(())
    }
    /// Deliver again after `delay`. Does nothing when the delivery is no longer its
    /// receiver's to settle (see `dead_letter`).
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), BackendError>;
    /// Give up: move to the dead letters. Answers false, and does nothing, when the delivery is
    /// no longer its receiver's to settle: it was settled already, or another receive took the
    /// request over (a later attempt is in flight), so the outcome is the other's to decide.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<bool, BackendError>;
    async fn depth(&self) -> Result<QueueDepth, BackendError>;
}

//! The `DataPlatform` port: the external system told about every paid order.
//!
//! It may fail or hang; the payment saga bounds the call with a time-out and compensates
//! everything when it fails. An adapter MUST answer `Err` (never panic) on any failure, and MUST
//! treat events as idempotent per `payment_id`: an interrupted saga is finished by telling the
//! platform again about the same payment, and a platform that had accepted it MUST accept the
//! repeat (answering `Err` to a repeat means the payment is refused now, and it is compensated).

use async_trait::async_trait;
use std::fmt;
use stockade_domain::{Money, OrderId, PaymentId, Timestamp, UserId};

/// What the platform is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidOrder {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub amount: Money,
    pub paid_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the data platform refused the order: {0}")]
pub struct PlatformError(pub String);

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DataPlatform: Send + Sync + fmt::Debug {
    async fn order_paid(&self, event: &PaidOrder) -> Result<(), PlatformError>;
}

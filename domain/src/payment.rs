//! Payments of orders from the wallet.

use crate::{DomainError, Money, OrderId, PaymentId, Timestamp, UserId};

/// The life of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// The wallet was debited; the data platform has not confirmed yet.
    Pending,
    Approved,
    /// The saga compensated: the debit was refunded.
    Failed,
    /// An approved payment given back (a paid order was cancelled).
    Refunded,
}

impl PaymentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Approved => "APPROVED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        match s {
            "PENDING" => Some(PaymentStatus::Pending),
            "APPROVED" => Some(PaymentStatus::Approved),
            "FAILED" => Some(PaymentStatus::Failed),
            "REFUNDED" => Some(PaymentStatus::Refunded),
            _ => None,
        }
    }

    /// Whether the wallet debit of this payment is still in effect (it must be refunded when
    /// the order is released).
    pub fn holds_funds(self) -> bool {
        matches!(self, PaymentStatus::Pending | PaymentStatus::Approved)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: Money,
    pub status: PaymentStatus,
    /// The idempotency reference of the pay request that made it, if keyed.
    pub reference: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Payment {
    /// Moves the payment to `to`: PENDING -> APPROVED | FAILED, APPROVED -> REFUNDED.
    ///
    /// # Errors
    /// `INVALID_ORDER_STATE` for any other transition.
    pub fn transition(&mut self, to: PaymentStatus, now: Timestamp) -> Result<(), DomainError> {
        use PaymentStatus::*;
        let ok = matches!(
            (self.status, to),
            (Pending, Approved | Failed) | (Approved, Refunded)
        );
        if !ok {
            return Err(DomainError::InvalidOrderState {
                state: self.status.as_str(),
                action: "changed",
            });
        }
        self.status = to;
        self.updated_at = now;
        Ok(())
    }

    /// The ledger reference of this payment's debit and refund.
    pub fn ledger_reference(&self) -> String {
        format!("payment:{}", self.id)
    }
}

//! The `CouponGate` port: the atomic front door of FLASH coupons.
//!
//! # Contract (every adapter MUST)
//! - Make [`CouponGate::reserve`] one atomic step: check the validity window, refuse a user who
//!   already holds a reservation, refuse when none is left, else record the user and take one.
//!   Of any number of concurrent reserves, at most `quantity` succeed and no user twice.
//! - Keep `remaining + holders == quantity` at all times.
//! - Make [`CouponGate::init`] idempotent: it creates the gate once and never resets one that
//!   exists (a second instance starting must not hand the coupons out again).
//! - Make [`CouponGate::rebuild`] one atomic step: a gate the backend lost is created with its
//!   holders already in it (`remaining = quantity - holders`, never below zero), so no reserve
//!   can ever see a rebuilt gate without them; a gate that exists is left as it is.
//! - Make `rollback` and `restore` idempotent, answering whether they changed anything.

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use stockade_domain::{CouponId, Timestamp, UserId};

/// The answer of one reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateOutcome {
    Reserved,
    SoldOut,
    AlreadyIssued,
    NotInitialised,
    /// Outside the coupon's validity window.
    Expired,
}

/// How a gate is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    pub quantity: u32,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

/// The gate's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateStats {
    pub quantity: u32,
    pub remaining: u32,
    /// Users holding a reservation (`quantity - remaining`).
    pub reserved: u32,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CouponGate: Send + Sync + fmt::Debug {
    /// Creates the gate of `coupon` unless it exists.
    async fn init(&self, coupon: CouponId, config: GateConfig) -> Result<(), BackendError>;
    /// Creates the gate of `coupon` unless it exists, with `holders` already holding a place,
    /// in one atomic step (a gate rebuilt from the store after its backend lost it). Answers
    /// whether it created the gate.
    async fn rebuild(
        &self,
        coupon: CouponId,
        config: GateConfig,
        holders: &[UserId],
    ) -> Result<bool, BackendError>;
    /// The atomic reserve; see the contract.
    async fn reserve(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
    ) -> Result<GateOutcome, BackendError>;
    /// Gives a reservation back (the user may try again); false if the user held none.
    async fn rollback(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError>;
    /// Records a reservation the store knows of but the gate lost (reconciliation); false if the
    /// user already held one or the gate has none left.
    async fn restore(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError>;
    /// `None` when the gate does not exist.
    async fn stats(&self, coupon: CouponId) -> Result<Option<GateStats>, BackendError>;
    /// Users holding a reservation.
    async fn holders(&self, coupon: CouponId) -> Result<Vec<UserId>, BackendError>;
}

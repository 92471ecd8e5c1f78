//! The in-memory coupon gate: per-coupon state behind a `DashMap` shard lock, so one reserve is
//! one short critical section and different coupons do not contend.

use async_trait::async_trait;
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome, GateStats};
use stockade_application::BackendError;
use stockade_domain::{CouponId, Timestamp, UserId};

#[derive(Debug)]
struct GateState {
    config: GateConfig,
    remaining: u32,
    holders: HashSet<UserId>,
}

/// The in-memory [`CouponGate`].
#[derive(Debug, Clone, Default)]
pub struct MemoryCouponGate {
    gates: Arc<DashMap<CouponId, GateState>>,
}

impl MemoryCouponGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every gate (simulates a gate backend restarted without persistence).
    pub fn wipe(&self) {
        self.gates.clear();
    }
}

#[async_trait]
impl CouponGate for MemoryCouponGate {
    async fn init(&self, coupon: CouponId, config: GateConfig) -> Result<(), BackendError> {
        self.gates.entry(coupon).or_insert_with(|| GateState {
            config,
            remaining: config.quantity,
            holders: HashSet::new(),
        });
        Ok(())
    }

    async fn rebuild(
        &self,
        coupon: CouponId,
        config: GateConfig,
        holders: &[UserId],
    ) -> Result<bool, BackendError> {
        match self.gates.entry(coupon) {
            dashmap::Entry::Occupied(_) => Ok(false),
            dashmap::Entry::Vacant(slot) => {
                let holders: HashSet<UserId> = holders.iter().copied().collect();
                let held = u32::try_from(holders.len()).unwrap_or(u32::MAX);
                slot.insert(GateState {
                    config,
                    remaining: config.quantity.saturating_sub(held),
                    holders,
                });
                Ok(true)
            }
        }
    }

    async fn reserve(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
    ) -> Result<GateOutcome, BackendError> {
        let Some(mut gate) = self.gates.get_mut(&coupon) else {
            return Ok(GateOutcome::NotInitialised);
        };
        let c = gate.config;
        if c.valid_from.is_some_and(|f| now < f) || c.valid_until.is_some_and(|u| now >= u) {
            return Ok(GateOutcome::Expired);
        }
        if gate.holders.contains(&user) {
            return Ok(GateOutcome::AlreadyIssued);
        }
        if gate.remaining == 0 {
            return Ok(GateOutcome::SoldOut);
        }
        gate.remaining -= 1;
        gate.holders.insert(user);
        Ok(GateOutcome::Reserved)
    }

    async fn rollback(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        let Some(mut gate) = self.gates.get_mut(&coupon) else {
            return Ok(false);
        };
        if gate.holders.remove(&user) {
            gate.remaining += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn restore(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        let Some(mut gate) = self.gates.get_mut(&coupon) else {
            return Ok(false);
        };
        if gate.remaining == 0 || gate.holders.contains(&user) {
            return Ok(false);
        }
        gate.remaining -= 1;
        gate.holders.insert(user);
        Ok(true)
    }

    async fn stats(&self, coupon: CouponId) -> Result<Option<GateStats>, BackendError> {
        Ok(self.gates.get(&coupon).map(|g| GateStats {
            quantity: g.config.quantity,
            remaining: g.remaining,
            reserved: u32::try_from(g.holders.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn holders(&self, coupon: CouponId) -> Result<Vec<UserId>, BackendError> {
        Ok(self
            .gates
            .get(&coupon)
            .map(|g| g.holders.iter().copied().collect())
            .unwrap_or_default())
    }
}

//! Coupons and the coupons issued to users: the holder index that refuses a second issue to one
//! user, the per-coupon holder list that bounds issues by the coupon's quantity, and the
//! recorded issuance failures (cleared when a later issue to that user succeeds).

use super::{Failure, MemoryUnit};
use async_trait::async_trait;
use std::ops::Bound;
use stockade_application::ports::store::{CouponRepository, IssuanceFailure, StoreError};
use stockade_domain::{
    Coupon, CouponId, DomainError, NewCoupon, OrderId, Timestamp, UserCoupon, UserCouponId,
    UserCouponStatus, UserId,
};

impl MemoryUnit {
    fn put_user_coupon(&mut self, uc: UserCoupon) {
        let id = uc.id;
        let previous = self.state.user_coupons.insert(id, uc);
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.user_coupons.insert(id, p);
            }
            None => {
                s.user_coupons.remove(&id);
            }
        });
    }
}

#[async_trait]
impl CouponRepository for MemoryUnit {
    async fn insert(&mut self, new: NewCoupon) -> Result<Coupon, StoreError> {
        self.op()?;
        let id = CouponId::new(self.state.next_id("coupon"))?;
        let coupon = Coupon::from_new(id, new);
        self.state.coupons.insert(id, coupon.clone());
        self.on_rollback(move |s| {
            s.coupons.remove(&id);
        });
        Ok(coupon)
    }

    async fn get(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError> {
        self.op()?;
        Ok(self.state.coupons.get(&id).cloned())
    }

    async fn list(&mut self) -> Result<Vec<Coupon>, StoreError> {
        self.op()?;
        Ok(self.state.coupons.values().cloned().collect())
    }

    async fn page(
        &mut self,
        issuable_at: Option<Timestamp>,
        after: Option<CouponId>,
        limit: usize,
    ) -> Result<Vec<(Coupon, u32)>, StoreError> {
        self.op()?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let state = &self.state;
        Ok(state
            .coupons
            .range((from, Bound::Unbounded))
            .map(|(id, c)| {
                let issued = state.holders_by_coupon.get(id).map_or(0, Vec::len);
                (c, u32::try_from(issued).unwrap_or(u32::MAX))
            })
            .filter(|(c, issued)| {
                issuable_at.is_none_or(|now| c.is_valid_at(now) && *issued < c.quantity)
            })
            .take(limit)
            .map(|(c, issued)| (c.clone(), issued))
            .collect())
    }

    async fn issue(
        &mut self,
        coupon: &Coupon,
        user: UserId,
        now: Timestamp,
    ) -> Result<UserCoupon, StoreError> {
        self.op()?;
        if self.state.holder_index.contains_key(&(coupon.id, user)) {
            return Err(DomainError::CouponAlreadyIssued.into());
        }
        let issued = self
            .state
            .holders_by_coupon
            .get(&coupon.id)
            .map_or(0, Vec::len);
        if issued >= coupon.quantity as usize {
            return Err(DomainError::CouponSoldOut.into());
        }
        let id = UserCouponId::new(self.state.next_id("user_coupon"))?;
        let uc = UserCoupon {
            id,
            coupon_id: coupon.id,
            user_id: user,
            status: UserCouponStatus::Issued,
            issued_at: now,
            expires_at: coupon.expiry_for(now),
            order_id: None,
        };
        self.put_user_coupon(uc.clone());
        let cid = coupon.id;
        self.state.holder_index.insert((cid, user), id);
        self.state.coupons_by_user.entry(user).or_default().push(id);
        self.state
            .holders_by_coupon
            .entry(cid)
            .or_default()
            .push(user);
        let failure = self
            .state
            .failures
            .get_mut(&cid)
            .and_then(|f| f.remove(&user));
        self.on_rollback(move |s| {
            s.holder_index.remove(&(cid, user));
            if let Some(v) = s.coupons_by_user.get_mut(&user) {
                v.pop();
            }
            if let Some(v) = s.holders_by_coupon.get_mut(&cid) {
                v.pop();
            }
            if let Some(failure) = failure {
                s.failures.entry(cid).or_default().insert(user, failure);
            }
        });
        Ok(uc)
    }

    async fn get_user_coupon(
        &mut self,
        id: UserCouponId,
    ) -> Result<Option<UserCoupon>, StoreError> {
        self.op()?;
        Ok(self.state.user_coupons.get(&id).cloned())
    }

    async fn user_coupons(&mut self, user: UserId) -> Result<Vec<UserCoupon>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .coupons_by_user
            .get(&user)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.state.user_coupons.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn user_coupons_page(
        &mut self,
        user: UserId,
        after: Option<UserCouponId>,
        limit: usize,
    ) -> Result<Vec<UserCoupon>, StoreError> {
        self.op()?;
        let Some(ids) = self.state.coupons_by_user.get(&user) else {
            return Ok(Vec::new());
        };
        // Issued in id order, so the list is sorted.
        let start = after.map_or(0, |a| ids.partition_point(|id| *id <= a));
        Ok(ids[start..]
            .iter()
            .filter_map(|id| self.state.user_coupons.get(id).cloned())
            .take(limit)
            .collect())
    }

    async fn issued_count(&mut self, coupon: CouponId) -> Result<u32, StoreError> {
        self.op()?;
        let n = self
            .state
            .holders_by_coupon
            .get(&coupon)
            .map_or(0, Vec::len);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn holders(&mut self, coupon: CouponId) -> Result<Vec<UserId>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .holders_by_coupon
            .get(&coupon)
            .cloned()
            .unwrap_or_default())
    }

    async fn set_state(
        &mut self,
        id: UserCouponId,
        from: UserCouponStatus,
        to: UserCouponStatus,
        order: Option<OrderId>,
    ) -> Result<bool, StoreError> {
        self.op()?;
        let Some(mut uc) = self.state.user_coupons.get(&id).cloned() else {
            return Ok(false);
        };
        if uc.status != from {
            return Ok(false);
        }
        uc.status = to;
        uc.order_id = order;
        self.put_user_coupon(uc);
        Ok(true)
    }

    async fn record_failure(
        &mut self,
        coupon: CouponId,
        user: UserId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.op()?;
        let failures = self.state.failures.entry(coupon).or_default();
        let previous = failures.get(&user).cloned();
        let attempts = previous
            .as_ref()
            .map_or(1, |p| p.attempts.saturating_add(1));
        failures.insert(
            user,
            Failure {
                reason: reason.to_owned(),
                attempts,
                failed_at: now,
            },
        );
        self.on_rollback(move |s| {
            let f = s.failures.entry(coupon).or_default();
            match previous {
                Some(p) => {
                    f.insert(user, p);
                }
                None => {
                    f.remove(&user);
                }
            }
        });
        Ok(())
    }

    async fn clear_failure(&mut self, coupon: CouponId, user: UserId) -> Result<bool, StoreError> {
        self.op()?;
        let Some(previous) = self
            .state
            .failures
            .get_mut(&coupon)
            .and_then(|f| f.remove(&user))
        else {
            return Ok(false);
        };
        self.on_rollback(move |s| {
            s.failures.entry(coupon).or_default().insert(user, previous);
        });
        Ok(true)
    }

    async fn failures(&mut self, coupon: CouponId) -> Result<Vec<UserId>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .failures
            .get(&coupon)
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn failure_records(
        &mut self,
        coupon: CouponId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<IssuanceFailure>, StoreError> {
        self.op()?;
        let Some(failures) = self.state.failures.get(&coupon) else {
            return Ok(Vec::new());
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(failures
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(user, f)| IssuanceFailure {
                user_id: *user,
                reason: f.reason.clone(),
                attempts: f.attempts,
                failed_at: f.failed_at,
            })
            .collect())
    }
}

//! IssueCoupon (LOCKED and FLASH), ListMyCoupons, and the admin's coupon management.

use crate::idempotent::Settled;
use crate::ports::gate::{GateConfig, GateOutcome};
use crate::ports::lock::keys;
use crate::ports::queue::IssuanceRequest;
use crate::views::{CouponStockView, CouponView, IssueView, UserCouponView};
use crate::{AppError, Replayable, Stockade};
use std::collections::HashMap;
use stockade_domain::{
    Coupon, CouponId, DomainError, IdempotencyKey, IssuanceMode, NewCoupon, UserId,
};

fn gate_config(coupon: &Coupon) -> GateConfig {
    GateConfig {
        quantity: coupon.quantity,
        valid_from: coupon.valid_from,
        valid_until: coupon.valid_until,
    }
}

impl Stockade {
    /// Admin: creates a coupon policy (and, for FLASH, its gate).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn create_coupon(&self, new: NewCoupon) -> Result<CouponView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let coupon = uow.coupons().insert(new).await?;
        uow.commit().await?;
        if coupon.mode == IssuanceMode::Flash {
            // New: nobody holds it yet.
            self.core
                .ports
                .gate
                .init(coupon.id, gate_config(&coupon))
                .await?;
        }
        self.core.policies.write().insert(coupon.id, coupon.clone());
        Ok(CouponView::from(&coupon))
    }

    /// Makes sure the gate of a FLASH coupon exists. A gate its backend lost (a restart without
    /// persistence) is created again with every holder the store knows already in it, in one
    /// atomic step, so no reserve can take a place a holder still has. One rebuild at a time per
    /// process and coupon: requests that find the gate gone while it is being rebuilt wait for
    /// that rebuild instead of each reading the store; across processes the gate's own
    /// create-unless-exists decides.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn init_gate(&self, coupon: &Coupon) -> Result<(), AppError> {
        let flight = self
            .core
            .rebuilds
            .lock()
            .entry(coupon.id)
            .or_default()
            .clone();
        let _one_at_a_time = flight.lock().await;
        if self.core.ports.gate.stats(coupon.id).await?.is_some() {
            return Ok(());
        }
        let holders = {
            let mut uow = self.core.ports.store.begin().await?;
            uow.coupons().holders(coupon.id).await?
        };
        let created = self
            .core
            .ports
            .gate
            .rebuild(coupon.id, gate_config(coupon), &holders)
            .await?;
        if created {
            // A consumer may have persisted reservations it had in hand (read from the stream
            // before the gate was lost) between the read above and the rebuild: give them
            // their places too, before anyone else is served by this process.
            let known: std::collections::HashSet<UserId> = holders.iter().copied().collect();
            let now_held = {
                let mut uow = self.core.ports.store.begin().await?;
                uow.coupons().holders(coupon.id).await?
            };
            let mut late = 0_usize;
            for user in now_held.into_iter().filter(|u| !known.contains(u)) {
                if self.core.ports.gate.restore(coupon.id, user).await? {
                    late += 1;
                }
            }
            tracing::info!(coupon = %coupon.id, holders = holders.len() + late, "coupon gate rebuilt from the store");
        }
        Ok(())
    }

    /// Issues one coupon to `user`.
    ///
    /// - LOCKED: lock `coupon:{id}` → check window, holder and quantity → persist → release.
    /// - FLASH: one atomic gate reserve → enqueue; the issuance consumer persists it. If the
    ///   hand-off fails, the reservation is rolled back at once and the answer is
    ///   `BACKEND_UNAVAILABLE`, so nothing is lost silently.
    ///
    /// # Errors
    /// `COUPON_NOT_FOUND`, `INVALID_COUPON` (outside its window), `COUPON_SOLD_OUT`,
    /// `COUPON_ALREADY_ISSUED`, `LOCK_TIMEOUT`, `BACKEND_UNAVAILABLE`.
    #[tracing::instrument(skip_all, fields(coupon = %coupon_id, user = %user))]
    pub async fn issue_coupon(
        &self,
        coupon_id: CouponId,
        user: UserId,
    ) -> Result<IssueView, AppError> {
        let coupon = self.policy(coupon_id).await?;
        match coupon.mode {
            IssuanceMode::Locked => self.issue_locked(&coupon, user).await,
            IssuanceMode::Flash => self.issue_flash(&coupon, user).await,
        }
    }

    /// [`Stockade::issue_coupon`] with an optional idempotency key: a retry with the same key
    /// gets the first answer again.
    ///
    /// # Errors
    /// As [`Stockade::issue_coupon`], plus the idempotency outcomes.
    pub async fn issue_coupon_keyed(
        &self,
        coupon_id: CouponId,
        user: UserId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<IssueView>, AppError> {
        let canonical = format!("coupon={coupon_id}");
        self.idempotent(user, key, "issue-coupon", canonical, |_| async {
            Settled::unrecorded(self.issue_coupon(coupon_id, user).await)
        })
        .await
    }

    /// A LOCKED issuance: under the coupon's lock, in one unit of work. Requests for one coupon
    /// that arrive together share one grant, one unit and one commit (docs/decisions/0012),
    /// each answered as if issued one after the other.
    async fn issue_locked(&self, coupon: &Coupon, user: UserId) -> Result<IssueView, AppError> {
        let now = self.core.ports.clock.now();
        coupon.check_issuable(now)?;
        if self.core.sold_out.coupon_sold_out(coupon.id) {
            metrics::counter!("stockade_fast_path_refusals_total", "use_case" => "issue_coupon")
                .increment(1);
            return Err(DomainError::CouponSoldOut.into());
        }
        let app = self.clone();
        self.core
            .coupon_lanes
            .submit(
                coupon.id,
                (coupon.clone(), user),
                move |jobs: Vec<(Coupon, UserId)>| {
                    let app = app.clone();
                    async move { app.issue_locked_batch(jobs).await }
                },
            )
            .await
            .map_err(|_| AppError::Internal("the issuance's turn failed".into()))?
    }

    /// One turn of LOCKED issuances of one coupon.
    async fn issue_locked_batch(
        &self,
        jobs: Vec<(Coupon, UserId)>,
    ) -> Vec<Result<IssueView, AppError>> {
        metrics::histogram!("stockade_combine_batch_size", "use_case" => "issue_coupon")
            .record(jobs.len() as f64);
        let Some((coupon, _)) = jobs.first() else {
            return Vec::new();
        };
        let users: Vec<UserId> = jobs.iter().map(|(_, u)| *u).collect();
        match self.issue_turns(coupon, &users).await {
            Ok(answers) => {
                if answers
                    .iter()
                    .any(|a| matches!(a, Err(DomainError::CouponSoldOut)))
                {
                    self.core.sold_out.mark_coupon(coupon.id);
                }
                answers
                    .into_iter()
                    .map(|a| {
                        a.map(|issued| IssueView {
                            coupon_id: issued.coupon_id.get(),
                            user_id: issued.user_id.get(),
                            user_coupon_id: Some(issued.id.get()),
                            status: "ISSUED".to_owned(),
                        })
                        .map_err(AppError::from)
                    })
                    .collect()
            }
            Err(e) => users.iter().map(|_| Err(e.shared())).collect(),
        }
    }

    /// Issues to `users` in order under the coupon's lock, running the turn again (up to three
    /// times in all) while the store reports contention.
    async fn issue_turns(
        &self,
        coupon: &Coupon,
        users: &[UserId],
    ) -> Result<Vec<Result<stockade_domain::UserCoupon, DomainError>>, AppError> {
        self.retry_contention(|| async {
            let now = self.core.ports.clock.now();
            let mut guard = self.enter(&[keys::coupon(coupon.id)]).await?;
            let uow = guard.begin().await?;
            let answers = uow.coupons().issue_each(coupon, users, now).await?;
            guard.finish().await?;
            Ok(answers)
        })
        .await
    }

    async fn issue_flash(&self, coupon: &Coupon, user: UserId) -> Result<IssueView, AppError> {
        let now = self.core.ports.clock.now();
        let mut outcome = self.core.ports.gate.reserve(coupon.id, user, now).await?;
        if outcome == GateOutcome::NotInitialised {
            // A gate lost with its backend (or never created on this one): rebuild it from the
            // store (its policy and everyone who already holds the coupon) before it serves.
            self.init_gate(coupon).await?;
            outcome = self.core.ports.gate.reserve(coupon.id, user, now).await?;
        }
        match outcome {
            GateOutcome::Reserved => {}
            GateOutcome::SoldOut => return Err(DomainError::CouponSoldOut.into()),
            GateOutcome::AlreadyIssued => return Err(DomainError::CouponAlreadyIssued.into()),
            GateOutcome::Expired => {
                return Err(DomainError::InvalidCoupon(format!(
                    "coupon {} is not valid at this time",
                    coupon.id
                ))
                .into())
            }
            GateOutcome::NotInitialised => {
                return Err(AppError::Internal(format!(
                    "gate of coupon {} could not be created",
                    coupon.id
                )))
            }
        }
        let request = IssuanceRequest {
            coupon_id: coupon.id,
            user_id: user,
            reserved_at: now,
        };
        if let Err(e) = self.core.ports.queue.publish(request).await {
            tracing::warn!(error = %e, "issuance hand-off failed; rolling the reservation back");
            if let Err(rb) = self.core.ports.gate.rollback(coupon.id, user).await {
                tracing::error!(error = %rb, "rollback failed; reconciliation will repair it");
            }
            return Err(AppError::Unavailable(e));
        }
        Ok(IssueView {
            coupon_id: coupon.id.get(),
            user_id: user.get(),
            user_coupon_id: None,
            status: "RESERVED".to_owned(),
        })
    }

    /// The coupons a user holds, with statuses as of now.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn my_coupons(&self, user: UserId) -> Result<Vec<UserCouponView>, AppError> {
        let now = self.core.ports.clock.now();
        let mut uow = self.core.ports.store.begin().await?;
        let held = uow.coupons().user_coupons(user).await?;
        let mut policies: HashMap<CouponId, Coupon> = HashMap::new();
        let mut out = Vec::with_capacity(held.len());
        for uc in &held {
            if !policies.contains_key(&uc.coupon_id) {
                if let Some(c) = uow.coupons().get(uc.coupon_id).await? {
                    policies.insert(c.id, c);
                }
            }
            if let Some(c) = policies.get(&uc.coupon_id) {
                out.push(UserCouponView::new(uc, c, now));
            }
        }
        out.sort_by_key(|v| v.user_coupon_id);
        Ok(out)
    }

    /// Admin: a coupon's counters. For FLASH, `remaining`/`reserved` come from the gate and
    /// `persisted`/`failed` from the store; for LOCKED all come from the store.
    ///
    /// # Errors
    /// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
    pub async fn coupon_stock(&self, coupon_id: CouponId) -> Result<CouponStockView, AppError> {
        let coupon = self.policy(coupon_id).await?;
        let mut uow = self.core.ports.store.begin().await?;
        let persisted = uow.coupons().issued_count(coupon_id).await?;
        let failed =
            u32::try_from(uow.coupons().failures(coupon_id).await?.len()).unwrap_or(u32::MAX);
        drop(uow);
        let (remaining, reserved) = match coupon.mode {
            IssuanceMode::Locked => (coupon.quantity.saturating_sub(persisted), persisted),
            IssuanceMode::Flash => match self.core.ports.gate.stats(coupon_id).await? {
                Some(stats) => (stats.remaining, stats.reserved),
                None => (coupon.quantity.saturating_sub(persisted), persisted),
            },
        };
        Ok(CouponStockView {
            coupon_id: coupon_id.get(),
            quantity: coupon.quantity,
            remaining,
            reserved,
            persisted,
            failed,
        })
    }

    /// One coupon policy.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn coupon(&self, coupon_id: CouponId) -> Result<CouponView, AppError> {
        Ok(CouponView::from(&self.policy(coupon_id).await?))
    }
}

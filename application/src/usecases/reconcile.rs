//! Reconcile: make a FLASH coupon's gate and store agree.
//!
//! For each user the gate holds but the store does not, the reservation is persisted now (the
//! consumer's persistence is idempotent, so racing it is harmless); only if the store refuses
//! (sold out, coupon gone) is it recorded as failed and rolled back, so the user may try again. For each user the store
//! holds but the gate lost (its backend restarted without persistence), the reservation is
//! restored in the gate. What reconciliation cannot recover: a reservation whose gate entry
//! was lost before the store ever saw it, and whose queue message was lost too — the user
//! simply holds nothing and may ask again.

use crate::views::ReconcileReport;
use crate::{AppError, Stockade};
use std::collections::HashSet;
use stockade_domain::{CouponId, DomainError, IssuanceMode, UserId};

impl Stockade {
    /// Reconciles every FLASH coupon; the report sums theirs.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn reconcile_all(&self) -> Result<ReconcileReport, AppError> {
        let coupons = {
            let mut uow = self.core.ports.store.begin().await?;
            uow.coupons().list().await?
        };
        let mut total = ReconcileReport {
            checked: 0,
            repaired: 0,
            rolled_back: 0,
        };
        for coupon in coupons.iter().filter(|c| c.mode == IssuanceMode::Flash) {
            let r = self.reconcile(coupon.id).await?;
            total.checked += r.checked;
            total.repaired += r.repaired;
            total.rolled_back += r.rolled_back;
        }
        Ok(total)
    }

    /// # Errors
    /// `COUPON_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
    #[tracing::instrument(skip_all, fields(coupon = %coupon_id))]
    pub async fn reconcile(&self, coupon_id: CouponId) -> Result<ReconcileReport, AppError> {
        let coupon = self.policy(coupon_id).await?;
        let mut report = ReconcileReport {
            checked: 0,
            repaired: 0,
            rolled_back: 0,
        };
        if coupon.mode != IssuanceMode::Flash {
            return Ok(report);
        }
        if self.core.ports.gate.stats(coupon_id).await?.is_none() {
            self.init_gate(&coupon).await?;
        }
        let gate: HashSet<UserId> = self
            .core
            .ports
            .gate
            .holders(coupon_id)
            .await?
            .into_iter()
            .collect();
        let stored: HashSet<UserId> = {
            let mut uow = self.core.ports.store.begin().await?;
            uow.coupons()
                .holders(coupon_id)
                .await?
                .into_iter()
                .collect()
        };
        report.checked = u32::try_from(gate.union(&stored).count()).unwrap_or(u32::MAX);
        for user in gate.difference(&stored) {
            // Persist it (harmless if the consumer does too); roll it back only if the store
            // refuses. A failure recorded earlier does not decide: the user may have reserved
            // again since.
            let now = self.core.ports.clock.now();
            let mut uow = self.core.ports.store.begin().await?;
            match uow.coupons().issue(&coupon, *user, now).await {
                Ok(_) => {
                    uow.commit().await?;
                    report.repaired += 1;
                }
                Err(crate::ports::store::StoreError::Rejected(
                    DomainError::CouponAlreadyIssued,
                )) => {}
                Err(crate::ports::store::StoreError::Rejected(e)) => {
                    drop(uow);
                    let mut uow = self.core.ports.store.begin().await?;
                    uow.coupons()
                        .record_failure(coupon_id, *user, &e.to_string(), now)
                        .await?;
                    uow.commit().await?;
                    if self.core.ports.gate.rollback(coupon_id, *user).await? {
                        report.rolled_back += 1;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        for user in stored.difference(&gate) {
            if self.core.ports.gate.restore(coupon_id, *user).await? {
                report.repaired += 1;
            }
        }
        Ok(report)
    }
}

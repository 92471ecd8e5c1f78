//! The state every use case runs against: the ports, the settings, and what this process keeps
//! between requests (cached policies, combining lanes, sold-out marks, idempotency batches).
//!
//! The helpers here are the steps use cases share: enter a section, retry a unit that
//! collided, run detached from the caller, read a coupon policy, tell of restocks and sales.

use super::combine::Combiner;
use super::lanes::{ChargeLanes, CouponLanes, OrderLanes};
use super::section::{FencedSections, Guarded};
use super::soldout::SoldOut;
use crate::error::AppError;
use crate::ports::idempotency::{Begin, Claim, IdempotencyError, StoredOutcome, Ticket};
use crate::ports::lock::{LockKey, LockOptions};
use crate::ports::section::Sections;
use crate::ports::Ports;
use crate::settings::Settings;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use stockade_domain::{Coupon, CouponId, DomainError, Order, ProductId, Timestamp};

/// Everything a use case reaches through. One per [`crate::Stockade`], shared by its clones.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) ports: Ports,
    pub(crate) settings: Settings,
    /// The write path: the ports' own sections, or the generic ones over their locks and store.
    pub(crate) sections: Arc<dyn Sections>,
    /// Coupon policies never change once created, so the FLASH hot path reads them from here
    /// instead of the store.
    pub(crate) policies: RwLock<HashMap<CouponId, Coupon>>,
    /// One gate rebuild at a time per coupon (see `engine::gate::init_gate`).
    pub(crate) rebuilds: parking_lot::Mutex<HashMap<CouponId, Arc<tokio::sync::Mutex<()>>>>,
    /// Create-order requests queued per product set, run in combined turns.
    pub(crate) order_lanes: OrderLanes,
    /// What this instance knows to be sold out (the fast path).
    pub(crate) sold_out: SoldOut,
    /// Charges queued per wallet, run in combined turns.
    pub(crate) charge_lanes: ChargeLanes,
    /// Idempotency claims, made in batches.
    pub(crate) claims: Combiner<(), Claim, Result<Begin, IdempotencyError>>,
    /// Idempotency outcomes recorded after their work, in batches.
    pub(crate) completions: Combiner<(), (Ticket, StoredOutcome), Result<(), IdempotencyError>>,
    /// LOCKED issuances queued per coupon, run in combined turns.
    pub(crate) coupon_lanes: CouponLanes,
}

impl Context {
    pub(crate) fn new(ports: Ports, settings: Settings) -> Self {
        Context {
            sections: ports.sections.clone().unwrap_or_else(|| {
                Arc::new(FencedSections::new(
                    ports.locks.clone(),
                    ports.store.clone(),
                ))
            }),
            ports,
            policies: RwLock::default(),
            rebuilds: parking_lot::Mutex::default(),
            order_lanes: Combiner::new(settings.combine_max_batch),
            coupon_lanes: Combiner::new(settings.combine_max_batch),
            claims: Combiner::new(settings.combine_max_batch),
            charge_lanes: Combiner::new(settings.combine_max_batch),
            completions: Combiner::new(settings.combine_max_batch),
            sold_out: SoldOut::new(settings.sold_out_ttl),
            settings,
        }
    }

    /// The current time, from the clock port.
    pub(crate) fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    /// Runs a use case in a task of its own, so that a caller that goes away (a client that
    /// disconnects, a request that times out) cannot cut it off between its commit and its
    /// idempotency record, or in the middle of a payment saga.
    pub(crate) async fn detached<T, F, Fut>(self: &Arc<Self>, run: F) -> Result<T, AppError>
    where
        F: FnOnce(Arc<Context>) -> Fut,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(run(Arc::clone(self)))
            .await
            .map_err(|e| AppError::Internal(format!("the use case's task failed: {e}")))?
    }

    /// Runs `run` detached (see [`Context::detached`]) while holding the lock `key` (with the
    /// configured wait and lease), releasing it after; `what` names the lock in the log line of
    /// a release that failed (its lease bounds it then).
    pub(crate) async fn detached_under_lock<T, F, Fut>(
        self: &Arc<Self>,
        key: LockKey,
        what: &'static str,
        run: F,
    ) -> Result<T, AppError>
    where
        F: FnOnce(Arc<Context>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AppError>> + Send + 'static,
        T: Send + 'static,
    {
        self.detached(move |ctx| async move {
            let options = LockOptions::new(ctx.settings.lock_wait, ctx.settings.lock_lease);
            let guard = ctx.ports.locks.acquire(&[key], options).await?;
            let answer = run(Arc::clone(&ctx)).await;
            if let Err(e) = guard.release().await {
                tracing::debug!(error = %e, lock = what, "lock not released; its lease bounds it");
            }
            answer
        })
        .await
    }

    /// Runs `attempt` again (up to three times in all, with a short pause) while the store
    /// answers that the unit of work collided with a concurrent one.
    pub(crate) async fn retry_contention<T, F, Fut>(&self, mut attempt: F) -> Result<T, AppError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let mut tries = 0u64;
        loop {
            tries += 1;
            match attempt().await {
                Err(AppError::Contention) if tries < 3 => {
                    tracing::debug!(tries, "unit of work collided; running it again");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * tries)).await;
                }
                other => return other,
            }
        }
    }

    /// Enters a section over `keys` with the configured wait and lease: where every write
    /// begins (see [`Guarded`]).
    pub(crate) async fn enter(&self, keys: &[LockKey]) -> Result<Guarded, AppError> {
        let options = LockOptions::new(self.settings.lock_wait, self.settings.lock_lease);
        let section = self.sections.enter(keys, options).await.inspect_err(|e| {
            tracing::debug!(error = %e, "lock not acquired");
        })?;
        Ok(Guarded {
            section,
            ttl: self.settings.idempotency_ttl,
        })
    }

    /// The coupon policy, from the cache or the store.
    pub(crate) async fn policy(&self, id: CouponId) -> Result<Coupon, AppError> {
        if let Some(c) = self.policies.read().get(&id) {
            return Ok(c.clone());
        }
        let mut uow = self.ports.store.begin().await?;
        let coupon = uow
            .coupons()
            .get(id)
            .await?
            .ok_or(DomainError::CouponNotFound(id.get()))?;
        self.policies.write().insert(id, coupon.clone());
        Ok(coupon)
    }

    /// Tells this instance and every other that `products` have stock again: after the commit
    /// that restored it. A failed publish is logged; the marks' time-to-live covers it.
    pub(crate) async fn restocked(&self, products: Vec<ProductId>) {
        for p in products {
            self.sold_out.forget(p);
            let change = crate::ports::changes::Change::Restocked(p);
            if let Err(e) = self.ports.changes.publish(change).await {
                tracing::warn!(error = %e, product = %p, "restock not published");
            }
        }
    }

    /// Tells the sales counter (if any) about a paid order, or a paid order taken back. Best
    /// effort: the order is committed either way; a missed count only skews the ranking.
    pub(crate) async fn count_sales(&self, order: &Order, at: Timestamp, paid: bool) {
        let Some(counter) = &self.ports.sales else {
            return;
        };
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity.get()))
            .collect();
        let counted = if paid {
            counter.record(&lines, at).await
        } else {
            counter.unrecord(&lines, order.updated_at).await
        };
        if let Err(e) = counted {
            tracing::warn!(error = %e, order = %order.id, "sales not counted for the ranking");
        }
    }
}

/// A duration in whole milliseconds, saturating (for timestamps, which count milliseconds).
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

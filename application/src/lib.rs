//! # stockade-application
//!
//! Stockade's use cases, written once against [`ports`] so the same code runs on the in-memory
//! adapters (tests, demos, one node) and on Postgres + Redis (production, many nodes).
//!
//! The entry point is [`Stockade`]: build it from a [`Ports`] bundle and [`Settings`], then call
//! one method per use case. Every write path follows one ordering rule (docs/decisions/0002):
//! **acquire locks → begin the unit of work → check fencing tokens → write → commit → release
//! locks**; a lock is never released before the commit it protects.
//!
//! Charge, create-order and pay take an optional [`IdempotencyKey`]: with one, the effect
//! happens at most once and every retry gets the first answer (docs/decisions/0003).

mod combine;
mod error;
mod idempotent;
pub mod ports;
mod section;
mod settings;
mod soldout;
pub mod usecases;
pub mod views;

pub use error::{AppError, BackendError};
pub use idempotent::Replayable;
pub use ports::Ports;
pub use section::FencedSections;
pub use settings::Settings;

use parking_lot::RwLock;
use ports::lock::{LockKey, LockOptions};
use ports::section::Sections;
use section::Guarded;
use std::collections::HashMap;
use std::sync::Arc;
use stockade_domain::{Coupon, CouponId, DomainError, IdempotencyKey, UserId};

/// The application: every use case, over a set of ports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stockade {
    /// One allocation shared by every clone: a request handler clones the application, so a
    /// clone is one reference count, not one per port.
    core: Arc<Core>,
}

#[derive(Debug)]
struct Core {
    ports: Ports,
    settings: Settings,
    /// The write path: the ports' own sections, or the generic ones over their locks and store.
    sections: Arc<dyn Sections>,
    /// Coupon policies never change once created, so the FLASH hot path reads them from here
    /// instead of the store.
    policies: RwLock<HashMap<CouponId, Coupon>>,
    /// One gate rebuild at a time per coupon (see [`Stockade::init_gate`]).
    rebuilds: parking_lot::Mutex<HashMap<CouponId, Arc<tokio::sync::Mutex<()>>>>,
    /// Create-order requests queued per product set, run in combined turns.
    order_lanes: usecases::create_order::OrderLanes,
    /// What this instance knows to be sold out (the fast path).
    sold_out: soldout::SoldOut,
    /// Charges queued per wallet, run in combined turns.
    charge_lanes: usecases::balance::ChargeLanes,
    /// Idempotency claims, made in batches.
    claims: combine::Combiner<
        (),
        ports::idempotency::Claim,
        Result<ports::idempotency::Begin, ports::idempotency::IdempotencyError>,
    >,
    /// Idempotency outcomes recorded after their work, in batches.
    completions: combine::Combiner<
        (),
        (
            ports::idempotency::Ticket,
            ports::idempotency::StoredOutcome,
        ),
        Result<(), ports::idempotency::IdempotencyError>,
    >,
    /// LOCKED issuances queued per coupon, run in combined turns.
    coupon_lanes: combine::Combiner<CouponId, (Coupon, UserId), Result<views::IssueView, AppError>>,
}

impl Stockade {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        Stockade {
            core: Arc::new(Core {
                sections: ports.sections.clone().unwrap_or_else(|| {
                    Arc::new(FencedSections::new(
                        ports.locks.clone(),
                        ports.store.clone(),
                    ))
                }),
                ports,
                policies: RwLock::default(),
                rebuilds: parking_lot::Mutex::default(),
                order_lanes: combine::Combiner::new(settings.combine_max_batch),
                coupon_lanes: combine::Combiner::new(settings.combine_max_batch),
                claims: combine::Combiner::new(settings.combine_max_batch),
                charge_lanes: combine::Combiner::new(settings.combine_max_batch),
                completions: combine::Combiner::new(settings.combine_max_batch),
                sold_out: soldout::SoldOut::new(settings.sold_out_ttl),
                settings,
            }),
        }
    }

    pub fn ports(&self) -> &Ports {
        &self.core.ports
    }

    pub fn settings(&self) -> &Settings {
        &self.core.settings
    }

    /// Whether the backends answer: the store opens a unit, the queue reports its depth and the
    /// lock manager could grant (a Redlock majority answers).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` naming nothing but the failure.
    pub async fn ready(&self) -> Result<(), AppError> {
        drop(self.core.ports.store.begin().await?);
        self.core.ports.queue.depth().await?;
        self.core.ports.locks.check().await?;
        Ok(())
    }

    /// How many create-order and LOCKED-issue requests wait for a combined turn now, over every
    /// key (docs/decisions/0012).
    pub fn combining_queue_depth(&self) -> usize {
        self.core.order_lanes.depth() + self.core.coupon_lanes.depth()
    }

    /// Forgets cached coupon policies (after the store was reset underneath).
    pub fn forget_cached_policies(&self) {
        self.core.policies.write().clear();
        self.core.sold_out.forget_coupons();
        self.core.sold_out.forget_all();
    }

    /// Follows the change feed until `shutdown` turns true, dropping the sold-out marks of
    /// products restocked anywhere. Run one per process (bootstrap's workers do).
    pub async fn follow_changes(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use ports::changes::Change;
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = self.core.ports.changes.subscribe();
        // Marks made before the subscription may have missed a change.
        self.core.sold_out.forget_all();
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(Change::Restocked(p)) => self.core.sold_out.forget(p),
                    Ok(Change::Everything) | Err(RecvError::Lagged(_)) => {
                        self.core.sold_out.forget_all();
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Tells this instance and every other that `products` have stock again: after the commit
    /// that restored it. A failed publish is logged; the marks' time-to-live covers it.
    async fn restocked(&self, products: Vec<stockade_domain::ProductId>) {
        for p in products {
            self.core.sold_out.forget(p);
            let change = ports::changes::Change::Restocked(p);
            if let Err(e) = self.core.ports.changes.publish(change).await {
                tracing::warn!(error = %e, product = %p, "restock not published");
            }
        }
    }

    /// Runs a use case in a task of its own, so that a caller that goes away (a client that
    /// disconnects, a request that times out) cannot cut it off between its commit and its
    /// idempotency record, or in the middle of a payment saga.
    async fn detached<T, F, Fut>(&self, run: F) -> Result<T, AppError>
    where
        F: FnOnce(Stockade) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(run(self.clone()))
            .await
            .map_err(|e| AppError::Internal(format!("the use case's task failed: {e}")))?
    }

    /// Runs `attempt` again (up to three times in all, with a short pause) while the store
    /// answers that the unit of work collided with a concurrent one.
    async fn retry_contention<T, F, Fut>(&self, mut attempt: F) -> Result<T, AppError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
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
    async fn enter(&self, keys: &[LockKey]) -> Result<Guarded, AppError> {
        let options = LockOptions::new(self.core.settings.lock_wait, self.core.settings.lock_lease);
        let section = self
            .core
            .sections
            .enter(keys, options)
            .await
            .inspect_err(|e| {
                tracing::debug!(error = %e, "lock not acquired");
            })?;
        Ok(Guarded {
            section,
            ttl: self.core.settings.idempotency_ttl,
        })
    }

    /// The coupon policy, from the cache or the store.
    async fn policy(&self, id: CouponId) -> Result<Coupon, AppError> {
        if let Some(c) = self.core.policies.read().get(&id) {
            return Ok(c.clone());
        }
        let mut uow = self.core.ports.store.begin().await?;
        let coupon = uow
            .coupons()
            .get(id)
            .await?
            .ok_or(DomainError::CouponNotFound(id.get()))?;
        self.core.policies.write().insert(id, coupon.clone());
        Ok(coupon)
    }
}

/// Parses an optional raw idempotency key (for callers holding strings).
///
/// # Errors
/// `INVALID_INPUT` for an empty, over-long or malformed key.
pub fn idempotency_key(raw: Option<&str>) -> Result<Option<IdempotencyKey>, AppError> {
    Ok(raw.map(IdempotencyKey::parse).transpose()?)
}

//! Decorators that publish metrics about a port without the use cases knowing: lock waits and
//! time-outs per backend, idempotency replays and conflicts, gate outcomes.

use async_trait::async_trait;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome, GateStats};
use stockade_application::ports::idempotency::{
    Begin, Claim, Fingerprint, IdempotencyError, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_application::ports::lock::{LockError, LockGuard, LockKey, LockManager, LockOptions};
use stockade_application::ports::section::{Section, Sections};
use stockade_application::BackendError;
use stockade_domain::{CouponId, IdempotencyKey, Timestamp, UserId};

#[derive(Debug)]
pub struct MeteredLocks {
    pub inner: Arc<dyn LockManager>,
    pub backend: &'static str,
}

/// Publishes how long an acquisition took and how it failed.
fn record_wait<T>(backend: &'static str, started: Instant, r: &Result<T, LockError>) {
    metrics::histogram!("lock_wait_seconds", "backend" => backend)
        .record(started.elapsed().as_secs_f64());
    match r {
        Ok(_) => {}
        Err(LockError::Timeout) => {
            metrics::counter!("lock_timeouts_total", "backend" => backend).increment(1)
        }
        Err(_) => metrics::counter!("lock_errors_total", "backend" => backend).increment(1),
    }
}

#[async_trait]
impl LockManager for MeteredLocks {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let started = Instant::now();
        let r = self.inner.acquire(keys, options).await;
        record_wait(self.backend, started, &r);
        r
    }

    async fn check(&self) -> Result<(), LockError> {
        self.inner.check().await
    }
}

/// Lock waits of sections that take their keys without a [`LockManager`] of the ports (the
/// Postgres sections on the lock's sessions).
#[derive(Debug)]
pub struct MeteredSections {
    pub inner: Arc<dyn Sections>,
    pub backend: &'static str,
}

#[async_trait]
impl Sections for MeteredSections {
    async fn enter(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<Box<dyn Section>, LockError> {
        let started = Instant::now();
        let r = self.inner.enter(keys, options).await;
        record_wait(self.backend, started, &r);
        r
    }
}

/// Counts a claim's answer by outcome.
fn count_begin(r: &Result<Begin, IdempotencyError>) {
    let outcome = match r {
        Ok(Begin::Started(_)) => "started",
        Ok(Begin::Replay(_)) => "replayed",
        Ok(Begin::InProgress { .. }) => "in_progress",
        Ok(Begin::Mismatch) => "mismatch",
        Err(_) => "error",
    };
    metrics::counter!("idempotency_begins_total", "outcome" => outcome).increment(1);
}

#[derive(Debug)]
pub struct MeteredIdempotency {
    pub inner: Arc<dyn IdempotencyStore>,
}

#[async_trait]
impl IdempotencyStore for MeteredIdempotency {
    async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Begin, IdempotencyError> {
        let r = self.inner.begin(scope, key, fingerprint, lease).await;
        count_begin(&r);
        r
    }

    async fn complete_many(
        &self,
        outcomes: &[(Ticket, StoredOutcome)],
        ttl: Duration,
    ) -> Vec<Result<(), IdempotencyError>> {
        self.inner.complete_many(outcomes, ttl).await
    }

    async fn begin_many(
        &self,
        claims: &[Claim],
        lease: Duration,
    ) -> Vec<Result<Begin, IdempotencyError>> {
        let answers = self.inner.begin_many(claims, lease).await;
        answers.iter().for_each(count_begin);
        answers
    }

    async fn complete(
        &self,
        ticket: &Ticket,
        outcome: StoredOutcome,
        ttl: Duration,
    ) -> Result<(), IdempotencyError> {
        self.inner.complete(ticket, outcome, ttl).await
    }

    async fn abandon(&self, ticket: &Ticket) -> Result<(), IdempotencyError> {
        self.inner.abandon(ticket).await
    }

    async fn purge_expired(&self) -> Result<u64, IdempotencyError> {
        self.inner.purge_expired().await
    }
}

/// Counts the gate's answers by outcome. The counters are looked up in the recorder once, on
/// first use, rather than on every reserve (the hot path of a drop).
#[derive(Debug)]
pub struct MeteredGate {
    inner: Arc<dyn CouponGate>,
    outcomes: [OnceLock<metrics::Counter>; OUTCOMES.len()],
}

const OUTCOMES: [&str; 6] = [
    "reserved",
    "sold_out",
    "already_issued",
    "not_initialised",
    "expired",
    "error",
];

impl MeteredGate {
    pub fn new(inner: Arc<dyn CouponGate>) -> Self {
        MeteredGate {
            inner,
            outcomes: Default::default(),
        }
    }
}

#[async_trait]
impl CouponGate for MeteredGate {
    async fn init(&self, coupon: CouponId, config: GateConfig) -> Result<(), BackendError> {
        self.inner.init(coupon, config).await
    }

    async fn rebuild(
        &self,
        coupon: CouponId,
        config: GateConfig,
        holders: &[UserId],
    ) -> Result<bool, BackendError> {
        let r = self.inner.rebuild(coupon, config, holders).await;
        if matches!(r, Ok(true)) {
            metrics::counter!("coupon_gate_rebuilds_total").increment(1);
        }
        r
    }

    async fn reserve(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
    ) -> Result<GateOutcome, BackendError> {
        let r = self.inner.reserve(coupon, user, now).await;
        let i = match &r {
            Ok(GateOutcome::Reserved) => 0,
            Ok(GateOutcome::SoldOut) => 1,
            Ok(GateOutcome::AlreadyIssued) => 2,
            Ok(GateOutcome::NotInitialised) => 3,
            Ok(GateOutcome::Expired) => 4,
            Err(_) => 5,
        };
        self.outcomes[i]
            .get_or_init(
                || metrics::counter!("coupon_gate_outcomes_total", "outcome" => OUTCOMES[i]),
            )
            .increment(1);
        r
    }

    async fn rollback(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        self.inner.rollback(coupon, user).await
    }

    async fn restore(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        self.inner.restore(coupon, user).await
    }

    async fn stats(&self, coupon: CouponId) -> Result<Option<GateStats>, BackendError> {
        self.inner.stats(coupon).await
    }

    async fn holders(&self, coupon: CouponId) -> Result<Vec<UserId>, BackendError> {
        self.inner.holders(coupon).await
    }
}

//! An application on the memory backend, with seeding helpers and invariant checks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::Clock;
use stockade_application::ports::gate::CouponGate;
use stockade_application::ports::queue::IssuanceQueue;
use stockade_application::ports::store::Store;
use stockade_application::{Settings, Stockade};
use stockade_domain::{
    ChargeAmount, CouponId, Discount, IssuanceMode, NewCoupon, NewProduct, ProductId, UserId,
};
use stockade_memory::{ManualClock, MemoryBackend};

/// 2026-01-01T00:00:00Z, where every test clock starts.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// The application and its concrete memory adapters.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub app: Stockade,
    pub backend: MemoryBackend,
    pub clock: ManualClock,
}

pub fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

impl TestApp {
    /// Default settings, a manual clock.
    pub fn new() -> Self {
        Self::with_settings(Settings::default())
    }

    pub fn with_settings(settings: Settings) -> Self {
        let clock = ManualClock::at(EPOCH_MS);
        let backend = MemoryBackend::new(Arc::new(clock.clone()) as Arc<dyn Clock>);
        let app = Stockade::new(backend.ports(), settings);
        TestApp {
            app,
            backend,
            clock,
        }
    }

    /// The application on Postgres storage, locks and idempotency (in `db`'s schema), guarded
    /// units running on the lock sessions as the service wires them; the gate, queue, platform
    /// and caches stay in memory.
    pub async fn on_postgres(db: &crate::pg::TestDb, settings: Settings) -> Self {
        let clock = ManualClock::at(EPOCH_MS);
        let backend = MemoryBackend::new(Arc::new(clock.clone()) as Arc<dyn Clock>);
        let mut ports = backend.ports();
        let locks = db.locks().await;
        ports.store = Arc::new(db.store());
        ports.sections = Some(Arc::new(
            stockade_postgres::PgSections::on_lock_sessions(db.store(), locks.clone())
                .recording_outcomes(),
        ));
        ports.locks = Arc::new(locks);
        ports.idempotency = Arc::new(db.idempotency(ports.ids.clone()));
        ports.changes = Arc::new(stockade_postgres::PgChangeFeed::start(db.pool.clone()));
        let app = Stockade::new(ports, settings);
        TestApp {
            app,
            backend,
            clock,
        }
    }

    /// The application on Postgres (in `db`'s schema) for locks and idempotency, with the
    /// given store, gate and queue (the Redis pipeline, a store behind a proxy…).
    pub async fn on_pipeline(
        db: &crate::pg::TestDb,
        store: Arc<dyn Store>,
        gate: Arc<dyn CouponGate>,
        queue: Arc<dyn IssuanceQueue>,
        settings: Settings,
    ) -> Self {
        let clock = ManualClock::at(EPOCH_MS);
        let backend = MemoryBackend::new(Arc::new(clock.clone()) as Arc<dyn Clock>);
        let mut ports = backend.ports();
        ports.store = store;
        ports.gate = gate;
        ports.queue = queue;
        ports.locks = Arc::new(db.locks().await);
        ports.idempotency = Arc::new(db.idempotency(ports.ids.clone()));
        let app = Stockade::new(ports, settings);
        TestApp {
            app,
            backend,
            clock,
        }
    }

    pub async fn product(&self, price: i64, stock: i64, max_per_order: i64) -> ProductId {
        let p = self
            .app
            .create_product(NewProduct::new("product", price, stock, max_per_order).unwrap())
            .await
            .unwrap();
        ProductId::new(p.id).unwrap()
    }

    pub async fn coupon(
        &self,
        kind: &str,
        discount: Discount,
        min_order: i64,
        quantity: i64,
        mode: IssuanceMode,
    ) -> CouponId {
        let c = self
            .app
            .create_coupon(
                NewCoupon::new(
                    "coupon",
                    kind,
                    discount,
                    min_order,
                    quantity,
                    mode.as_str(),
                    None,
                    None,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        CouponId::new(c.id).unwrap()
    }

    pub async fn charge(&self, user_id: i64, amount: i64) {
        self.app
            .charge(
                stockade_application::usecases::charge_balance::ChargeBalance {
                    user_id: user(user_id),
                    amount: ChargeAmount::new(amount).unwrap(),
                },
                None,
            )
            .await
            .unwrap();
    }

    /// Runs the issuance consumer until the queue has nothing left to persist.
    pub async fn drain(&self) {
        for _ in 0..10_000 {
            let depth = self.app.ports().queue.depth().await.unwrap();
            if depth.is_drained() {
                return;
            }
            self.app
                .consume_issuances(256, Duration::from_millis(20))
                .await
                .unwrap();
        }
        panic!("the issuance queue did not drain");
    }

    /// Invariants 1–5 of docs/design.md as far as the store and gate show them: the audit finds
    /// nothing, and for every FLASH coupon the gate's holders equal the store's holders (after
    /// a drain) with no user twice.
    pub async fn assert_invariants(&self, flash_coupons: &[CouponId]) {
        let report = self.app.audit().await.unwrap();
        assert!(
            report.violations.is_empty(),
            "invariants violated: {:#?}",
            report.violations
        );
        for coupon in flash_coupons {
            let gate: Vec<UserId> = self.app.ports().gate.holders(*coupon).await.unwrap();
            let mut uow = self.app.ports().store.begin().await.unwrap();
            let stored = uow.coupons().holders(*coupon).await.unwrap();
            drop(uow);
            let stored_set: HashSet<_> = stored.iter().copied().collect();
            assert_eq!(
                stored.len(),
                stored_set.len(),
                "a user holds coupon {coupon} twice"
            );
            let gate_set: HashSet<_> = gate.into_iter().collect();
            assert_eq!(
                gate_set, stored_set,
                "gate and store disagree on coupon {coupon}"
            );
        }
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

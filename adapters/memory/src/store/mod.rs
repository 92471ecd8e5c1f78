//! The in-memory store: every repository over one state, behind one async mutex.
//!
//! A unit of work holds the mutex from `begin` to `commit` (or drop), so units are serialised
//! and each sees a consistent state. Every write records how to undo itself; a unit dropped
//! without commit replays its undo log in reverse, so nothing half-applied is ever visible.
//! The mutex is tokio's, because a unit is held across the `.await`s of its repository calls;
//! use cases take their locks *before* `begin`, so no unit ever waits on a lock.
//!
//! [`StoreFaults`] injects failures (a backend that is down, an operation that fails after N
//! successes, a commit that fails) for tests of "nothing half-written".
//!
//! Each repository lives in its own module, as an `impl` of its port on the one `MemoryUnit`:
//! `wallets` (with the ledger), `products` (with stock), `carts`, `coupons` (with user coupons),
//! `orders`, `payments` (with the saga log). This module holds what they share: the state, the
//! unit and its undo log, and the fences.

mod carts;
mod coupons;
mod faults;
mod orders;
mod payments;
mod products;
mod wallets;

pub use faults::StoreFaults;

use async_trait::async_trait;
use faults::injected;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use stockade_application::ports::lock::Fence;
use stockade_application::ports::store::{
    CartRepository, CouponRepository, OrderRepository, PaymentRepository, ProductRepository,
    SagaStep, Store, StoreError, UnitOfWork, WalletRepository,
};
use stockade_domain::{
    Cart, Coupon, CouponId, LedgerEntry, LedgerKind, Money, Order, OrderId, Payment, PaymentId,
    Product, ProductId, Timestamp, UserCoupon, UserCouponId, UserId,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Default)]
struct State {
    wallets: HashMap<UserId, Money>,
    ledger: Vec<LedgerEntry>,
    ledger_by_user: HashMap<UserId, Vec<usize>>,
    ledger_refs: HashMap<(String, LedgerKind), usize>,
    products: BTreeMap<ProductId, Product>,
    carts: HashMap<UserId, Cart>,
    coupons: BTreeMap<CouponId, Coupon>,
    user_coupons: HashMap<UserCouponId, UserCoupon>,
    holder_index: HashMap<(CouponId, UserId), UserCouponId>,
    coupons_by_user: HashMap<UserId, Vec<UserCouponId>>,
    holders_by_coupon: HashMap<CouponId, Vec<UserId>>,
    failures: HashMap<CouponId, BTreeMap<UserId, Failure>>,
    orders: BTreeMap<OrderId, Order>,
    payments: BTreeMap<PaymentId, Payment>,
    payments_by_order: HashMap<OrderId, Vec<PaymentId>>,
    orders_by_reference: HashMap<String, OrderId>,
    fences: HashMap<String, u64>,
    /// Payment saga log: step and when the saga began.
    sagas: BTreeMap<PaymentId, (OrderId, UserId, SagaStep, Timestamp)>,
    /// One id sequence per entity, so ids read as people expect (products 1, 2, 3…).
    sequences: HashMap<&'static str, i64>,
}

impl State {
    fn next_id(&mut self, entity: &'static str) -> i64 {
        let n = self.sequences.entry(entity).or_insert(0);
        *n += 1;
        *n
    }
}

/// A recorded issuance failure: its reason, how many times the pair failed, and when last.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    attempts: u32,
    failed_at: Timestamp,
}

type Undo = Box<dyn FnOnce(&mut State) + Send>;

/// The in-memory [`Store`]. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    faults: Arc<StoreFaults>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Arc::default(),
            faults: Arc::new(StoreFaults::new()),
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The failure switches of this store.
    pub fn faults(&self) -> &StoreFaults {
        &self.faults
    }

    /// Forgets everything (the demo profile's reset).
    pub async fn reset(&self) {
        *self.state.lock().await = State::default();
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        if self.faults.unavailable.load(Ordering::SeqCst) {
            return Err(injected());
        }
        let guard = self.state.clone().lock_owned().await;
        Ok(Box::new(MemoryUnit {
            state: guard,
            undo: Vec::new(),
            faults: self.faults.clone(),
        }))
    }
}

/// One unit of work: the locked state and how to undo what it changed.
struct MemoryUnit {
    state: OwnedMutexGuard<State>,
    undo: Vec<Undo>,
    faults: Arc<StoreFaults>,
}

impl Drop for MemoryUnit {
    fn drop(&mut self) {
        while let Some(undo) = self.undo.pop() {
            undo(&mut self.state);
        }
    }
}

impl MemoryUnit {
    fn op(&self) -> Result<(), StoreError> {
        self.faults.op()
    }

    fn on_rollback(&mut self, undo: impl FnOnce(&mut State) + Send + 'static) {
        self.undo.push(Box::new(undo));
    }
}

#[async_trait]
impl UnitOfWork for MemoryUnit {
    fn wallets(&mut self) -> &mut dyn WalletRepository {
        self
    }
    fn products(&mut self) -> &mut dyn ProductRepository {
        self
    }
    fn carts(&mut self) -> &mut dyn CartRepository {
        self
    }
    fn coupons(&mut self) -> &mut dyn CouponRepository {
        self
    }
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self
    }
    fn payments(&mut self) -> &mut dyn PaymentRepository {
        self
    }

    async fn check_fences(&mut self, fences: &[Fence]) -> Result<(), StoreError> {
        self.op()?;
        for fence in fences {
            let seen = self.state.fences.get(fence.key.as_str()).copied();
            if seen.is_some_and(|s| s > fence.token.0) {
                return Err(StoreError::StaleFence {
                    key: fence.key.to_string(),
                });
            }
        }
        for fence in fences {
            let key = fence.key.to_string();
            let previous = self.state.fences.insert(key.clone(), fence.token.0);
            self.on_rollback(move |s| match previous {
                Some(t) => {
                    s.fences.insert(key, t);
                }
                None => {
                    s.fences.remove(&key);
                }
            });
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.faults.fail_commit.load(Ordering::SeqCst) {
            // Dropping self rolls everything back.
            return Err(injected());
        }
        self.undo.clear();
        Ok(())
    }
}

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

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use stockade_application::ports::lock::Fence;
use stockade_application::ports::store::{
    CartRepository, CouponRepository, LedgerChange, NewOrder, OrderRepository, PaymentRepository,
    ProductRepository, SagaStep, Store, StoreError, UnitOfWork, WalletAudit, WalletRepository,
};
use stockade_application::BackendError;
use stockade_domain::{
    Cart, Coupon, CouponId, DomainError, LedgerEntry, LedgerKind, Money, NewCoupon, NewProduct,
    Order, OrderId, OrderStatus, Payment, PaymentId, PaymentStatus, Product, ProductId, Quantity,
    Timestamp, TransactionId, UserCoupon, UserCouponId, UserCouponStatus, UserId, Wallet,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Failure injection for tests. All switches start off.
#[derive(Debug, Default)]
pub struct StoreFaults {
    /// `begin` fails while set.
    pub unavailable: AtomicBool,
    /// When >= 0: repository operations succeed this many more times, then fail.
    pub fail_ops_after: AtomicI64,
    /// `commit` fails while set.
    pub fail_commit: AtomicBool,
}

impl StoreFaults {
    fn new() -> Self {
        StoreFaults {
            fail_ops_after: AtomicI64::new(-1),
            ..Default::default()
        }
    }

    /// Turns every switch off.
    pub fn clear(&self) {
        self.unavailable.store(false, Ordering::SeqCst);
        self.fail_ops_after.store(-1, Ordering::SeqCst);
        self.fail_commit.store(false, Ordering::SeqCst);
    }

    fn op(&self) -> Result<(), StoreError> {
        let left = self.fail_ops_after.load(Ordering::SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            return Err(injected());
        }
        self.fail_ops_after.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn injected() -> StoreError {
    StoreError::Unavailable(BackendError::new("memory store", "injected failure"))
}

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
    failures: HashMap<CouponId, BTreeMap<UserId, String>>,
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

    fn set_wallet(&mut self, user: UserId, balance: Money) {
        let previous = self.state.wallets.insert(user, balance);
        self.on_rollback(move |s| match previous {
            Some(b) => {
                s.wallets.insert(user, b);
            }
            None => {
                s.wallets.remove(&user);
            }
        });
    }

    fn put_order(&mut self, order: Order) {
        let id = order.id;
        let previous = self.state.orders.insert(id, order);
        self.on_rollback(move |s| match previous {
            Some(o) => {
                s.orders.insert(id, o);
            }
            None => {
                s.orders.remove(&id);
            }
        });
    }

    fn put_product(&mut self, product: Product) {
        let id = product.id;
        let previous = self.state.products.insert(id, product);
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.products.insert(id, p);
            }
            None => {
                s.products.remove(&id);
            }
        });
    }

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

    fn put_payment(&mut self, p: Payment) {
        let id = p.id;
        let previous = self.state.payments.insert(id, p);
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.payments.insert(id, p);
            }
            None => {
                s.payments.remove(&id);
            }
        });
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

#[async_trait]
impl WalletRepository for MemoryUnit {
    async fn balance(&mut self, user: UserId) -> Result<Money, StoreError> {
        self.op()?;
        Ok(self.state.wallets.get(&user).copied().unwrap_or_default())
    }

    async fn append(
        &mut self,
        change: LedgerChange,
        now: Timestamp,
    ) -> Result<LedgerEntry, StoreError> {
        self.op()?;
        if let Some(reference) = &change.reference {
            if self
                .state
                .ledger_refs
                .contains_key(&(reference.clone(), change.kind))
            {
                return Err(StoreError::Conflict("ledger reference"));
            }
        }
        let mut wallet = Wallet {
            user_id: change.user_id,
            balance: self
                .state
                .wallets
                .get(&change.user_id)
                .copied()
                .unwrap_or_default(),
        };
        let draft = wallet.apply(change.kind, change.amount, change.reference)?;
        let id = TransactionId::new(self.state.next_id("ledger"))
            .map_err(|e| StoreError::Unavailable(BackendError::new("memory store", e)))?;
        let entry = LedgerEntry {
            id,
            user_id: draft.user_id,
            kind: draft.kind,
            amount: draft.amount,
            balance_after: draft.balance_after,
            reference: draft.reference,
            created_at: now,
        };
        self.set_wallet(change.user_id, wallet.balance);
        let index = self.state.ledger.len();
        self.state.ledger.push(entry.clone());
        self.state
            .ledger_by_user
            .entry(entry.user_id)
            .or_default()
            .push(index);
        let reference = entry.reference.clone().map(|r| (r, entry.kind));
        if let Some(r) = &reference {
            self.state.ledger_refs.insert(r.clone(), index);
        }
        let user = entry.user_id;
        self.on_rollback(move |s| {
            s.ledger.pop();
            if let Some(v) = s.ledger_by_user.get_mut(&user) {
                v.pop();
            }
            if let Some(r) = reference {
                s.ledger_refs.remove(&r);
            }
        });
        Ok(entry)
    }

    async fn entries(&mut self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .ledger_by_user
            .get(&user)
            .map(|ix| ix.iter().map(|i| self.state.ledger[*i].clone()).collect())
            .unwrap_or_default())
    }

    async fn find_entry(
        &mut self,
        reference: &str,
        kind: LedgerKind,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .ledger_refs
            .get(&(reference.to_owned(), kind))
            .map(|i| self.state.ledger[*i].clone()))
    }

    async fn audit(&mut self) -> Result<Vec<WalletAudit>, StoreError> {
        self.op()?;
        let mut out: BTreeMap<UserId, WalletAudit> = BTreeMap::new();
        for (user, balance) in &self.state.wallets {
            out.insert(
                *user,
                WalletAudit {
                    user_id: *user,
                    balance: balance.won(),
                    ledger_sum: 0,
                    charges: 0,
                    uses: 0,
                    refunds: 0,
                },
            );
        }
        for e in &self.state.ledger {
            let a = out.entry(e.user_id).or_insert(WalletAudit {
                user_id: e.user_id,
                balance: 0,
                ledger_sum: 0,
                charges: 0,
                uses: 0,
                refunds: 0,
            });
            a.ledger_sum += e.kind.signed(e.amount);
            match e.kind {
                LedgerKind::Charge => a.charges += e.amount.won(),
                LedgerKind::Use => a.uses += e.amount.won(),
                LedgerKind::Refund => a.refunds += e.amount.won(),
            }
        }
        Ok(out.into_values().collect())
    }
}

fn product_not_found(id: ProductId) -> StoreError {
    StoreError::Rejected(DomainError::ProductNotFound(id.get()))
}

#[async_trait]
impl ProductRepository for MemoryUnit {
    async fn get(&mut self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.op()?;
        Ok(self.state.products.get(&id).cloned())
    }

    async fn list(&mut self) -> Result<Vec<Product>, StoreError> {
        self.op()?;
        Ok(self.state.products.values().cloned().collect())
    }

    async fn insert(&mut self, new: NewProduct) -> Result<Product, StoreError> {
        self.op()?;
        let id = ProductId::new(self.state.next_id("product"))?;
        let product = Product {
            id,
            name: new.name,
            price: new.price,
            stock: new.stock,
            max_per_order: new.max_per_order,
        };
        self.put_product(product.clone());
        Ok(product)
    }

    async fn set_stock(
        &mut self,
        id: ProductId,
        stock: u32,
    ) -> Result<Option<Product>, StoreError> {
        self.op()?;
        let Some(mut product) = self.state.products.get(&id).cloned() else {
            return Ok(None);
        };
        product.stock = stock;
        self.put_product(product.clone());
        Ok(Some(product))
    }

    async fn deduct_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError> {
        self.op()?;
        let mut product = self
            .state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| product_not_found(id))?;
        product.deduct(quantity)?;
        self.put_product(product);
        Ok(())
    }

    async fn restore_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError> {
        self.op()?;
        let mut product = self
            .state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| product_not_found(id))?;
        product.restore(quantity);
        self.put_product(product);
        Ok(())
    }
}

#[async_trait]
impl CartRepository for MemoryUnit {
    async fn get(&mut self, user: UserId) -> Result<Cart, StoreError> {
        self.op()?;
        Ok(self
            .state
            .carts
            .get(&user)
            .cloned()
            .unwrap_or_else(|| Cart::empty(user)))
    }

    async fn save(&mut self, cart: &Cart) -> Result<(), StoreError> {
        self.op()?;
        let user = cart.user_id;
        let previous = self.state.carts.insert(user, cart.clone());
        self.on_rollback(move |s| match previous {
            Some(c) => {
                s.carts.insert(user, c);
            }
            None => {
                s.carts.remove(&user);
            }
        });
        Ok(())
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
            if let Some(reason) = failure {
                s.failures.entry(cid).or_default().insert(user, reason);
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
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        self.op()?;
        let previous = self
            .state
            .failures
            .entry(coupon)
            .or_default()
            .insert(user, reason.to_owned());
        self.on_rollback(move |s| {
            let f = s.failures.entry(coupon).or_default();
            match previous {
                Some(r) => {
                    f.insert(user, r);
                }
                None => {
                    f.remove(&user);
                }
            }
        });
        Ok(())
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
}

#[async_trait]
impl OrderRepository for MemoryUnit {
    async fn insert(&mut self, new: NewOrder) -> Result<Order, StoreError> {
        self.op()?;
        if let Some(r) = &new.reference {
            if self.state.orders_by_reference.contains_key(r) {
                return Err(StoreError::Conflict("order reference"));
            }
        }
        let id = OrderId::new(self.state.next_id("order"))?;
        if let Some(r) = new.reference.clone() {
            self.state.orders_by_reference.insert(r.clone(), id);
            self.on_rollback(move |s| {
                s.orders_by_reference.remove(&r);
            });
        }
        let order = Order {
            id,
            user_id: new.user_id,
            status: OrderStatus::PendingPayment,
            lines: new.pricing.lines,
            cart_coupons: new.pricing.cart_coupons,
            subtotal: new.pricing.subtotal,
            discount: new.pricing.discount,
            total: new.pricing.total,
            created_at: new.created_at,
            expires_at: new.expires_at,
            updated_at: new.created_at,
        };
        self.put_order(order.clone());
        Ok(order)
    }

    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.op()?;
        Ok(self.state.orders.get(&id).cloned())
    }

    async fn find_by_reference(&mut self, reference: &str) -> Result<Option<Order>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .orders_by_reference
            .get(reference)
            .and_then(|id| self.state.orders.get(id).cloned()))
    }

    async fn update_status(
        &mut self,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.op()?;
        let Some(mut order) = self.state.orders.get(&id).cloned() else {
            return Ok(false);
        };
        if order.status != from {
            return Ok(false);
        }
        order.status = to;
        order.updated_at = now;
        self.put_order(order);
        Ok(true)
    }

    async fn due_for_expiry(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .orders
            .values()
            .filter(|o| o.is_expired_at(now))
            .take(limit)
            .map(|o| (o.id, o.user_id))
            .collect())
    }

    async fn sales_since(&mut self, since: Timestamp) -> Result<Vec<(ProductId, u64)>, StoreError> {
        self.op()?;
        let mut sold: HashMap<ProductId, u64> = HashMap::new();
        for o in self.state.orders.values() {
            if o.status == OrderStatus::Paid && o.updated_at >= since {
                for l in &o.lines {
                    *sold.entry(l.product_id).or_default() += u64::from(l.quantity.get());
                }
            }
        }
        Ok(sold.into_iter().collect())
    }

    async fn all(&mut self) -> Result<Vec<Order>, StoreError> {
        self.op()?;
        Ok(self.state.orders.values().cloned().collect())
    }
}

#[async_trait]
impl PaymentRepository for MemoryUnit {
    async fn insert(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> Result<Payment, StoreError> {
        self.op()?;
        let id = PaymentId::new(self.state.next_id("payment"))?;
        let payment = Payment {
            id,
            order_id: order.id,
            user_id: order.user_id,
            amount,
            status: PaymentStatus::Pending,
            reference: reference.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        self.put_payment(payment.clone());
        let oid = order.id;
        self.state
            .payments_by_order
            .entry(oid)
            .or_default()
            .push(id);
        self.on_rollback(move |s| {
            if let Some(v) = s.payments_by_order.get_mut(&oid) {
                v.pop();
            }
        });
        Ok(payment)
    }

    async fn for_order(&mut self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .payments_by_order
            .get(&order)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.state.payments.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn update_status(
        &mut self,
        id: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.op()?;
        let Some(mut p) = self.state.payments.get(&id).cloned() else {
            return Ok(false);
        };
        if p.status != from {
            return Ok(false);
        }
        p.status = to;
        p.updated_at = now;
        self.put_payment(p);
        Ok(true)
    }

    async fn confirm(&mut self, payment: &Payment, now: Timestamp) -> Result<bool, StoreError> {
        self.op()?;
        let pending = self
            .state
            .payments
            .get(&payment.id)
            .is_some_and(|p| p.status == PaymentStatus::Pending);
        let unpaid = self
            .state
            .orders
            .get(&payment.order_id)
            .is_some_and(|o| o.status == OrderStatus::PendingPayment);
        if !(pending && unpaid) {
            return Ok(false);
        }
        PaymentRepository::update_status(
            self,
            payment.id,
            PaymentStatus::Pending,
            PaymentStatus::Approved,
            now,
        )
        .await?;
        OrderRepository::update_status(
            self,
            payment.order_id,
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            now,
        )
        .await?;
        self.log_saga_step(payment, SagaStep::Confirmed, now)
            .await?;
        Ok(true)
    }

    async fn log_saga_step(
        &mut self,
        payment: &Payment,
        step: SagaStep,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.op()?;
        let id = payment.id;
        let started = self.state.sagas.get(&id).map_or(now, |s| s.3);
        let previous = self
            .state
            .sagas
            .insert(id, (payment.order_id, payment.user_id, step, started));
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.sagas.insert(id, p);
            }
            None => {
                s.sagas.remove(&id);
            }
        });
        Ok(())
    }

    async fn open_sagas(
        &mut self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError> {
        self.op()?;
        let mut open: Vec<_> = self
            .state
            .sagas
            .values()
            .filter(|(_, _, step, at)| *step == SagaStep::Debited && *at < before)
            .map(|(order, user, _, at)| (*at, *order, *user))
            .collect();
        open.sort();
        Ok(open
            .into_iter()
            .take(limit)
            .map(|(_, order, user)| (order, user))
            .collect())
    }
}

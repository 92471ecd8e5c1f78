//! [`Stockade`]'s methods: the public face of the use cases, for HTTP, the workers, the tests
//! and anyone embedding Stockade. Each method only delegates to its use case's `execute` (the
//! module named in its docs, which also lists what it answers); nothing is decided here.

use crate::engine::outcome::Replayable;
use crate::engine::{gate, upkeep, Context};
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::ports::popularity::PopularProduct;
use crate::ports::queue::Delivery;
use crate::ports::store::OrderFilter;
use crate::ports::Ports;
use crate::settings::Settings;
use crate::usecases::*;
use crate::views::{
    AccountView, BalanceView, CartView, CatalogueCouponView, ChargeReceipt, CouponStockView,
    CouponView, FailureView, IssueView, MeView, OrderView, PaymentReceipt, ProductView,
    ReconcileReport, ReplayReport, TransactionView, UserCouponView,
};
use std::sync::Arc;
use std::time::Duration;
use stockade_domain::{
    Coupon, CouponId, IdempotencyKey, NewCoupon, NewProduct, OrderId, ProductChanges, ProductId,
    UserId,
};
use tokio::sync::watch;

/// The application: every use case, over a set of ports. Cheap to clone.
///
/// Its methods only delegate to the use cases in [`crate::usecases`].
#[derive(Debug, Clone)]
pub struct Stockade {
    /// One allocation shared by every clone: a request handler clones the application, so a
    /// clone is one reference count, not one per port.
    ctx: Arc<Context>,
}

impl Stockade {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        Stockade {
            ctx: Arc::new(Context::new(ports, settings)),
        }
    }
}

/// The running process: readiness, change feed, caches.
impl Stockade {
    pub fn ports(&self) -> &Ports {
        &self.ctx.ports
    }

    pub fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    /// Whether the backends answer: the store opens a unit, the queue reports its depth and the
    /// lock manager could grant (a Redlock majority answers).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` naming nothing but the failure.
    pub async fn ready(&self) -> Result<(), AppError> {
        upkeep::ready(&self.ctx).await
    }

    /// How many create-order and LOCKED-issue requests wait for a combined turn now, over every
    /// key (docs/decisions/0012).
    pub fn combining_queue_depth(&self) -> usize {
        upkeep::combining_queue_depth(&self.ctx)
    }

    /// Forgets cached coupon policies (after the store was reset underneath).
    pub fn forget_cached_policies(&self) {
        upkeep::forget_cached_policies(&self.ctx);
    }

    /// Follows the change feed until `shutdown` turns true, dropping the sold-out marks of
    /// products restocked anywhere. Run one per process (bootstrap's workers do).
    pub async fn follow_changes(&self, shutdown: watch::Receiver<bool>) {
        upkeep::follow_changes(&self.ctx, shutdown).await;
    }
}

/// Orders and payments.
impl Stockade {
    /// One of the user's orders: [`get_order`].
    pub async fn order(&self, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
        get_order::execute(&self.ctx, user, id).await
    }

    /// Creates an order, reserving stock and coupons: [`create_order`].
    pub async fn create_order(
        &self,
        cmd: create_order::CreateOrder,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<OrderView>, AppError> {
        create_order::execute(&self.ctx, cmd, key).await
    }

    /// A page of the orders `filter` selects, newest first: [`list_orders`].
    pub async fn orders_page(
        &self,
        filter: OrderFilter,
        page: PageRequest,
    ) -> Result<Page<OrderView>, AppError> {
        list_orders::execute(&self.ctx, filter, page).await
    }

    /// Cancels an order (and refunds a paid one): [`cancel_order`].
    pub async fn cancel_order(&self, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
        cancel_order::execute(&self.ctx, user, id).await
    }

    /// Expires up to `limit` unpaid orders whose time ran out: [`expire_orders`].
    pub async fn expire_orders(&self, limit: usize) -> Result<usize, AppError> {
        expire_orders::execute(&self.ctx, limit).await
    }

    /// Pays an order from the wallet (a saga): [`process_payment`].
    pub async fn pay(
        &self,
        cmd: process_payment::ProcessPayment,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<PaymentReceipt>, AppError> {
        process_payment::execute(&self.ctx, cmd, key).await
    }

    /// Finishes payment sagas left open for at least `min_age`: [`recover_sagas`].
    pub async fn recover_sagas(&self, min_age: Duration, limit: usize) -> Result<usize, AppError> {
        recover_sagas::execute(&self.ctx, min_age, limit).await
    }

    /// Checks the invariants the store can show: [`audit_store`].
    pub async fn audit(&self) -> Result<audit_store::AuditReport, AppError> {
        audit_store::execute(&self.ctx).await
    }
}

/// Wallets and carts.
impl Stockade {
    /// Charges a wallet: [`charge_balance`].
    pub async fn charge(
        &self,
        cmd: charge_balance::ChargeBalance,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<ChargeReceipt>, AppError> {
        charge_balance::execute(&self.ctx, cmd, key).await
    }

    /// The wallet balance: [`get_balance`].
    pub async fn balance(&self, user: UserId) -> Result<BalanceView, AppError> {
        get_balance::execute(&self.ctx, user).await
    }

    /// The ledger, newest first: [`list_transactions`].
    pub async fn transactions(&self, user: UserId) -> Result<Vec<TransactionView>, AppError> {
        list_transactions::execute(&self.ctx, user).await
    }

    /// A page of the ledger, newest first: [`list_transactions`].
    pub async fn transactions_page(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<TransactionView>, AppError> {
        list_transactions::page(&self.ctx, user, page).await
    }

    /// The cart: [`get_cart`].
    pub async fn cart(&self, user: UserId) -> Result<CartView, AppError> {
        get_cart::execute(&self.ctx, user).await
    }

    /// Changes the cart: [`update_cart`].
    pub async fn update_cart(
        &self,
        user: UserId,
        change: update_cart::CartChange,
    ) -> Result<CartView, AppError> {
        update_cart::execute(&self.ctx, user, change).await
    }
}

/// Products.
impl Stockade {
    /// Every product, by id: [`list_products`].
    pub async fn products(&self) -> Result<Vec<ProductView>, AppError> {
        list_products::execute(&self.ctx).await
    }

    /// A page of the catalogue, by id: [`list_products`].
    pub async fn products_page(&self, page: PageRequest) -> Result<Page<ProductView>, AppError> {
        list_products::page(&self.ctx, page).await
    }

    /// One product: [`get_product`].
    pub async fn product(&self, id: ProductId) -> Result<ProductView, AppError> {
        get_product::execute(&self.ctx, id).await
    }

    /// Admin: adds a product: [`create_product`].
    pub async fn create_product(&self, new: NewProduct) -> Result<ProductView, AppError> {
        create_product::execute(&self.ctx, new).await
    }

    /// Admin: sets a product's stock level: [`set_stock`].
    pub async fn set_stock(&self, id: ProductId, stock: u32) -> Result<ProductView, AppError> {
        set_stock::execute(&self.ctx, id, stock).await
    }

    /// Admin: changes a product's name, price or limits: [`update_product`].
    pub async fn update_product(
        &self,
        id: ProductId,
        changes: ProductChanges,
    ) -> Result<ProductView, AppError> {
        update_product::execute(&self.ctx, id, changes).await
    }

    /// The best sellers, cached: [`popular_products`].
    pub async fn popular_products(
        &self,
        days: u32,
        limit: u32,
    ) -> Result<Vec<PopularProduct>, AppError> {
        popular_products::execute(&self.ctx, days, limit).await
    }

    /// Recomputes and caches the best sellers: [`refresh_popular`].
    pub async fn refresh_popular(&self, days: u32, limit: u32) -> Result<(), AppError> {
        refresh_popular::execute(&self.ctx, days, limit).await
    }
}

/// Coupons.
impl Stockade {
    /// Admin: creates a coupon policy (and a FLASH gate): [`create_coupon`].
    pub async fn create_coupon(&self, new: NewCoupon) -> Result<CouponView, AppError> {
        create_coupon::execute(&self.ctx, new).await
    }

    /// Makes sure the gate of a FLASH coupon exists, rebuilding a lost one from the store with
    /// every holder in it (idempotent).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn init_gate(&self, coupon: &Coupon) -> Result<(), AppError> {
        gate::init_gate(&self.ctx, coupon).await
    }

    /// Issues one coupon to `user`: [`issue_coupon`].
    pub async fn issue_coupon(
        &self,
        coupon_id: CouponId,
        user: UserId,
    ) -> Result<IssueView, AppError> {
        issue_coupon::execute(&self.ctx, coupon_id, user).await
    }

    /// [`Stockade::issue_coupon`] with an optional idempotency key: [`issue_coupon`].
    pub async fn issue_coupon_keyed(
        &self,
        coupon_id: CouponId,
        user: UserId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<IssueView>, AppError> {
        issue_coupon::execute_keyed(&self.ctx, coupon_id, user, key).await
    }

    /// The coupons a user holds: [`list_my_coupons`].
    pub async fn my_coupons(&self, user: UserId) -> Result<Vec<UserCouponView>, AppError> {
        list_my_coupons::execute(&self.ctx, user).await
    }

    /// A page of the coupons `user` holds: [`list_my_coupons`].
    pub async fn my_coupons_page(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<UserCouponView>, AppError> {
        list_my_coupons::page(&self.ctx, user, page).await
    }

    /// A page of the coupons that can be issued now, with how many are left:
    /// [`list_coupons`].
    pub async fn issuable_coupons(
        &self,
        page: PageRequest,
    ) -> Result<Page<CatalogueCouponView>, AppError> {
        list_coupons::issuable(&self.ctx, page).await
    }

    /// Admin: a page of every coupon policy: [`list_coupons`].
    pub async fn coupons_page(&self, page: PageRequest) -> Result<Page<CouponView>, AppError> {
        list_coupons::all(&self.ctx, page).await
    }

    /// Admin: a coupon's counters: [`get_coupon_stock`].
    pub async fn coupon_stock(&self, coupon_id: CouponId) -> Result<CouponStockView, AppError> {
        get_coupon_stock::execute(&self.ctx, coupon_id).await
    }

    /// One coupon policy: [`get_coupon`].
    pub async fn coupon(&self, coupon_id: CouponId) -> Result<CouponView, AppError> {
        get_coupon::execute(&self.ctx, coupon_id).await
    }

    /// Receives and handles one batch of FLASH issuances: [`consume_issuances`].
    pub async fn consume_issuances(&self, max: usize, wait: Duration) -> Result<usize, AppError> {
        consume_issuances::execute(&self.ctx, max, wait).await
    }

    /// Runs the issuance consumer until `shutdown` turns true: [`consume_issuances`].
    pub async fn run_issuance_consumer(&self, shutdown: watch::Receiver<bool>) {
        consume_issuances::run(&self.ctx, shutdown).await;
    }

    /// Handles one delivery of the issuance queue: [`handle_issuance`].
    pub async fn handle_issuance(
        &self,
        delivery: &Delivery,
    ) -> Result<handle_issuance::IssuanceOutcome, AppError> {
        handle_issuance::execute(&self.ctx, delivery).await
    }

    /// Reconciles every FLASH coupon: [`reconcile_all`].
    pub async fn reconcile_all(&self) -> Result<ReconcileReport, AppError> {
        reconcile_all::execute(&self.ctx).await
    }

    /// Makes one FLASH coupon's gate and store agree: [`reconcile_coupon`].
    pub async fn reconcile(&self, coupon_id: CouponId) -> Result<ReconcileReport, AppError> {
        reconcile_coupon::execute(&self.ctx, coupon_id).await
    }

    /// Admin: a coupon's recorded issuance failures, a keyset page by user id:
    /// [`list_failures`].
    pub async fn issuance_failures(
        &self,
        coupon_id: CouponId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<FailureView>, AppError> {
        list_failures::execute(&self.ctx, coupon_id, after, limit).await
    }

    /// Admin: a page of a coupon's recorded issuance failures, by user id: [`list_failures`].
    pub async fn issuance_failures_page(
        &self,
        coupon_id: CouponId,
        page: PageRequest,
    ) -> Result<Page<FailureView>, AppError> {
        list_failures::page(&self.ctx, coupon_id, page).await
    }

    /// Admin: retries each recorded issuance failure of a coupon once: [`replay_failures`].
    pub async fn replay_failures(&self, coupon_id: CouponId) -> Result<ReplayReport, AppError> {
        replay_failures::execute(&self.ctx, coupon_id).await
    }
}

/// Accounts.
impl Stockade {
    /// Signs up: [`register_account`].
    pub async fn register(
        &self,
        cmd: register_account::RegisterAccount,
    ) -> Result<AccountView, AppError> {
        register_account::execute(&self.ctx, cmd).await
    }

    /// Checks an email and a password: [`authenticate_account`].
    pub async fn authenticate(
        &self,
        cmd: authenticate_account::AuthenticateAccount,
    ) -> Result<AccountView, AppError> {
        authenticate_account::execute(&self.ctx, cmd).await
    }

    /// Who the caller is: [`get_account`].
    pub async fn me(&self, user: UserId, admin: bool) -> Result<MeView, AppError> {
        get_account::execute(&self.ctx, user, admin).await
    }
}

//! CreateOrder: reserve stock and coupons, with the requests for one set of products combined
//! into turns (docs/decisions/0012).
//!
//! A turn takes the stock locks of its product set once, opens one unit of work, plans every
//! order of the batch in arrival order against the turn's running state (stock left, coupons
//! used), writes the orders that passed with one call per repository, records the idempotency
//! outcomes in the same unit, commits once and releases. Each request gets its own answer:
//! - a refusal by a business rule (`INSUFFICIENT_STOCK`, `INVALID_COUPON`, ...) answers that
//!   request alone and writes nothing for it;
//! - a backend failure (lock time-out, unavailable store, failed commit) answers every request
//!   of the turn with it, and nothing of the turn is kept;
//! - a write the store refuses although the plan allowed it (a row changed by a writer that does
//!   not take the stock lock) splits the turn: each request then runs as a turn of its own, in
//!   the batch's order, so every answer is the one serial execution gives.

use crate::combine::{Combiner, Lost};
use crate::idempotent::{self, Settled};
use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::{keys, LockKey};
use crate::ports::store::{NewOrder, StoreError, UnitOfWork};
use crate::usecases::orders::{duration_ms, CreateOrder, OrderSource};
use crate::views::OrderView;
use crate::{AppError, Replayable, Stockade};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;
use stockade_domain::coupon::CouponKind;
use stockade_domain::order::{price_order, HeldCoupon};
use stockade_domain::{
    Coupon, DomainError, IdempotencyKey, LineRequest, Order, Pricing, Product, ProductId, Quantity,
    Timestamp, UserCoupon, UserCouponId, UserCouponStatus, UserId,
};

/// How many times create-order re-reads a cart that changed between reading and locking.
const CART_RETRIES: usize = 3;

/// The combining key of an order: its products, sorted.
pub(crate) type ProductSet = Vec<ProductId>;

/// The per-product-set queues of create-order.
pub(crate) type OrderLanes = Combiner<ProductSet, OrderJob, OrderAnswer>;

/// One create-order request on its way through a turn.
#[derive(Debug)]
pub(crate) struct OrderJob {
    cmd: CreateOrder,
    products: ProductSet,
    /// The idempotency reference the order is placed under, if keyed.
    reference: Option<String>,
    /// The request's idempotency ticket, when its outcome commits with the order.
    ticket: Option<Ticket>,
}

/// What a turn answers one request.
#[derive(Debug)]
pub(crate) enum OrderAnswer {
    /// The request's own result, and whether its idempotency outcome committed with it.
    Done(Settled<OrderView>),
    /// The user's cart now holds a product outside the set the request was queued under.
    CartChanged,
}

fn done(result: Result<OrderView, AppError>) -> OrderAnswer {
    OrderAnswer::Done(Settled::unrecorded(result))
}

/// How a turn ended when it did not fail as a whole.
enum Turn {
    /// Every request answered, in order.
    Answered(Vec<OrderAnswer>),
    /// The store refused a write the plan allowed (nothing of the turn was kept): run each
    /// request as a turn of its own.
    Split,
}

/// What a turn has read, kept current as it plans its orders: each product's stock after the
/// orders planned so far, and the user coupons they use.
#[derive(Default)]
struct Running {
    products: HashMap<ProductId, Product>,
    coupons: HashMap<UserCouponId, (UserCoupon, Coupon)>,
}

impl Stockade {
    /// Creates an order: deducts stock with guarded updates under the products' locks, prices
    /// it and reserves its coupons, all in one unit of work. Requests for the same products that
    /// arrive together share one lock grant, one unit of work and one commit.
    ///
    /// # Errors
    /// `CART_EMPTY`, `INVALID_INPUT`, `PRODUCT_NOT_FOUND`, `EXCEEDED_LIMITED_QUANTITY`,
    /// `INSUFFICIENT_STOCK`, `INVALID_COUPON`, `LOCK_TIMEOUT`, `BACKEND_UNAVAILABLE`, and the
    /// idempotency outcomes.
    #[tracing::instrument(skip_all, fields(user = %cmd.user_id))]
    pub async fn create_order(
        &self,
        cmd: CreateOrder,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<OrderView>, AppError> {
        let canonical = cmd.canonical();
        let user = cmd.user_id;
        // The key also names the order itself, so that even a second execution of the same
        // keyed request (its idempotency record lost or taken over) finds the first order.
        let reference = key.map(|k| format!("order:{user}:{k}"));
        let key = key.cloned();
        self.detached(move |app| async move {
            app.idempotent(
                user,
                key.as_ref(),
                "create-order",
                canonical,
                |ticket| async {
                    app.create_order_once(cmd, reference, ticket)
                        .await
                        .unwrap_or_else(|e| Settled::unrecorded(Err(e)))
                },
            )
            .await
        })
        .await
    }

    async fn create_order_once(
        &self,
        cmd: CreateOrder,
        reference: Option<String>,
        ticket: Option<Ticket>,
    ) -> Result<Settled<OrderView>, AppError> {
        if let OrderSource::Lines(lines) = &cmd.source {
            stockade_domain::order::check_lines(lines)?;
        }
        if let Some(refusal) = self.refused_fast(&cmd) {
            return Err(refusal);
        }
        for _ in 0..CART_RETRIES {
            // Which products to lock: from the request, or from the cart as it is now.
            let products: BTreeSet<ProductId> = match &cmd.source {
                OrderSource::Lines(lines) => lines.iter().map(|l| l.product_id).collect(),
                OrderSource::FromCart => {
                    let mut uow = self.core.ports.store.begin().await?;
                    let cart = uow.carts().get(cmd.user_id).await?;
                    cart.items.keys().copied().collect()
                }
            };
            if products.is_empty() {
                return Err(DomainError::CartEmpty.into());
            }
            let products: ProductSet = products.into_iter().collect();
            let job = OrderJob {
                cmd: cmd.clone(),
                products: products.clone(),
                reference: reference.clone(),
                ticket: ticket.clone(),
            };
            let app = self.clone();
            let answer = self
                .core
                .order_lanes
                .submit(products, job, move |jobs| {
                    let app = app.clone();
                    async move { app.place_batch(jobs).await }
                })
                .await
                .map_err(|Lost| AppError::Internal("the order's turn failed".into()))?;
            match answer {
                OrderAnswer::CartChanged => continue,
                OrderAnswer::Done(settled) => return Ok(settled),
            }
        }
        Err(AppError::LockTimeout)
    }

    /// The sold-out fast path: a one-line order without coupons, for a product known to have no
    /// stock, is refused as its turn would refuse it, without queueing for one.
    fn refused_fast(&self, cmd: &CreateOrder) -> Option<AppError> {
        let OrderSource::Lines(lines) = &cmd.source else {
            return None;
        };
        let [line] = lines.as_slice() else {
            return None;
        };
        if line.user_coupon_id.is_some() || !cmd.user_coupon_ids.is_empty() {
            return None;
        }
        if !self
            .core
            .sold_out
            .refuses(line.product_id, line.quantity.get())
        {
            return None;
        }
        metrics::counter!("stockade_fast_path_refusals_total", "use_case" => "create_order")
            .increment(1);
        Some(
            DomainError::InsufficientStock {
                product: line.product_id.get(),
                requested: line.quantity.get(),
                available: 0,
            }
            .into(),
        )
    }

    /// Runs one batch of create-order requests (all for one product set) and answers each.
    async fn place_batch(&self, jobs: Vec<OrderJob>) -> Vec<OrderAnswer> {
        metrics::histogram!("stockade_combine_batch_size", "use_case" => "create_order")
            .record(jobs.len() as f64);
        metrics::gauge!("stockade_combine_queue_depth", "use_case" => "create_order")
            .set(self.core.order_lanes.depth() as f64);
        match self.retry_contention(|| self.turn(&jobs)).await {
            Ok(Turn::Answered(answers)) => answers,
            Err(e) => jobs.iter().map(|_| done(Err(e.shared()))).collect(),
            Ok(Turn::Split) => {
                tracing::debug!(
                    batch = jobs.len(),
                    "a write of the turn was refused; running its requests one by one"
                );
                let mut answers = Vec::with_capacity(jobs.len());
                for job in &jobs {
                    let one = std::slice::from_ref(job);
                    let answer = match self.retry_contention(|| self.turn(one)).await {
                        Ok(Turn::Answered(mut a)) => a.pop().unwrap_or_else(|| {
                            done(Err(AppError::Internal("a turn left a request".into())))
                        }),
                        Ok(Turn::Split) => {
                            done(Err(AppError::Internal("a turn of one split".into())))
                        }
                        Err(e) => done(Err(e)),
                    };
                    answers.push(answer);
                }
                answers
            }
        }
    }

    /// One turn: lock, plan every request against the running state, write, record, commit.
    async fn turn(&self, jobs: &[OrderJob]) -> Result<Turn, AppError> {
        let alone = jobs.len() == 1;
        let Some(first) = jobs.first() else {
            return Ok(Turn::Answered(Vec::new()));
        };
        let mut lock_keys: Vec<LockKey> = first.products.iter().map(|p| keys::stock(*p)).collect();
        for job in jobs {
            if job.cmd.source == OrderSource::FromCart {
                lock_keys.push(keys::cart(job.cmd.user_id));
            }
        }
        let generation = self.core.sold_out.generation();
        let mut guard = self.enter(&lock_keys).await?;
        let uow = guard.begin().await?;
        let now = self.core.ports.clock.now();

        let mut running = Running::default();
        let mut answers: Vec<Option<OrderAnswer>> = jobs.iter().map(|_| None).collect();
        let mut planned: Vec<(usize, NewOrder)> = Vec::new();
        let mut emptied: Vec<UserId> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let expires_at = now.plus_millis(duration_ms(self.core.settings.order_ttl));
        for (i, job) in jobs.iter().enumerate() {
            let user = job.cmd.user_id;
            if let Some(r) = job.reference.as_deref() {
                // An order already placed under the reference (a second execution of the
                // request) is met by the insert, which refuses the turn; run alone, the request
                // is then answered with that order.
                if !seen.insert(r) {
                    answers[i] = Some(done(Err(AppError::RequestInProgress {
                        retry_after: Duration::from_secs(1),
                    })));
                    continue;
                }
            }
            let lines = match &job.cmd.source {
                OrderSource::Lines(lines) => lines.clone(),
                OrderSource::FromCart if emptied.contains(&user) => {
                    answers[i] = Some(done(Err(DomainError::CartEmpty.into())));
                    continue;
                }
                OrderSource::FromCart => {
                    let cart = uow.carts().get(user).await?;
                    if cart.items.keys().any(|p| !job.products.contains(p)) {
                        // The cart changed after it was read; queue again under its new set.
                        answers[i] = Some(OrderAnswer::CartChanged);
                        continue;
                    }
                    if cart.is_empty() {
                        answers[i] = Some(done(Err(DomainError::CartEmpty.into())));
                        continue;
                    }
                    cart.items
                        .iter()
                        .map(|(p, q)| LineRequest {
                            product_id: *p,
                            quantity: *q,
                            user_coupon_id: None,
                        })
                        .collect()
                }
            };
            let planning = self
                .plan(&mut *uow, &mut running, &job.cmd, lines, now)
                .await;
            match planning {
                Ok(pricing) => {
                    if job.cmd.source == OrderSource::FromCart {
                        emptied.push(user);
                    }
                    planned.push((
                        i,
                        NewOrder {
                            user_id: user,
                            pricing,
                            created_at: now,
                            expires_at,
                            reference: job.reference.clone(),
                        },
                    ));
                }
                Err(e) if e.is_business_outcome() => answers[i] = Some(done(Err(e))),
                Err(e) => return Err(e),
            }
        }

        let news: Vec<NewOrder> = planned.iter().map(|(_, n)| n.clone()).collect();
        let orders = match write_orders(&mut *uow, news, &emptied).await {
            Ok(orders) => orders,
            Err(StoreError::Rejected(_) | StoreError::Conflict(_)) if !alone => {
                return Ok(Turn::Split)
            }
            Err(StoreError::Rejected(d)) => {
                // Serial execution meets the same refusal: the request's own answer.
                guard.leave().await;
                return Ok(Turn::Answered(vec![done(Err(d.into()))]));
            }
            Err(StoreError::Conflict(_)) => {
                // Placed meanwhile under the same reference (a second execution of the request
                // whose record was taken over): answer with that order.
                guard.leave().await;
                return Ok(Turn::Answered(vec![done(self.placed_order(first).await)]));
            }
            Err(e) => return Err(e.into()),
        };
        for ((i, _), order) in planned.iter().zip(&orders) {
            answers[*i] = Some(done(Ok(OrderView::from(order))));
        }

        // Keyed outcomes commit with the turn when the idempotency store lives in the store.
        let mut outcomes: Vec<(Ticket, StoredOutcome)> = Vec::new();
        let mut recorded: Vec<usize> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            if let (Some(ticket), Some(OrderAnswer::Done(settled))) = (&job.ticket, &answers[i]) {
                if let Some(outcome) = idempotent::outcome_of(&settled.result) {
                    outcomes.push((ticket.clone(), outcome));
                    recorded.push(i);
                }
            }
        }
        match guard.finish_recording(&outcomes).await? {
            Ok(true) => {}
            Ok(false) => recorded.clear(),
            Err(StoreError::TicketLost) if !alone => return Ok(Turn::Split),
            Err(e) => return Err(e.into()),
        }
        for p in running.products.values().filter(|p| p.stock == 0) {
            self.core.sold_out.mark(p.id, p.max_per_order, generation);
        }
        for i in recorded {
            if let Some(OrderAnswer::Done(settled)) = &mut answers[i] {
                settled.recorded = true;
            }
        }
        Ok(Turn::Answered(
            answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| done(Err(AppError::Internal("unanswered".into())))))
                .collect(),
        ))
    }

    /// The order placed under `job`'s reference, read in a unit of its own.
    async fn placed_order(&self, job: &OrderJob) -> Result<OrderView, AppError> {
        let Some(reference) = job.reference.as_deref() else {
            return Err(AppError::Internal("order reference without order".into()));
        };
        let mut uow = self.core.ports.store.begin().await?;
        uow.orders()
            .find_by_reference(reference)
            .await?
            .map(|o| OrderView::from(&o))
            .ok_or_else(|| AppError::Internal("order reference without order".into()))
    }

    /// Prices one order of a turn and checks it against the turn's running state; on success
    /// the running state takes its stock and coupons. Writes nothing.
    async fn plan(
        &self,
        uow: &mut dyn UnitOfWork,
        running: &mut Running,
        cmd: &CreateOrder,
        mut lines: Vec<LineRequest>,
        now: Timestamp,
    ) -> Result<Pricing, AppError> {
        for line in &lines {
            if !running.products.contains_key(&line.product_id) {
                let p = uow
                    .products()
                    .get(line.product_id)
                    .await?
                    .ok_or(DomainError::ProductNotFound(line.product_id.get()))?;
                running.products.insert(p.id, p);
            }
        }
        // Every coupon named anywhere, with its policy.
        let named: Vec<UserCouponId> = lines
            .iter()
            .filter_map(|l| l.user_coupon_id)
            .chain(cmd.user_coupon_ids.iter().copied())
            .collect();
        for id in named {
            if let Entry::Vacant(slot) = running.coupons.entry(id) {
                let not_yours =
                    || DomainError::InvalidCoupon(format!("user coupon {id} is not yours"));
                let uc = uow
                    .coupons()
                    .get_user_coupon(id)
                    .await?
                    .ok_or_else(not_yours)?;
                let policy = uow
                    .coupons()
                    .get(uc.coupon_id)
                    .await?
                    .ok_or(DomainError::CouponNotFound(uc.coupon_id.get()))?;
                slot.insert((uc, policy));
            }
            if running.coupons[&id].0.user_id != cmd.user_id {
                return Err(
                    DomainError::InvalidCoupon(format!("user coupon {id} is not yours")).into(),
                );
            }
        }
        let products = &running.products;
        let held = &running.coupons;
        // Listed CART_ITEM coupons go to the free line where they take off the most.
        let mut cart_coupons = Vec::new();
        for id in &cmd.user_coupon_ids {
            let (uc, policy) = &held[id];
            if policy.kind != CouponKind::CartItem {
                cart_coupons.push(*id);
                continue;
            }
            let best = lines
                .iter_mut()
                .filter(|l| l.user_coupon_id.is_none())
                .max_by_key(|l| {
                    let p = &products[&l.product_id];
                    let total = p.price.checked_mul(l.quantity.get()).unwrap_or_default();
                    (
                        policy.discount_on(total, now).unwrap_or_default(),
                        std::cmp::Reverse(l.product_id),
                    )
                });
            match best {
                Some(line) => line.user_coupon_id = Some(uc.id),
                None => {
                    return Err(DomainError::InvalidCoupon(format!(
                        "no line left for CART_ITEM coupon {id}"
                    ))
                    .into())
                }
            }
        }
        let priced_lines: Vec<(LineRequest, &Product, Option<HeldCoupon<'_>>)> = lines
            .iter()
            .map(|l| {
                let coupon = l
                    .user_coupon_id
                    .and_then(|id| held.get(&id))
                    .map(|(uc, p)| HeldCoupon {
                        user_coupon: uc,
                        policy: p,
                    });
                (l.clone(), &products[&l.product_id], coupon)
            })
            .collect();
        let cart_held: Vec<HeldCoupon<'_>> = cart_coupons
            .iter()
            .map(|id| {
                let (uc, p) = &held[id];
                HeldCoupon {
                    user_coupon: uc,
                    policy: p,
                }
            })
            .collect();
        let pricing = price_order(cmd.user_id, &priced_lines, &cart_held, now)?;
        // Stock, against what the turn has left, in product order (as the store deducts it).
        let mut by_product: Vec<_> = pricing.lines.iter().collect();
        by_product.sort_by_key(|l| l.product_id);
        for line in &by_product {
            let available = products[&line.product_id].stock;
            if available < line.quantity.get() {
                return Err(DomainError::InsufficientStock {
                    product: line.product_id.get(),
                    requested: line.quantity.get(),
                    available,
                }
                .into());
            }
        }
        for line in &by_product {
            if let Some(p) = running.products.get_mut(&line.product_id) {
                p.stock -= line.quantity.get();
            }
        }
        for id in pricing.user_coupon_ids() {
            if let Some((uc, _)) = running.coupons.get_mut(&id) {
                uc.status = UserCouponStatus::Used;
            }
        }
        Ok(pricing)
    }
}

/// Writes a turn's planned orders: one guarded stock deduction per product (in product order,
/// like every writer of stock rows), the orders in one call, their coupons ISSUED -> USED (in id
/// order), and the carts they emptied.
async fn write_orders(
    uow: &mut dyn UnitOfWork,
    news: Vec<NewOrder>,
    emptied: &[UserId],
) -> Result<Vec<Order>, StoreError> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let mut totals: BTreeMap<ProductId, u64> = BTreeMap::new();
    for line in news.iter().flat_map(|n| &n.pricing.lines) {
        *totals.entry(line.product_id).or_default() += u64::from(line.quantity.get());
    }
    for (product, mut total) in totals {
        // A quantity is at most `Quantity::MAX`; a turn's total may be more.
        while total > 0 {
            let part = total.min(u64::from(Quantity::MAX));
            let quantity = Quantity::new(i64::try_from(part).unwrap_or(1), "quantity")?;
            uow.products().deduct_stock(product, quantity).await?;
            total -= part;
        }
    }
    let orders = uow.orders().insert_many(news).await?;
    let mut coupons: Vec<(UserCouponId, stockade_domain::OrderId)> = orders
        .iter()
        .flat_map(|o| o.user_coupon_ids().into_iter().map(move |c| (c, o.id)))
        .collect();
    coupons.sort();
    for (id, order) in coupons {
        let moved = uow
            .coupons()
            .set_state(
                id,
                UserCouponStatus::Issued,
                UserCouponStatus::Used,
                Some(order),
            )
            .await?;
        if !moved {
            return Err(
                DomainError::InvalidCoupon(format!("user coupon {id} is not ISSUED")).into(),
            );
        }
    }
    for user in emptied {
        let mut cart = uow.carts().get(*user).await?;
        cart.items.clear();
        uow.carts().save(&cart).await?;
    }
    Ok(orders)
}

//! Planning and writing the orders of a create-order turn (see `engine::order_turn`): each
//! order priced and checked against what the turn has left, then the turn's writes made with
//! one call per repository.

use crate::error::AppError;
use crate::ports::store::{NewOrder, StoreError, UnitOfWork};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use stockade_domain::coupon::CouponKind;
use stockade_domain::order::{price_order, HeldCoupon};
use stockade_domain::{
    Coupon, DomainError, LineRequest, Order, Pricing, Product, ProductId, Quantity, Timestamp,
    UserCoupon, UserCouponId, UserCouponStatus, UserId,
};

/// Where an order's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderSource {
    Lines(Vec<LineRequest>),
    /// The user's cart, which the order empties.
    FromCart,
}

/// What a turn plans one order from: the create-order command, as the engine needs it.
#[derive(Debug, Clone)]
pub(crate) struct OrderRequest {
    pub(crate) user_id: UserId,
    pub(crate) source: OrderSource,
    /// CART coupons, and CART_ITEM coupons to place on the line where each takes off most.
    pub(crate) user_coupon_ids: Vec<UserCouponId>,
}

/// What a turn has read, kept current as it plans its orders: each product's stock after the
/// orders planned so far, the user coupons they use, and, for products with a per-customer
/// limit, the units each customer holds with the orders planned so far.
#[derive(Default)]
pub(crate) struct Running {
    pub(crate) products: HashMap<ProductId, Product>,
    coupons: HashMap<UserCouponId, (UserCoupon, Coupon)>,
    held: HashMap<(UserId, ProductId), u64>,
}

/// Prices one order of a turn and checks it against the turn's running state; on success
/// the running state takes its stock and coupons. Writes nothing.
pub(crate) async fn plan(
    uow: &mut dyn UnitOfWork,
    running: &mut Running,
    cmd: &OrderRequest,
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
            let not_yours = || DomainError::InvalidCoupon(format!("user coupon {id} is not yours"));
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
    // Per-customer limits, against the units the customer's live orders hold: read in this
    // unit, under the product's lock (no other order of it can be placed meanwhile), plus the
    // orders of this turn planned before this one.
    let mut held_now = Vec::new();
    for line in &by_product {
        let product = &products[&line.product_id];
        if product.max_per_customer.is_none() {
            continue;
        }
        let key = (cmd.user_id, line.product_id);
        let held = match running.held.get(&key) {
            Some(h) => *h,
            None => {
                let h = uow
                    .orders()
                    .units_held(cmd.user_id, line.product_id)
                    .await?;
                running.held.insert(key, h);
                h
            }
        };
        product.check_customer_allowance(held, line.quantity.get())?;
        held_now.push((key, held + u64::from(line.quantity.get())));
    }
    running.held.extend(held_now);
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

/// Writes a turn's planned orders: one guarded stock deduction per product (in product order,
/// like every writer of stock rows), the orders in one call, their coupons ISSUED -> USED (in id
/// order), and the carts they emptied.
pub(crate) async fn write_orders(
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

//! Orders: pricing with coupons, and the order state machine.
//!
//! Pricing order: every line's CART_ITEM coupon is applied to that line's total first; CART
//! coupons (at most two) are then applied one after the other to what is left of the order, in
//! the order the client listed them, each capped by the amount still left. So the total is
//! `subtotal - discount` and can never go below zero.

use crate::coupon::{Coupon, CouponKind, UserCoupon, UserCouponStatus, MAX_CART_COUPONS};
use crate::{
    DomainError, Money, OrderId, Product, ProductId, Quantity, Timestamp, UserCouponId, UserId,
};
use std::collections::HashSet;

/// The life of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    Cancelled,
    Expired,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "PENDING_PAYMENT",
            OrderStatus::Paid => "PAID",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        match s {
            "PENDING_PAYMENT" => Some(OrderStatus::PendingPayment),
            "PAID" => Some(OrderStatus::Paid),
            "PAYMENT_FAILED" => Some(OrderStatus::PaymentFailed),
            "CANCELLED" => Some(OrderStatus::Cancelled),
            "EXPIRED" => Some(OrderStatus::Expired),
            _ => None,
        }
    }

    /// Whether the order still holds its stock and coupon reservations, and counts against its
    /// customer's per-product limits (`Product::max_per_customer`).
    pub fn holds_reservations(self) -> bool {
        matches!(self, OrderStatus::PendingPayment | OrderStatus::Paid)
    }
}

/// One line of an order as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    pub product_id: ProductId,
    pub quantity: Quantity,
    /// A CART_ITEM coupon for this line.
    pub user_coupon_id: Option<UserCouponId>,
}

/// A coupon the user holds, with its policy, as pricing needs it.
#[derive(Debug, Clone, Copy)]
pub struct HeldCoupon<'a> {
    pub user_coupon: &'a UserCoupon,
    pub policy: &'a Coupon,
}

/// A priced order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub name: String,
    pub unit_price: Money,
    pub quantity: Quantity,
    pub line_total: Money,
    pub discount: Money,
    pub user_coupon_id: Option<UserCouponId>,
}

/// The priced result of an order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub lines: Vec<OrderLine>,
    /// CART coupons applied, each with the amount it took off.
    pub cart_coupons: Vec<(UserCouponId, Money)>,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

impl Pricing {
    /// Every user coupon this pricing consumes.
    pub fn user_coupon_ids(&self) -> Vec<UserCouponId> {
        self.lines
            .iter()
            .filter_map(|l| l.user_coupon_id)
            .chain(self.cart_coupons.iter().map(|(id, _)| *id))
            .collect()
    }
}

/// Validates the lines' shape: not empty, no product twice, at most `MAX_LINES` products.
///
/// # Errors
/// `INVALID_INPUT` naming `items`.
pub fn check_lines(lines: &[LineRequest]) -> Result<(), DomainError> {
    if lines.is_empty() {
        return Err(DomainError::invalid("items", "must hold at least one line"));
    }
    if lines.len() > crate::cart::MAX_LINES {
        return Err(DomainError::invalid(
            "items",
            format!("at most {} lines", crate::cart::MAX_LINES),
        ));
    }
    let mut seen = HashSet::new();
    for line in lines {
        if !seen.insert(line.product_id) {
            return Err(DomainError::invalid(
                "items",
                format!("product {} appears twice", line.product_id),
            ));
        }
    }
    Ok(())
}

fn check_held(
    user: UserId,
    held: &HeldCoupon<'_>,
    kind: CouponKind,
    now: Timestamp,
) -> Result<(), DomainError> {
    let uc = held.user_coupon;
    if uc.user_id != user {
        return Err(DomainError::InvalidCoupon(format!(
            "user coupon {} is not yours",
            uc.id
        )));
    }
    if uc.status_at(now) != UserCouponStatus::Issued {
        return Err(DomainError::InvalidCoupon(format!(
            "user coupon {} is {}",
            uc.id,
            uc.status_at(now).as_str()
        )));
    }
    if held.policy.kind != kind {
        return Err(DomainError::InvalidCoupon(format!(
            "user coupon {} is a {} coupon",
            uc.id,
            held.policy.kind.as_str()
        )));
    }
    Ok(())
}

/// Prices an order.
///
/// `lines` pairs each request with its product and, for a line with a coupon, that coupon.
///
/// # Errors
/// `INVALID_INPUT` for a malformed line set, `EXCEEDED_LIMITED_QUANTITY` above a product's
/// limit, `INVALID_COUPON` for any coupon that is not the user's, not ISSUED, of the wrong kind,
/// outside its window, under its minimum, used twice, or past the CART coupon limit.
pub fn price_order(
    user: UserId,
    lines: &[(LineRequest, &Product, Option<HeldCoupon<'_>>)],
    cart_coupons: &[HeldCoupon<'_>],
    now: Timestamp,
) -> Result<Pricing, DomainError> {
    let requests: Vec<LineRequest> = lines.iter().map(|(r, _, _)| r.clone()).collect();
    check_lines(&requests)?;
    if cart_coupons.len() > MAX_CART_COUPONS {
        return Err(DomainError::InvalidCoupon(format!(
            "at most {MAX_CART_COUPONS} CART coupons per order"
        )));
    }
    let mut used = HashSet::new();
    let mut priced = Vec::with_capacity(lines.len());
    let mut subtotal = Money::ZERO;
    let mut item_discounts = Money::ZERO;
    let overflow = || DomainError::invalid("items", "order total is too large");
    for (req, product, coupon) in lines {
        if req.product_id != product.id {
            return Err(DomainError::invalid(
                "items",
                "line and product do not match",
            ));
        }
        product.check_order_quantity(req.quantity)?;
        let line_total = product
            .price
            .checked_mul(req.quantity.get())
            .ok_or_else(overflow)?;
        let discount = match (req.user_coupon_id, coupon) {
            (None, _) => Money::ZERO,
            (Some(id), Some(held)) if held.user_coupon.id == id => {
                check_held(user, held, CouponKind::CartItem, now)?;
                if !used.insert(id) {
                    return Err(DomainError::InvalidCoupon(format!(
                        "user coupon {id} is used twice"
                    )));
                }
                held.policy.discount_on(line_total, now)?
            }
            (Some(id), _) => {
                return Err(DomainError::InvalidCoupon(format!(
                    "user coupon {id} does not exist"
                )))
            }
        };
        subtotal = subtotal.checked_add(line_total).ok_or_else(overflow)?;
        item_discounts = item_discounts.checked_add(discount).ok_or_else(overflow)?;
        priced.push(OrderLine {
            product_id: product.id,
            name: product.name.clone(),
            unit_price: product.price,
            quantity: req.quantity,
            line_total,
            discount,
            user_coupon_id: req.user_coupon_id,
        });
    }
    // Item discounts never exceed their line totals, so this cannot underflow.
    let mut remaining = subtotal.saturating_sub(item_discounts);
    let mut applied = Vec::with_capacity(cart_coupons.len());
    for held in cart_coupons {
        check_held(user, held, CouponKind::Cart, now)?;
        let id = held.user_coupon.id;
        if !used.insert(id) {
            return Err(DomainError::InvalidCoupon(format!(
                "user coupon {id} is used twice"
            )));
        }
        // The minimum order amount of a CART coupon is checked against the subtotal.
        if subtotal < held.policy.min_order_amount {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} needs an order of at least {}",
                held.policy.id, held.policy.min_order_amount
            )));
        }
        if !held.policy.is_valid_at(now) {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} is not valid at this time",
                held.policy.id
            )));
        }
        let off = held.policy.discount.amount_off(remaining);
        remaining = remaining.saturating_sub(off);
        applied.push((id, off));
    }
    let total = remaining;
    let discount = subtotal.saturating_sub(total);
    Ok(Pricing {
        lines: priced,
        cart_coupons: applied,
        subtotal,
        discount,
        total,
    })
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub cart_coupons: Vec<(UserCouponId, Money)>,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Order {
    /// Every user coupon the order holds.
    pub fn user_coupon_ids(&self) -> Vec<UserCouponId> {
        self.lines
            .iter()
            .filter_map(|l| l.user_coupon_id)
            .chain(self.cart_coupons.iter().map(|(id, _)| *id))
            .collect()
    }

    /// Whether an unpaid order has run out of time.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.status == OrderStatus::PendingPayment && now >= self.expires_at
    }

    /// Checks that `amount` may pay this order now.
    ///
    /// # Errors
    /// `INVALID_ORDER_STATE` unless PENDING_PAYMENT and not yet expired; `AMOUNT_MISMATCH`
    /// unless `amount` equals the total.
    pub fn check_payable(&self, amount: Money, now: Timestamp) -> Result<(), DomainError> {
        if self.status != OrderStatus::PendingPayment {
            return Err(self.refuse("paid"));
        }
        if self.is_expired_at(now) {
            return Err(DomainError::InvalidOrderState {
                state: "EXPIRED",
                action: "paid",
            });
        }
        if amount != self.total {
            return Err(DomainError::AmountMismatch {
                expected: self.total.won(),
                given: amount.won(),
            });
        }
        Ok(())
    }

    /// Moves the order to `to`, checking the transition is allowed.
    ///
    /// Allowed: PENDING_PAYMENT -> PAID | PAYMENT_FAILED | CANCELLED | EXPIRED, PAID -> CANCELLED.
    ///
    /// # Errors
    /// `INVALID_ORDER_STATE` for any other transition.
    pub fn transition(&mut self, to: OrderStatus, now: Timestamp) -> Result<(), DomainError> {
        use OrderStatus::*;
        let ok = matches!(
            (self.status, to),
            (PendingPayment, Paid | PaymentFailed | Cancelled | Expired) | (Paid, Cancelled)
        );
        if !ok {
            return Err(self.refuse(match to {
                Paid => "paid",
                PaymentFailed => "failed",
                Cancelled => "cancelled",
                Expired => "expired",
                PendingPayment => "reopened",
            }));
        }
        self.status = to;
        self.updated_at = now;
        Ok(())
    }

    fn refuse(&self, action: &'static str) -> DomainError {
        DomainError::InvalidOrderState {
            state: self.status.as_str(),
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coupon::{Discount, NewCoupon};
    use crate::{CouponId, ErrorCode};

    fn product(id: i64, price: i64) -> Product {
        Product {
            id: ProductId::new(id).expect("id"),
            name: format!("p{id}"),
            price: Money::from_trusted(price),
            stock: 100,
            max_per_order: 5,
            max_per_customer: None,
        }
    }

    fn coupon(id: i64, kind: &str, discount: Discount, min: i64) -> Coupon {
        Coupon::from_new(
            CouponId::new(id).expect("id"),
            NewCoupon::new("c", kind, discount, min, 10, "LOCKED", None, None).expect("valid"),
        )
    }

    fn held(id: i64, coupon: &Coupon, user: i64) -> UserCoupon {
        UserCoupon {
            id: UserCouponId::new(id).expect("id"),
            coupon_id: coupon.id,
            user_id: UserId::new(user).expect("id"),
            status: UserCouponStatus::Issued,
            issued_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1_000_000),
            order_id: None,
        }
    }

    fn line(p: &Product, q: i64, c: Option<i64>) -> LineRequest {
        LineRequest {
            product_id: p.id,
            quantity: Quantity::new(q, "quantity").expect("q"),
            user_coupon_id: c.map(|c| UserCouponId::new(c).expect("id")),
        }
    }

    #[test]
    fn item_then_cart_discounts() {
        let user = UserId::new(1).expect("id");
        let now = Timestamp::from_millis(10);
        let p1 = product(1, 10_000);
        let p2 = product(2, 5_000);
        let item = coupon(
            3,
            "CART_ITEM",
            Discount::Fixed(Money::from_trusted(3_000)),
            0,
        );
        let cart = coupon(
            2,
            "CART",
            Discount::new("PERCENT", 10, Some(20_000)).expect("d"),
            0,
        );
        let uc_item = held(1, &item, 1);
        let uc_cart = held(2, &cart, 1);
        let pricing = price_order(
            user,
            &[
                (
                    line(&p1, 2, Some(1)),
                    &p1,
                    Some(HeldCoupon {
                        user_coupon: &uc_item,
                        policy: &item,
                    }),
                ),
                (line(&p2, 1, None), &p2, None),
            ],
            &[HeldCoupon {
                user_coupon: &uc_cart,
                policy: &cart,
            }],
            now,
        )
        .expect("priced");
        assert_eq!(pricing.subtotal.won(), 25_000);
        // 3,000 off line 1, then 10% of 22,000 = 2,200.
        assert_eq!(pricing.discount.won(), 5_200);
        assert_eq!(pricing.total.won(), 19_800);
        assert_eq!(pricing.user_coupon_ids().len(), 2);
    }

    #[test]
    fn coupon_misuse_is_refused() {
        let user = UserId::new(1).expect("id");
        let now = Timestamp::from_millis(10);
        let p = product(1, 10_000);
        let cart = coupon(2, "CART", Discount::Fixed(Money::from_trusted(100)), 0);
        let mine = held(1, &cart, 1);
        let theirs = held(2, &cart, 2);
        let h = |uc| HeldCoupon {
            user_coupon: uc,
            policy: &cart,
        };
        // Not the user's.
        let e = price_order(user, &[(line(&p, 1, None), &p, None)], &[h(&theirs)], now);
        assert_eq!(
            e.map_err(|e| e.code()).err(),
            Some(ErrorCode::InvalidCoupon)
        );
        // Used twice.
        let e = price_order(
            user,
            &[(line(&p, 1, None), &p, None)],
            &[h(&mine), h(&mine)],
            now,
        );
        assert_eq!(
            e.map_err(|e| e.code()).err(),
            Some(ErrorCode::InvalidCoupon)
        );
        // CART coupon on a line.
        let e = price_order(
            user,
            &[(line(&p, 1, Some(1)), &p, Some(h(&mine)))],
            &[],
            now,
        );
        assert_eq!(
            e.map_err(|e| e.code()).err(),
            Some(ErrorCode::InvalidCoupon)
        );
        // Three CART coupons.
        let e = price_order(
            user,
            &[(line(&p, 1, None), &p, None)],
            &[h(&mine), h(&mine), h(&mine)],
            now,
        );
        assert_eq!(
            e.map_err(|e| e.code()).err(),
            Some(ErrorCode::InvalidCoupon)
        );
        // Under the minimum.
        let picky = coupon(4, "CART", Discount::Fixed(Money::from_trusted(100)), 50_000);
        let uc = held(5, &picky, 1);
        let e = price_order(
            user,
            &[(line(&p, 1, None), &p, None)],
            &[HeldCoupon {
                user_coupon: &uc,
                policy: &picky,
            }],
            now,
        );
        assert_eq!(
            e.map_err(|e| e.code()).err(),
            Some(ErrorCode::InvalidCoupon)
        );
    }

    #[test]
    fn state_machine() {
        let p = product(1, 100);
        let mut o = Order {
            id: OrderId::new(1).expect("id"),
            user_id: UserId::new(1).expect("id"),
            status: OrderStatus::PendingPayment,
            lines: vec![],
            cart_coupons: vec![],
            subtotal: p.price,
            discount: Money::ZERO,
            total: p.price,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(100),
            updated_at: Timestamp::from_millis(0),
        };
        let now = Timestamp::from_millis(50);
        assert_eq!(
            o.check_payable(Money::from_trusted(99), now)
                .map_err(|e| e.code()),
            Err(ErrorCode::AmountMismatch)
        );
        assert_eq!(
            o.check_payable(p.price, Timestamp::from_millis(100))
                .map_err(|e| e.code()),
            Err(ErrorCode::InvalidOrderState)
        );
        o.transition(OrderStatus::Paid, now).expect("pay");
        assert!(o.transition(OrderStatus::Expired, now).is_err());
        assert!(o.transition(OrderStatus::Paid, now).is_err());
        o.transition(OrderStatus::Cancelled, now)
            .expect("cancel paid");
        assert!(o.transition(OrderStatus::Cancelled, now).is_err());
    }
}

//! Coupon policies, discounts and the coupons users hold.
//!
//! ## Rounding rule for PERCENT discounts
//! `discount = floor(base × percent / 100)`, then capped by `maxDiscount` when one is set, then
//! capped by `base` itself. Rounding is always down (the shop never gives a fraction of a won
//! more than the stated rate) and a discount can never exceed what it applies to, so a total is
//! never negative. FIXED discounts are capped by `base` the same way.

use crate::{CouponId, DomainError, Money, Timestamp, UserCouponId, UserId};

/// Where a coupon applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CouponKind {
    /// On the order total; at most [`MAX_CART_COUPONS`] per order.
    Cart,
    /// On one product line; at most one per line.
    CartItem,
}

/// At most this many CART coupons stack on one order.
pub const MAX_CART_COUPONS: usize = 2;
/// A coupon with no `validUntil` stays usable this long after it was issued.
pub const DEFAULT_COUPON_LIFETIME_MS: i64 = 30 * 24 * 60 * 60 * 1000;

impl CouponKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CouponKind::Cart => "CART",
            CouponKind::CartItem => "CART_ITEM",
        }
    }

    pub fn parse(s: &str) -> Option<CouponKind> {
        match s {
            "CART" => Some(CouponKind::Cart),
            "CART_ITEM" => Some(CouponKind::CartItem),
            _ => None,
        }
    }
}

/// How a coupon is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssuanceMode {
    /// Synchronously, under a per-coupon lock, straight into the store.
    Locked,
    /// Through the atomic gate; persisted asynchronously by the issuance consumer.
    Flash,
}

impl IssuanceMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            IssuanceMode::Locked => "LOCKED",
            IssuanceMode::Flash => "FLASH",
        }
    }

    pub fn parse(s: &str) -> Option<IssuanceMode> {
        match s {
            "LOCKED" => Some(IssuanceMode::Locked),
            "FLASH" => Some(IssuanceMode::Flash),
            _ => None,
        }
    }
}

/// The amount a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    Fixed(Money),
    /// `percent` in 1..=100, optionally capped.
    Percent {
        percent: u8,
        cap: Option<Money>,
    },
}

impl Discount {
    /// # Errors
    /// `INVALID_INPUT` for an unknown type, a non-positive value, a percent above 100 or a
    /// negative cap.
    pub fn new(kind: &str, value: i64, cap: Option<i64>) -> Result<Discount, DomainError> {
        match kind {
            "FIXED" => {
                if value < 1 {
                    return Err(DomainError::invalid("discountValue", "must be positive"));
                }
                Ok(Discount::Fixed(Money::new(value, "discountValue")?))
            }
            "PERCENT" => {
                let percent = u8::try_from(value)
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| DomainError::invalid("discountValue", "must be 1 to 100"))?;
                let cap = cap.map(|c| Money::new(c, "maxDiscount")).transpose()?;
                Ok(Discount::Percent { percent, cap })
            }
            _ => Err(DomainError::invalid(
                "discountType",
                "must be FIXED or PERCENT",
            )),
        }
    }

    /// The discount on `base`; never more than `base` (see the module's rounding rule).
    pub fn amount_off(self, base: Money) -> Money {
        let raw = match self {
            Discount::Fixed(v) => v,
            Discount::Percent { percent, cap } => {
                // base <= Money::MAX (1e15), so base * 100 fits in i64 comfortably.
                let off = Money::from_trusted(base.won() * i64::from(percent) / 100);
                match cap {
                    Some(cap) => off.min(cap),
                    None => off,
                }
            }
        };
        raw.min(base)
    }

    pub const fn type_str(self) -> &'static str {
        match self {
            Discount::Fixed(_) => "FIXED",
            Discount::Percent { .. } => "PERCENT",
        }
    }

    pub fn value(self) -> i64 {
        match self {
            Discount::Fixed(v) => v.won(),
            Discount::Percent { percent, .. } => i64::from(percent),
        }
    }

    pub fn cap(self) -> Option<Money> {
        match self {
            Discount::Fixed(_) => None,
            Discount::Percent { cap, .. } => cap,
        }
    }
}

/// What an admin gives to create a coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCoupon {
    pub name: String,
    pub kind: CouponKind,
    pub discount: Discount,
    pub min_order_amount: Money,
    pub quantity: u32,
    pub mode: IssuanceMode,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

/// The most coupons one policy may hand out.
pub const MAX_COUPON_QUANTITY: i64 = 10_000_000;

impl NewCoupon {
    /// # Errors
    /// `INVALID_INPUT` naming the field at fault.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        kind: &str,
        discount: Discount,
        min_order_amount: i64,
        quantity: i64,
        mode: &str,
        valid_from: Option<Timestamp>,
        valid_until: Option<Timestamp>,
    ) -> Result<NewCoupon, DomainError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(DomainError::invalid("name", "must be 1 to 100 characters"));
        }
        let kind = CouponKind::parse(kind)
            .ok_or_else(|| DomainError::invalid("kind", "must be CART or CART_ITEM"))?;
        let mode = IssuanceMode::parse(mode)
            .ok_or_else(|| DomainError::invalid("mode", "must be LOCKED or FLASH"))?;
        if !(1..=MAX_COUPON_QUANTITY).contains(&quantity) {
            return Err(DomainError::invalid(
                "quantity",
                format!("must be 1 to {MAX_COUPON_QUANTITY}"),
            ));
        }
        if let (Some(from), Some(until)) = (valid_from, valid_until) {
            if until <= from {
                return Err(DomainError::invalid(
                    "validUntil",
                    "must be after validFrom",
                ));
            }
        }
        Ok(NewCoupon {
            name: name.to_owned(),
            kind,
            discount,
            min_order_amount: Money::new(min_order_amount, "minOrderAmount")?,
            // Checked against MAX_COUPON_QUANTITY above.
            quantity: quantity as u32,
            mode,
            valid_from,
            valid_until,
        })
    }
}

/// A coupon policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub id: CouponId,
    pub name: String,
    pub kind: CouponKind,
    pub discount: Discount,
    pub min_order_amount: Money,
    /// How many may be issued in total.
    pub quantity: u32,
    pub mode: IssuanceMode,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
}

impl Coupon {
    pub fn from_new(id: CouponId, new: NewCoupon) -> Coupon {
        Coupon {
            id,
            name: new.name,
            kind: new.kind,
            discount: new.discount,
            min_order_amount: new.min_order_amount,
            quantity: new.quantity,
            mode: new.mode,
            valid_from: new.valid_from,
            valid_until: new.valid_until,
        }
    }

    /// Whether `now` is inside the validity window.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.valid_from.is_none_or(|from| now >= from)
            && self.valid_until.is_none_or(|until| now < until)
    }

    /// Checks that the coupon may be issued now.
    ///
    /// # Errors
    /// `INVALID_COUPON` outside the validity window.
    pub fn check_issuable(&self, now: Timestamp) -> Result<(), DomainError> {
        if !self.is_valid_at(now) {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} is not valid at this time",
                self.id
            )));
        }
        Ok(())
    }

    /// When a coupon issued at `issued_at` stops being usable.
    pub fn expiry_for(&self, issued_at: Timestamp) -> Timestamp {
        self.valid_until
            .unwrap_or_else(|| issued_at.plus_millis(DEFAULT_COUPON_LIFETIME_MS))
    }

    /// The discount this coupon gives on `base` (a line total for CART_ITEM, the amount left
    /// after item discounts for CART).
    ///
    /// # Errors
    /// `INVALID_COUPON` when `base` is under the minimum order amount or the coupon is outside
    /// its validity window.
    pub fn discount_on(&self, base: Money, now: Timestamp) -> Result<Money, DomainError> {
        if !self.is_valid_at(now) {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} is not valid at this time",
                self.id
            )));
        }
        if base < self.min_order_amount {
            return Err(DomainError::InvalidCoupon(format!(
                "coupon {} needs an amount of at least {}",
                self.id, self.min_order_amount
            )));
        }
        Ok(self.discount.amount_off(base))
    }
}

/// The life of a coupon a user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserCouponStatus {
    Issued,
    /// Applied to an order (restored to `Issued` if that order does not complete).
    Used,
    Expired,
}

impl UserCouponStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserCouponStatus::Issued => "ISSUED",
            UserCouponStatus::Used => "USED",
            UserCouponStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<UserCouponStatus> {
        match s {
            "ISSUED" => Some(UserCouponStatus::Issued),
            "USED" => Some(UserCouponStatus::Used),
            "EXPIRED" => Some(UserCouponStatus::Expired),
            _ => None,
        }
    }
}

/// One coupon held by one user. At most one per `(coupon_id, user_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCoupon {
    pub id: UserCouponId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub status: UserCouponStatus,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// The order it is applied to while `Used`.
    pub order_id: Option<crate::OrderId>,
}

impl UserCoupon {
    /// The status as seen at `now`: an `Issued` coupon past its expiry reads as `Expired`.
    pub fn status_at(&self, now: Timestamp) -> UserCouponStatus {
        match self.status {
            UserCouponStatus::Issued if now >= self.expires_at => UserCouponStatus::Expired,
            s => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: i64) -> Money {
        Money::from_trusted(v)
    }

    #[test]
    fn percent_rounds_down_and_caps() {
        let d = Discount::new("PERCENT", 10, Some(20_000)).expect("valid");
        assert_eq!(d.amount_off(m(12_345)), m(1_234));
        assert_eq!(d.amount_off(m(1_000_000)), m(20_000));
        let fixed = Discount::new("FIXED", 5_000, None).expect("valid");
        assert_eq!(fixed.amount_off(m(3_000)), m(3_000), "never above the base");
    }

    #[test]
    fn discount_validation() {
        assert!(Discount::new("PERCENT", 0, None).is_err());
        assert!(Discount::new("PERCENT", 101, None).is_err());
        assert!(Discount::new("FIXED", 0, None).is_err());
        assert!(Discount::new("BOGUS", 1, None).is_err());
    }

    #[test]
    fn validity_window_is_half_open() {
        let c = Coupon::from_new(
            CouponId::new(1).expect("id"),
            NewCoupon::new(
                "c",
                "CART",
                Discount::Fixed(m(1)),
                0,
                1,
                "LOCKED",
                Some(Timestamp::from_millis(10)),
                Some(Timestamp::from_millis(20)),
            )
            .expect("valid"),
        );
        assert!(!c.is_valid_at(Timestamp::from_millis(9)));
        assert!(c.is_valid_at(Timestamp::from_millis(10)));
        assert!(!c.is_valid_at(Timestamp::from_millis(20)));
    }
}

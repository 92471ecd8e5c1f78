//! Property tests of the domain's arithmetic rules: discounts, order pricing and the wallet
//! ledger. Each property is checked against an independent model written here in `i128`, so a
//! change to a rule in `src/` makes a property fail instead of agreeing with itself.

use crate::coupon::{Coupon, Discount, NewCoupon, UserCoupon, UserCouponStatus};
use crate::order::{price_order, HeldCoupon, LineRequest};
use crate::wallet::{MAX_CHARGE, MAX_WALLET_BALANCE, MIN_CHARGE};
use crate::{
    ChargeAmount, CouponId, ErrorCode, LedgerKind, Money, Product, ProductId, Quantity, Timestamp,
    UserCouponId, UserId, Wallet,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Discounts
// ---------------------------------------------------------------------------------------------

/// A discount as an admin would type it: `(type, value, cap)`, always valid.
#[derive(Debug, Clone, Copy)]
enum DiscountSpec {
    Fixed(i64),
    Percent(i64, Option<i64>),
}

impl DiscountSpec {
    fn build(self) -> Discount {
        match self {
            DiscountSpec::Fixed(v) => Discount::new("FIXED", v, None),
            DiscountSpec::Percent(p, cap) => Discount::new("PERCENT", p, cap),
        }
        .expect("the strategy only yields valid discounts")
    }

    /// The module docs of `coupon.rs`: floor(base × p / 100), then the cap, then the base.
    fn model_off(self, base: i128) -> i128 {
        let raw = match self {
            DiscountSpec::Fixed(v) => i128::from(v),
            DiscountSpec::Percent(p, cap) => {
                let off = base * i128::from(p) / 100;
                cap.map_or(off, |c| off.min(i128::from(c)))
            }
        };
        raw.min(base)
    }
}

fn discount_spec() -> impl Strategy<Value = DiscountSpec> {
    prop_oneof![
        (1..=1_000_000_000i64).prop_map(DiscountSpec::Fixed),
        (1..=100i64, option::of(0..=1_000_000_000i64))
            .prop_map(|(p, cap)| DiscountSpec::Percent(p, cap)),
    ]
}

fn money(won: i64) -> Money {
    Money::new(won, "amount").expect("in range")
}

proptest! {
    #[test]
    fn discount_never_exceeds_its_base_and_follows_the_rounding_rule(
        base in 0..=1_000_000_000_000i64,
        spec in discount_spec(),
    ) {
        let off = spec.build().amount_off(money(base)).won();
        prop_assert!(off >= 0);
        prop_assert!(off <= base, "{off} off a base of {base}");
        prop_assert_eq!(i128::from(off), spec.model_off(i128::from(base)));
        if let DiscountSpec::Percent(p, cap) = spec {
            // min(floor(base × p / 100), cap), spelled out once more.
            let floor = i128::from(base) * i128::from(p) / 100;
            let expected = cap.map_or(floor, |c| floor.min(i128::from(c)));
            prop_assert_eq!(i128::from(off), expected);
        }
    }

    #[test]
    fn invalid_discounts_are_refused(
        percent in prop_oneof![-1_000i64..=0, 101i64..=10_000],
        fixed in -1_000_000i64..=0,
    ) {
        prop_assert_eq!(
            Discount::new("PERCENT", percent, None).map_err(|e| e.code()),
            Err(ErrorCode::InvalidInput)
        );
        prop_assert_eq!(
            Discount::new("FIXED", fixed, None).map_err(|e| e.code()),
            Err(ErrorCode::InvalidInput)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Order pricing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct CouponSpec {
    discount: DiscountSpec,
    min_order: i64,
}

fn coupon_spec() -> impl Strategy<Value = CouponSpec> {
    (
        discount_spec(),
        // Mostly no minimum, so most orders price; sometimes one that may not be met.
        prop_oneof![3 => Just(0i64), 1 => 0..=20_000_000_000i64],
    )
        .prop_map(|(discount, min_order)| CouponSpec {
            discount,
            min_order,
        })
}

#[derive(Debug, Clone)]
struct LineSpec {
    price: i64,
    max_per_order: u32,
    quantity: u32,
    coupon: Option<CouponSpec>,
}

fn line_spec() -> impl Strategy<Value = LineSpec> {
    (1..=10_000_000i64, 1..=1_000u32).prop_flat_map(|(price, max_per_order)| {
        (1..=max_per_order, option::of(coupon_spec()), edge()).prop_map(
            move |(quantity, coupon, edge)| {
                let total = price * i64::from(quantity);
                LineSpec {
                    price,
                    max_per_order,
                    quantity,
                    coupon: coupon.map(|c| edge.apply(c, total)),
                }
            },
        )
    })
}

/// Sometimes puts a coupon's minimum exactly at, or just above, the amount it is checked
/// against, where an off-by-one would hide.
#[derive(Debug, Clone, Copy)]
enum Edge {
    Keep,
    At,
    Above,
}

impl Edge {
    fn apply(self, mut coupon: CouponSpec, amount: i64) -> CouponSpec {
        match self {
            Edge::Keep => {}
            Edge::At => coupon.min_order = amount,
            Edge::Above => coupon.min_order = amount + 1,
        }
        coupon
    }
}

fn edge() -> impl Strategy<Value = Edge> {
    prop_oneof![4 => Just(Edge::Keep), 1 => Just(Edge::At), 1 => Just(Edge::Above)]
}

const USER: i64 = 1;
const NOW: Timestamp = Timestamp::from_millis(1_000);

/// A policy and the user's ISSUED, unexpired copy of it.
fn held_coupon(n: i64, kind: &str, spec: CouponSpec) -> (Coupon, UserCoupon) {
    let policy = Coupon::from_new(
        CouponId::new(n).expect("id"),
        NewCoupon::new(
            &format!("coupon {n}"),
            kind,
            spec.discount.build(),
            spec.min_order,
            1_000,
            "LOCKED",
            None,
            None,
        )
        .expect("valid coupon"),
    );
    let user_coupon = UserCoupon {
        id: UserCouponId::new(100 + n).expect("id"),
        coupon_id: policy.id,
        user_id: UserId::new(USER).expect("id"),
        status: UserCouponStatus::Issued,
        issued_at: Timestamp::from_millis(0),
        expires_at: Timestamp::from_millis(1_000_000),
        order_id: None,
    };
    (policy, user_coupon)
}

/// What pricing must produce, computed without the domain: `None` when a coupon's minimum is
/// not met (the order must then be refused), else (line totals, line discounts, cart discounts).
type Model = Option<(Vec<i128>, Vec<i128>, Vec<i128>)>;

fn model_pricing(lines: &[LineSpec], cart: &[CouponSpec]) -> Model {
    let mut totals = Vec::new();
    let mut item_offs = Vec::new();
    for l in lines {
        let total = i128::from(l.price) * i128::from(l.quantity);
        let off = match l.coupon {
            None => 0,
            Some(c) if i128::from(c.min_order) > total => return None,
            Some(c) => c.discount.model_off(total),
        };
        totals.push(total);
        item_offs.push(off);
    }
    let subtotal: i128 = totals.iter().sum();
    let mut remaining = subtotal - item_offs.iter().sum::<i128>();
    let mut cart_offs = Vec::new();
    for c in cart {
        // order.rs: a CART coupon's minimum is checked against the subtotal.
        if i128::from(c.min_order) > subtotal {
            return None;
        }
        let off = c.discount.model_off(remaining);
        remaining -= off;
        cart_offs.push(off);
    }
    Some((totals, item_offs, cart_offs))
}

proptest! {
    #[test]
    fn priced_orders_add_up(
        lines in vec(line_spec(), 1..=5),
        mut cart in vec(coupon_spec(), 0..=2),
        cart_edge in edge(),
    ) {
        let user = UserId::new(USER).expect("id");
        let subtotal: i64 = lines.iter().map(|l| l.price * i64::from(l.quantity)).sum();
        if let Some(last) = cart.last_mut() {
            *last = cart_edge.apply(*last, subtotal);
        }
        let products: Vec<Product> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Product {
                id: ProductId::new(i as i64 + 1).expect("id"),
                name: format!("product {i}"),
                price: money(l.price),
                stock: 1_000_000,
                max_per_order: l.max_per_order,
                max_per_customer: None,
            })
            .collect();
        let item_coupons: Vec<Option<(Coupon, UserCoupon)>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| l.coupon.map(|c| held_coupon(i as i64 + 1, "CART_ITEM", c)))
            .collect();
        let cart_coupons: Vec<(Coupon, UserCoupon)> = cart
            .iter()
            .enumerate()
            .map(|(i, c)| held_coupon(i as i64 + 11, "CART", *c))
            .collect();
        let priced_lines: Vec<(LineRequest, &Product, Option<HeldCoupon<'_>>)> = lines
            .iter()
            .zip(&products)
            .zip(&item_coupons)
            .map(|((l, p), c)| {
                let request = LineRequest {
                    product_id: p.id,
                    quantity: Quantity::new(i64::from(l.quantity), "quantity").expect("quantity"),
                    user_coupon_id: c.as_ref().map(|(_, uc)| uc.id),
                };
                let held = c.as_ref().map(|(policy, uc)| HeldCoupon {
                    user_coupon: uc,
                    policy,
                });
                (request, p, held)
            })
            .collect();
        let held_cart: Vec<HeldCoupon<'_>> = cart_coupons
            .iter()
            .map(|(policy, uc)| HeldCoupon {
                user_coupon: uc,
                policy,
            })
            .collect();

        let result = price_order(user, &priced_lines, &held_cart, NOW);
        let Some((model_totals, model_item_offs, model_cart_offs)) =
            model_pricing(&lines, &cart)
        else {
            prop_assert_eq!(
                result.map_err(|e| e.code()).err(),
                Some(ErrorCode::InvalidCoupon),
                "a coupon whose minimum is not met must be refused"
            );
            return Ok(());
        };
        let pricing = result.expect("every coupon's minimum is met, so the order prices");

        // The invariants every priced order keeps.
        let subtotal = pricing.subtotal.won();
        let discount = pricing.discount.won();
        let total = pricing.total.won();
        prop_assert!(total >= 0);
        prop_assert!(discount <= subtotal);
        prop_assert_eq!(i128::from(total), i128::from(subtotal) - i128::from(discount));
        let line_sum: i128 = pricing.lines.iter().map(|l| i128::from(l.line_total.won())).sum();
        prop_assert_eq!(i128::from(subtotal), line_sum);
        for l in &pricing.lines {
            prop_assert!(l.discount <= l.line_total, "{:?}", l);
        }
        let all_offs: i128 = pricing
            .lines
            .iter()
            .map(|l| i128::from(l.discount.won()))
            .chain(pricing.cart_coupons.iter().map(|(_, off)| i128::from(off.won())))
            .sum();
        prop_assert_eq!(i128::from(discount), all_offs, "discount is the sum of its parts");

        // And the exact amounts of the documented pricing order.
        let got_totals: Vec<i128> =
            pricing.lines.iter().map(|l| i128::from(l.line_total.won())).collect();
        let got_item_offs: Vec<i128> =
            pricing.lines.iter().map(|l| i128::from(l.discount.won())).collect();
        let got_cart_offs: Vec<i128> =
            pricing.cart_coupons.iter().map(|(_, off)| i128::from(off.won())).collect();
        prop_assert_eq!(got_totals, model_totals);
        prop_assert_eq!(got_item_offs, model_item_offs);
        prop_assert_eq!(got_cart_offs, model_cart_offs);
        prop_assert_eq!(pricing.user_coupon_ids().len(), item_coupons.iter().flatten().count() + cart.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Wallet and ledger
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A charge as the API receives it: validated by `ChargeAmount::new` first.
    Charge(i64),
    /// A charge straight into `Wallet::apply` (a store bypassing `ChargeAmount`).
    RawCharge(i64),
    Pay(i64),
    Refund(i64),
    /// A charge of what is left under the wallet cap, plus `delta` (one charge at most).
    ChargeToCap(i64),
    /// A payment of the whole balance, plus `delta`.
    PayBalance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly large charges so the wallet cap is reached within 200 operations.
        4 => prop_oneof![
            3 => 900_000..=MAX_CHARGE,
            1 => -10..=MAX_CHARGE + 10,
        ]
        .prop_map(Op::Charge),
        1 => prop_oneof![
            Just(0i64),
            Just(MAX_CHARGE),
            Just(MAX_CHARGE + 1),
            1..=MAX_CHARGE * 2
        ]
        .prop_map(Op::RawCharge),
        2 => (0..=3_000_000i64).prop_map(Op::Pay),
        1 => (1..=MAX_CHARGE).prop_map(Op::Refund),
        // The edges: exactly at, just under and just over the cap and the balance.
        2 => (-2..=2i64).prop_map(Op::ChargeToCap),
        1 => (-2..=2i64).prop_map(Op::PayBalance),
    ]
}

/// Up to 200 operations; often led by enough maximal charges to bring the wallet near its cap,
/// so that the cap is actually reached (pays and whole-balance pays pull it back down).
fn wallet_ops() -> impl Strategy<Value = Vec<Op>> {
    let lead = prop_oneof![Just(0usize), 0..=100usize, 90..=100usize];
    (lead, vec(op(), 0..=100)).prop_map(|(lead, rest)| {
        let mut ops = vec![Op::Charge(MAX_CHARGE); lead];
        ops.extend(rest);
        ops
    })
}

proptest! {
    #[test]
    fn wallet_balance_is_the_sum_of_its_ledger(ops in wallet_ops()) {
        let mut wallet = Wallet::empty(UserId::new(USER).expect("id"));
        let mut ledger: Vec<(LedgerKind, Money)> = Vec::new();
        let mut model: i64 = 0;
        for op in ops {
            let before = wallet.balance;
            let (kind, amount) = match op {
                Op::Charge(won) => match ChargeAmount::new(won) {
                    Ok(amount) => {
                        prop_assert!((MIN_CHARGE..=MAX_CHARGE).contains(&won));
                        (LedgerKind::Charge, amount.money())
                    }
                    Err(e) => {
                        prop_assert!(!(MIN_CHARGE..=MAX_CHARGE).contains(&won), "{won} refused");
                        let expected = if won < MIN_CHARGE {
                            ErrorCode::InvalidInput
                        } else {
                            ErrorCode::ChargeLimitExceeded
                        };
                        prop_assert_eq!(e.code(), expected);
                        continue;
                    }
                },
                Op::RawCharge(won) => (LedgerKind::Charge, money(won)),
                Op::Pay(won) => (LedgerKind::Use, money(won)),
                Op::Refund(won) => (LedgerKind::Refund, money(won)),
                Op::ChargeToCap(delta) => {
                    let won = (MAX_WALLET_BALANCE - model + delta).clamp(MIN_CHARGE, MAX_CHARGE);
                    (LedgerKind::Charge, money(won))
                }
                Op::PayBalance(delta) => (LedgerKind::Use, money((model + delta).max(0))),
            };
            let won = amount.won();
            // The model: what must be refused, and with which code.
            let refusal = match kind {
                LedgerKind::Charge if won < MIN_CHARGE => Some(ErrorCode::InvalidInput),
                LedgerKind::Charge if won > MAX_CHARGE || model + won > MAX_WALLET_BALANCE => {
                    Some(ErrorCode::ChargeLimitExceeded)
                }
                LedgerKind::Use if won > model => Some(ErrorCode::InsufficientBalance),
                _ => None,
            };
            match wallet.apply(kind, amount, Some(format!("op:{}", ledger.len()))) {
                Ok(draft) => {
                    prop_assert_eq!(refusal, None, "{:?} of {} must be refused", kind, won);
                    prop_assert_eq!(draft.kind, kind);
                    prop_assert_eq!(draft.amount, amount);
                    ledger.push((draft.kind, draft.amount));
                    model += kind.signed(amount);
                    let running: i64 = ledger.iter().map(|(k, a)| k.signed(*a)).sum();
                    prop_assert_eq!(draft.balance_after.won(), running);
                    prop_assert_eq!(draft.balance_after, wallet.balance);
                }
                Err(e) => {
                    prop_assert_eq!(Some(e.code()), refusal, "{:?} of {}: {}", kind, won, e);
                    prop_assert_eq!(wallet.balance, before, "a refused op changes nothing");
                }
            }
            let sum: i64 = ledger.iter().map(|(k, a)| k.signed(*a)).sum();
            prop_assert!(wallet.balance.won() >= 0);
            prop_assert_eq!(wallet.balance.won(), sum);
            prop_assert_eq!(wallet.balance.won(), model);
        }
    }
}

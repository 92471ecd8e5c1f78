//! # stockade-domain
//!
//! The pure rules of Stockade: no async, no I/O, no serialisation. Everything here is a value
//! type or a function over value types, so it is tested without any backend and shared by every
//! adapter unchanged.
//!
//! - money is an `i64` number of won ([`Money`]), never a float;
//! - every input crosses a fallible constructor ([`Money::new`], [`Quantity::new`],
//!   [`IdempotencyKey::parse`], the id types), so an invalid value cannot exist past the edge;
//! - every refusal is a [`DomainError`] that names its API [`ErrorCode`].

pub mod account;
pub mod cart;
pub mod coupon;
mod error;
mod idempotency;
mod ids;
mod money;
pub mod order;
pub mod payment;
pub mod product;
mod quantity;
mod time;
pub mod wallet;

/// Property tests of the arithmetic rules against independent models (unit tests, so they build
/// with the crate instead of as an integration binary of their own).
#[cfg(test)]
mod properties;

pub use account::{Email, Password};
pub use cart::Cart;
pub use coupon::{
    Coupon, CouponKind, Discount, IssuanceMode, NewCoupon, UserCoupon, UserCouponStatus,
};
pub use error::{DomainError, ErrorCode};
pub use idempotency::IdempotencyKey;
pub use ids::{CouponId, OrderId, PaymentId, ProductId, TransactionId, UserCouponId, UserId};
pub use money::Money;
pub use order::{LineRequest, Order, OrderLine, OrderStatus, Pricing};
pub use payment::{Payment, PaymentStatus};
pub use product::{NewProduct, Product, ProductChanges};
pub use quantity::Quantity;
pub use time::Timestamp;
pub use wallet::{ChargeAmount, LedgerDraft, LedgerEntry, LedgerKind, Wallet};

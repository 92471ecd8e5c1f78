//! One module per use case (or per small family of them). Each adds methods to
//! [`crate::Stockade`].

pub mod audit;
pub mod balance;
pub mod cart;
pub mod coupons;
pub mod create_order;
pub mod issuance;
pub mod orders;
pub mod payment;
pub mod popular;
pub mod products;
pub mod reconcile;

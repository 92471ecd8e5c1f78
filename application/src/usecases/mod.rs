//! One module per use case, named verb_noun: its command (where it takes more than an id or
//! two), its result (a view from [`crate::views`]), the outcomes it can answer (`# Errors` on
//! its `execute`, as [`crate::AppError`] codes; docs/decisions/0014) and `execute`.
//!
//! A use case runs against the engine's `Context` and never calls another use case's
//! `execute`, except where one is a loop over another (`reconcile_all`, `consume_issuances`,
//! `refresh_popular`). Keyed use cases go through the one `engine::keyed::run_keyed`.
//! [`crate::Stockade`] is the public face: one delegating method per use case.

pub mod audit_store;
pub mod authenticate_account;
pub mod cancel_order;
pub mod charge_balance;
pub mod consume_issuances;
pub mod create_coupon;
pub mod create_order;
pub mod create_product;
pub mod expire_orders;
pub mod get_account;
pub mod get_balance;
pub mod get_cart;
pub mod get_coupon;
pub mod get_coupon_stock;
pub mod get_order;
pub mod get_product;
pub mod handle_issuance;
pub mod issue_coupon;
pub mod list_coupons;
pub mod list_failures;
pub mod list_my_coupons;
pub mod list_orders;
pub mod list_products;
pub mod list_transactions;
pub mod popular_products;
pub mod process_payment;
pub mod reconcile_all;
pub mod reconcile_coupon;
pub mod recover_sagas;
pub mod refresh_popular;
pub mod register_account;
pub mod replay_failures;
pub mod set_stock;
pub mod update_cart;
pub mod update_product;

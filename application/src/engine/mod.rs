//! The machinery the use cases share, none of it a use case itself: the [`Context`] they run
//! against, the write path's sections, idempotent execution ([`keyed::run_keyed`]), per-key
//! combining and the turns built on it (create-order, charge, LOCKED issuance), the payment
//! saga's confirm-or-compensate step, releasing what an order holds, FLASH gates and the
//! sold-out marks.
//!
//! Dependencies point one way: `usecases` → `engine` → `ports`. Nothing here names a use case;
//! a turn takes its own request type (e.g. [`order_plan::OrderRequest`]).

pub(crate) mod charge_turn;
pub(crate) mod combine;
pub(crate) mod context;
pub(crate) mod coupon_turn;
pub(crate) mod gate;
pub(crate) mod keyed;
pub(crate) mod lanes;
pub(crate) mod order_plan;
pub(crate) mod order_turn;
pub(crate) mod outcome;
pub(crate) mod password;
pub(crate) mod release;
pub(crate) mod saga;
pub(crate) mod section;
pub(crate) mod soldout;
pub(crate) mod upkeep;

pub(crate) use context::Context;

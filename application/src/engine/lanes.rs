//! The queues of the combined turns (docs/decisions/0012), and the requests that wait in them:
//! their types live apart from the turns that drain them so that [`super::Context`], which owns
//! the queues, depends on no turn.

use super::combine::Combiner;
use super::order_plan::OrderRequest;
use super::outcome::Settled;
use crate::error::AppError;
use crate::ports::idempotency::Ticket;
use crate::views::{ChargeReceipt, IssueView, OrderView};
use stockade_domain::{ChargeAmount, Coupon, CouponId, ProductId, UserId};

/// The combining key of an order: its products, sorted.
pub(crate) type ProductSet = Vec<ProductId>;

/// The per-product-set queues of create-order.
pub(crate) type OrderLanes = Combiner<ProductSet, OrderJob, OrderAnswer>;

/// One create-order request on its way through a turn.
#[derive(Debug)]
pub(crate) struct OrderJob {
    pub(crate) cmd: OrderRequest,
    pub(crate) products: ProductSet,
    /// The idempotency reference the order is placed under, if keyed.
    pub(crate) reference: Option<String>,
    /// The request's idempotency ticket, when its outcome commits with the order.
    pub(crate) ticket: Option<Ticket>,
}

/// What a turn answers one request.
#[derive(Debug)]
pub(crate) enum OrderAnswer {
    /// The request's own result, and whether its idempotency outcome committed with it.
    Done(Settled<OrderView>),
    /// The user's cart now holds a product outside the set the request was queued under.
    CartChanged,
}

/// The per-wallet queues of charges.
pub(crate) type ChargeLanes = Combiner<UserId, ChargeJob, Settled<ChargeReceipt>>;

/// One charge on its way through a turn.
#[derive(Debug)]
pub(crate) struct ChargeJob {
    pub(crate) user_id: UserId,
    pub(crate) amount: ChargeAmount,
    /// The ledger reference the charge is made under, if keyed.
    pub(crate) reference: Option<String>,
    pub(crate) ticket: Option<Ticket>,
}

/// The per-coupon queues of LOCKED issuances.
pub(crate) type CouponLanes = Combiner<CouponId, (Coupon, UserId), Result<IssueView, AppError>>;

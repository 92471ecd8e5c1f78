//! The `ChangeFeed` port: tells every instance that something it may have cached changed.
//!
//! The sold-out fast path (docs/decisions/0012) refuses orders for a product known to have no
//! stock without taking its lock. "Known" must only ever err towards trying: when stock comes
//! back (a restock, a cancelled, expired or failed order), every instance has to drop its mark.
//! The instance that wrote the change publishes it after its commit; every instance follows
//! the feed. The same holds when an admin edits a product (a mark carries its per-order
//! limit, and a turn judges a request by the product as it is now).
//!
//! # Contract (every adapter MUST)
//! - Deliver a published change to every subscriber of every instance on the same backend,
//!   the publishing one included, promptly. Delivery is best effort: a change MAY be lost, and
//!   followers keep their marks only for a short time-to-live for that reason.
//! - Deliver [`Change::Everything`] to its subscribers whenever it may have lost changes (its
//!   connection to the backend broke and was made again), so they drop every mark.
//! - Never block `publish` on slow subscribers; a subscriber that lags sees
//!   `RecvError::Lagged` and MUST treat it as [`Change::Everything`].
//! - Map backend failures of `publish` to [`BackendError`].

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use stockade_domain::ProductId;
use tokio::sync::broadcast;

/// Something other instances must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The product's stock went up (restock, stock edit, an order released).
    Restocked(ProductId),
    /// An admin changed the product (price, limits, name): what was kept of it is stale.
    Edited(ProductId),
    /// Anything may have changed: drop every mark.
    Everything,
}

impl Change {
    /// The text form adapters send (`restocked:7`, `edited:7`, `everything`).
    pub fn encode(self) -> String {
        match self {
            Change::Restocked(p) => format!("restocked:{p}"),
            Change::Edited(p) => format!("edited:{p}"),
            Change::Everything => "everything".to_owned(),
        }
    }

    /// The change a text form names; `Everything` for anything unreadable (erring towards
    /// dropping marks).
    pub fn decode(text: &str) -> Change {
        let product = |id: &str| {
            id.parse::<i64>()
                .ok()
                .and_then(|id| ProductId::new(id).ok())
        };
        if let Some(id) = text.strip_prefix("restocked:") {
            return product(id).map_or(Change::Everything, Change::Restocked);
        }
        if let Some(id) = text.strip_prefix("edited:") {
            return product(id).map_or(Change::Everything, Change::Edited);
        }
        Change::Everything
    }
}

/// See the module docs for the contract.
#[async_trait]
pub trait ChangeFeed: Send + Sync + fmt::Debug {
    /// Tells every instance of `change`.
    ///
    /// # Errors
    /// [`BackendError`] when the backend could not be told.
    async fn publish(&self, change: Change) -> Result<(), BackendError>;

    /// The changes published from now on.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}

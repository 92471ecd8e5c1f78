//! The `PopularityCache` port: the cached answer of "top N products over the last D days".
//!
//! An adapter MUST return a stored answer only until its TTL runs out, and MUST treat a backend
//! failure as a miss on `get` (the use case then computes from the store) while reporting it.

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// One ranked product.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PopularProduct {
    pub product_id: i64,
    pub name: String,
    pub sold_quantity: u64,
    pub rank: u32,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PopularityCache: Send + Sync + fmt::Debug {
    async fn get(&self, days: u32, limit: u32)
        -> Result<Option<Vec<PopularProduct>>, BackendError>;
    async fn put(
        &self,
        days: u32,
        limit: u32,
        items: Vec<PopularProduct>,
        ttl: Duration,
    ) -> Result<(), BackendError>;
    /// Forgets every cached answer (after a sale changes the ranking, when wanted).
    async fn clear(&self) -> Result<(), BackendError>;
}

/// Units sold per product per day, kept outside the store (e.g. Redis sorted sets) so that a
/// ranking does not scan orders.
///
/// # Contract (every adapter MUST)
/// - add `quantity` to the product's count for the day of `at` on `record`, and take it back on
///   `unrecord` (a paid order cancelled);
/// - answer `top` with the products of the `days` days ending at `now` (today included), most
///   sold first, ties by product id, at most `limit`;
/// - forget days older than the longest window it serves (a TTL).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SalesCounter: Send + Sync + fmt::Debug {
    async fn record(
        &self,
        lines: &[(stockade_domain::ProductId, u32)],
        at: stockade_domain::Timestamp,
    ) -> Result<(), BackendError>;
    async fn unrecord(
        &self,
        lines: &[(stockade_domain::ProductId, u32)],
        at: stockade_domain::Timestamp,
    ) -> Result<(), BackendError>;
    async fn top(
        &self,
        days: u32,
        limit: u32,
        now: stockade_domain::Timestamp,
    ) -> Result<Vec<(stockade_domain::ProductId, u64)>, BackendError>;
}

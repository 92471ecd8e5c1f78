//! The `PopularityCache` port: the cached answer of "top N products over the last D days".
//!
//! An adapter MUST return a stored answer only until its TTL runs out, and MUST treat a backend
//! failure as a miss on `get` (the use case then computes from the store) while reporting it.

use crate::error::BackendError;
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

//! The small adapters: clocks, id generators, a data-platform stand-in, the popularity cache.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stockade_application::ports::clock::{Clock, IdGenerator};
use stockade_application::ports::platform::{DataPlatform, PaidOrder, PlatformError};
use stockade_application::ports::popularity::{PopularProduct, PopularityCache};
use stockade_application::BackendError;
use stockade_domain::Timestamp;

/// The host's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_millis(ms)
    }
}

/// The wall clock as tokio's timer sees it: real time normally, virtual time under
/// `tokio::time::pause()` (so TTL-driven adapters can be tested without waiting). It reads the
/// system clock once, when built, and advances with `tokio::time::Instant` from then on.
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall_at_start: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Must be called inside a tokio runtime.
    pub fn new() -> Self {
        TokioClock {
            wall_at_start: SystemClock.now().millis(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(self.wall_at_start.saturating_add(elapsed))
    }
}

/// A clock that only moves when told to (tests of expiry and TTLs).
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn at(ms: i64) -> Self {
        ManualClock {
            ms: Arc::new(AtomicI64::new(ms)),
        }
    }

    pub fn advance(&self, d: Duration) {
        self.ms.fetch_add(
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// Unique ids: a per-process prefix (pid and start time) and a counter.
#[derive(Debug)]
pub struct ProcessIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for ProcessIds {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ProcessIds {
            prefix: format!("{:x}-{:x}", std::process::id(), nanos),
            next: AtomicU64::new(0),
        }
    }
}

impl IdGenerator for ProcessIds {
    fn unique(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// How the stand-in platform answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformMode {
    Accept,
    Fail,
    /// Never answers (the saga's time-out must handle it).
    Hang,
}

/// A data platform in memory: records what it was told (the latest [`MemoryPlatform::KEPT`]
/// events, so that a service running for long does not grow without bound); can be switched
/// to fail or hang.
#[derive(Clone, Default)]
pub struct MemoryPlatform {
    mode: Arc<AtomicU8>,
    received: Arc<Mutex<std::collections::VecDeque<PaidOrder>>>,
}

impl fmt::Debug for MemoryPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPlatform")
            .field("mode", &self.mode())
            .finish()
    }
}

impl MemoryPlatform {
    /// How many of the latest events it keeps.
    pub const KEPT: usize = 10_000;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_mode(&self, mode: PlatformMode) {
        let v = match mode {
            PlatformMode::Accept => 0,
            PlatformMode::Fail => 1,
            PlatformMode::Hang => 2,
        };
        self.mode.store(v, Ordering::SeqCst);
    }

    pub fn mode(&self) -> PlatformMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => PlatformMode::Fail,
            2 => PlatformMode::Hang,
            _ => PlatformMode::Accept,
        }
    }

    /// The paid orders accepted so far, oldest first (the latest [`MemoryPlatform::KEPT`]).
    pub fn received(&self) -> Vec<PaidOrder> {
        self.received.lock().iter().cloned().collect()
    }
}

#[async_trait]
impl DataPlatform for MemoryPlatform {
    async fn order_paid(&self, event: &PaidOrder) -> Result<(), PlatformError> {
        match self.mode() {
            PlatformMode::Accept => {
                let mut received = self.received.lock();
                if received.len() == Self::KEPT {
                    received.pop_front();
                }
                received.push_back(event.clone());
                Ok(())
            }
            PlatformMode::Fail => Err(PlatformError("refused (configured to fail)".into())),
            PlatformMode::Hang => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

/// A cached answer and when it stops being fresh.
type CachedRanking = (Timestamp, Vec<PopularProduct>);

/// The popularity cache in memory, with TTLs on the injected clock.
#[derive(Clone)]
pub struct MemoryPopularityCache {
    entries: Arc<Mutex<HashMap<(u32, u32), CachedRanking>>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryPopularityCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPopularityCache")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl MemoryPopularityCache {
    /// Forgets every cached answer at once.
    pub fn clear_now(&self) {
        self.entries.lock().clear();
    }

    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryPopularityCache {
            entries: Arc::default(),
            clock,
        }
    }
}

#[async_trait]
impl PopularityCache for MemoryPopularityCache {
    async fn get(
        &self,
        days: u32,
        limit: u32,
    ) -> Result<Option<Vec<PopularProduct>>, BackendError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        match entries.get(&(days, limit)) {
            Some((until, items)) if *until > now => Ok(Some(items.clone())),
            Some(_) => {
                entries.remove(&(days, limit));
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        days: u32,
        limit: u32,
        items: Vec<PopularProduct>,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let until = self
            .clock
            .now()
            .plus_millis(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.entries.lock().insert((days, limit), (until, items));
        Ok(())
    }

    async fn clear(&self) -> Result<(), BackendError> {
        self.entries.lock().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stockade_domain::{Money, OrderId, PaymentId, UserId};

    fn paid(n: i64) -> PaidOrder {
        PaidOrder {
            order_id: OrderId::new(n).unwrap(),
            payment_id: PaymentId::new(n).unwrap(),
            user_id: UserId::new(1).unwrap(),
            amount: Money::new(1_000, "amount").unwrap(),
            paid_at: Timestamp::from_millis(n),
        }
    }

    /// A platform told about more orders than it keeps remembers the latest ones, in order.
    #[tokio::test]
    async fn the_platform_keeps_only_the_latest_events() {
        let platform = MemoryPlatform::new();
        let total = MemoryPlatform::KEPT as i64 + 5;
        for n in 1..=total {
            platform.order_paid(&paid(n)).await.unwrap();
        }
        let kept = platform.received();
        assert_eq!(kept.len(), MemoryPlatform::KEPT);
        assert_eq!(kept.first(), Some(&paid(6)));
        assert_eq!(kept.last(), Some(&paid(total)));
    }
}

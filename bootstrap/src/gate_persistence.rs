//! Whether the Redis of the FLASH gate and the issuance queue keeps what it acknowledged across
//! its restart (docs/decisions/0020, docs/operations.md). A RESERVED answer is a promise held
//! only by that Redis until a consumer persists it: without an append-only file, a restart
//! of the server breaks the promise.
//!
//! At start the production profile refuses a server without AOF unless
//! `--allow-volatile-gate`; with the flag, and in the demo profile, it warns. `/ready` asks
//! again (cached for [`RECHECK`]), since AOF can be turned off at run time.

use crate::config::Profile;
use crate::StartError;
use async_trait::async_trait;
use std::time::{Duration, Instant};
use stockade_http::ReadyCheck;
use stockade_redis::{Persistence, RedisPersistenceProbe, RedisTarget};
use tokio::sync::Mutex;

/// How long `/ready` reuses the last answer.
pub const RECHECK: Duration = Duration::from_secs(3);

/// The gate's Redis (the first `--redis-url`, or the cluster, which the gate and the queue use).
#[derive(Debug)]
pub struct GatePersistence {
    probe: RedisPersistenceProbe,
    last: Mutex<Option<(Instant, Persistence)>>,
}

/// The warning `/ready` and the log give for `persistence`, `None` when it is durable.
pub fn warning(persistence: Persistence) -> Option<String> {
    (!persistence.is_durable()).then(|| {
        format!(
            "gate: the Redis of the FLASH gate and issuance queue keeps no append-only file \
             ({persistence}): coupon reservations answered RESERVED are lost if it restarts"
        )
    })
}

impl GatePersistence {
    /// Connects to the gate's Redis.
    ///
    /// # Errors
    /// [`StartError::Redis`].
    pub async fn connect(target: RedisTarget) -> Result<GatePersistence, StartError> {
        Ok(GatePersistence {
            probe: RedisPersistenceProbe::connect(target).await?,
            last: Mutex::new(None),
        })
    }

    /// The server's persistence, asked at most once per [`RECHECK`].
    pub async fn current(&self) -> Persistence {
        let mut last = self.last.lock().await;
        if let Some((at, known)) = *last {
            if at.elapsed() < RECHECK {
                return known;
            }
        }
        let now = self.probe.check().await;
        *last = Some((Instant::now(), now));
        now
    }

    /// The start-up decision: durable, fine; otherwise the production profile refuses unless
    /// `allow_volatile`, and every other case logs a warning.
    ///
    /// # Errors
    /// [`StartError::VolatileGate`].
    pub async fn at_start(&self, profile: Profile, allow_volatile: bool) -> Result<(), StartError> {
        let persistence = self.current().await;
        let Some(warning) = warning(persistence) else {
            tracing::info!(%persistence, "the FLASH gate's Redis keeps an append-only file");
            return Ok(());
        };
        if profile == Profile::Production && !allow_volatile {
            return Err(StartError::VolatileGate { persistence });
        }
        tracing::warn!("{warning}");
        Ok(())
    }
}

#[async_trait]
impl ReadyCheck for GatePersistence {
    async fn warnings(&self) -> Vec<String> {
        warning(self.current().await).into_iter().collect()
    }
}

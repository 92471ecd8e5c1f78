//! The Redis [`CouponGate`]: each FLASH coupon is a hash (`quantity`, `remaining`, the validity
//! window and counters) and a set of holders. Reserve, rollback, restore, init and rebuild are Lua
//! scripts, so each is one atomic step on the server; they are called by SHA (`EVALSHA`, and
//! loaded again after a `NOSCRIPT`, as after a server restart).
//!
//! The keys of one coupon share a hash tag (`{<namespace>:<coupon>}`), so the scripts also run
//! on a Redis Cluster, where every key of one call must live in one slot.
//!
//! The counters kept in the hash (`reserves`, `rollbacks`, `restores`) are for reconciliation
//! and operators: `quantity == remaining + SCARD(holders)` holds after every script, and
//! `reserves + restores - rollbacks == SCARD(holders)`.

use crate::error::backend;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;
use std::fmt;
use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome, GateStats};
use stockade_application::BackendError;
use stockade_domain::{CouponId, Timestamp, UserId};

const INIT: &str = include_str!("../lua/gate_init.lua");

/// Creates a lost gate with its holders (reconciliation after a restart without persistence).
const REBUILD: &str = include_str!("../lua/gate_rebuild.lua");

/// Answers: 0 reserved, 1 sold out, 2 already issued, 3 not initialised, 4 outside the window.
const RESERVE: &str = include_str!("../lua/gate_reserve.lua");

const ROLLBACK: &str = include_str!("../lua/gate_rollback.lua");

const RESTORE: &str = include_str!("../lua/gate_restore.lua");

const STATS: &str = include_str!("../lua/gate_stats.lua");

/// The Redis [`CouponGate`]; cheap to clone (one multiplexed connection, reconnecting).
#[derive(Clone)]
pub struct RedisCouponGate {
    conn: ConnectionManager,
    namespace: Arc<str>,
    init: Arc<Script>,
    rebuild: Arc<Script>,
    reserve: Arc<Script>,
    rollback: Arc<Script>,
    restore: Arc<Script>,
    stats: Arc<Script>,
}

impl fmt::Debug for RedisCouponGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCouponGate")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisCouponGate {
    /// Connects and loads the scripts (`SCRIPT LOAD`), so that the first reserves already go by
    /// SHA.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        url: &str,
        namespace: impl Into<Arc<str>>,
    ) -> Result<Self, crate::RedisSetupError> {
        let client = redis::Client::open(url).map_err(crate::RedisSetupError::Url)?;
        let conn = ConnectionManager::new_with_config(client, crate::connection_config())
            .await
            .map_err(crate::RedisSetupError::Connect)?;
        let gate = RedisCouponGate {
            conn,
            namespace: namespace.into(),
            init: Arc::new(Script::new(INIT)),
            rebuild: Arc::new(Script::new(REBUILD)),
            reserve: Arc::new(Script::new(RESERVE)),
            rollback: Arc::new(Script::new(ROLLBACK)),
            restore: Arc::new(Script::new(RESTORE)),
            stats: Arc::new(Script::new(STATS)),
        };
        let mut conn = gate.conn.clone();
        for script in [
            &gate.init,
            &gate.rebuild,
            &gate.reserve,
            &gate.rollback,
            &gate.restore,
            &gate.stats,
        ] {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(crate::RedisSetupError::Connect)?;
        }
        Ok(gate)
    }

    /// The SHA1 of the reserve script (what `EVALSHA` calls), for operators and benchmarks.
    pub fn reserve_sha(&self) -> &str {
        self.reserve.get_hash()
    }

    /// The two keys of a coupon: its hash and its holder set, in one hash slot.
    pub fn keys(&self, coupon: CouponId) -> [String; 2] {
        let tag = format!("{{{}:{}}}", self.namespace, coupon);
        [format!("gate:{tag}:meta"), format!("gate:{tag}:holders")]
    }

    /// `EVALSHA` of `script` on the coupon's two keys, then whatever `args` adds. After a
    /// `NOSCRIPT` (a restarted or flushed server) the script is loaded and the call made once
    /// more. The command is built in one buffer, keys included: this is the hot path of a drop.
    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        coupon: CouponId,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<T, BackendError> {
        use std::fmt::Write as _;
        let mut cmd = redis::Cmd::with_capacity(8, 128 + 2 * self.namespace.len());
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(2);
        let mut key = String::with_capacity(self.namespace.len() + 40);
        let _ = write!(key, "gate:{{{}:{}}}:", self.namespace, coupon);
        let stem = key.len();
        key.push_str("meta");
        cmd.arg(key.as_str());
        key.truncate(stem);
        key.push_str("holders");
        cmd.arg(key.as_str());
        args(&mut cmd);
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(backend)?;
                cmd.query_async(&mut conn).await.map_err(backend)
            }
            r => r.map_err(backend),
        }
    }
}

fn window(t: Option<Timestamp>) -> String {
    t.map(|t| t.millis().to_string()).unwrap_or_default()
}

#[async_trait]
impl CouponGate for RedisCouponGate {
    async fn init(&self, coupon: CouponId, config: GateConfig) -> Result<(), BackendError> {
        let _created: i64 = self
            .call(&self.init, coupon, |c| {
                c.arg(config.quantity)
                    .arg(window(config.valid_from))
                    .arg(window(config.valid_until));
            })
            .await?;
        Ok(())
    }

    async fn rebuild(
        &self,
        coupon: CouponId,
        config: GateConfig,
        holders: &[UserId],
    ) -> Result<bool, BackendError> {
        let created: i64 = self
            .call(&self.rebuild, coupon, |c| {
                c.arg(config.quantity)
                    .arg(window(config.valid_from))
                    .arg(window(config.valid_until));
                for h in holders {
                    c.arg(h.get());
                }
            })
            .await?;
        Ok(created == 1)
    }

    async fn reserve(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
    ) -> Result<GateOutcome, BackendError> {
        let answer: i64 = self
            .call(&self.reserve, coupon, |c| {
                c.arg(user.get()).arg(now.millis());
            })
            .await?;
        match answer {
            0 => Ok(GateOutcome::Reserved),
            1 => Ok(GateOutcome::SoldOut),
            2 => Ok(GateOutcome::AlreadyIssued),
            3 => Ok(GateOutcome::NotInitialised),
            4 => Ok(GateOutcome::Expired),
            other => Err(backend(format!(
                "unexpected answer {other} from the reserve script"
            ))),
        }
    }

    async fn rollback(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        let done: i64 = self
            .call(&self.rollback, coupon, |c| {
                c.arg(user.get());
            })
            .await?;
        Ok(done == 1)
    }

    async fn restore(&self, coupon: CouponId, user: UserId) -> Result<bool, BackendError> {
        let done: i64 = self
            .call(&self.restore, coupon, |c| {
                c.arg(user.get());
            })
            .await?;
        Ok(done == 1)
    }

    async fn stats(&self, coupon: CouponId) -> Result<Option<GateStats>, BackendError> {
        let v: Vec<i64> = self.call(&self.stats, coupon, |_| {}).await?;
        let count = |i: usize| {
            v.get(i)
                .and_then(|n| u32::try_from(*n).ok())
                .ok_or_else(|| backend("unexpected answer from the gate stats script"))
        };
        if v.is_empty() {
            return Ok(None);
        }
        Ok(Some(GateStats {
            quantity: count(0)?,
            remaining: count(1)?,
            reserved: count(2)?,
        }))
    }

    async fn holders(&self, coupon: CouponId) -> Result<Vec<UserId>, BackendError> {
        let [_, holders] = self.keys(coupon);
        let mut conn = self.conn.clone();
        let members: Vec<i64> = redis::cmd("SMEMBERS")
            .arg(holders)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        members
            .into_iter()
            .map(|m| {
                UserId::new(m).map_err(|e| backend(format!("a gate holder is not a user: {e}")))
            })
            .collect()
    }
}

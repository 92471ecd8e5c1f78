//! The Redis [`CouponGate`]: each FLASH coupon is a hash (`quantity`, `remaining`, the validity
//! window and counters) and a set of holders. Reserve, rollback, restore, init and rebuild are Lua
//! scripts, so each is one atomic step on the server; they are called by SHA (`EVALSHA`, and
//! loaded again after a `NOSCRIPT`, as after a server restart).
//!
//! The keys of one coupon share a hash tag (`{<namespace>:<coupon>}`), so the scripts also run
//! on a Redis Cluster, where every key of one call must live in one slot.
//!
//! Reserves, the hot path of a drop, are sent in batches: a request that finds no batch on its
//! way to the server goes at once, and those that arrive while one is on its way go together
//! in the next, as one pipeline (one write, one read, for the service and for Redis alike).
//! Under a crowd a batch holds about as many reserves as arrived during one round trip, and a
//! lone request waits for nothing. Each reserve is still its own script call, so a batch is
//! not a transaction: it only shares the trip.
//!
//! The counters kept in the hash (`reserves`, `rollbacks`, `restores`) are for reconciliation
//! and operators: `quantity == remaining + SCARD(holders)` holds after every script, and
//! `reserves + restores - rollbacks == SCARD(holders)`.

use crate::error::backend;
use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::Script;
use std::fmt;
use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome, GateStats};
use stockade_application::BackendError;
use stockade_domain::{CouponId, Timestamp, UserId};
use tokio::sync::{mpsc, oneshot};

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
    /// The way into the task that sends reserves in batches (started on first use).
    batcher: Arc<Mutex<Option<mpsc::Sender<Waiting>>>>,
}

/// A reserve waiting for its batch.
struct Waiting {
    coupon: CouponId,
    user: UserId,
    now: Timestamp,
    answer: oneshot::Sender<Result<i64, BackendError>>,
}

/// The most reserves one batch carries.
const BATCH_MAX: usize = 512;

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
            batcher: Arc::new(Mutex::new(None)),
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
        let mut cmd = command(&self.namespace, script, coupon);
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

/// `EVALSHA` of `script` on the two keys of `coupon`, built in one buffer, keys included.
fn command(namespace: &str, script: &Script, coupon: CouponId) -> redis::Cmd {
    use std::fmt::Write as _;
    let mut cmd = redis::Cmd::with_capacity(8, 128 + 2 * namespace.len());
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(2);
    let mut key = String::with_capacity(namespace.len() + 40);
    let _ = write!(key, "gate:{{{namespace}:{coupon}}}:");
    let stem = key.len();
    key.push_str("meta");
    cmd.arg(key.as_str());
    key.truncate(stem);
    key.push_str("holders");
    cmd.arg(key.as_str());
    cmd
}

impl RedisCouponGate {
    /// One reserve through the batching task: started here on first use (and again should the
    /// runtime it ran on have ended), so the gate needs no runtime of its own to be built.
    async fn reserve_batched(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
    ) -> Result<i64, BackendError> {
        let (answer, answered) = oneshot::channel();
        let mut waiting = Waiting {
            coupon,
            user,
            now,
            answer,
        };
        for _ in 0..2 {
            let sender = {
                let mut slot = self.batcher.lock();
                match slot.as_ref() {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        let (tx, rx) = mpsc::channel(4 * BATCH_MAX);
                        tokio::spawn(send_batches(
                            rx,
                            self.conn.clone(),
                            self.namespace.clone(),
                            self.reserve.clone(),
                        ));
                        *slot = Some(tx.clone());
                        tx
                    }
                }
            };
            match sender.send(waiting).await {
                Ok(()) => {
                    return answered
                        .await
                        .map_err(|_| backend("the reserve batch was dropped unanswered"))?;
                }
                Err(mpsc::error::SendError(back)) => waiting = back,
            }
        }
        Err(backend("the reserve batching task is not running"))
    }
}

/// The batching task: takes what is waiting (up to [`BATCH_MAX`]), sends it as one pipeline,
/// hands each caller its answer, and goes again; ends when the gate and its clones are gone.
/// Callers that gave up while waiting (their request was cancelled) are left out.
async fn send_batches(
    mut waiting: mpsc::Receiver<Waiting>,
    mut conn: ConnectionManager,
    namespace: Arc<str>,
    reserve: Arc<Script>,
) {
    let mut batch = Vec::with_capacity(64);
    while waiting.recv_many(&mut batch, BATCH_MAX).await > 0 {
        batch.retain(|w: &Waiting| !w.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        let mut answers = round_trip(&mut conn, &namespace, &reserve, &batch).await;
        if answers
            .iter()
            .any(|a| matches!(a, Err(e) if is_noscript(e)))
        {
            // The server lost its scripts (a restart or SCRIPT FLUSH): load it, send those again.
            let loaded = reserve.prepare_invoke().load_async(&mut conn).await;
            let again: Vec<usize> = (0..answers.len())
                .filter(|i| matches!(&answers[*i], Err(e) if is_noscript(e)))
                .collect();
            if let Err(e) = loaded {
                let text = e.to_string();
                for i in again {
                    answers[i] = Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "reserve script not loaded",
                        text.clone(),
                    )));
                }
            } else {
                let retried: Vec<&Waiting> = again.iter().map(|i| &batch[*i]).collect();
                let second = round_trip(&mut conn, &namespace, &reserve, &retried).await;
                for (i, a) in again.into_iter().zip(second) {
                    answers[i] = a;
                }
            }
        }
        for (w, a) in batch.drain(..).zip(answers) {
            let _ = w.answer.send(a.map_err(backend));
        }
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One pipeline of reserves; an answer per reserve, in order (all the same error if the trip
/// itself failed).
async fn round_trip<W: std::borrow::Borrow<Waiting>>(
    conn: &mut ConnectionManager,
    namespace: &str,
    reserve: &Script,
    batch: &[W],
) -> Vec<redis::RedisResult<i64>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for w in batch {
        let w = w.borrow();
        let mut cmd = command(namespace, reserve, w.coupon);
        cmd.arg(w.user.get()).arg(w.now.millis());
        pipe.add_command(cmd);
    }
    match pipe.query_async::<Vec<redis::RedisResult<i64>>>(conn).await {
        Ok(answers) if answers.len() == batch.len() => answers,
        Ok(answers) => {
            let text = format!("{} answers to {} reserves", answers.len(), batch.len());
            (0..batch.len())
                .map(|_| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "unexpected pipeline answer",
                        text.clone(),
                    )))
                })
                .collect()
        }
        Err(e) => {
            let (kind, text) = (e.kind(), e.to_string());
            (0..batch.len())
                .map(|_| {
                    Err(redis::RedisError::from((
                        kind,
                        "reserve batch failed",
                        text.clone(),
                    )))
                })
                .collect()
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
        let answer = self.reserve_batched(coupon, user, now).await?;
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

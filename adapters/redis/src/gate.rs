//! The Redis [`CouponGate`]: each FLASH coupon is a hash (`quantity`, `remaining`, the validity
//! window and counters) and a set of holders. Reserve, rollback, restore, init and rebuild are Lua
//! scripts, so each is one atomic step on the server; they are called by SHA (`EVALSHA`, and
//! loaded again after a `NOSCRIPT`, as after a server restart).
//!
//! The keys of one coupon share a hash tag (`{<namespace>:<coupon>}`), so the scripts also run
//! on a Redis Cluster, where every key of one call must live in one slot: each coupon's gate
//! lives on one master, and the coupons of a shop spread over the masters.
//!
//! Reserves, the hot path of a drop, are sent in batches: a request that finds no batch on its
//! way to the server goes at once, and those that arrive while one is on its way go together
//! in the next, as one pipeline (one write, one read, for the service and for Redis alike).
//! Under a crowd a batch holds about as many reserves as arrived during one round trip, and a
//! lone request waits for nothing. Each reserve is still its own script call, so a batch is
//! not a transaction: it only shares the trip. On a cluster a batch goes as one pipeline per
//! coupon (one slot), to the coupon's master, all at once.
//!
//! A reserve carries a token of its request (random, one per call). The script keeps each
//! holder's token next to the holder set (a third key, same hash tag), so a reserve run twice
//! for one request (the cluster client sends a command again after a connection error, not
//! knowing whether the first one ran) answers "reserved" again without taking a second unit,
//! while another request of the same user still answers "already issued". Rollback drops the
//! token with the holder; holders restored or rebuilt from the store have none.
//!
//! The counters kept in the hash (`reserves`, `rollbacks`, `restores`) are for reconciliation
//! and operators: `quantity == remaining + SCARD(holders)` holds after every script, and
//! `reserves + restores - rollbacks == SCARD(holders)`.

use crate::connection::{RedisConnection, RedisTarget};
use crate::error::backend;
use async_trait::async_trait;
use parking_lot::Mutex;
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
    conn: RedisConnection,
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
    token: u128,
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
    /// Connects to one server or a cluster and loads the scripts (`SCRIPT LOAD`, on every
    /// master of a cluster), so that the first reserves already go by SHA.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        target: impl Into<RedisTarget>,
        namespace: impl Into<Arc<str>>,
    ) -> Result<Self, crate::RedisSetupError> {
        let conn = RedisConnection::connect(target).await?;
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

    /// The three keys of a coupon: its hash, its holder set and its holders' request tokens,
    /// in one hash slot.
    pub fn keys(&self, coupon: CouponId) -> [String; 3] {
        let tag = format!("{{{}:{}}}", self.namespace, coupon);
        [
            format!("gate:{tag}:meta"),
            format!("gate:{tag}:holders"),
            format!("gate:{tag}:tokens"),
        ]
    }

    /// The exact command one reserve sends for the request `token`: what the cluster client
    /// sends again after a connection error (for tests and operators).
    pub fn reserve_command(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
        token: u128,
    ) -> redis::Cmd {
        reserve_command(&self.namespace, &self.reserve, coupon, user, now, token)
    }

    /// A reserve as [`CouponGate::reserve`] makes it, with the request token given: the
    /// answer to a request whose token already holds a place is [`GateOutcome::Reserved`].
    ///
    /// # Errors
    /// As [`CouponGate::reserve`].
    pub async fn reserve_as(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
        token: u128,
    ) -> Result<GateOutcome, BackendError> {
        let answer = self.reserve_batched(coupon, user, now, token).await?;
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

    /// `EVALSHA` of `script` on the coupon's three keys, then whatever `args` adds. After a
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
        query_script(&mut self.conn.clone(), script, &cmd).await
    }
}

/// Sends `cmd`, an `EVALSHA` of `script`; after a `NOSCRIPT` (a restarted or flushed server)
/// loads the script and sends it once more.
async fn query_script<T: redis::FromRedisValue>(
    conn: &mut RedisConnection,
    script: &Script,
    cmd: &redis::Cmd,
) -> Result<T, BackendError> {
    match cmd.query_async(conn).await {
        Err(e) if is_noscript(&e) => {
            script
                .prepare_invoke()
                .load_async(conn)
                .await
                .map_err(backend)?;
            cmd.query_async(conn).await.map_err(backend)
        }
        r => r.map_err(backend),
    }
}

/// `EVALSHA` of `script` on the three keys of `coupon`, built in one buffer, keys included.
fn command(namespace: &str, script: &Script, coupon: CouponId) -> redis::Cmd {
    use std::fmt::Write as _;
    let mut cmd = redis::Cmd::with_capacity(9, 160 + 3 * namespace.len());
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(3);
    let mut key = String::with_capacity(namespace.len() + 40);
    let _ = write!(key, "gate:{{{namespace}:{coupon}}}:");
    let stem = key.len();
    key.push_str("meta");
    cmd.arg(key.as_str());
    key.truncate(stem);
    key.push_str("holders");
    cmd.arg(key.as_str());
    key.truncate(stem);
    key.push_str("tokens");
    cmd.arg(key.as_str());
    cmd
}

/// The reserve of `user` for the request `token` (sent as 32 hex digits).
fn reserve_command(
    namespace: &str,
    reserve: &Script,
    coupon: CouponId,
    user: UserId,
    now: Timestamp,
    token: u128,
) -> redis::Cmd {
    let mut cmd = command(namespace, reserve, coupon);
    cmd.arg(user.get())
        .arg(now.millis())
        .arg(format!("{token:032x}").as_str());
    cmd
}

/// A fresh request token: random, so that requests of several instances never share one.
fn request_token() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

impl RedisCouponGate {
    /// One reserve through the batching task, which is started on first use (and again if it
    /// has stopped), so that building a gate needs no runtime. The answer is awaited for at
    /// most [`RESERVE_WAIT`].
    async fn reserve_batched(
        &self,
        coupon: CouponId,
        user: UserId,
        now: Timestamp,
        token: u128,
    ) -> Result<i64, BackendError> {
        let (answer, answered) = oneshot::channel();
        let mut waiting = Waiting {
            coupon,
            user,
            now,
            token,
            answer,
        };
        for _ in 0..2 {
            let sender = {
                let mut slot = self.batcher.lock();
                match slot.as_ref() {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        let (tx, rx) = mpsc::channel(4 * BATCH_MAX);
                        let trips = Trips {
                            conn: self.conn.clone(),
                            namespace: self.namespace.clone(),
                            reserve: self.reserve.clone(),
                            rollback: self.rollback.clone(),
                        };
                        tokio::spawn(trips.run(rx));
                        *slot = Some(tx.clone());
                        tx
                    }
                }
            };
            match sender.send(waiting).await {
                Ok(()) => {
                    return match tokio::time::timeout(RESERVE_WAIT, answered).await {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(_)) => Err(backend("the reserve batch was dropped unanswered")),
                        Err(_) => Err(backend("no answer to the reserve in time")),
                    };
                }
                Err(mpsc::error::SendError(back)) => waiting = back,
            }
        }
        Err(backend("the reserve batching task is not running"))
    }
}

/// The longest a reserve waits for its answer: a trip may take up to the connection's reply
/// time-out (2 s), and a reserve may queue behind a few batches and a script reload.
const RESERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the batching task needs: the connection, the keys' namespace and two scripts.
struct Trips {
    conn: RedisConnection,
    namespace: Arc<str>,
    reserve: Arc<Script>,
    rollback: Arc<Script>,
}

impl Trips {
    /// Takes what is waiting (up to [`BATCH_MAX`]), sends it as one pipeline, hands each
    /// caller its answer, and goes again; ends when the gate and its clones are gone.
    ///
    /// A caller that gave up (its request was cancelled, or it stopped waiting) must not keep a
    /// place it will never hear of: while it waits it is left out of the batch (and out of a
    /// resend after `NOSCRIPT`), and a place reserved for it after it left is given back.
    async fn run(mut self, mut waiting: mpsc::Receiver<Waiting>) {
        let mut batch = Vec::with_capacity(64);
        while waiting.recv_many(&mut batch, BATCH_MAX).await > 0 {
            batch.retain(|w: &Waiting| !w.answer.is_closed());
            if batch.is_empty() {
                continue;
            }
            let answers = self.answers(&batch).await;
            let mut orphans = Vec::new();
            for (w, a) in batch.drain(..).zip(answers) {
                let reserved = matches!(a, Ok(0));
                if w.answer.send(a.map_err(backend)).is_err() && reserved {
                    orphans.push((w.coupon, w.user));
                }
            }
            for (coupon, user) in orphans {
                let mut cmd = command(&self.namespace, &self.rollback, coupon);
                cmd.arg(user.get());
                if let Err(e) = query_script::<i64>(&mut self.conn, &self.rollback, &cmd).await {
                    tracing::warn!(error = %e, %coupon, %user, "a place reserved for a request that gave up could not be given back; reconciliation will persist it");
                }
            }
        }
    }

    /// An answer per reserve of `batch`, in order. Reserves that met `NOSCRIPT` (the server
    /// lost its scripts: a restart or `SCRIPT FLUSH`) never ran: the script is loaded and
    /// those whose callers still wait are sent again.
    async fn answers(&mut self, batch: &[Waiting]) -> Vec<redis::RedisResult<i64>> {
        let mut answers = self.round_trip(batch.iter()).await;
        let again: Vec<usize> = (0..answers.len())
            .filter(|i| matches!(&answers[*i], Err(e) if is_noscript(e)))
            .filter(|i| !batch[*i].answer.is_closed())
            .collect();
        if again.is_empty() {
            return answers;
        }
        match self
            .reserve
            .prepare_invoke()
            .load_async(&mut self.conn)
            .await
        {
            Ok(_) => {
                let second = self.round_trip(again.iter().map(|i| &batch[*i])).await;
                for (i, a) in again.into_iter().zip(second) {
                    answers[i] = a;
                }
            }
            Err(e) => {
                let text = e.to_string();
                for i in again {
                    answers[i] = Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "reserve script not loaded",
                        text.clone(),
                    )));
                }
            }
        }
        answers
    }

    /// The reserve command of one waiting request.
    fn command(&self, w: &Waiting) -> redis::Cmd {
        waiting_reserve(&self.namespace, &self.reserve, w)
    }

    /// The reserves of `batch`: one pipeline on one server, one per coupon on a cluster (see
    /// [`Trips::cluster_trip`]); an answer per reserve, in order.
    async fn round_trip<'a>(
        &mut self,
        batch: impl ExactSizeIterator<Item = &'a Waiting>,
    ) -> Vec<redis::RedisResult<i64>> {
        if self.conn.is_cluster() {
            return self.cluster_trip(batch.collect()).await;
        }
        pipeline_trip(&mut self.conn, &self.namespace, &self.reserve, batch).await
    }

    /// The reserves of a batch on a cluster: those of one coupon (one hash slot, one master)
    /// go as one pipeline, the coupons' pipelines at once, so that a drop's reserves still
    /// reach the master a batch at a time. The cluster client sends a pipeline again, whole,
    /// when one of its answers is `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN`; a reserve that
    /// ran and is sent again (as during a slot migration) carries its request token, so it
    /// answers as the first run did and takes no second unit, as after any resend.
    async fn cluster_trip(&self, batch: Vec<&Waiting>) -> Vec<redis::RedisResult<i64>> {
        let mut groups: std::collections::HashMap<CouponId, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, w) in batch.iter().enumerate() {
            groups.entry(w.coupon).or_default().push(i);
        }
        let trips = groups.values().map(|ix| {
            let group: Vec<&Waiting> = ix.iter().map(|i| batch[*i]).collect();
            self.slot_trip(group)
        });
        let results = futures::future::join_all(trips).await;
        let mut answers: Vec<Option<redis::RedisResult<i64>>> =
            (0..batch.len()).map(|_| None).collect();
        for (ix, result) in groups.values().zip(results) {
            for (i, a) in ix.iter().zip(result) {
                answers[*i] = Some(a);
            }
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "unexpected pipeline answer",
                        "a reserve got no answer".to_owned(),
                    )))
                })
            })
            .collect()
    }

    /// The reserves of one coupon on a cluster: one pipeline to the master of its slot (a
    /// lone reserve as a command of its own); see [`Trips::cluster_trip`].
    async fn slot_trip(&self, group: Vec<&Waiting>) -> Vec<redis::RedisResult<i64>> {
        let mut conn = self.conn.clone();
        if let [w] = group.as_slice() {
            return vec![self.command(w).query_async::<i64>(&mut conn).await];
        }
        pipeline_trip(&mut conn, &self.namespace, &self.reserve, group.into_iter()).await
    }
}

/// `batch` as one pipeline of reserves on `conn`; an answer per reserve, in order (all the
/// same error if the trip itself failed).
async fn pipeline_trip<'a>(
    conn: &mut RedisConnection,
    namespace: &str,
    reserve: &Script,
    batch: impl ExactSizeIterator<Item = &'a Waiting>,
) -> Vec<redis::RedisResult<i64>> {
    let n = batch.len();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for w in batch {
        pipe.add_command(waiting_reserve(namespace, reserve, w));
    }
    let failed = |kind: redis::ErrorKind, what: &'static str, text: String| {
        (0..n)
            .map(|_| Err(redis::RedisError::from((kind, what, text.clone()))))
            .collect()
    };
    match pipe.query_async::<Vec<redis::RedisResult<i64>>>(conn).await {
        Ok(answers) if answers.len() == n => answers,
        Ok(answers) => failed(
            redis::ErrorKind::Parse,
            "unexpected pipeline answer",
            format!("{} answers to {n} reserves", answers.len()),
        ),
        Err(e) => failed(e.kind(), "reserve batch failed", e.to_string()),
    }
}

/// The reserve command of one waiting request.
fn waiting_reserve(namespace: &str, reserve: &Script, w: &Waiting) -> redis::Cmd {
    reserve_command(namespace, reserve, w.coupon, w.user, w.now, w.token)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
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
        self.reserve_as(coupon, user, now, request_token()).await
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
        let [_, holders, _] = self.keys(coupon);
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

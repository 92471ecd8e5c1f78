//! The Redis Streams [`IssuanceQueue`].
//!
//! - `publish` is one `XADD` to the stream.
//! - Consumers read through one consumer group (`issuers`), each instance under a consumer name
//!   of its own (names of instances that are gone and hold nothing are forgotten after ten
//!   visibility times). An entry stays in the group's pending list until it is acked, so a consumer
//!   that dies with a batch in hand loses nothing: once an entry has been idle for the
//!   queue's visibility time, the next `receive` of any consumer takes it over (`XAUTOCLAIM`).
//! - `ack` is `XACK` + `XDEL`, so the stream holds only what is still to persist.
//! - `retry` acks the entry and parks it in a sorted set scored by the time it is due; a
//!   `receive` moves due entries back onto the stream. `dead_letter` acks it and appends it,
//!   with the reason, to the dead-letter stream.
//! - Attempts are counted as the attempts before the entry was (re)published, carried in the
//!   entry, plus the group's delivery count of the entry.
//! - An entry that cannot be read (not written by `publish`) is moved to the dead-letter stream
//!   as it is, with a reason, and acked, so it never holds up the entries read with it.
//!
//! Every step that touches more than one key is a Lua script, and the keys share a hash tag, so
//! each step is atomic (also on a Redis Cluster). A `receive` with nothing ready blocks in
//! `XREADGROUP BLOCK` on a connection of its own, waking for a publish, a due retry or, a few
//! times per visibility time, to look for entries left by dead consumers.

use crate::connection::{RedisConnection, RedisTarget};
use crate::error::backend;
use async_trait::async_trait;
use parking_lot::Mutex;
use redis::{Script, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::queue::{Delivery, IssuanceQueue, IssuanceRequest, QueueDepth};
use stockade_application::BackendError;
use stockade_domain::{CouponId, Timestamp, UserId};
use tokio::time::Instant;

/// The consumer group every instance reads through.
pub const GROUP: &str = "issuers";

/// Moves due retries onto the stream, takes over idle entries, then reads new ones. Answers
/// `{ms until the next retry is due or -1, {{id, coupon, user, reserved_at, attempt}, ...}}`.
/// First it forgets every other consumer of the group that holds nothing and has not read for
/// `ARGV[5]` ms: instances that are gone (each life of an instance reads under a new name), so
/// the group's consumer list does not grow with every restart. `XREADGROUP` creates a consumer
/// again when it reads, so forgetting one that still lives costs it nothing.
const RECEIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local group, consumer, max, idle = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local forget = tonumber(ARGV[5])
redis.pcall('XGROUP', 'CREATE', KEYS[1], group, '0', 'MKSTREAM')
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], group)) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f.name ~= consumer and tonumber(f.pending) == 0 and tonumber(f.idle) > forget then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, f.name)
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 512)
for _, m in ipairs(due) do
  local c, u, ts, a = string.match(m, '^(%d+):(%d+):(-?%d+):(%d+):')
  if c then redis.call('XADD', KEYS[1], '*', 'c', c, 'u', u, 't', ts, 'a', a) end
  redis.call('ZREM', KEYS[2], m)
end
local out = {}
local function push(id, f, count)
  local v = {}
  for i = 1, #f, 2 do v[f[i]] = f[i + 1] end
  out[#out + 1] = {id, v.c or '', v.u or '', v.t or '', (tonumber(v.a) or 0) + count}
end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, idle, '0-0', 'COUNT', max)
for _, e in ipairs(claimed[2]) do
  if e[2] then
    local p = redis.call('XPENDING', KEYS[1], group, e[1], e[1], 1)
    push(e[1], e[2], p[1][4])
  end
end
if #out < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #out,
    'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do push(e[1], e[2], 1) end
  end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
return {wait, out}
";

/// Acks and deletes the entries `ARGV[2..]`; answers how many were pending.
const ACK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
if type(n) ~= 'number' then return 0 end
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
";

/// The most entries one call of [`ACK`] settles (`unpack` puts every id on Lua's stack, which
/// takes some thousands of values at most).
const ACK_CHUNK: usize = 256;

/// Whether the delivery `ARGV[2]` with attempt `ARGV[4]` is still consumer `ARGV[3]`'s to
/// settle: the entry is pending with that consumer and has been delivered no more often since
/// (attempts carried in the entry + delivery count == the delivery's attempt).
const LATEST: &str = r"
local function latest()
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  if type(p) ~= 'table' or not p[1] then return false end
  local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
  if not e[1] then return false end
  local a, f = 0, e[1][2]
  for i = 1, #f, 2 do if f[i] == 'a' then a = tonumber(f[i + 1]) or 0 end end
  return p[1][2] == ARGV[3] and a + tonumber(p[1][4]) == tonumber(ARGV[4])
end
";

/// Acks an entry and parks it until `now + ARGV[5]` ms, if it is still this delivery's.
const RETRY: &str = r"
if not latest() then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[6])
return 1
";

/// Acks an entry and appends it to the dead letters, if it is still this delivery's.
const DEAD_LETTER: &str = r"
if not latest() then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'c', ARGV[5], 'u', ARGV[6], 't', ARGV[7], 'a', ARGV[4],
  'reason', ARGV[8])
return 1
";

/// Moves an entry that cannot be read (a field missing or not a number: not written by
/// `publish`) to the dead-letter stream as it is, with a reason, and acks it, so that it never
/// holds up the entries delivered with it. KEYS: stream, dead. ARGV: group, id.
const QUARANTINE: &str = r"
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if e[1] then
  local f = e[1][2]
  f[#f + 1] = 'reason'
  f[#f + 1] = 'malformed entry ' .. ARGV[2]
  redis.call('XADD', KEYS[2], '*', unpack(f))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

/// `{ready, in_flight, dead}`.
const DEPTH: &str = r"
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local len = redis.call('XLEN', KEYS[1])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
return {len - pending + redis.call('ZCARD', KEYS[2]), pending, redis.call('XLEN', KEYS[3])}
";

/// One dead letter as kept in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub request: IssuanceRequest,
    pub attempt: u32,
    pub reason: String,
}

/// The Redis Streams [`IssuanceQueue`]; clones share connections and the consumer name.
#[derive(Clone)]
pub struct RedisIssuanceQueue {
    conn: RedisConnection,
    /// Connections for blocking reads, one per concurrent `receive`.
    blocking: Arc<Mutex<Vec<RedisConnection>>>,
    keys: Arc<Keys>,
    consumer: Arc<str>,
    visibility: Duration,
    receive: Arc<Script>,
    ack: Arc<Script>,
    retry: Arc<Script>,
    dead_letter: Arc<Script>,
    quarantine: Arc<Script>,
    depth: Arc<Script>,
}

#[derive(Debug)]
struct Keys {
    stream: String,
    delayed: String,
    dead: String,
}

impl fmt::Debug for RedisIssuanceQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIssuanceQueue")
            .field("stream", &self.keys.stream)
            .field("consumer", &self.consumer)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl RedisIssuanceQueue {
    /// A queue in `namespace`, read as `consumer` (unique per instance), which takes over
    /// entries another consumer left unacked for `visibility`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        target: impl Into<RedisTarget>,
        namespace: &str,
        consumer: impl Into<Arc<str>>,
        visibility: Duration,
    ) -> Result<Self, crate::RedisSetupError> {
        let conn = RedisConnection::connect(target).await?;
        let tag = format!("{{{namespace}:issuance}}");
        Ok(RedisIssuanceQueue {
            conn,
            blocking: Arc::default(),
            keys: Arc::new(Keys {
                stream: format!("{tag}:stream"),
                delayed: format!("{tag}:delayed"),
                dead: format!("{tag}:dead"),
            }),
            consumer: consumer.into(),
            visibility: visibility.max(Duration::from_millis(1)),
            receive: Arc::new(Script::new(RECEIVE)),
            ack: Arc::new(Script::new(ACK)),
            retry: Arc::new(Script::new(&format!("{LATEST}{RETRY}"))),
            dead_letter: Arc::new(Script::new(&format!("{LATEST}{DEAD_LETTER}"))),
            quarantine: Arc::new(Script::new(QUARANTINE)),
            depth: Arc::new(Script::new(DEPTH)),
        })
    }

    /// The same queue read under another consumer name (another instance, in tests).
    #[must_use]
    pub fn with_consumer(&self, consumer: impl Into<Arc<str>>) -> Self {
        RedisIssuanceQueue {
            consumer: consumer.into(),
            blocking: Arc::default(),
            ..self.clone()
        }
    }

    /// The stream's key (operators read it with `XINFO STREAM`).
    pub fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// The most recent dead letters, newest first (entries quarantined as malformed are left
    /// out: read them with `XRANGE` on the dead-letter stream).
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, BackendError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&self.keys.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let get = |k: &str| field(&fields, k);
                let (request, attempt) =
                    decode(&id, get("c"), get("u"), get("t"), get("a")).ok()?;
                Some(DeadLetter {
                    id,
                    request,
                    attempt,
                    reason: get("reason").to_owned(),
                })
            })
            .collect())
    }

    /// Deliveries of the entries that decode; the others are quarantined (see [`QUARANTINE`]).
    async fn readable(
        &self,
        entries: Vec<(String, Decoded)>,
    ) -> Result<Vec<Delivery>, BackendError> {
        let mut out = Vec::with_capacity(entries.len());
        for (id, decoded) in entries {
            match decoded {
                Ok((request, attempt)) => out.push(Delivery {
                    id,
                    request,
                    attempt,
                }),
                Err(e) => {
                    tracing::error!(error = %e, entry = %id, "a malformed issuance entry was moved to the dead-letter stream");
                    let mut conn = self.conn.clone();
                    let _moved: i64 = self
                        .quarantine
                        .key(&self.keys.stream)
                        .key(&self.keys.dead)
                        .arg(GROUP)
                        .arg(&id)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(backend)?;
                }
            }
        }
        Ok(out)
    }

    async fn blocking_connection(&self) -> Result<RedisConnection, BackendError> {
        if let Some(c) = self.blocking.lock().pop() {
            return Ok(c);
        }
        // A connection of its own (on a cluster, one that reaches the stream's master): the
        // read blocks on purpose, bounded by its own BLOCK.
        self.conn.blocking().await.map_err(backend)
    }

    /// How long a receive with nothing ready blocks at most before it looks again for due
    /// retries and entries of dead consumers.
    fn poll(&self) -> Duration {
        (self.visibility / 3).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// How long a consumer holding nothing may go without reading before the group forgets it:
    /// ten visibility times, so that no live consumer (which reads at least every third of one)
    /// is forgotten except by a pause far longer than any take-over would allow.
    fn forget_after(&self) -> Duration {
        self.visibility.saturating_mul(10)
    }

    async fn step(&self, max: usize) -> Result<(Option<Duration>, Vec<Delivery>), BackendError> {
        let mut conn = self.conn.clone();
        let (wait, entries): (i64, Vec<Entry>) = self
            .receive
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg(max)
            .arg(u64::try_from(self.visibility.as_millis()).unwrap_or(u64::MAX))
            .arg(u64::try_from(self.forget_after().as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        let wait = u64::try_from(wait).ok().map(Duration::from_millis);
        let decoded = entries
            .into_iter()
            .map(|(id, c, u, t, attempt)| {
                let d = decode(&id, &c, &u, &t, "0")
                    .map(|(request, _)| (request, u32::try_from(attempt).unwrap_or(u32::MAX)));
                (id, d)
            })
            .collect();
        Ok((wait, self.readable(decoded).await?))
    }

    /// Blocks until a new entry is published or `block` passes; delivers what arrived.
    async fn block_for_new(
        &self,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        let mut conn = self.blocking_connection().await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">");
        // The connection's reply time-out is far longer than the BLOCK; a connection that died without a
        // reset must not hang the consumer, so the read is bounded here (and the connection
        // dropped: anything delivered on it is taken over after the visibility time).
        let read = cmd.query_async::<Value>(&mut conn);
        let Ok(reply) = tokio::time::timeout(block + Duration::from_secs(2), read).await else {
            return Ok(Vec::new());
        };
        let reply = match reply {
            Ok(v) => v,
            // The group vanished with a server restart; the next step creates it again.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.blocking.lock().push(conn);
                return Ok(Vec::new());
            }
            Err(e) => return Err(backend(e)),
        };
        self.blocking.lock().push(conn);
        type Read = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;
        let read: Read = redis::from_redis_value(reply).map_err(backend)?;
        let mut decoded = Vec::new();
        for (_, entries) in read.unwrap_or_default() {
            for (id, fields) in entries {
                let get = |k: &str| field(&fields, k);
                // As the receive script does: attempts that do not read as a number count as 0.
                let a = get("a");
                let a = if a.parse::<u32>().is_ok() { a } else { "0" };
                let d = decode(&id, get("c"), get("u"), get("t"), a)
                    .map(|(request, before)| (request, before.saturating_add(1)));
                decoded.push((id, d));
            }
        }
        self.readable(decoded).await
    }
}

/// An entry's request and attempt, or why it cannot be read.
type Decoded = Result<(IssuanceRequest, u32), BackendError>;

/// One entry as the receive script answers it: id, coupon, user, reserved at, attempt.
type Entry = (String, String, String, String, i64);

/// The value of field `k` of a stream entry ("" when missing).
fn field<'a>(fields: &'a [(String, String)], k: &str) -> &'a str {
    fields
        .iter()
        .find(|(f, _)| f == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// Parses one entry's fields.
fn decode(
    id: &str,
    c: &str,
    u: &str,
    t: &str,
    a: &str,
) -> Result<(IssuanceRequest, u32), BackendError> {
    let bad = || backend(format!("issuance entry {id} is malformed"));
    let coupon = c.parse().ok().and_then(|n| CouponId::new(n).ok());
    let user = u.parse().ok().and_then(|n| UserId::new(n).ok());
    let at = t.parse::<i64>().ok().map(Timestamp::from_millis);
    let attempts = a.parse::<u32>().ok();
    match (coupon, user, at, attempts) {
        (Some(coupon_id), Some(user_id), Some(reserved_at), Some(attempts)) => Ok((
            IssuanceRequest {
                coupon_id,
                user_id,
                reserved_at,
            },
            attempts,
        )),
        _ => Err(bad()),
    }
}

#[async_trait]
impl IssuanceQueue for RedisIssuanceQueue {
    async fn publish(&self, request: IssuanceRequest) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _id: String = redis::cmd("XADD")
            .arg(&self.keys.stream)
            .arg("*")
            .arg("c")
            .arg(request.coupon_id.get())
            .arg("u")
            .arg(request.user_id.get())
            .arg("t")
            .arg(request.reserved_at.millis())
            .arg("a")
            .arg(0)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError> {
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        loop {
            let (next_due, got) = self.step(max).await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(got);
            }
            let mut block = left.min(self.poll());
            if let Some(due) = next_due {
                block = block.min(due.max(Duration::from_millis(1)));
            }
            let got = self.block_for_new(max, block).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), BackendError> {
        self.ack_all(std::slice::from_ref(delivery)).await
    }

    async fn ack_all(&self, deliveries: &[Delivery]) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        for chunk in deliveries.chunks(ACK_CHUNK) {
            let mut call = self.ack.key(&self.keys.stream);
            call.arg(GROUP);
            for d in chunk {
                call.arg(&d.id);
            }
            let _acked: i64 = call.invoke_async(&mut conn).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), BackendError> {
        let r = delivery.request;
        // The entry id makes the member unique; the score is when it is due.
        let member = format!(
            "{}:{}:{}:{}:{}",
            r.coupon_id.get(),
            r.user_id.get(),
            r.reserved_at.millis(),
            delivery.attempt,
            delivery.id
        );
        let mut conn = self.conn.clone();
        let _parked: i64 = self
            .retry
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .arg(GROUP)
            .arg(&delivery.id)
            .arg(&*self.consumer)
            .arg(delivery.attempt)
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<bool, BackendError> {
        let r = delivery.request;
        let mut conn = self.conn.clone();
        let moved: i64 = self
            .dead_letter
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .key(&self.keys.dead)
            .arg(GROUP)
            .arg(&delivery.id)
            .arg(&*self.consumer)
            .arg(delivery.attempt)
            .arg(r.coupon_id.get())
            .arg(r.user_id.get())
            .arg(r.reserved_at.millis())
            .arg(reason)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(moved == 1)
    }

    async fn depth(&self) -> Result<QueueDepth, BackendError> {
        let mut conn = self.conn.clone();
        let (ready, in_flight, dead): (i64, i64, i64) = self
            .depth
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .key(&self.keys.dead)
            .arg(GROUP)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(QueueDepth {
            ready: n(ready),
            in_flight: n(in_flight),
            dead: n(dead),
        })
    }
}

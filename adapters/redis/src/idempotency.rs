//! The Redis [`IdempotencyStore`]: one hash per `(scope, key)`, claimed, completed and abandoned
//! by Lua scripts that run atomically on the server and check the owner ticket. Leases and TTLs
//! use the server's clock (`TIME`). A lapsed in-flight record stays a lease longer, so that only
//! the same request (same fingerprint) can take it over; a finished record lives for its TTL.
//!
//! Each script touches one record, and a user's records share a hash tag (the scope), so the
//! store runs on one server or on a Redis Cluster alike.

use crate::connection::{RedisConnection, RedisTarget};
use crate::error::backend;
use async_trait::async_trait;
use redis::Script;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_domain::IdempotencyKey;

const BEGIN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'fp', 'state', 'lease_until', 'ok', 'body')
local function claim()
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2], 'state', 'F', 'lease_until', now + lease)
  redis.call('HDEL', KEYS[1], 'ok', 'body')
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {'started', ''}
end
if not r[1] then return claim() end
if r[2] == 'F' then
  if r[1] ~= ARGV[1] then return {'mismatch', ''} end
  if tonumber(r[3]) <= now then return claim() end
  return {'progress', tostring(tonumber(r[3]) - now)}
end
if r[1] ~= ARGV[1] then return {'mismatch', ''} end
return {'replay', r[4] or '0', r[5] or ''}
";

const COMPLETE: &str = r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'F' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'D', 'ok', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

const ABANDON: &str = r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'F' then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
";

#[derive(Clone)]
pub struct RedisIdempotencyStore {
    conn: RedisConnection,
    namespace: Arc<str>,
    ids: Arc<dyn IdGenerator>,
    begin: Arc<Script>,
    complete: Arc<Script>,
    abandon: Arc<Script>,
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl RedisIdempotencyStore {
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        target: impl Into<RedisTarget>,
        namespace: impl Into<Arc<str>>,
        ids: Arc<dyn IdGenerator>,
    ) -> Result<Self, crate::RedisSetupError> {
        Ok(RedisIdempotencyStore {
            conn: RedisConnection::connect(target).await?,
            namespace: namespace.into(),
            ids,
            begin: Arc::new(Script::new(BEGIN)),
            complete: Arc::new(Script::new(COMPLETE)),
            abandon: Arc::new(Script::new(ABANDON)),
        })
    }

    /// The record's key: `<namespace>:idem:<scope length>:{<scope>}:<key>`. Length-prefixed so
    /// that no scope/key pair can collide with another; the scope (`user:7`) is the hash tag,
    /// so on a cluster a user's records live together in one slot.
    pub fn record(&self, scope: &Scope, key: &IdempotencyKey) -> String {
        format!(
            "{}:idem:{}:{{{}}}:{}",
            self.namespace,
            scope.0.len(),
            scope.0,
            key.as_str()
        )
    }
}

fn err(e: redis::RedisError) -> IdempotencyError {
    IdempotencyError::Unavailable(backend(e))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Begin, IdempotencyError> {
        let owner = self.ids.unique();
        let mut conn = self.conn.clone();
        let answer: Vec<Vec<u8>> = self
            .begin
            .key(self.record(scope, key))
            .arg(&fingerprint.0)
            .arg(&owner)
            .arg(ms(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        let word = answer.first().map(Vec::as_slice).unwrap_or_default();
        Ok(match word {
            b"started" => Begin::Started(Ticket {
                scope: scope.clone(),
                key: key.clone(),
                owner,
            }),
            b"mismatch" => Begin::Mismatch,
            b"progress" => {
                let left = answer
                    .get(1)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(1);
                Begin::InProgress {
                    retry_after: Duration::from_millis(left.max(1)),
                }
            }
            b"replay" => Begin::Replay(StoredOutcome {
                ok: answer.get(1).map(Vec::as_slice) == Some(b"1"),
                body: answer.get(2).cloned().unwrap_or_default(),
            }),
            _ => {
                return Err(IdempotencyError::Unavailable(backend(
                    "unexpected answer from the idempotency script",
                )))
            }
        })
    }

    async fn complete(
        &self,
        ticket: &Ticket,
        outcome: StoredOutcome,
        ttl: Duration,
    ) -> Result<(), IdempotencyError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .complete
            .key(self.record(&ticket.scope, &ticket.key))
            .arg(&ticket.owner)
            .arg(if outcome.ok { "1" } else { "0" })
            .arg(outcome.body)
            .arg(ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        if done == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::TicketLost)
        }
    }

    async fn abandon(&self, ticket: &Ticket) -> Result<(), IdempotencyError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .abandon
            .key(self.record(&ticket.scope, &ticket.key))
            .arg(&ticket.owner)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        if done == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::TicketLost)
        }
    }

    async fn purge_expired(&self) -> Result<u64, IdempotencyError> {
        // Redis expires records by itself.
        Ok(0)
    }
}

//! What a Redis server keeps across its own restart: the FLASH gate and the issuance stream
//! hold promises made to clients (a RESERVED answer), which only an append-only file keeps. On
//! a Redis Cluster every node is asked (a replica promoted after a failover must keep the file
//! too).

use crate::connection::{RedisConnection, RedisTarget};
use std::fmt;

/// Whether a server's writes survive its restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// An append-only file is on: acknowledged writes survive a restart (to within the
    /// `appendfsync` window: a second with `everysec`, none with `always`).
    AppendOnly,
    /// No append-only file: what was written since the last snapshot (if any) is lost.
    Volatile,
    /// Neither `CONFIG GET appendonly` nor `INFO persistence` answered (both disabled,
    /// renamed or refused by an ACL): treated as [`Persistence::Volatile`] by the callers,
    /// since nothing shows that the writes are kept.
    Unknown,
}

impl Persistence {
    /// Whether a restart of the server keeps what it acknowledged.
    pub fn is_durable(self) -> bool {
        self == Persistence::AppendOnly
    }
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Persistence::AppendOnly => "appendonly yes",
            Persistence::Volatile => "appendonly no",
            Persistence::Unknown => {
                "persistence unknown: neither CONFIG GET appendonly nor INFO persistence answered"
            }
        })
    }
}

/// Asks one server, or every node of a cluster, about its persistence, on a connection of its
/// own.
#[derive(Clone)]
pub struct RedisPersistenceProbe {
    conn: RedisConnection,
}

impl fmt::Debug for RedisPersistenceProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPersistenceProbe")
            .finish_non_exhaustive()
    }
}

impl RedisPersistenceProbe {
    /// Connects to the server (or the cluster) at `target`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(target: impl Into<RedisTarget>) -> Result<Self, crate::RedisSetupError> {
        Ok(RedisPersistenceProbe {
            conn: RedisConnection::connect(target).await?,
        })
    }

    /// One server: `CONFIG GET appendonly`, else (CONFIG disabled or renamed, as on managed
    /// servers) `INFO persistence`'s `aof_enabled`, else [`Persistence::Unknown`]. A cluster:
    /// `INFO persistence` of every node, durable only if every node is.
    pub async fn check(&self) -> Persistence {
        let mut conn = self.conn.clone();
        if conn.is_cluster() {
            let info: redis::RedisResult<redis::Value> = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut conn)
                .await;
            return match info {
                Ok(value) => from_every_node(value),
                Err(_) => Persistence::Unknown,
            };
        }
        let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await;
        if let Ok(pair) = config {
            if let Some(value) = pair.get(1) {
                return from_flag(value.eq_ignore_ascii_case("yes"));
            }
        }
        let info: redis::RedisResult<String> = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut conn)
            .await;
        match info {
            Ok(text) => from_info(&text),
            Err(_) => Persistence::Unknown,
        }
    }
}

fn from_flag(on: bool) -> Persistence {
    if on {
        Persistence::AppendOnly
    } else {
        Persistence::Volatile
    }
}

/// The least durable of the nodes' `INFO persistence` answers (a map of node to text, as the
/// cluster client gathers them).
fn from_every_node(value: redis::Value) -> Persistence {
    let redis::Value::Map(nodes) = value else {
        return redis::from_redis_value::<String>(value)
            .map_or(Persistence::Unknown, |text| from_info(&text));
    };
    if nodes.is_empty() {
        return Persistence::Unknown;
    }
    let mut worst = Persistence::AppendOnly;
    for (_, answer) in nodes {
        match redis::from_redis_value::<String>(answer).map(|text| from_info(&text)) {
            Ok(Persistence::AppendOnly) => {}
            Ok(Persistence::Volatile) if worst == Persistence::AppendOnly => {
                worst = Persistence::Volatile;
            }
            Ok(Persistence::Volatile) => {}
            Ok(Persistence::Unknown) | Err(_) => worst = Persistence::Unknown,
        }
    }
    worst
}

/// Reads `aof_enabled:0|1` from the text of `INFO persistence`.
fn from_info(text: &str) -> Persistence {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("aof_enabled:"))
        .map_or(Persistence::Unknown, |v| from_flag(v.trim() == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_persistence_is_read_for_aof_enabled() {
        let on = "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n";
        assert_eq!(from_info(on), Persistence::AppendOnly);
        assert_eq!(from_info("aof_enabled:0\r\n"), Persistence::Volatile);
        assert_eq!(from_info("loading:0\r\n"), Persistence::Unknown);
        assert!(!Persistence::Unknown.is_durable());
    }

    #[test]
    fn a_cluster_is_as_durable_as_its_least_durable_node() {
        let node = |addr: &str, text: &str| {
            (
                redis::Value::BulkString(addr.as_bytes().to_vec()),
                redis::Value::BulkString(text.as_bytes().to_vec()),
            )
        };
        let all = redis::Value::Map(vec![
            node("a:1", "aof_enabled:1\r\n"),
            node("b:2", "aof_enabled:1\r\n"),
        ]);
        assert_eq!(from_every_node(all), Persistence::AppendOnly);
        let one_volatile = redis::Value::Map(vec![
            node("a:1", "aof_enabled:1\r\n"),
            node("b:2", "aof_enabled:0\r\n"),
        ]);
        assert_eq!(from_every_node(one_volatile), Persistence::Volatile);
        let one_unknown = redis::Value::Map(vec![
            node("a:1", "aof_enabled:0\r\n"),
            node("b:2", "loading:0\r\n"),
        ]);
        assert_eq!(from_every_node(one_unknown), Persistence::Unknown);
        assert_eq!(
            from_every_node(redis::Value::Map(vec![])),
            Persistence::Unknown
        );
    }
}

//! The connection every Redis adapter but the lock manager speaks through: one server (a
//! reconnecting connection manager) or one Redis Cluster (redis-rs' cluster connection, which
//! routes each command by the hash slot of its keys, follows `MOVED` and `ASK`, and refreshes
//! its view of the slots after a failover).
//!
//! [`RedisConnection`] implements [`redis::aio::ConnectionLike`], so commands, pipelines and
//! [`redis::Script`]s run on it in either mode. On a cluster a `SCRIPT LOAD` goes to every
//! master, so a `NOSCRIPT` (a restarted node, or a replica promoted after a failover, which never
//! saw the load) is healed by the same load-and-retry as on one server. What a cluster asks of
//! the callers is that every script, `MULTI` and pipeline touches keys of one hash slot: the
//! adapters' keys carry hash tags for that (`{...}`).
//!
//! After a failover the cluster client can keep a slot map that still names the dead master
//! (it asked for the slots before the replica was promoted), and then it only tries to
//! reconnect to that address: every command for those slots fails until the process restarts.
//! So a cluster command that fails as a dead node or a stale map would (an I/O error, a time-out,
//! no connection for the slot, `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`) has the connection
//! replaced in the background by a fresh one, which asks the live seeds for the slots; at most
//! one replacement per [`RENEW_EVERY`], so a failover that is still under way is asked again a
//! moment later.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the Redis adapters connect.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server, by URL.
    Single(String),
    /// Seed nodes of one Redis Cluster, by URL: any that answers tells the client the rest.
    Cluster(Vec<String>),
}

/// URLs can carry passwords: only the mode and the number of seeds are shown.
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Single(_) => f.write_str("Single(..)"),
            RedisTarget::Cluster(seeds) => write!(f, "Cluster({} seeds)", seeds.len()),
        }
    }
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> Self {
        RedisTarget::Single(url.to_owned())
    }
}

impl From<&String> for RedisTarget {
    fn from(url: &String) -> Self {
        RedisTarget::Single(url.clone())
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> Self {
        RedisTarget::Single(url)
    }
}

impl From<&RedisTarget> for RedisTarget {
    fn from(target: &RedisTarget) -> Self {
        target.clone()
    }
}

/// How long a reply may take: up to two seconds (the redis crate's default of 500 ms is short
/// for a server busy with a drop, and a command that timed out may still have been applied,
/// which the caller cannot tell).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command may take on a cluster with its retries and redirections: long enough
/// to ride out a failover (a replica is promoted a little after the cluster's node time-out).
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(4);

/// How a blocking read's connection is bounded: by the read's own `BLOCK` (the caller adds a
/// time-out of its own around it), so only a generous reply time-out here.
const BLOCKING_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to one Redis server or one Redis Cluster; cheap to clone (clones share the
/// connection, which multiplexes their commands).
#[derive(Clone)]
pub struct RedisConnection {
    conn: Conn,
    client: Client,
}

#[derive(Clone)]
enum Conn {
    Managed(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(Arc<Renewing>),
}

/// The least time between two replacements of a cluster connection.
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// A cluster connection that is replaced by a fresh one after a failure that a dead node or a
/// stale slot map explains (see the module documentation).
struct Renewing {
    current: parking_lot::RwLock<ClusterConnection>,
    client: Arc<ClusterClient>,
    /// The configuration the connection was made with (`None`: the client's own).
    config: Option<redis::cluster::ClusterConfig>,
    /// When the last replacement began.
    last: parking_lot::Mutex<Option<Instant>>,
}

impl Renewing {
    fn new(
        conn: ClusterConnection,
        client: Arc<ClusterClient>,
        config: Option<redis::cluster::ClusterConfig>,
    ) -> Arc<Self> {
        Arc::new(Renewing {
            current: parking_lot::RwLock::new(conn),
            client,
            config,
            last: parking_lot::Mutex::new(None),
        })
    }

    fn current(&self) -> ClusterConnection {
        self.current.read().clone()
    }

    /// After `result`, replaces the connection in the background if the failure calls for it.
    fn after<T>(self: &Arc<Self>, result: &redis::RedisResult<T>) {
        if let Err(e) = result {
            if calls_for_renewal(e) {
                self.renew();
            }
        }
    }

    /// Starts a replacement unless one began less than [`RENEW_EVERY`] ago.
    fn renew(self: &Arc<Self>) {
        {
            let mut last = self.last.lock();
            if last.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let fresh = match &me.config {
                Some(config) => {
                    me.client
                        .get_async_connection_with_config(config.clone())
                        .await
                }
                None => me.client.get_async_connection().await,
            };
            match fresh {
                Ok(conn) => {
                    *me.current.write() = conn;
                    tracing::info!("cluster connection replaced after a failure");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster connection could not be replaced yet")
                }
            }
        });
    }
}

/// A failure a dead node or a stale slot map explains.
fn calls_for_renewal(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                )
        )
}

/// Kept to open the blocking reads' connections; boxed, as clients are large and clones of
/// a connection share them.
#[derive(Clone)]
enum Client {
    Single(Arc<redis::Client>),
    Cluster(Arc<ClusterClient>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Connects to `target`: on a cluster, asks the seeds for the slots and connects to the
    /// masters.
    ///
    /// # Errors
    /// When a URL is invalid or no server (no seed) can be reached.
    pub async fn connect(target: impl Into<RedisTarget>) -> Result<Self, crate::RedisSetupError> {
        match target.into() {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url).map_err(crate::RedisSetupError::Url)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let conn = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(crate::RedisSetupError::Connect)?;
                Ok(RedisConnection {
                    conn: Conn::Managed(conn),
                    client: Client::Single(Arc::new(client)),
                })
            }
            RedisTarget::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .overall_response_timeout(Some(CLUSTER_OVERALL_TIMEOUT))
                    .build()
                    .map_err(crate::RedisSetupError::Url)?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(crate::RedisSetupError::Connect)?;
                let client = Arc::new(client);
                Ok(RedisConnection {
                    conn: Conn::Cluster(Renewing::new(conn, client.clone(), None)),
                    client: Client::Cluster(client),
                })
            }
        }
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.client, Client::Cluster(_))
    }

    /// A new connection of its own, for reads that block on the server (`XREADGROUP BLOCK`):
    /// such a read would hold up every command multiplexed behind it.
    pub(crate) async fn blocking(&self) -> redis::RedisResult<RedisConnection> {
        let conn = match &self.client {
            Client::Single(client) => Conn::Plain(
                client
                    .get_multiplexed_async_connection_with_config(
                        &AsyncConnectionConfig::new()
                            .set_response_timeout(Some(BLOCKING_RESPONSE_TIMEOUT)),
                    )
                    .await?,
            ),
            Client::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_response_timeout(BLOCKING_RESPONSE_TIMEOUT);
                let conn = client
                    .get_async_connection_with_config(config.clone())
                    .await?;
                Conn::Cluster(Renewing::new(conn, client.clone(), Some(config)))
            }
        };
        Ok(RedisConnection {
            conn,
            client: self.client.clone(),
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.conn {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(r) => {
                let r = r.clone();
                Box::pin(async move {
                    let out = r.current().req_packed_command(cmd).await;
                    r.after(&out);
                    out
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.conn {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(r) => {
                let r = r.clone();
                Box::pin(async move {
                    let out = r
                        .current()
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                    r.after(&out);
                    out
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(r) => r.current().get_db(),
        }
    }
}

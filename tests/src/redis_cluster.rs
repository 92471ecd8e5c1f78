//! A real Redis Cluster for tests: three masters and three replicas, each a `redis-server`
//! process of this test run on free ports, with a directory of its own (append-only files on),
//! joined by `redis-cli --cluster create`.
//!
//! [`Cluster::start`] waits until every node reports `cluster_state:ok` with all slots
//! assigned and every replica is in sync with its master. Dropped (also when a test panics),
//! a cluster stops its processes by pid (SIGKILL, then `wait`) and removes its directory.
//! Each cluster also starts a small watchdog (`sh`) that does the same if this test process
//! disappears without dropping it (a cluster kept in a `static`, see [`shared`], or a killed
//! test run), so no node outlives the tests.
//!
//! [`Cluster::kill_master_of`] SIGKILLs the master serving a key and waits for one of its
//! replicas to be promoted and the cluster to be whole again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a node may be unreachable before its replicas fail it over (ms): short, so that
/// a failover test takes seconds, long enough for a busy 2-core machine not to fail over a node
/// that is only slow.
const NODE_TIMEOUT_MS: u64 = 2_000;

/// The longest a cluster may take to form or to heal after a failover.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A running cluster of 3 masters + 3 replicas; see the module documentation.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    watchdog: Option<Child>,
}

/// What [`Cluster::kill_master_of`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    /// The port of the master that was killed.
    pub killed: u16,
    /// The port of the replica that took its slots.
    pub promoted: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "stockade-cluster-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn url_of(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// One cluster-enabled `redis-server` on `port` (its cluster bus on `bus`), keeping its AOF
/// and cluster configuration in `dir`.
fn spawn_node(dir: &std::path::Path, port: u16, bus: u16) -> Child {
    std::fs::create_dir_all(dir).expect("a node directory");
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--cluster-port",
            &bus.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            "--dir",
            &dir.to_string_lossy(),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (it is installed with Redis)")
}

async fn connect(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url_of(port))?
        .get_multiplexed_async_connection()
        .await
}

/// `INFO`-style `field:value` text.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

async fn text(port: u16, args: &[&str]) -> redis::RedisResult<String> {
    let mut c = connect(port).await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c).await
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    /// The master's id, for a replica.
    of: Option<String>,
    /// The slot ranges it serves, for a master.
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f
                .get(1)?
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags = f.get(2)?;
            let slots = f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            Some(NodeLine {
                id: (*f.first()?).to_owned(),
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                of: f.get(3).filter(|m| **m != "-").map(|m| (*m).to_owned()),
                slots,
            })
        })
        .collect()
}

/// The cluster as the node on `port` sees it.
async fn topology(port: u16) -> redis::RedisResult<Vec<NodeLine>> {
    Ok(parse_nodes(&text(port, &["CLUSTER", "NODES"]).await?))
}

/// The master serving `slot` in `nodes`, and its replicas that have not failed.
fn serving_in(nodes: &[NodeLine], slot: u16) -> Option<(u16, Vec<u16>)> {
    let master = nodes
        .iter()
        .find(|n| n.master && !n.failed && n.serves(slot))?;
    let replicas = nodes
        .iter()
        .filter(|n| !n.master && !n.failed && n.of.as_deref() == Some(master.id.as_str()))
        .map(|n| n.port)
        .collect();
    Some((master.port, replicas))
}

impl Cluster {
    /// Starts six nodes, joins them into a cluster of 3 masters with a replica each, and waits
    /// until it serves every slot with every replica in sync.
    pub async fn start() -> Cluster {
        let mut cluster = Cluster {
            dir: scratch_dir(),
            nodes: Vec::new(),
            watchdog: None,
        };
        for _ in 0..6 {
            let node = cluster.spawn_fresh().await;
            cluster.nodes.push(node);
        }
        cluster.start_watchdog();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.settle(6).await;
        cluster
    }

    /// A node on fresh free ports that answers PING (a port taken by someone else between
    /// choosing it and binding it makes the process exit: another pair of ports is tried).
    async fn spawn_fresh(&self) -> Node {
        for _ in 0..10 {
            let (port, bus) = (free_port(), free_port());
            if port == bus {
                continue;
            }
            let mut child = spawn_node(&self.dir.join(port.to_string()), port, bus);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if text(port, &["PING"]).await.is_ok() {
                    return Node {
                        port,
                        child: Some(child),
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no redis-server could be started on free ports");
    }

    /// `sh` that waits for this test process to end, then kills the nodes it was given by pid
    /// and removes the directory: a safety net for clusters that are never dropped.
    fn start_watchdog(&mut self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            pids = pids.join(" "),
            dir = self.dir.display(),
        );
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// Waits until every live node sees `known` nodes, `cluster_state:ok` with all 16384 slots,
    /// and every live replica's link to its master is up.
    async fn settle(&self, known: usize) {
        let deadline = Instant::now() + SETTLE;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.healthy(known).await {
                Ok(()) => return,
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cluster did not settle in {SETTLE:?}: {last}");
    }

    async fn healthy(&self, known: usize) -> Result<(), String> {
        for port in self.live_ports() {
            let info = text(port, &["CLUSTER", "INFO"])
                .await
                .map_err(|e| format!("{port}: {e}"))?;
            let ok = field(&info, "cluster_state") == Some("ok")
                && field(&info, "cluster_slots_ok") == Some("16384")
                && field(&info, "cluster_known_nodes") == Some(&known.to_string());
            if !ok {
                return Err(format!("{port}: {info}"));
            }
            let repl = text(port, &["INFO", "replication"])
                .await
                .map_err(|e| format!("{port}: {e}"))?;
            if field(&repl, "role") == Some("slave")
                && field(&repl, "master_link_status") != Some("up")
            {
                return Err(format!("{port}: replica not in sync"));
            }
            let nodes = topology(port).await.map_err(|e| format!("{port}: {e}"))?;
            for master in nodes.iter().filter(|n| n.master && !n.slots.is_empty()) {
                let first = master.slots[0].0;
                match serving_in(&nodes, first) {
                    Some((_, replicas)) if !replicas.is_empty() => {}
                    _ => return Err(format!("{port}: master {} has no replica yet", master.port)),
                }
            }
        }
        Ok(())
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The URLs of every node that runs (seed nodes for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.live_ports().into_iter().map(url_of).collect()
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub async fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let mut c = connect(port).await.expect("a node answers");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("CLUSTER KEYSLOT answers")
    }

    /// The port of the master serving `slot`, and of its replicas.
    pub async fn serving(&self, slot: u16) -> (u16, Vec<u16>) {
        let port = self.live_ports()[0];
        let nodes = topology(port).await.expect("CLUSTER NODES answers");
        serving_in(&nodes, slot).expect("every slot is served")
    }

    /// The ports of the masters that serve slots.
    pub async fn masters(&self) -> Vec<u16> {
        let port = self.live_ports()[0];
        let mut masters: Vec<u16> = topology(port)
            .await
            .expect("CLUSTER NODES answers")
            .into_iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        masters.sort_unstable();
        masters
    }

    /// SIGKILLs the master serving `key` and waits until one of its replicas has taken over
    /// its slots and every remaining node sees a whole cluster again.
    pub async fn kill_master_of(&mut self, key: &str) -> Failover {
        let slot = self.slot_of(key).await;
        let (killed, replicas) = self.serving(slot).await;
        assert!(!replicas.is_empty(), "master {killed} has no replica");
        self.kill(killed);
        let deadline = Instant::now() + SETTLE;
        loop {
            assert!(
                Instant::now() < deadline,
                "no replica of {killed} was promoted in {SETTLE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut agreed = None;
            let mut all = true;
            for port in self.live_ports() {
                let Ok(nodes) = topology(port).await else {
                    all = false;
                    break;
                };
                let master = serving_in(&nodes, slot).map(|(m, _)| m);
                match (agreed, master) {
                    (_, Some(m)) if !replicas.contains(&m) => all = false,
                    (None, Some(m)) => agreed = Some(m),
                    (Some(a), Some(m)) if a == m => {}
                    _ => all = false,
                }
            }
            if let (true, Some(promoted)) = (all, agreed) {
                // The dead master still counts as a known node (marked failed).
                self.settle_after_failover().await;
                return Failover { killed, promoted };
            }
        }
    }

    /// Every live node reports `cluster_state:ok` with all slots served.
    async fn settle_after_failover(&self) {
        let deadline = Instant::now() + SETTLE;
        'wait: while Instant::now() < deadline {
            for port in self.live_ports() {
                let ok = text(port, &["CLUSTER", "INFO"]).await.is_ok_and(|info| {
                    field(&info, "cluster_state") == Some("ok")
                        && field(&info, "cluster_slots_ok") == Some("16384")
                });
                if !ok {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'wait;
                }
            }
            return;
        }
        panic!("the cluster did not heal in {SETTLE:?}");
    }

    /// Stops the node on `port` at once (SIGKILL: no goodbye, as a crash).
    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                if let Some(mut child) = node.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for port in self.nodes.iter().map(|n| n.port).collect::<Vec<_>>() {
            self.kill(port);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One cluster for the whole test run, started by the first caller, for suites that keep to
/// their own key namespace and never stop a node. It is never dropped: its watchdog stops it
/// when the test process ends.
pub async fn shared() -> &'static Cluster {
    static SHARED: tokio::sync::OnceCell<Cluster> = tokio::sync::OnceCell::const_new();
    SHARED.get_or_init(Cluster::start).await
}

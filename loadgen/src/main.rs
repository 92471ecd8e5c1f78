//! `stockade-load`: drives Stockade's HTTP API with a scenario, prints a summary (throughput,
//! latency percentiles from an HDR histogram, outcomes by status and code), writes it as JSON,
//! checks the scenario's invariants through the API and its `--threshold`s, and exits non-zero
//! if any request failed (5xx or no answer), an invariant failed or a threshold was not met.

mod client;
mod locks;
mod report;
mod run;
mod scenarios;
mod stats;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod threshold;

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "stockade-load",
    version,
    about = "Load generator and invariant checker for Stockade"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Base URL of an instance; repeat (or comma-separate) for several, used round-robin.
    #[arg(
        long = "target",
        env = "STOCKADE_TARGET",
        value_delimiter = ',',
        required = true
    )]
    targets: Vec<String>,
    /// The service's JWT secret, to mint user and admin tokens.
    #[arg(long, env = "STOCKADE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Requests in flight at once (with --rate: the most in flight; arrivals beyond are dropped).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open model: this many arrivals per second on a fixed schedule, each sent without waiting
    /// for earlier answers (default: closed model, each worker sends when its last request ended).
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Fail the run unless METRIC OP VALUE holds; repeatable. METRIC: p50|p90|p95|p99|max (ms),
    /// rps, error_rate (failures / requests, 0..1 or with %); OP: <, <=, >, >=.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = threshold::parse)]
    thresholds: Vec<threshold::Threshold>,
    /// Total requests (or transactions), for the open-ended scenarios.
    #[arg(long)]
    requests: Option<usize>,
    /// Stop sending after this many seconds, whatever is left (the checks count only what was
    /// sent).
    #[arg(long, value_parser = seconds)]
    duration: Option<f64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The first user id to use (default: fresh ids from the clock, 100,000 per run).
    #[arg(long)]
    user_base: Option<i64>,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Append the summary as one JSON line here (for `report` and `plot`).
    #[arg(long)]
    append: Option<PathBuf>,
    /// A label for the summary (e.g. the profile).
    #[arg(long, default_value = "")]
    label: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N users race for M coupons, R requests each.
    CouponDrop {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2_000)]
        users: usize,
        #[arg(long, default_value_t = 200)]
        coupons: i64,
        #[arg(long, default_value_t = 1)]
        requests_per_user: usize,
        /// FLASH or LOCKED.
        #[arg(long, default_value = "FLASH")]
        mode: String,
    },
    /// N buyers of one product (or of several: buyer i buys product i mod N).
    StockRush {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1_200)]
        buyers: usize,
        /// The stock of all products together, shared out evenly.
        #[arg(long, default_value_t = 1_000)]
        stock: i64,
        /// How many products the buyers spread over.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        products: u32,
    },
    /// K orders, each paid R times at once with one key (or R keys).
    DoublePay {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        orders: usize,
        #[arg(long, default_value_t = 10)]
        retries: usize,
        /// Use a different key for every retry.
        #[arg(long)]
        different_keys: bool,
    },
    /// N users charge C times each, concurrently.
    ChargeStorm {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        charges: usize,
        #[arg(long, default_value_t = 1_000)]
        amount: i64,
    },
    /// Create an order and pay it, over and over (one transaction per pair).
    OrderPay {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Products to spread the orders over (one hot product serialises every order).
        #[arg(long, default_value_t = 50)]
        products: usize,
    },
    /// Browse, cart, order, pay, charge and issue with set weights.
    Mixed {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 500)]
        users: usize,
        /// Weights, e.g. browse=40,cart=15,order=15,pay=10,charge=10,issue=10.
        #[arg(
            long,
            default_value = "browse=40,cart=15,order=15,pay=10,charge=10,issue=10"
        )]
        weights: String,
    },
    /// Measure the lock managers directly: acquire + release latency, and throughput with many
    /// tasks over 1, 16 and 10,000 hot keys.
    Locks {
        /// Adapters: memory, postgres (at DATABASE_URL), redis (the --redis-url nodes).
        #[arg(long, value_delimiter = ',', default_value = "memory")]
        adapters: Vec<String>,
        /// Redis nodes; several run Redlock over them (label `redis-<n>`).
        #[arg(
            long = "redis-url",
            value_delimiter = ',',
            default_value = "redis://127.0.0.1:6379"
        )]
        redis_urls: Vec<String>,
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
        #[arg(long, default_value_t = 2_000)]
        latency_ops: usize,
        #[arg(long, default_value_t = 64)]
        tasks: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,16,10000")]
        hot_keys: Vec<u64>,
        /// Seconds per contention run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Append each summary as a JSON line here.
        #[arg(long)]
        append: Option<PathBuf>,
    },
    /// Print markdown tables of a results file.
    Report { input: PathBuf },
    /// Draw SVG plots of a results file into a folder.
    Plot {
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn ctx(c: &Common) -> Result<scenarios::Ctx, String> {
    let api =
        client::Api::new(&c.targets, &c.jwt_secret, c.concurrency).map_err(|e| e.to_string())?;
    // Fresh users for every run unless told otherwise: wallets, carts and keys start empty.
    // Each run has room for 100,000 users above its base; a base per tenth of a second, ten
    // of them for runs of one process within it, and every id at most 2^53-1 (the largest
    // `sub` a token may carry).
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let user_base = c.user_base.unwrap_or_else(|| {
        let tenths = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() / 100);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let slot = u64::try_from(tenths % 8_000_000_000).unwrap_or(0) * 10 + run;
        1_000_000 + i64::try_from(slot).unwrap_or(0) * 100_000
    });
    Ok(scenarios::Ctx {
        api: Arc::new(api),
        concurrency: c.concurrency.max(1),
        requests: c.requests,
        duration: c.duration.map(Duration::from_secs_f64),
        rate: c.rate,
        seed: c.seed,
        label: c.label.clone(),
        quiet: c.quiet,
        user_base,
    })
}

fn finish(common: &Common, summary: Result<stats::Summary, scenarios::SetupError>) -> ExitCode {
    let mut summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stockade-load: {e}");
            return ExitCode::from(2);
        }
    };
    threshold::judge_all(&mut summary, &common.thresholds);
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(summary.render().as_bytes());
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    if let Some(path) = &common.json {
        if let Err(e) = std::fs::write(path, &json) {
            eprintln!("stockade-load: could not write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &common.append {
        let line = report::line(&summary) + "\n";
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("stockade-load: could not append to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        for reason in summary.reasons() {
            eprintln!("stockade-load: FAILED: {reason}");
        }
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    execute(Cli::parse()).await
}

/// One invocation: what `main` does with the parsed command line (the tests call it directly).
async fn execute(cli: Cli) -> ExitCode {
    let (common, result) = match cli.command {
        Command::Report { input } => {
            return match report::read(&input) {
                Ok(rows) => {
                    let _ = std::io::stdout().write_all(report::markdown(&rows).as_bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stockade-load: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Plot { input, out } => {
            return match report::read(&input).and_then(|rows| report::plots(&rows, &out)) {
                Ok(files) => {
                    let _ = writeln!(std::io::stdout(), "{}", files.join("\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stockade-load: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Locks {
            adapters,
            redis_urls,
            database_url,
            latency_ops,
            tasks,
            hot_keys,
            seconds,
            append,
        } => {
            return run_locks(
                &adapters,
                &redis_urls,
                &database_url,
                latency_ops,
                tasks,
                &hot_keys,
                seconds,
                append.as_deref(),
            )
            .await;
        }
        Command::CouponDrop {
            common,
            users,
            coupons,
            requests_per_user,
            mode,
        } => {
            let r = match ctx(&common) {
                Ok(c) => {
                    scenarios::coupon_drop(
                        &c,
                        users,
                        coupons,
                        requests_per_user.max(1),
                        &mode.to_uppercase(),
                    )
                    .await
                }
                Err(e) => return usage(&e),
            };
            (common, r)
        }
        Command::StockRush {
            common,
            buyers,
            stock,
            products,
        } => {
            let r = match ctx(&common) {
                Ok(c) => scenarios::stock_rush(&c, buyers, stock, products as usize).await,
                Err(e) => return usage(&e),
            };
            (common, r)
        }
        Command::DoublePay {
            common,
            orders,
            retries,
            different_keys,
        } => {
            let r = match ctx(&common) {
                Ok(c) => {
                    scenarios::double_pay(&c, orders.max(1), retries.max(1), !different_keys).await
                }
                Err(e) => return usage(&e),
            };
            (common, r)
        }
        Command::ChargeStorm {
            common,
            users,
            charges,
            amount,
        } => {
            let r = match ctx(&common) {
                Ok(c) => scenarios::charge_storm(&c, users.max(1), charges.max(1), amount).await,
                Err(e) => return usage(&e),
            };
            (common, r)
        }
        Command::OrderPay {
            common,
            users,
            products,
        } => {
            let r = match ctx(&common) {
                Ok(c) => scenarios::order_pay(&c, users.max(1), products).await,
                Err(e) => return usage(&e),
            };
            (common, r)
        }
        Command::Mixed {
            common,
            users,
            weights,
        } => {
            let mix = match scenarios::Mix::parse(&weights) {
                Ok(m) => m,
                Err(e) => return usage(&format!("--weights: {e}")),
            };
            let r = match ctx(&common) {
                Ok(c) => scenarios::mixed(&c, users.max(1), mix).await,
                Err(e) => return usage(&e),
            };
            (common, r)
        }
    };
    finish(&common, result)
}

async fn lock_manager(
    adapter: &str,
    redis_urls: &[String],
    database_url: &str,
    ns: &str,
) -> Result<
    (
        String,
        Arc<dyn stockade_application::ports::lock::LockManager>,
    ),
    String,
> {
    use stockade_application::ports::lock::LockManager;
    match adapter {
        "memory" => Ok((
            "memory".into(),
            Arc::new(stockade_memory::MemoryLockManager::new()) as Arc<dyn LockManager>,
        )),
        "postgres" => {
            let pool = stockade_postgres::connect(&stockade_postgres::PgConfig {
                max_connections: 80,
                acquire_timeout: Duration::from_secs(3_600),
                ..stockade_postgres::PgConfig::new(database_url)
            })
            .await
            .map_err(|e| e.to_string())?;
            stockade_postgres::migrate(&pool)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                "postgres".into(),
                Arc::new(stockade_postgres::PgLockManager::new(pool, ns.to_owned())),
            ))
        }
        "redis" => {
            let m = stockade_redis::RedisLockManager::connect(redis_urls, ns.to_owned(), false)
                .await
                .map_err(|e| e.to_string())?;
            Ok((format!("redis-{}", redis_urls.len()), Arc::new(m)))
        }
        other => Err(format!(
            "unknown adapter `{other}` (memory, postgres, redis)"
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_locks(
    adapters: &[String],
    redis_urls: &[String],
    database_url: &str,
    latency_ops: usize,
    tasks: usize,
    hot_keys: &[u64],
    seconds: f64,
    append: Option<&std::path::Path>,
) -> ExitCode {
    let ns = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut all_ok = true;
    for adapter in adapters {
        let (label, locks) = match lock_manager(adapter, redis_urls, database_url, &ns).await {
            Ok(m) => m,
            Err(e) => return usage(&e),
        };
        let mut summaries = Vec::new();
        match locks::latency(&label, locks.clone(), latency_ops, &format!("{ns}:lat")).await {
            Ok(s) => summaries.push(s),
            Err(e) => return usage(&e),
        }
        for &k in hot_keys {
            match locks::contention(
                &label,
                locks.clone(),
                tasks,
                k.max(1),
                Duration::from_secs_f64(seconds),
                &format!("{ns}:c{k}"),
                7,
            )
            .await
            {
                Ok(s) => summaries.push(s),
                Err(e) => return usage(&e),
            }
        }
        for s in summaries {
            all_ok &= s.ok;
            let _ = std::io::stdout().write_all(s.render().as_bytes());
            if let Some(path) = append {
                let line = report::line(&s) + "\n";
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--rate`: a number of arrivals per second above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("`{s}` is not a rate: expected arrivals per second above 0"))
}

/// `--duration`: seconds, zero or more.
fn seconds(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|d| Duration::try_from_secs_f64(*d).is_ok())
        .ok_or_else(|| format!("`{s}` is not a number of seconds (0 or more)"))
}

fn usage(message: &str) -> ExitCode {
    eprintln!("stockade-load: {message}");
    ExitCode::from(2)
}

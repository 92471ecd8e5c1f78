//! What `/metrics` says about the process and its pools, sampled by a worker, and the `# HELP`
//! of every family the application and this crate publish (the HTTP adapter describes its own).

use metrics_process::Collector;
use std::time::Duration;
use tokio::sync::watch;

/// Samples the process (RSS, open fds, CPU time, threads: `process_*`) and each Postgres
/// pool's connections every `every` until shutdown.
pub async fn run(
    pools: Vec<(&'static str, sqlx::PgPool)>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let process = Collector::default();
    process.describe();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                process.collect();
                sample_pools(&pools);
            }
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn sample_pools(pools: &[(&'static str, sqlx::PgPool)]) {
    for (name, pool) in pools {
        let size = pool.size() as f64;
        let idle = pool.num_idle() as f64;
        let max = f64::from(pool.options().get_max_connections());
        metrics::gauge!("db_pool_connections", "pool" => *name, "state" => "in_use")
            .set(size - idle);
        metrics::gauge!("db_pool_connections", "pool" => *name, "state" => "idle").set(idle);
        metrics::gauge!("db_pool_max_connections", "pool" => *name).set(max);
    }
}

/// `# HELP` for the families of the application and of this crate.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "lock_wait_seconds",
        Unit::Seconds,
        "time to acquire a lock set, granted or not, by backend"
    );
    describe_counter!(
        "lock_timeouts_total",
        "lock acquisitions that ran out of --lock-wait-ms (409 LOCK_TIMEOUT), by backend"
    );
    describe_counter!(
        "lock_errors_total",
        "lock acquisitions that failed otherwise (lost lease, backend error), by backend"
    );
    describe_counter!(
        "idempotency_begins_total",
        "idempotency-key claims, by outcome"
    );
    describe_counter!(
        "coupon_gate_outcomes_total",
        "FLASH gate reserves, by outcome"
    );
    describe_counter!(
        "coupon_gate_rebuilds_total",
        "lost FLASH gates created again from the store"
    );
    describe_gauge!(
        "issuance_queue_depth",
        "the issuance queue by state (ready, in_flight, dead), sampled every second"
    );
    describe_histogram!(
        "stockade_combine_batch_size",
        "requests per combined turn, and idempotency claims per batch, by use case"
    );
    describe_gauge!(
        "stockade_combine_queue_depth",
        "requests waiting for a combined turn when the last one began"
    );
    describe_counter!(
        "stockade_fast_path_refusals_total",
        "sold-out refusals made without a lock, by use case"
    );
    describe_counter!(
        "stockade_orders_expired_total",
        "unpaid orders expired by the worker (stock and coupons released)"
    );
    describe_gauge!(
        "db_pool_connections",
        "Postgres connections of each pool (store, locks, claims), in use or idle"
    );
    describe_gauge!(
        "db_pool_max_connections",
        "the most connections each Postgres pool may open"
    );
    stockade_postgres::describe_metrics();
}

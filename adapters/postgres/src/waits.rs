//! How long checkouts wait for a connection, per pool: sqlx counts a pool's connections but not
//! the time callers queue for one, which is what an operator needs to see a pool that is too
//! small (or a database that is too slow) before requests start failing.
//!
//! Every checkout through an adapter records `db_pool_wait_seconds{pool}` (a histogram: from
//! asking to holding a connection, or to giving up) and, when it gets none,
//! `db_pool_timeouts_total{pool}`. A checkout dropped while it waits (its caller's own deadline
//! ran out, e.g. a lock wait) counts as given up too.

use std::time::Instant;

/// One checkout being timed; records itself when finished or dropped.
#[derive(Debug)]
pub(crate) struct Checkout {
    pool: &'static str,
    started: Instant,
    got: bool,
}

impl Checkout {
    pub(crate) fn start(pool: &'static str) -> Self {
        Checkout {
            pool,
            started: Instant::now(),
            got: false,
        }
    }

    /// Passes `result` through, noting whether a connection came of it.
    pub(crate) fn finish<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        self.got = result.is_ok();
        result
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        metrics::histogram!("db_pool_wait_seconds", "pool" => self.pool)
            .record(self.started.elapsed().as_secs_f64());
        if !self.got {
            metrics::counter!("db_pool_timeouts_total", "pool" => self.pool).increment(1);
        }
    }
}

/// Describes the families this module records (`# HELP`).
pub fn describe() {
    metrics::describe_histogram!(
        "db_pool_wait_seconds",
        metrics::Unit::Seconds,
        "how long checkouts waited for a Postgres connection, per pool (store, locks, claims)"
    );
    metrics::describe_counter!(
        "db_pool_timeouts_total",
        "checkouts that got no Postgres connection (time-out, closed pool, or their caller gave up), per pool"
    );
}

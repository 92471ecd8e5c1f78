//! How long checkouts wait for a connection, per pool: sqlx counts a pool's connections but not
//! the time callers queue for one, which is what an operator needs to see a pool that is too
//! small (or a database that is too slow) before requests start failing.
//!
//! Every checkout through an adapter records `db_pool_wait_seconds{pool}` (a histogram: from
//! asking to holding a connection, or to giving up; for the store's pool, with its transaction
//! begun, one round trip more) and, when the pool gave none (its time-out, or closed),
//! `db_pool_timeouts_total{pool}`. A checkout dropped while it waits (its caller's own deadline
//! ran out, e.g. a lock wait) counts as given up too. A connection the server refused is not a
//! time-out: it shows in the errors and `/ready`, not here, so that an outage does not read as a
//! pool too small.

use std::time::Instant;

/// One checkout being timed; records itself when finished or dropped.
#[derive(Debug)]
pub(crate) struct Checkout {
    pool: &'static str,
    started: Instant,
    /// Whether it ended other than by waiting in vain (set when it ends).
    ended: bool,
}

impl Checkout {
    pub(crate) fn start(pool: &'static str) -> Self {
        Checkout {
            pool,
            started: Instant::now(),
            ended: false,
        }
    }

    /// Passes `result` through, noting whether the pool gave up on it.
    pub(crate) fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.ended = !matches!(
            result,
            Err(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
        );
        result
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        metrics::histogram!("db_pool_wait_seconds", "pool" => self.pool)
            .record(self.started.elapsed().as_secs_f64());
        if !self.ended {
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

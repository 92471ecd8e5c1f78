//! The Postgres adapters: their contract suites, what they promise beyond them, and the
//! scenarios and random workloads with Postgres as store, lock manager and idempotency store.
//! Each test works in a schema of its own.

mod contracts;
mod scenarios;
mod specific;
mod workload;

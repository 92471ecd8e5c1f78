//! The memory backend: its contract suites, what its lock manager promises beyond them, the
//! concurrency scenarios and random workloads.

mod contracts;
mod locks;
mod scenarios;
mod workload;

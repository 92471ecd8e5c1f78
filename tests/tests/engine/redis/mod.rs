//! The Redis adapters: their contract suites (on one server, and in `cluster_contracts` on a
//! Redis Cluster the tests start), the FLASH pipeline on its production backends, popularity,
//! Redlock over independent Redis processes, and replaying issuance failures. Each test works in a key
//! namespace (or on Redis processes) of its own.

mod cluster;
mod cluster_contracts;
mod contracts;
mod pipeline;
mod popularity;
mod redlock;
mod replay;
mod resend;

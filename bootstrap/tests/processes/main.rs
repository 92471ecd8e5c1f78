//! The real `stockade` binary, run as separate processes: instances sharing one database, crashes
//! and recovery. `support` starts them; each module is one area.

#![allow(clippy::unwrap_used)]

mod access_log;
mod accounts;
mod cluster;
mod durable;
mod edge;
mod metrics;
mod migrate;
mod startup;
mod support;

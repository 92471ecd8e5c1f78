//! The Redis adapters: their contract suites, the FLASH pipeline on its production backends,
//! popularity, and Redlock over independent Redis processes. Each test works in a key
//! namespace (or on Redis processes) of its own.

mod cluster;
mod contracts;
mod pipeline;
mod popularity;
mod redlock;

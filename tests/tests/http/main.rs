//! End-to-end over HTTP, in one binary: the real service on an ephemeral port, spoken to over
//! real HTTP, on the memory backend (`memory::`) and on the other backends
//! (`backends::postgres::`, `backends::production::`).

mod backends;
mod memory;

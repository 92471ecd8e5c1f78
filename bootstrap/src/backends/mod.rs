//! One builder per backend. Each connects what the [`Wiring`](crate::wiring::Wiring) asks of
//! it and returns the adapters it provides, which the service then installs in place of the
//! memory ones: the memory backend is always built, as the base every port starts from (and
//! because the data-platform stand-in and the clock live there).

pub mod memory;
pub mod postgres;
pub mod redis;

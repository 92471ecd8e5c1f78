//! The documented shapes of the API: what `/openapi.json` says each answer looks like.
//!
//! The answers themselves are the application's views (`stockade_application::views`), which
//! must stay free of any HTTP or documentation framework (house rule 1). So the schemas are
//! owned here, by the adapter that speaks HTTP, as types that derive `utoipa::ToSchema` and are
//! never built at run time (ADR 0016). A unit test ([`tests`]) renders real views and checks
//! them against these schemas, so a field added to a view without its schema fails the build's
//! tests instead of drifting silently.
//!
//! - [`views`]: the `data` of every success answer, with enums and ranges;
//! - [`errors`]: the failure envelope and, per operation, the statuses and codes it can answer.

pub mod errors;
pub mod params;
pub mod views;

#[cfg(test)]
mod tests;

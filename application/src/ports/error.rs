//! The one error every port shares: a backend could not do what was asked.
//!
//! It lives with the ports (not with the use cases' [`crate::AppError`]) because every port's
//! own error wraps it: the ports then depend on nothing above them, and the application's error
//! module depends on the ports, never the other way round.

/// A backend (database, cache, broker, lock service) could not do what was asked.
///
/// `Display` names the backend only; the cause stays in `source` for the logs and never
/// reaches a client.
#[derive(Debug, thiserror::Error)]
#[error("the {backend} backend is unavailable")]
pub struct BackendError {
    pub backend: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub fn new(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BackendError {
            backend,
            source: source.into(),
        }
    }
}

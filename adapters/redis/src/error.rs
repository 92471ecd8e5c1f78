use stockade_application::BackendError;

pub(crate) fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BackendError {
    BackendError::new("redis", e)
}

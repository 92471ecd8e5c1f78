//! The client-chosen key that makes a request safe to retry.

use crate::DomainError;
use std::fmt;

/// A validated idempotency key: 1 to 255 characters, none of them control characters.
///
/// A structured-field string form (`"abc"`) is unwrapped by the HTTP edge before it gets here;
/// the domain only ever sees the bare key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    /// # Errors
    /// `INVALID_INPUT` when empty, longer than 255 characters or holding control characters.
    pub fn parse(raw: &str) -> Result<IdempotencyKey, DomainError> {
        const FIELD: &str = "Idempotency-Key";
        if raw.is_empty() {
            return Err(DomainError::invalid(FIELD, "must not be empty"));
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                FIELD,
                "must be at most 255 characters",
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                FIELD,
                "must not contain control characters",
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bounds() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("a\nb").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }
}

//! Quantities of a product in an order or a cart line.

use crate::DomainError;
use std::fmt;

/// A positive number of units, at most [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    /// No single line may ask for more than this (stock is far below it anyway).
    pub const MAX: u32 = 1_000_000;

    /// # Errors
    /// `INVALID_INPUT` unless `1 <= n <= MAX`.
    pub fn new(n: i64, field: &'static str) -> Result<Quantity, DomainError> {
        if n < 1 {
            return Err(DomainError::invalid(field, "must be at least 1"));
        }
        if n > i64::from(Quantity::MAX) {
            return Err(DomainError::invalid(
                field,
                format!("must be at most {}", Quantity::MAX),
            ));
        }
        // In range 1..=MAX, so it fits u32.
        Ok(Quantity(n as u32))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Quantity::new(0, "quantity").is_err());
        assert!(Quantity::new(i64::from(Quantity::MAX) + 1, "quantity").is_err());
        assert_eq!(Quantity::new(3, "quantity").map(Quantity::get), Ok(3));
    }
}

//! Money: an integer number of won. No floats anywhere (see docs/decisions/0001).

use crate::DomainError;
use std::fmt;

/// A non-negative amount of won.
///
/// Arithmetic is checked: an overflow or a result below zero is an error, never a wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);
    /// The largest amount the system handles anywhere (10^15 won); keeps every sum far from
    /// `i64::MAX` so that adding a few thousand amounts can never overflow.
    pub const MAX: Money = Money(1_000_000_000_000_000);

    /// A money amount; `field` names the input in the error.
    ///
    /// # Errors
    /// `INVALID_INPUT` when `won` is negative or above [`Money::MAX`].
    pub fn new(won: i64, field: &'static str) -> Result<Money, DomainError> {
        if won < 0 {
            return Err(DomainError::invalid(field, "must not be negative"));
        }
        if won > Money::MAX.0 {
            return Err(DomainError::invalid(field, "is too large"));
        }
        Ok(Money(won))
    }

    /// Builds a value already known to be valid (from a trusted store). Clamps into range.
    pub fn from_trusted(won: i64) -> Money {
        Money(won.clamp(0, Money::MAX.0))
    }

    pub const fn won(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0
            .checked_add(other.0)
            .filter(|v| *v <= Money::MAX.0)
            .map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Money)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money((self.0 - other.0).max(0))
    }

    /// `self * n`, checked against [`Money::MAX`].
    pub fn checked_mul(self, n: u32) -> Option<Money> {
        self.0
            .checked_mul(i64::from(n))
            .filter(|v| *v <= Money::MAX.0)
            .map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} won", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_and_huge_amounts() {
        assert!(Money::new(-1, "amount").is_err());
        assert!(Money::new(Money::MAX.won() + 1, "amount").is_err());
        assert_eq!(Money::new(0, "amount").map(Money::won), Ok(0));
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        let a = Money::from_trusted(5);
        assert_eq!(a.checked_sub(Money::from_trusted(6)), None);
        assert_eq!(a.saturating_sub(Money::from_trusted(6)), Money::ZERO);
    }
}

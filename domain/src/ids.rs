//! Identifiers: positive 64-bit integers, one type per entity so they cannot be mixed up.

use crate::DomainError;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// # Errors
            /// `INVALID_INPUT` unless `raw` is positive.
            pub fn new(raw: i64) -> Result<Self, DomainError> {
                if raw > 0 {
                    Ok(Self(raw))
                } else {
                    Err(DomainError::invalid($field, "must be a positive integer"))
                }
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A user: whoever a valid token names.
    UserId,
    "userId"
);
id_type!(ProductId, "productId");
id_type!(
    /// A coupon policy (what admins create).
    CouponId,
    "couponId"
);
id_type!(
    /// One coupon held by one user.
    UserCouponId,
    "userCouponId"
);
id_type!(OrderId, "orderId");
id_type!(PaymentId, "paymentId");
id_type!(
    /// One ledger entry.
    TransactionId,
    "transactionId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(UserId::new(0).is_err());
        assert!(UserId::new(-3).is_err());
        assert_eq!(UserId::new(7).map(UserId::get), Ok(7));
    }
}

//! The one catalogue of error codes and the domain's rule violations.
//!
//! [`ErrorCode`] is the stable, machine-readable vocabulary shared by every layer and by the
//! HTTP API (see docs/api.md). The domain never decides HTTP statuses; it only names outcomes.

use std::fmt;

/// Every error code the API can answer with. The string form (`as_str`) is the wire format and
/// never changes once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidInput,
    IdempotencyKeyMissing,
    InsufficientStock,
    ExceededLimitedQuantity,
    CartEmpty,
    InvalidCoupon,
    InvalidOrderState,
    AmountMismatch,
    InsufficientBalance,
    ChargeLimitExceeded,
    Unauthorized,
    InvalidCredentials,
    Forbidden,
    NotFound,
    ProductNotFound,
    OrderNotFound,
    CouponNotFound,
    UserNotFound,
    MethodNotAllowed,
    CouponSoldOut,
    CouponAlreadyIssued,
    RequestInProgress,
    LockTimeout,
    EmailTaken,
    PurchaseLimitReached,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
    IdempotencyKeyReused,
    TooManyRequests,
    InternalError,
    PaymentFailed,
    BackendUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of the error table of docs/api.md.
    pub const ALL: [ErrorCode; 33] = [
        ErrorCode::InvalidInput,
        ErrorCode::IdempotencyKeyMissing,
        ErrorCode::InsufficientStock,
        ErrorCode::ExceededLimitedQuantity,
        ErrorCode::CartEmpty,
        ErrorCode::InvalidCoupon,
        ErrorCode::InvalidOrderState,
        ErrorCode::AmountMismatch,
        ErrorCode::InsufficientBalance,
        ErrorCode::ChargeLimitExceeded,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCredentials,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::ProductNotFound,
        ErrorCode::OrderNotFound,
        ErrorCode::CouponNotFound,
        ErrorCode::UserNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::CouponSoldOut,
        ErrorCode::CouponAlreadyIssued,
        ErrorCode::RequestInProgress,
        ErrorCode::LockTimeout,
        ErrorCode::EmailTaken,
        ErrorCode::PurchaseLimitReached,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::TooManyRequests,
        ErrorCode::InternalError,
        ErrorCode::PaymentFailed,
        ErrorCode::BackendUnavailable,
    ];

    /// The SCREAMING_SNAKE wire name of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::IdempotencyKeyMissing => "IDEMPOTENCY_KEY_MISSING",
            ErrorCode::InsufficientStock => "INSUFFICIENT_STOCK",
            ErrorCode::ExceededLimitedQuantity => "EXCEEDED_LIMITED_QUANTITY",
            ErrorCode::CartEmpty => "CART_EMPTY",
            ErrorCode::InvalidCoupon => "INVALID_COUPON",
            ErrorCode::InvalidOrderState => "INVALID_ORDER_STATE",
            ErrorCode::AmountMismatch => "AMOUNT_MISMATCH",
            ErrorCode::InsufficientBalance => "INSUFFICIENT_BALANCE",
            ErrorCode::ChargeLimitExceeded => "CHARGE_LIMIT_EXCEEDED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::ProductNotFound => "PRODUCT_NOT_FOUND",
            ErrorCode::OrderNotFound => "ORDER_NOT_FOUND",
            ErrorCode::CouponNotFound => "COUPON_NOT_FOUND",
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::CouponSoldOut => "COUPON_SOLD_OUT",
            ErrorCode::CouponAlreadyIssued => "COUPON_ALREADY_ISSUED",
            ErrorCode::RequestInProgress => "REQUEST_IN_PROGRESS",
            ErrorCode::LockTimeout => "LOCK_TIMEOUT",
            ErrorCode::EmailTaken => "EMAIL_TAKEN",
            ErrorCode::PurchaseLimitReached => "PURCHASE_LIMIT_REACHED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UriTooLong => "URI_TOO_LONG",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::TooManyRequests => "TOO_MANY_REQUESTS",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::PaymentFailed => "PAYMENT_FAILED",
            ErrorCode::BackendUnavailable => "BACKEND_UNAVAILABLE",
        }
    }

    /// Parses a wire name back into a code (used when a stored outcome is replayed).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business rule said no. Every variant names its [`ErrorCode`]; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("product {product} has {available} in stock, {requested} requested")]
    InsufficientStock {
        product: i64,
        requested: u32,
        available: u32,
    },
    #[error("product {product} allows at most {max} per order, {requested} requested")]
    ExceededLimitedQuantity {
        product: i64,
        max: u32,
        requested: u32,
    },
    #[error("the cart is empty")]
    CartEmpty,
    #[error("coupon cannot be used: {0}")]
    InvalidCoupon(String),
    #[error("order is {state}; it cannot be {action}")]
    InvalidOrderState {
        state: &'static str,
        action: &'static str,
    },
    #[error("amount {given} does not match the order total {expected}")]
    AmountMismatch { expected: i64, given: i64 },
    #[error("balance {balance} is less than the {required} required")]
    InsufficientBalance { balance: i64, required: i64 },
    #[error("charge refused: {0}")]
    ChargeLimitExceeded(String),
    #[error("the coupon is sold out")]
    CouponSoldOut,
    #[error("this user already holds the coupon")]
    CouponAlreadyIssued,
    #[error("product {0} does not exist")]
    ProductNotFound(i64),
    #[error("order {0} does not exist")]
    OrderNotFound(i64),
    #[error("coupon {0} does not exist")]
    CouponNotFound(i64),
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The customer's live orders already hold `held` units of a product that allows `max` per
    /// customer; `requested` more would pass it.
    #[error(
        "product {product} allows at most {max} per customer; {held} held in live orders, \
         {requested} more requested"
    )]
    PurchaseLimitReached {
        product: i64,
        max: u32,
        held: u64,
        requested: u32,
    },
    /// The same answer for an unknown email and a wrong password.
    #[error("the email or password is not correct")]
    InvalidCredentials,
}

impl DomainError {
    /// The API code of this outcome.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::InvalidInput { .. } => ErrorCode::InvalidInput,
            DomainError::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            DomainError::ExceededLimitedQuantity { .. } => ErrorCode::ExceededLimitedQuantity,
            DomainError::CartEmpty => ErrorCode::CartEmpty,
            DomainError::InvalidCoupon(_) => ErrorCode::InvalidCoupon,
            DomainError::InvalidOrderState { .. } => ErrorCode::InvalidOrderState,
            DomainError::AmountMismatch { .. } => ErrorCode::AmountMismatch,
            DomainError::InsufficientBalance { .. } => ErrorCode::InsufficientBalance,
            DomainError::ChargeLimitExceeded(_) => ErrorCode::ChargeLimitExceeded,
            DomainError::CouponSoldOut => ErrorCode::CouponSoldOut,
            DomainError::CouponAlreadyIssued => ErrorCode::CouponAlreadyIssued,
            DomainError::ProductNotFound(_) => ErrorCode::ProductNotFound,
            DomainError::OrderNotFound(_) => ErrorCode::OrderNotFound,
            DomainError::CouponNotFound(_) => ErrorCode::CouponNotFound,
            DomainError::EmailTaken => ErrorCode::EmailTaken,
            DomainError::PurchaseLimitReached { .. } => ErrorCode::PurchaseLimitReached,
            DomainError::InvalidCredentials => ErrorCode::InvalidCredentials,
        }
    }

    /// Shorthand for an [`DomainError::InvalidInput`] naming `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_name() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "wire names are unique");
    }
}

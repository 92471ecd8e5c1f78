//! sqlx errors as the ports' errors, decided at this seam and nowhere else.

use stockade_application::ports::store::StoreError;
use stockade_application::BackendError;
use stockade_domain::DomainError;

/// What a database error means for a use case.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // serialization_failure, deadlock_detected: run the unit again.
        if let Some("40001" | "40P01") = db.code().as_deref() {
            return StoreError::Contention;
        }
        match db.constraint() {
            Some("ledger_reference_unique") => return StoreError::Conflict("ledger reference"),
            Some("orders_idempotency_ref_unique") => {
                return StoreError::Conflict("order reference")
            }
            Some("user_coupons_coupon_user_unique") => {
                return StoreError::Rejected(DomainError::CouponAlreadyIssued)
            }
            Some("coupons_issued_within_quantity") => {
                return StoreError::Rejected(DomainError::CouponSoldOut)
            }
            Some("wallets_balance_non_negative") => {
                return StoreError::Rejected(DomainError::InsufficientBalance {
                    balance: 0,
                    required: 0,
                })
            }
            Some("products_stock_non_negative") => {
                return StoreError::Rejected(DomainError::InsufficientStock {
                    product: 0,
                    requested: 0,
                    available: 0,
                })
            }
            _ => {}
        }
    }
    StoreError::Unavailable(backend(e))
}

pub(crate) fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BackendError {
    BackendError::new("postgres", e)
}

/// A row the schema's checks should have made impossible.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(backend(format!("unexpected data: {what}")))
}

//! The `idempotency` contract (to be written).

//! Use-case tests with mockall mocks of the ports, combined with the memory adapters, one
//! module per use case (the shared mock builders and the seeded shop live in [`support`]):
//!
//! - the payment saga's compensation when the data platform fails or hangs;
//! - lock time-outs: nothing is written;
//! - store failures at every operation of a use case: nothing half-written, and a retry has the
//!   effect of a clean run;
//! - idempotency outcomes (in progress, mismatch, replay, abandon vs complete);
//! - FLASH issuance whose queue hand-off fails: the gate reservation is rolled back.

mod cancel_order;
mod charge_balance;
mod create_order;
mod idempotency;
mod issuance;
mod issue_coupon;
mod process_payment;
mod support;

//! Cancelling an unpaid or a paid order while the store fails at any operation: nothing is
//! half-written, and a retry has the effect of a clean run.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::faults::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_unpaid_order_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CancelUnpaid).await >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_paid_order_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CancelPaid).await >= 12);
}

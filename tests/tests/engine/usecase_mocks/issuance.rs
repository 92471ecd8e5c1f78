//! The FLASH issuance consumer: a dead letter another consumer has taken over changes nothing.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::*;
use std::sync::Arc;
use stockade_application::ports::gate::CouponGate;
use stockade_application::ports::queue::MockIssuanceQueue;
use stockade_application::ports::store::Store;
use stockade_application::{Settings, Stockade};
use stockade_domain::Timestamp;
use stockade_tests::harness::{user, TestApp, EPOCH_MS};

/// A consumer that gives up on a delivery another consumer has taken over (the queue answers
/// that the dead letter was not its to make) records no failure and gives nothing back in the
/// gate: the other consumer's outcome decides. When the queue accepts the dead letter, both
/// happen.
#[tokio::test]
async fn a_dead_letter_taken_over_by_another_consumer_changes_nothing() {
    use stockade_application::ports::queue::{Delivery, IssuanceRequest};
    use stockade_application::usecases::handle_issuance::IssuanceOutcome;
    for accepted in [false, true] {
        let t = TestApp::new();
        let coupon = flash_coupon(&t, 1).await;
        let winner = user(USER);
        assert_eq!(
            t.app.issue_coupon(coupon, winner).await.unwrap().status,
            "RESERVED"
        );
        // The store is already full (another user holds the only coupon), so persisting the
        // winner's reservation is refused for good.
        {
            let mut uow = t.backend.store.begin().await.unwrap();
            let policy = uow.coupons().get(coupon).await.unwrap().unwrap();
            uow.coupons()
                .issue(&policy, user(USER + 1), Timestamp::from_millis(EPOCH_MS))
                .await
                .unwrap();
            uow.commit().await.unwrap();
        }
        let mut queue = MockIssuanceQueue::new();
        queue
            .expect_dead_letter()
            .times(1)
            .returning(move |_, _| Ok(accepted));
        let mut ports = t.backend.ports();
        ports.queue = Arc::new(queue);
        let app = Stockade::new(ports, Settings::default());
        let delivery = Delivery {
            id: "1".to_owned(),
            request: IssuanceRequest {
                coupon_id: coupon,
                user_id: winner,
                reserved_at: Timestamp::from_millis(EPOCH_MS),
            },
            attempt: 1,
        };
        let outcome = app.handle_issuance(&delivery).await.unwrap();
        let held = t.backend.gate.holders(coupon).await.unwrap();
        let failures = {
            let mut uow = t.backend.store.begin().await.unwrap();
            uow.coupons().failures(coupon).await.unwrap()
        };
        if accepted {
            assert_eq!(outcome, IssuanceOutcome::DeadLettered);
            assert!(held.is_empty(), "the reservation was not given back");
            assert_eq!(failures, vec![winner]);
        } else {
            assert_eq!(outcome, IssuanceOutcome::TakenOver);
            assert_eq!(
                held,
                vec![winner],
                "a taken-over reservation was given back"
            );
            assert!(
                failures.is_empty(),
                "a taken-over delivery recorded a failure"
            );
        }
    }
}

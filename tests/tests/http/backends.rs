//! The HTTP end-to-end checks on the other backends, each test in a Postgres schema (and a
//! Redis namespace) of its own:
//! - `postgres`: `--store postgres --lock postgres --idempotency postgres`;
//! - `production`: the production profile's adapters, `--store postgres --lock redis
//!   --idempotency redis --gate redis --queue redis --popularity redis` (with the demo data
//!   seeded, which the suite relies on; `--profile production` itself seeds nothing).

use stockade_tests::e2e;
use stockade_tests::pg::TestDb;

/// Runs `check` against the service started on `backend`'s adapters.
async fn on<F, Fut>(backend: &str, check: F)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = TestDb::new().await;
    let (lock, idempotency) = match backend {
        "postgres" => ("postgres", "postgres"),
        _ => ("redis", "redis"),
    };
    let mut flags: Vec<String> = [
        "--store",
        "postgres",
        "--lock",
        lock,
        "--idempotency",
        idempotency,
        "--database-url",
        &db.url,
        "--database-schema",
        &db.schema,
        "--lock-wait-ms",
        "60000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if backend == "production" {
        let url = stockade_tests::redis::url();
        let ns = stockade_tests::redis::namespace();
        flags.extend(
            [
                "--popularity",
                "redis",
                "--gate",
                "redis",
                "--queue",
                "redis",
                "--redis-url",
                &url,
                "--lock-namespace",
                &ns,
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
    }
    check(flags).await;
    db.drop_schema().await;
}

macro_rules! on_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    on("postgres", |flags| async move {
                        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                        e2e::$name(&flags).await;
                    })
                    .await;
                }
            )*
        }
        mod production {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    on("production", |flags| async move {
                        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                        e2e::$name(&flags).await;
                    })
                    .await;
                }
            )*
        }
    };
}

on_backends!(
    five_hundred_users_race_for_the_100_flash_coupons,
    a_whole_shopping_flow_and_a_refund,
    one_payment_sent_twenty_times_at_once_with_one_key,
    one_payment_sent_twenty_times_at_once_with_twenty_keys,
    bad_input_is_a_4xx_envelope_never_a_5xx,
    unknown_fields_are_refused_and_created_things_have_a_location,
    the_openapi_document_lists_every_route_of_the_api,
    metrics_count_requests_and_gate_outcomes,
    accounts_register_login_and_me,
    accounts_refuse_bad_input_and_taken_emails,
    accounts_one_email_signed_up_100_times_at_once,
    accounts_wrong_credentials_then_throttled,
    accounts_parallel_guesses_cannot_race_the_throttle,
    lists_come_in_pages_linked_by_next,
    the_coupon_catalogue_shows_what_can_still_be_had,
    lists_refuse_bad_limits_cursors_and_filters,
    limits_one_customer_100_orders_at_once,
    limits_patch_changes_a_product,
    coupon_failures_are_listed_and_replayed_once,
);

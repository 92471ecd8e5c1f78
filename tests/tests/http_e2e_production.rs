//! The HTTP end-to-end checks on the production profile's adapters: Postgres as the store,
//! Redis for locks and idempotency (`--store postgres --lock redis --idempotency redis`), each
//! test in a schema and a Redis namespace of its own. (The demo profile's data is seeded, which
//! the suite relies on; `--profile production` itself seeds nothing.)

use stockade_tests::e2e;
use stockade_tests::pg::TestDb;

async fn on_postgres<F, Fut>(run: F)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = TestDb::new().await;
    let flags = vec![
        "--store".to_owned(),
        "postgres".to_owned(),
        "--lock".to_owned(),
        "redis".to_owned(),
        "--idempotency".to_owned(),
        "redis".to_owned(),
        "--redis-url".to_owned(),
        stockade_tests::redis::url(),
        "--popularity".to_owned(),
        "redis".to_owned(),
        "--lock-namespace".to_owned(),
        stockade_tests::redis::namespace(),
        "--database-url".to_owned(),
        db.url.clone(),
        "--database-schema".to_owned(),
        db.schema.clone(),
        "--lock-wait-ms".to_owned(),
        "60000".to_owned(),
    ];
    run(flags).await;
    db.drop_schema().await;
}

macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                on_postgres(|flags| async move {
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    e2e::$name(&flags).await;
                })
                .await;
            }
        )*
    };
}

on_postgres!(
    five_hundred_users_race_for_the_100_flash_coupons,
    a_whole_shopping_flow_and_a_refund,
    one_payment_sent_twenty_times_at_once_with_one_key,
    one_payment_sent_twenty_times_at_once_with_twenty_keys,
    bad_input_is_a_4xx_envelope_never_a_5xx,
    the_openapi_document_lists_every_route_of_the_api,
    metrics_count_requests_and_gate_outcomes,
);

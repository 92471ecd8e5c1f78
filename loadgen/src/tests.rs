//! Every scenario of `stockade-load`, run against the real service on an ephemeral port through
//! the same entry point as the command line: each must finish with its invariants holding, exit
//! with success and write its JSON summary.

use super::{execute, Cli};
use clap::Parser;
use std::process::ExitCode;
use stockade_tests::http::{spawn_app, SECRET};

async fn load(base: &str, args: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!(
        "stockade-load-{}-{}.json",
        std::process::id(),
        args[0]
    ));
    let mut argv = vec!["stockade-load"];
    argv.extend_from_slice(args);
    let json_arg = json.to_string_lossy().into_owned();
    argv.extend([
        "--target",
        base,
        "--jwt-secret",
        SECRET,
        "--quiet",
        "--json",
        &json_arg,
    ]);
    let code = execute(Cli::try_parse_from(&argv).unwrap()).await;
    assert_eq!(code, ExitCode::SUCCESS, "{args:?} failed");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(summary["requests"].as_u64().unwrap() > 0);
    assert_eq!(summary["failures"], 0, "{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_its_invariants_hold() {
    let app = spawn_app(&[]).await;
    let drop = load(
        &app.base,
        &[
            "coupon-drop",
            "--users",
            "300",
            "--coupons",
            "50",
            "--concurrency",
            "64",
        ],
    )
    .await;
    assert_eq!(drop["transactions"], 50);
    assert_eq!(drop["codes"]["COUPON_SOLD_OUT"], 250);
    let rush = load(
        &app.base,
        &[
            "stock-rush",
            "--buyers",
            "120",
            "--stock",
            "100",
            "--concurrency",
            "32",
        ],
    )
    .await;
    assert_eq!(rush["codes"]["INSUFFICIENT_STOCK"], 20);
    load(
        &app.base,
        &[
            "double-pay",
            "--orders",
            "10",
            "--retries",
            "5",
            "--concurrency",
            "32",
        ],
    )
    .await;
    load(
        &app.base,
        &[
            "double-pay",
            "--orders",
            "10",
            "--retries",
            "5",
            "--different-keys",
        ],
    )
    .await;
    load(
        &app.base,
        &["charge-storm", "--users", "10", "--charges", "5"],
    )
    .await;
    let pay = load(
        &app.base,
        &[
            "order-pay",
            "--users",
            "10",
            "--requests",
            "40",
            "--products",
            "3",
        ],
    )
    .await;
    assert_eq!(pay["transactions"], 80, "40 orders and 40 payments");
    load(
        &app.base,
        &["mixed", "--users", "50", "--requests", "400", "--seed", "3"],
    )
    .await;
}

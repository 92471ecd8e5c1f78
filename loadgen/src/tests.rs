//! Every scenario of `stockade-load`, run against the real service on an ephemeral port through
//! the same entry point as the command line: each must finish with its invariants holding, exit
//! with success and write its JSON summary.

use super::{execute, Cli};
use clap::Parser;
use std::process::ExitCode;
use stockade_tests::http::{spawn_app, SECRET};

/// Runs `stockade-load ARGS` against `base`: its exit code and JSON summary.
async fn run_load(base: &str, args: &[&str]) -> (ExitCode, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "stockade-load-{}-{}-{}.json",
        std::process::id(),
        args[0],
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (code, summary)
}

/// Runs `stockade-load ARGS` against `base`, which must pass.
async fn load(base: &str, args: &[&str]) -> serde_json::Value {
    let (code, summary) = run_load(base, args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{args:?} failed: {summary}");
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

/// Stopped by `--duration` long before every request was sent, the scenarios check what was
/// sent: no false "winners != coupons" or "sold != stock" or "order never paid".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_duration_checks_only_what_was_sent() {
    let app = spawn_app(&[]).await;
    let drop = load(
        &app.base,
        &[
            "coupon-drop",
            "--users",
            "20000",
            "--coupons",
            "15000",
            "--concurrency",
            "8",
            "--duration",
            "0.3",
        ],
    )
    .await;
    let sent = drop["jobs_run"].as_u64().unwrap();
    assert!(sent > 0 && sent < 15_000, "{drop}");
    assert_eq!(drop["jobs_planned"], 20_000);
    assert_eq!(drop["transactions"], sent, "every request sent won: {drop}");
    let rush = load(
        &app.base,
        &[
            "stock-rush",
            "--buyers",
            "20000",
            "--stock",
            "15000",
            "--products",
            "3",
            "--concurrency",
            "8",
            "--duration",
            "0.3",
        ],
    )
    .await;
    assert!(rush["jobs_run"].as_u64().unwrap() < 15_000, "{rush}");
    let pay = load(
        &app.base,
        &[
            "double-pay",
            "--orders",
            "400",
            "--retries",
            "2",
            "--concurrency",
            "1",
            "--duration",
            "0.05",
        ],
    )
    .await;
    // Fewer payments sent than orders: some orders had none and must be left unpaid.
    assert!(pay["jobs_run"].as_u64().unwrap() < 400, "{pay}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_threshold_fails_the_run_and_names_itself() {
    let app = spawn_app(&[]).await;
    let common = ["charge-storm", "--users", "5", "--charges", "4"];
    let (code, summary) = run_load(
        &app.base,
        &[
            &common[..],
            &["--threshold", "p99<0.001", "--threshold", "rps>0"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, ExitCode::FAILURE, "{summary}");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["failures"], 0);
    assert_eq!(summary["thresholds"][0]["threshold"], "p99<0.001");
    assert_eq!(summary["thresholds"][0]["ok"], false);
    assert!(summary["thresholds"][0]["measured"].as_f64().unwrap() > 0.001);
    assert_eq!(summary["thresholds"][1]["ok"], true);
    let (code, summary) = run_load(
        &app.base,
        &[
            &common[..],
            &["--threshold", "p99<60000", "--threshold", "error_rate<=0%"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{summary}");
    assert!(Cli::try_parse_from([
        "stockade-load",
        "charge-storm",
        "--target",
        "x",
        "--jwt-secret",
        "s",
        "--threshold",
        "p99=1"
    ])
    .is_err());
}

/// `--rate`: arrivals on a schedule, not on answers; the summary counts what was dropped for
/// want of a free slot and what was sent late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_sends_on_a_schedule() {
    let app = spawn_app(&[]).await;
    let paced = load(
        &app.base,
        &[
            "charge-storm",
            "--users",
            "10",
            "--charges",
            "20",
            "--rate",
            "400",
            "--concurrency",
            "32",
        ],
    )
    .await;
    assert_eq!(paced["rate"], 400.0);
    assert_eq!(paced["jobs_planned"], 200);
    assert_eq!(
        paced["jobs_run"].as_u64().unwrap() + paced["dropped"].as_u64().unwrap(),
        200,
        "{paced}"
    );
    // 200 arrivals at 400/s take half a second, however fast the answers come.
    let secs = paced["elapsed_secs"].as_f64().unwrap();
    assert!((0.49..5.0).contains(&secs), "{paced}");
    assert!(paced["late"].is_u64());
    // One slot and arrivals every 0.2 ms: most arrive while the slot is busy and are dropped,
    // and the invariants count only what was sent.
    let crowded = load(
        &app.base,
        &[
            "charge-storm",
            "--users",
            "10",
            "--charges",
            "100",
            "--rate",
            "5000",
            "--concurrency",
            "1",
        ],
    )
    .await;
    let (ran, dropped) = (
        crowded["jobs_run"].as_u64().unwrap(),
        crowded["dropped"].as_u64().unwrap(),
    );
    assert!(dropped > 0, "{crowded}");
    assert_eq!(ran + dropped, 1_000, "{crowded}");
    assert_eq!(crowded["requests"], ran);
}

/// A refused setup request says what the answer was, not "failed with 0: null".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_setup_names_status_code_and_message() {
    let app = spawn_app(&[]).await;
    let ctx = |target: &str| crate::scenarios::Ctx {
        api: std::sync::Arc::new(crate::client::Api::new(&[target.to_owned()], SECRET, 4).unwrap()),
        concurrency: 4,
        requests: None,
        duration: None,
        rate: None,
        seed: 1,
        label: String::new(),
        quiet: true,
        user_base: 5_000_000,
    };
    let e = crate::scenarios::coupon_drop(&ctx(&app.base), 10, 5, 1, "BOGUS")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("setup request create coupon failed: 400 INVALID_INPUT: "),
        "{e}"
    );
    assert!(
        e.len() > "setup request create coupon failed: 400 INVALID_INPUT: ".len(),
        "{e}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e =
        crate::scenarios::coupon_drop(&ctx(&format!("http://127.0.0.1:{port}")), 10, 5, 1, "FLASH")
            .await
            .unwrap_err()
            .to_string();
    assert!(
        e.starts_with("setup request create coupon failed: no answer: error sending request"),
        "{e}"
    );
}

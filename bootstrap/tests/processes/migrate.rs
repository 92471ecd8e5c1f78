//! `stockade migrate`: `--create` makes a missing database, and running it again changes
//! nothing; without `--create` a missing database is an error that says so.

use sqlx::Connection;
use std::process::{Command, Output};
use stockade_tests::pg::url_for;

fn migrate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stockade"))
        .arg("migrate")
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_create_makes_the_database_once() {
    let name = format!(
        "stockade_create_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let url = url_for(&name);
    let missing = migrate(&["--database-url", &url]);
    assert!(
        !missing.status.success(),
        "migrated a database that does not exist"
    );
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("does not exist"), "{said}");

    for _ in 0..2 {
        let out = migrate(&["--create", "--database-url", &url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('orders', 'wallets')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 2);
    conn.close().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&url_for("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

//! The charge storm: N users charge C times each, all at once, with distinct keys. Checks:
//! every balance equals its ledger, and the balances add up to the successful charges.

use super::{balances_match_ledgers, Ctx, SetupError};
use crate::run::{progress, run};
use crate::stats::{check, Recorder, Summary};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;

/// N users charge C times each, all at once, with distinct keys.
pub async fn charge_storm(
    ctx: &Ctx,
    users: usize,
    charges: usize,
    amount: i64,
) -> Result<Summary, SetupError> {
    let tokens = ctx.tokens(users)?;
    let recorder = Arc::new(Recorder::default());
    let jobs = ctx.requests.unwrap_or(users * charges).min(users * charges);
    let bar = progress(Some(jobs as u64), "charge-storm", ctx.quiet);
    let (api, rec, tk, seed) = (
        ctx.api.clone(),
        recorder.clone(),
        tokens.clone(),
        ctx.user_base,
    );
    let (ran, elapsed) = run(jobs, &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, tk) = (api.clone(), rec.clone(), tk.clone());
        async move {
            let key = format!("storm-{seed}-{i}");
            let o = api
                .send(
                    Method::POST,
                    "/api/v1/users/me/balance/charge",
                    Some(&tk[i % users]),
                    Some(&key),
                    Some(&json!({"amount": amount})),
                )
                .await;
            rec.record(&o);
        }
    })
    .await;
    bar.finish_and_clear();
    let users_ids: Vec<i64> = (0..users).map(|k| ctx.user_base + k as i64).collect();
    let (ledger, balances) = balances_match_ledgers(ctx, &users_ids).await?;
    let total: i64 = balances.values().sum();
    let checks = vec![
        ledger,
        check(
            "sum of balances == successful charges",
            total == amount * recorder.answered("2") as i64,
            format!("{total} won in {} wallets after {ran} charges", users),
        ),
    ];
    Ok(ctx.summary("charge-storm", &recorder, elapsed, ran as u64, checks))
}

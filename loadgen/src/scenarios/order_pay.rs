//! Order and pay: funded users create an order and pay it, over and over. Checks: every
//! balance equals its ledger, and the money spent matches the orders paid.

use super::{balances_match_ledgers, Ctx, SetupError};
use crate::run::{progress, run};
use crate::stats::{check, Recorder, Summary};
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Funded users each create an order (of one of `products` products) and pay it, over and
/// over. Each order creation and each payment counts as one transaction.
pub async fn order_pay(ctx: &Ctx, users: usize, products: usize) -> Result<Summary, SetupError> {
    let mut pids = Vec::with_capacity(products.max(1));
    for _ in 0..products.max(1) {
        pids.push(ctx.product(100_000_000, 1, 1_000).await?);
    }
    let pids = Arc::new(pids);
    let tokens = ctx.tokens(users)?;
    let transactions = ctx.requests.unwrap_or(2_000);
    let per_user = 1_000 * (transactions / users.max(1) + 2) as i64;
    for (k, token) in tokens.iter().enumerate() {
        let mut left = per_user;
        let mut n = 0;
        while left > 0 {
            let chunk = left.min(1_000_000);
            ctx.setup(
                "charge",
                Method::POST,
                "/api/v1/users/me/balance/charge",
                token,
                Some(&format!("fund-{}-{k}-{n}", ctx.user_base)),
                Some(json!({"amount": chunk})),
            )
            .await?;
            left -= chunk;
            n += 1;
        }
    }
    let recorder = Arc::new(Recorder::default());
    let paid = Arc::new(AtomicU64::new(0));
    let bar = progress(Some((transactions * 2) as u64), "order-pay", ctx.quiet);
    let (api, rec, tk, seed, p, pids) = (
        ctx.api.clone(),
        recorder.clone(),
        tokens.clone(),
        ctx.user_base,
        paid.clone(),
        pids.clone(),
    );
    let (_, elapsed) = run(transactions, &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, tk, p, pids) = (
            api.clone(),
            rec.clone(),
            tk.clone(),
            p.clone(),
            pids.clone(),
        );
        async move {
            let token = &tk[i % users];
            let o = api
                .send(
                    Method::POST,
                    "/api/v1/orders",
                    Some(token),
                    Some(&format!("op-{seed}-{i}")),
                    Some(&json!({"items": [{"productId": pids[i % pids.len()], "quantity": 1}]})),
                )
                .await;
            rec.record(&o);
            if !o.ok() {
                return;
            }
            let id = o.body["data"]["orderId"].as_i64().unwrap_or(0);
            let total = o.body["data"]["total"].as_i64().unwrap_or(0);
            let o = api
                .send(
                    Method::POST,
                    &format!("/api/v1/orders/{id}/payment"),
                    Some(token),
                    Some(&format!("pp-{seed}-{i}")),
                    Some(&json!({"amount": total})),
                )
                .await;
            rec.record(&o);
            if o.ok() {
                p.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    bar.finish_and_clear();
    let users_ids: Vec<i64> = (0..users).map(|k| ctx.user_base + k as i64).collect();
    let (ledger, balances) = balances_match_ledgers(ctx, &users_ids).await?;
    let paid = paid.load(Ordering::Relaxed);
    let spent: i64 = users_ids
        .iter()
        .map(|u| per_user - balances.get(u).copied().unwrap_or(0))
        .sum();
    let checks = vec![
        ledger,
        check(
            "money spent == paid orders x price",
            spent == paid as i64 * 1_000,
            format!("{paid} paid, {spent} won spent"),
        ),
    ];
    // Every order creation and every payment that succeeded is one transaction.
    let created = recorder.answered("201");
    Ok(ctx.summary("order-pay", &recorder, elapsed, created + paid, checks))
}

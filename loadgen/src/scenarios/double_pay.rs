//! Double payment: K orders, each paid R times at once, with one idempotency key or with R.
//! Checks: one payment per order (identical answers under one key), each wallet debited
//! exactly once, every balance equal to its ledger. When the run stopped before every payment
//! was sent, an order none was sent for must be unpaid and its wallet untouched.

use super::{balances_match_ledgers, Ctx, SetupError};
use crate::client::Outcome;
use crate::run::{progress, run};
use crate::stats::{check, Recorder, Summary};
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

/// K orders, each paid R times at once, with one key or with R keys.
pub async fn double_pay(
    ctx: &Ctx,
    orders: usize,
    retries: usize,
    same_key: bool,
) -> Result<Summary, SetupError> {
    let pid = ctx.product(1_000_000, 1, 1_000).await?;
    let tokens = ctx.tokens(orders)?;
    let mut setup = Vec::new();
    for (k, token) in tokens.iter().enumerate() {
        ctx.setup(
            "charge",
            Method::POST,
            "/api/v1/users/me/balance/charge",
            token,
            Some(&format!("fund-{}-{k}", ctx.user_base)),
            Some(json!({"amount": 10_000})),
        )
        .await?;
        let o = ctx
            .setup(
                "order",
                Method::POST,
                "/api/v1/orders",
                token,
                Some(&format!("order-{}-{k}", ctx.user_base)),
                Some(json!({"items": [{"productId": pid, "quantity": 1}]})),
            )
            .await?;
        setup.push((
            o["orderId"].as_i64().unwrap_or(0),
            o["total"].as_i64().unwrap_or(0),
        ));
    }
    let setup = Arc::new(setup);
    let answers: Arc<parking_lot::Mutex<Vec<Vec<Outcome>>>> =
        Arc::new(parking_lot::Mutex::new(vec![Vec::new(); orders]));
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some((orders * retries) as u64), "double-pay", ctx.quiet);
    let (api, rec, ans, tk, st, seed) = (
        ctx.api.clone(),
        recorder.clone(),
        answers.clone(),
        tokens.clone(),
        setup.clone(),
        ctx.seed,
    );
    let (ran, elapsed) = run(orders * retries, &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, ans, tk, st) = (
            api.clone(),
            rec.clone(),
            ans.clone(),
            tk.clone(),
            st.clone(),
        );
        async move {
            let (k, r) = (i % orders, i / orders);
            let (id, total) = st[k];
            let key = if same_key {
                format!("pay-{seed}-{k}")
            } else {
                format!("pay-{seed}-{k}-{r}")
            };
            let o = api
                .send(
                    Method::POST,
                    &format!("/api/v1/orders/{id}/payment"),
                    Some(&tk[k]),
                    Some(&key),
                    Some(&json!({"amount": total})),
                )
                .await;
            rec.record(&o);
            ans.lock()[k].push(o);
        }
    })
    .await;
    bar.finish_and_clear();
    let answers = answers.lock().clone();
    let all_sent = ran == orders * retries;
    let mut bad = Vec::new();
    for (k, outs) in answers.iter().enumerate() {
        if outs.is_empty() && !all_sent {
            // Never sent (--duration, or arrivals dropped): its wallet is checked below.
            continue;
        }
        let oks: Vec<&Outcome> = outs.iter().filter(|o| o.ok()).collect();
        let bodies: HashSet<&str> = oks.iter().map(|o| o.data_text.as_str()).collect();
        let fine = if same_key {
            !oks.is_empty()
                && bodies.len() == 1
                && outs
                    .iter()
                    .all(|o| o.ok() || o.code.as_deref() == Some("REQUEST_IN_PROGRESS"))
        } else {
            oks.len() == 1
                && outs
                    .iter()
                    .all(|o| o.ok() || o.code.as_deref() == Some("INVALID_ORDER_STATE"))
        };
        if !fine {
            bad.push(format!(
                "order {k}: {} successes, {} distinct bodies",
                oks.len(),
                bodies.len()
            ));
        }
    }
    let users: Vec<i64> = (0..orders).map(|k| ctx.user_base + k as i64).collect();
    let (ledger, balances) = balances_match_ledgers(ctx, &users).await?;
    let charged_once =
        users
            .iter()
            .zip(setup.iter())
            .zip(answers.iter())
            .all(|((u, (_, total)), outs)| {
                let debit = if outs.is_empty() && !all_sent {
                    0
                } else {
                    *total
                };
                balances.get(u) == Some(&(10_000 - debit))
            });
    let checks = vec![
        check(
            if same_key {
                "one payment per key, every answer identical"
            } else {
                "one success per order, the rest INVALID_ORDER_STATE"
            },
            bad.is_empty(),
            if bad.is_empty() {
                format!("{orders} orders")
            } else {
                bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            },
        ),
        check(
            "each wallet debited exactly once",
            charged_once,
            if all_sent {
                format!("{} wallets", users.len())
            } else {
                format!(
                    "{} wallets, {} orders with a payment sent ({ran} of {} payments)",
                    users.len(),
                    answers.iter().filter(|o| !o.is_empty()).count(),
                    orders * retries
                )
            },
        ),
        ledger,
    ];
    Ok(ctx.summary("double-pay", &recorder, elapsed, orders as u64, checks))
}

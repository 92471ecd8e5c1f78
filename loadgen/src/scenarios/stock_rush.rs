//! The stock rush: N buyers, one unit each, of S in stock shared out over one or more
//! products. Checks: sold is `min(stock, buyers)` per product and the stock left is the stock
//! minus what was sold.

use super::{Ctx, SetupError};
use crate::run::{progress, run};
use crate::stats::{check, Recorder, Summary};
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// N buyers, one unit each, of S in stock shared out evenly over `products` products.
pub async fn stock_rush(
    ctx: &Ctx,
    buyers: usize,
    stock: i64,
    products: usize,
) -> Result<Summary, SetupError> {
    // The stock shared out evenly; the first products take the remainder.
    let n = i64::try_from(products.max(1)).unwrap_or(1);
    let stocks: Vec<i64> = (0..n)
        .map(|i| stock / n + i64::from(i < stock % n))
        .collect();
    let mut pids = Vec::with_capacity(stocks.len());
    for s in &stocks {
        pids.push(ctx.product(*s, 1, 1_000).await?);
    }
    let pids = Arc::new(pids);
    let tokens = ctx.tokens(buyers)?;
    let created = Arc::new(AtomicU64::new(0));
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some(buyers as u64), "stock-rush", ctx.quiet);
    let (api, rec, c, tk, seed, ps) = (
        ctx.api.clone(),
        recorder.clone(),
        created.clone(),
        tokens.clone(),
        ctx.seed,
        pids.clone(),
    );
    let (_, elapsed) = run(
        buyers,
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
            let (api, rec, c, tk) = (api.clone(), rec.clone(), c.clone(), tk.clone());
            let pid = ps[i % ps.len()];
            async move {
                let body = json!({"items": [{"productId": pid, "quantity": 1}]});
                let key = format!("rush-{seed}-{i}");
                let o = api
                    .send(
                        Method::POST,
                        "/api/v1/orders",
                        Some(&tk[i]),
                        Some(&key),
                        Some(&body),
                    )
                    .await;
                rec.record(&o);
                if o.ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    )
    .await;
    bar.finish_and_clear();
    let created = created.load(Ordering::Relaxed) as i64;
    let mut left = 0;
    for pid in pids.iter() {
        let p = ctx
            .api
            .send(
                Method::GET,
                &format!("/api/v1/products/{pid}"),
                None,
                None,
                None,
            )
            .await;
        left += p.body["data"]["stock"].as_i64().unwrap_or(-1_000_000_000);
    }
    // Each product sells to its buyers until its stock runs out.
    let buyers_of =
        |k: usize| (buyers / products.max(1) + usize::from(k < buyers % products.max(1))) as i64;
    let expected: i64 = stocks
        .iter()
        .enumerate()
        .map(|(k, s)| (*s).min(buyers_of(k)))
        .sum();
    let checks = vec![
        check(
            "sold == min(stock, buyers) per product",
            created == expected,
            format!("{created} orders of {expected}"),
        ),
        check(
            "stock left == stock - sold",
            left == stock - created,
            format!("{left} left of {stock}"),
        ),
    ];
    Ok(ctx.summary("stock-rush", &recorder, elapsed, created as u64, checks))
}

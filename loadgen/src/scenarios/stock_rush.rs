//! The stock rush: N buyers, one unit each, of S in stock shared out over one or more
//! products. Checks: sold is `min(stock, buyers)` per product (buyers that were answered, when
//! the run stopped before every buyer was sent) and the stock left is the stock minus what was
//! sold.

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
    // Buyers answered, by product (a failure is no answer about the stock).
    let answered: Arc<Vec<AtomicU64>> = Arc::new(pids.iter().map(|_| AtomicU64::new(0)).collect());
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some(buyers as u64), "stock-rush", ctx.quiet);
    let (api, rec, c, tk, seed, ps, ans) = (
        ctx.api.clone(),
        recorder.clone(),
        created.clone(),
        tokens.clone(),
        ctx.seed,
        pids.clone(),
        answered.clone(),
    );
    let (ran, elapsed) = run(buyers, &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, c, tk, ans) = (api.clone(), rec.clone(), c.clone(), tk.clone(), ans.clone());
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
            if o.status != 0 && o.status < 500 {
                ans[i % ans.len()].fetch_add(1, Ordering::Relaxed);
            }
            if o.ok() {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
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
    // Each product sells to its buyers until its stock runs out; stopped early (--duration, or
    // arrivals dropped), to the buyers that were answered.
    let all_sent = ran == buyers;
    let buyers_of = |k: usize| {
        if all_sent {
            (buyers / products.max(1) + usize::from(k < buyers % products.max(1))) as i64
        } else {
            answered[k].load(Ordering::Relaxed) as i64
        }
    };
    let expected: i64 = stocks
        .iter()
        .enumerate()
        .map(|(k, s)| (*s).min(buyers_of(k)))
        .sum();
    let checks = vec![
        check(
            "sold == min(stock, buyers) per product",
            created == expected,
            if all_sent {
                format!("{created} orders of {expected}")
            } else {
                format!("{created} orders of {expected} ({ran} of {buyers} buyers sent)")
            },
        ),
        check(
            "stock left == stock - sold",
            left == stock - created,
            format!("{left} left of {stock}"),
        ),
    ];
    Ok(ctx.summary("stock-rush", &recorder, elapsed, created as u64, checks))
}

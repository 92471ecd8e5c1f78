//! The mixed workload: browse / cart / order / pay / charge / issue, picked by weight
//! ([`Mix`]) on a pool of users. Checks: every balance equals its ledger.

use super::{balances_match_ledgers, Ctx, SetupError};
use crate::run::{progress, run, Rng};
use crate::stats::{Recorder, Summary};
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Weights of the mixed workload's operations.
#[derive(Debug, Clone)]
pub struct Mix {
    pub weights: BTreeMap<String, u64>,
}

impl Mix {
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights = BTreeMap::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected name=weight"))?;
            let k = k.trim();
            if !["browse", "cart", "order", "pay", "charge", "issue"].contains(&k) {
                return Err(format!("unknown operation `{k}`"));
            }
            weights.insert(
                k.to_owned(),
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{v}` is not a weight"))?,
            );
        }
        if weights.values().sum::<u64>() == 0 {
            return Err("the weights add up to zero".into());
        }
        Ok(Mix { weights })
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        let total: u64 = self.weights.values().sum();
        let mut x = rng.below(total);
        for (k, w) in &self.weights {
            if x < *w {
                return k;
            }
            x -= w;
        }
        "browse"
    }
}

/// Browse / cart / order / pay / charge / issue, picked by weight, on a pool of users.
pub async fn mixed(ctx: &Ctx, users: usize, mix: Mix) -> Result<Summary, SetupError> {
    let pid = ctx.product(1_000_000, 5, 1_000).await?;
    let admin = ctx.admin()?;
    let coupon = ctx
        .setup("create coupon", Method::POST, "/api/v1/admin/coupons", &admin, None,
            Some(json!({"name": format!("MIX-{}", ctx.seed), "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": users.max(1) / 2 + 1, "mode": "FLASH"})))
        .await?;
    let cid = coupon["id"].as_i64().unwrap_or(0);
    let tokens = ctx.tokens(users)?;
    let jobs = ctx.requests.unwrap_or(5_000);
    let pending: Arc<parking_lot::Mutex<HashMap<usize, (i64, i64)>>> = Arc::default();
    let mix = Arc::new(mix);
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some(jobs as u64), "mixed", ctx.quiet);
    let (api, rec, tk, seed, pend) = (
        ctx.api.clone(),
        recorder.clone(),
        tokens.clone(),
        ctx.seed,
        pending.clone(),
    );
    let (ran, elapsed) = run(jobs, &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, tk, pend, mix) = (
            api.clone(),
            rec.clone(),
            tk.clone(),
            pend.clone(),
            mix.clone(),
        );
        async move {
            let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            let u = rng.below(users as u64) as usize;
            let token = &tk[u];
            let o = match mix.pick(&mut rng) {
                "browse" => {
                    api.send(
                        Method::GET,
                        &format!("/api/v1/products/{pid}"),
                        None,
                        None,
                        None,
                    )
                    .await
                }
                "cart" => {
                    api.send(
                        Method::POST,
                        "/api/v1/cart/items",
                        Some(token),
                        None,
                        Some(&json!({"productId": pid, "quantity": 1})),
                    )
                    .await
                }
                "order" => {
                    let o = api
                        .send(
                            Method::POST,
                            "/api/v1/orders",
                            Some(token),
                            Some(&format!("mo-{seed}-{i}")),
                            Some(&json!({"items": [{"productId": pid, "quantity": 1}]})),
                        )
                        .await;
                    if o.ok() {
                        let d = &o.body["data"];
                        pend.lock().insert(
                            u,
                            (
                                d["orderId"].as_i64().unwrap_or(0),
                                d["total"].as_i64().unwrap_or(0),
                            ),
                        );
                    }
                    o
                }
                "pay" => {
                    let order = pend.lock().remove(&u);
                    match order {
                        Some((id, total)) => {
                            api.send(
                                Method::POST,
                                &format!("/api/v1/orders/{id}/payment"),
                                Some(token),
                                Some(&format!("mp-{seed}-{i}")),
                                Some(&json!({"amount": total})),
                            )
                            .await
                        }
                        None => {
                            api.send(
                                Method::GET,
                                "/api/v1/users/me/balance",
                                Some(token),
                                None,
                                None,
                            )
                            .await
                        }
                    }
                }
                "charge" => {
                    api.send(
                        Method::POST,
                        "/api/v1/users/me/balance/charge",
                        Some(token),
                        Some(&format!("mc-{seed}-{i}")),
                        Some(&json!({"amount": 5_000})),
                    )
                    .await
                }
                _ => {
                    api.send(
                        Method::POST,
                        &format!("/api/v1/coupons/{cid}/issue"),
                        Some(token),
                        None,
                        None,
                    )
                    .await
                }
            };
            rec.record(&o);
        }
    })
    .await;
    bar.finish_and_clear();
    let users_ids: Vec<i64> = (0..users).map(|k| ctx.user_base + k as i64).collect();
    let (ledger, _) = balances_match_ledgers(ctx, &users_ids).await?;
    Ok(ctx.summary("mixed", &recorder, elapsed, ran as u64, vec![ledger]))
}

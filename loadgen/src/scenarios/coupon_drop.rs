//! The coupon drop: N users race for M coupons, R requests each. Checks: the winners are
//! `min(coupons, users)` (users that were answered, when the run stopped before every request
//! was sent), no user won twice, every winner was persisted, none failed, and the coupons left
//! are the quantity less the winners.

use super::{Ctx, SetupError};
use crate::run::{progress, run, Rng};
use crate::stats::{check, Recorder, Summary};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// N users race for M coupons, R requests each.
pub async fn coupon_drop(
    ctx: &Ctx,
    users: usize,
    coupons: i64,
    per_user: usize,
    mode: &str,
) -> Result<Summary, SetupError> {
    let admin = ctx.admin()?;
    let coupon = ctx
        .setup(
            "create coupon",
            Method::POST,
            "/api/v1/admin/coupons",
            &admin,
            None,
            Some(json!({"name": format!("DROP-{}", ctx.seed), "kind": "CART", "discountType": "FIXED",
                "discountValue": 1000, "quantity": coupons, "mode": mode})),
        )
        .await?;
    let cid = coupon["id"].as_i64().unwrap_or(0);
    let tokens = ctx.tokens(users)?;
    let mut order: Vec<usize> = (0..users)
        .flat_map(|u| std::iter::repeat_n(u, per_user))
        .collect();
    Rng::new(ctx.seed).shuffle(&mut order);
    let order = Arc::new(order);
    let winners = Arc::new(parking_lot::Mutex::new(Vec::new()));
    // Users whose request got an answer (a failure is no answer about the coupon).
    let answered = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some(order.len() as u64), "coupon-drop", ctx.quiet);
    let (api, rec, w, tk, ord, ans) = (
        ctx.api.clone(),
        recorder.clone(),
        winners.clone(),
        tokens.clone(),
        order.clone(),
        answered.clone(),
    );
    let path = format!("/api/v1/coupons/{cid}/issue");
    let (ran, elapsed) = run(order.len(), &ctx.pace(), &bar, &recorder, move |i| {
        let (api, rec, w, tk, ord, path, ans) = (
            api.clone(),
            rec.clone(),
            w.clone(),
            tk.clone(),
            ord.clone(),
            path.clone(),
            ans.clone(),
        );
        async move {
            let u = ord[i];
            let o = api
                .send(Method::POST, &path, Some(&tk[u]), None, None)
                .await;
            rec.record(&o);
            if o.status != 0 && o.status < 500 {
                ans.lock().insert(u);
            }
            if o.ok() {
                w.lock().push(u);
            }
        }
    })
    .await;
    bar.finish_and_clear();
    let winners = winners.lock().clone();
    let distinct: HashSet<_> = winners.iter().collect();
    // Stopped early (--duration, or arrivals dropped), only the users that were answered
    // raced: each of them won until the coupons ran out.
    let all_sent = ran == order.len();
    let racers = if all_sent {
        users
    } else {
        answered.lock().len()
    };
    let expected = coupons.min(racers as i64) as usize;
    let mut checks = vec![
        check(
            "winners == min(coupons, users)",
            winners.len() == expected,
            if all_sent {
                format!("{} winners, {expected} expected", winners.len())
            } else {
                format!(
                    "{} winners, {expected} expected of {racers} users answered ({} of {} requests sent)",
                    winners.len(),
                    ran,
                    order.len()
                )
            },
        ),
        check(
            "no user won twice",
            distinct.len() == winners.len(),
            format!("{} distinct", distinct.len()),
        ),
    ];
    // Wait for the issuance pipeline to persist every reservation.
    let mut stock = Value::Null;
    for _ in 0..600 {
        let o = ctx
            .api
            .send(
                Method::GET,
                &format!("/api/v1/admin/coupons/{cid}/stock"),
                Some(&admin),
                None,
                None,
            )
            .await;
        stock = o.body["data"].clone();
        if stock["persisted"].as_i64() == Some(winners.len() as i64)
            || stock["failed"].as_i64().unwrap_or(0) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    checks.push(check(
        "every winner persisted, none failed, coupons left == quantity - winners",
        stock["persisted"].as_i64() == Some(winners.len() as i64)
            && stock["failed"].as_i64() == Some(0)
            && stock["remaining"].as_i64() == Some(coupons - winners.len() as i64),
        stock.to_string(),
    ));
    Ok(ctx.summary(
        "coupon-drop",
        &recorder,
        elapsed,
        winners.len() as u64,
        checks,
    ))
}

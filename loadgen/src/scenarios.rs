//! The scenarios. Each sets itself up through the admin API, runs, then checks its invariants
//! through the API and returns a [`Summary`].

use crate::client::{Api, Outcome};
use crate::run::{progress, run, Rng};
use crate::stats::{check, Check, Recorder, Summary};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every scenario gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api: Arc<Api>,
    pub concurrency: usize,
    pub requests: Option<usize>,
    pub duration: Option<Duration>,
    pub seed: u64,
    pub label: String,
    pub quiet: bool,
    /// The first user id this run uses; users `base..base + n`.
    pub user_base: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("setup request {what} failed with {status}: {body}")]
    Refused {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error(transparent)]
    Token(#[from] crate::client::ApiError),
}

impl Ctx {
    fn admin(&self) -> Result<String, SetupError> {
        Ok(self.api.token(1_000, true)?)
    }

    fn user_token(&self, user: i64) -> Result<String, SetupError> {
        Ok(self.api.token(user, false)?)
    }

    /// Tokens for users `base..base + n`.
    fn tokens(&self, n: usize) -> Result<Arc<Vec<String>>, SetupError> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.user_token(self.user_base + i as i64)?);
        }
        Ok(Arc::new(out))
    }

    async fn setup(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, SetupError> {
        let o = self
            .api
            .send(method, path, Some(token), key, body.as_ref())
            .await;
        if !o.ok() {
            return Err(SetupError::Refused {
                what,
                status: o.status,
                body: o.body.to_string(),
            });
        }
        Ok(o.body["data"].clone())
    }

    async fn product(&self, stock: i64, max: i64, price: i64) -> Result<i64, SetupError> {
        let admin = self.admin()?;
        let p = self
            .setup(
                "create product",
                Method::POST,
                "/api/v1/admin/products",
                &admin,
                None,
                Some(json!({"name": format!("load-{}", self.seed), "price": price, "stock": stock, "maxPerOrder": max})),
            )
            .await?;
        Ok(p["id"].as_i64().unwrap_or(0))
    }

    fn summary(
        &self,
        scenario: &str,
        recorder: &Recorder,
        elapsed: Duration,
        transactions: u64,
        checks: Vec<Check>,
    ) -> Summary {
        Summary::build(
            scenario,
            &self.label,
            self.api.targets(),
            self.concurrency,
            recorder,
            elapsed,
            transactions,
            checks,
        )
    }
}

/// `balance == sum(ledger)` for each of `users`, read through the API.
async fn balances_match_ledgers(
    ctx: &Ctx,
    users: &[i64],
) -> Result<(Check, HashMap<i64, i64>), SetupError> {
    let mut wrong = Vec::new();
    let mut balances = HashMap::new();
    for chunk in users.chunks(64) {
        let mut tasks = Vec::new();
        for &u in chunk {
            let api = ctx.api.clone();
            let token = ctx.user_token(u)?;
            tasks.push(tokio::spawn(async move {
                let b = api
                    .send(
                        Method::GET,
                        "/api/v1/users/me/balance",
                        Some(&token),
                        None,
                        None,
                    )
                    .await;
                let l = api
                    .send(
                        Method::GET,
                        "/api/v1/users/me/balance/transactions",
                        Some(&token),
                        None,
                        None,
                    )
                    .await;
                let balance = b.body["data"]["balance"].as_i64().unwrap_or(-1);
                let sum: i64 = l.body["data"]
                    .as_array()
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|e| {
                                let a = e["amount"].as_i64().unwrap_or(0);
                                if e["type"] == "USE" {
                                    -a
                                } else {
                                    a
                                }
                            })
                            .sum()
                    })
                    .unwrap_or(i64::MIN);
                (u, balance, sum)
            }));
        }
        for t in tasks {
            if let Ok((u, balance, sum)) = t.await {
                balances.insert(u, balance);
                if balance != sum || balance < 0 {
                    wrong.push(format!("user {u}: balance {balance}, ledger {sum}"));
                }
            }
        }
    }
    let detail = if wrong.is_empty() {
        format!("{} wallets checked", users.len())
    } else {
        wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    };
    Ok((
        check("every balance equals its ledger", wrong.is_empty(), detail),
        balances,
    ))
}

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
    let recorder = Arc::new(Recorder::default());
    let bar = progress(Some(order.len() as u64), "coupon-drop", ctx.quiet);
    let (api, rec, w, tk, ord) = (
        ctx.api.clone(),
        recorder.clone(),
        winners.clone(),
        tokens.clone(),
        order.clone(),
    );
    let path = format!("/api/v1/coupons/{cid}/issue");
    let (_, elapsed) = run(
        order.len(),
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
            let (api, rec, w, tk, ord, path) = (
                api.clone(),
                rec.clone(),
                w.clone(),
                tk.clone(),
                ord.clone(),
                path.clone(),
            );
            async move {
                let u = ord[i];
                let o = api
                    .send(Method::POST, &path, Some(&tk[u]), None, None)
                    .await;
                rec.record(&o);
                if o.ok() {
                    w.lock().push(u);
                }
            }
        },
    )
    .await;
    bar.finish_and_clear();
    let winners = winners.lock().clone();
    let distinct: HashSet<_> = winners.iter().collect();
    let expected = coupons.min(users as i64) as usize;
    let mut checks = vec![
        check(
            "winners == min(coupons, users)",
            winners.len() == expected,
            format!("{} winners, {expected} expected", winners.len()),
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
        "every winner persisted, none failed, nothing left over",
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

/// N buyers of one product with S in stock, one unit each.
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
    let (_, elapsed) = run(
        orders * retries,
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
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
        },
    )
    .await;
    bar.finish_and_clear();
    let answers = answers.lock().clone();
    let mut bad = Vec::new();
    for (k, outs) in answers.iter().enumerate() {
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
    let charged_once = users
        .iter()
        .zip(setup.iter())
        .all(|(u, (_, total))| balances.get(u) == Some(&(10_000 - total)));
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
            format!("{} wallets", users.len()),
        ),
        ledger,
    ];
    Ok(ctx.summary("double-pay", &recorder, elapsed, orders as u64, checks))
}

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
    let (ran, elapsed) = run(
        jobs,
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
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
        },
    )
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
    let (_, elapsed) = run(
        transactions,
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
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
                        Some(
                            &json!({"items": [{"productId": pids[i % pids.len()], "quantity": 1}]}),
                        ),
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
        },
    )
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
    let (ran, elapsed) = run(
        jobs,
        ctx.concurrency,
        ctx.duration,
        &bar,
        &recorder,
        move |i| {
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
        },
    )
    .await;
    bar.finish_and_clear();
    let users_ids: Vec<i64> = (0..users).map(|k| ctx.user_base + k as i64).collect();
    let (ledger, _) = balances_match_ledgers(ctx, &users_ids).await?;
    Ok(ctx.summary("mixed", &recorder, elapsed, ran as u64, vec![ledger]))
}

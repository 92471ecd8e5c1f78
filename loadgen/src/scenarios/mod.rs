//! The scenarios. Each sets itself up through the admin API, runs, then checks its invariants
//! through the API and returns a [`Summary`].
//!
//! Each scenario has its module; this one holds what they share: the [`Ctx`] they run in, the
//! setup requests, and the wallet check several of them end with.

mod charge_storm;
mod coupon_drop;
mod double_pay;
mod mixed;
mod order_pay;
mod stock_rush;

pub use charge_storm::charge_storm;
pub use coupon_drop::coupon_drop;
pub use double_pay::double_pay;
pub use mixed::{mixed, Mix};
pub use order_pay::order_pay;
pub use stock_rush::stock_rush;

use crate::client::Api;
use crate::run::Pace;
use crate::stats::{check, Check, Recorder, Summary};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What every scenario gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api: Arc<Api>,
    pub concurrency: usize,
    pub requests: Option<usize>,
    pub duration: Option<Duration>,
    /// Open model: arrivals per second (`--rate`).
    pub rate: Option<f64>,
    pub seed: u64,
    pub label: String,
    pub quiet: bool,
    /// The first user id this run uses; users `base..base + n`.
    pub user_base: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `answer` is the status, code and message of the answer, or why none came.
    #[error("setup request {what} failed: {answer}")]
    Refused { what: &'static str, answer: String },
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
                answer: o.describe(),
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

    /// How the scenario's run offers its load.
    fn pace(&self) -> Pace {
        Pace {
            concurrency: self.concurrency,
            duration: self.duration,
            rate: self.rate,
        }
    }

    fn summary(
        &self,
        scenario: &str,
        recorder: &Recorder,
        elapsed: Duration,
        transactions: u64,
        checks: Vec<Check>,
    ) -> Summary {
        let mut summary = Summary::build(
            scenario,
            &self.label,
            self.api.targets(),
            self.concurrency,
            recorder,
            elapsed,
            transactions,
            checks,
        );
        summary.rate = self.rate;
        summary
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

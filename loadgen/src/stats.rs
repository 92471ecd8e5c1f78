//! What a run measured: an HDR latency histogram, counts by status and by error code, the
//! invariant checks, and the summary (printed and written as JSON).

use crate::client::Outcome;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    requests: u64,
    failures: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            inner: Mutex::new(Inner {
                // 1 µs to 10 min, 3 significant digits.
                latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
                statuses: BTreeMap::new(),
                codes: BTreeMap::new(),
                requests: 0,
                failures: 0,
            }),
        }
    }
}

impl Recorder {
    /// Records one request. A 5xx or a missing answer is a failure; a 4xx with an error code
    /// is a business outcome (sold out, insufficient stock…), not a failure.
    pub fn record(&self, o: &Outcome) {
        let mut s = self.inner.lock();
        let us = u64::try_from(o.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = s.latency_us.record(us.min(600_000_000));
        s.requests += 1;
        *s.statuses.entry(o.status.to_string()).or_default() += 1;
        if let Some(code) = &o.code {
            *s.codes.entry(code.clone()).or_default() += 1;
        }
        if o.status == 0 || o.status >= 500 {
            s.failures += 1;
        }
    }

    pub fn requests(&self) -> u64 {
        self.inner.lock().requests
    }

    /// Requests answered with a status starting with `prefix` (`"2"`, `"201"`…).
    pub fn answered(&self, prefix: &str) -> u64 {
        self.inner
            .lock()
            .statuses
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub label: String,
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub requests: u64,
    pub elapsed_secs: f64,
    pub throughput_rps: f64,
    /// Business transactions (e.g. order + payment pairs), where the scenario counts them.
    pub transactions: u64,
    pub transactions_per_sec: f64,
    pub latency_ms: Latency,
    pub statuses: BTreeMap<String, u64>,
    pub codes: BTreeMap<String, u64>,
    pub failures: u64,
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &str,
        label: &str,
        targets: &[String],
        concurrency: usize,
        recorder: &Recorder,
        elapsed: Duration,
        transactions: u64,
        checks: Vec<Check>,
    ) -> Summary {
        let s = recorder.inner.lock();
        let ms = |us: u64| us as f64 / 1_000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ok = checks.iter().all(|c| c.ok);
        Summary {
            scenario: scenario.to_owned(),
            label: label.to_owned(),
            targets: targets.to_vec(),
            concurrency,
            requests: s.requests,
            elapsed_secs: secs,
            throughput_rps: s.requests as f64 / secs,
            transactions,
            transactions_per_sec: transactions as f64 / secs,
            latency_ms: Latency {
                p50: ms(s.latency_us.value_at_quantile(0.50)),
                p90: ms(s.latency_us.value_at_quantile(0.90)),
                p99: ms(s.latency_us.value_at_quantile(0.99)),
                max: ms(s.latency_us.max()),
                mean: s.latency_us.mean() / 1_000.0,
            },
            statuses: s.statuses.clone(),
            codes: s.codes.clone(),
            failures: s.failures,
            checks,
            ok,
        }
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{} ({}) against {}\n",
            self.scenario,
            if self.label.is_empty() {
                "-"
            } else {
                &self.label
            },
            self.targets.join(", ")
        ));
        out.push_str(&format!(
            "  {} requests in {:.2}s at concurrency {}: {:.0} req/s",
            self.requests, self.elapsed_secs, self.concurrency, self.throughput_rps
        ));
        if self.transactions > 0 {
            out.push_str(&format!(
                ", {} transactions ({:.0}/s)",
                self.transactions, self.transactions_per_sec
            ));
        }
        out.push('\n');
        let l = &self.latency_ms;
        out.push_str(&format!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}\n",
            l.p50, l.p90, l.p99, l.max, l.mean
        ));
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.push_str(&format!("  statuses: {}\n", statuses.join(", ")));
        if !self.codes.is_empty() {
            let codes: Vec<String> = self
                .codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!("  outcomes: {}\n", codes.join(", ")));
        }
        out.push_str(&format!(
            "  failures (5xx or no answer): {}\n",
            self.failures
        ));
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                c.detail
            ));
        }
        out
    }
}

pub fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

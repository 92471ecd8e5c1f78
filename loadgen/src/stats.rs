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
    /// The first few failures, described (status, code and message, or the transport error).
    failure_samples: Vec<String>,
    jobs_planned: u64,
    jobs_run: u64,
    dropped: u64,
    late: u64,
}

/// An open-model arrival sent more than this after its scheduled time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// A threshold as a summary reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: String,
    pub measured: f64,
    pub ok: bool,
    pub detail: String,
}

/// How many failures a summary describes.
const FAILURE_SAMPLES: usize = 5;

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
                failure_samples: Vec::new(),
                jobs_planned: 0,
                jobs_run: 0,
                dropped: 0,
                late: 0,
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
            if s.failure_samples.len() < FAILURE_SAMPLES {
                s.failure_samples.push(o.describe());
            }
        }
    }

    /// How many jobs the run had and how many ran (the rest were dropped or never started
    /// before `--duration` ran out).
    pub fn jobs(&self, planned: usize, ran: usize) {
        let mut s = self.inner.lock();
        s.jobs_planned = planned as u64;
        s.jobs_run = ran as u64;
    }

    /// An open-model arrival that found every slot busy and was not sent.
    pub fn dropped(&self) {
        self.inner.lock().dropped += 1;
    }

    /// An open-model arrival sent later than its schedule (by more than the tolerance).
    pub fn late(&self) {
        self.inner.lock().late += 1;
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
    pub p95: f64,
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
    /// The first few failures: status, code and message, or the transport error.
    pub failure_samples: Vec<String>,
    /// Open model: arrivals per second (`--rate`); none for the closed model.
    pub rate: Option<f64>,
    /// Jobs (requests, or transactions of several) the run had, and how many ran.
    pub jobs_planned: u64,
    pub jobs_run: u64,
    /// Open model: arrivals not sent because `--concurrency` requests were in flight.
    pub dropped: u64,
    /// Open model: arrivals sent more than [`LATE_AFTER`] after their schedule.
    pub late: u64,
    pub checks: Vec<Check>,
    pub thresholds: Vec<Verdict>,
    /// No failure, every check held and every threshold was met.
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
        let ok = s.failures == 0 && checks.iter().all(|c| c.ok);
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
                p95: ms(s.latency_us.value_at_quantile(0.95)),
                p99: ms(s.latency_us.value_at_quantile(0.99)),
                max: ms(s.latency_us.max()),
                mean: s.latency_us.mean() / 1_000.0,
            },
            statuses: s.statuses.clone(),
            codes: s.codes.clone(),
            failures: s.failures,
            failure_samples: s.failure_samples.clone(),
            rate: None,
            jobs_planned: s.jobs_planned,
            jobs_run: s.jobs_run,
            dropped: s.dropped,
            late: s.late,
            checks,
            thresholds: Vec::new(),
            ok,
        }
    }

    /// Adds the thresholds' verdicts; the run passes only if each was met.
    pub fn add_verdicts(&mut self, verdicts: Vec<Verdict>) {
        self.ok &= verdicts.iter().all(|v| v.ok);
        self.thresholds = verdicts;
    }

    /// Why the run failed (empty when it passed).
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.failures > 0 {
            out.push(format!("{} failures (5xx or no answer)", self.failures));
        }
        out.extend(
            self.checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("invariant `{}` failed: {}", c.name, c.detail)),
        );
        out.extend(
            self.thresholds
                .iter()
                .filter(|v| !v.ok)
                .map(|v| format!("threshold `{}` not met: {}", v.threshold, v.detail)),
        );
        out
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
            "  latency ms: p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}\n",
            l.p50, l.p90, l.p95, l.p99, l.max, l.mean
        ));
        if let Some(rate) = self.rate {
            out.push_str(&format!(
                "  open model at {rate} arrivals/s: {} sent, {} dropped (no free slot of {}), {} late (> {} ms behind schedule)\n",
                self.jobs_run,
                self.dropped,
                self.concurrency,
                self.late,
                LATE_AFTER.as_millis()
            ));
        }
        let unsent = self
            .jobs_planned
            .saturating_sub(self.jobs_run + self.dropped);
        if unsent > 0 {
            out.push_str(&format!(
                "  stopped by --duration: {unsent} of {} jobs not sent (the checks count only what was sent)\n",
                self.jobs_planned
            ));
        }
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
        for f in &self.failure_samples {
            out.push_str(&format!("    {f}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                c.detail
            ));
        }
        for v in &self.thresholds {
            out.push_str(&format!(
                "  [{}] threshold {}: {}\n",
                if v.ok { "ok" } else { "FAILED" },
                v.threshold,
                v.detail
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A summary of requests given as `(status, latency ms)`, with one check that held.
    pub(crate) fn summary_with(requests: &[(u16, u64)]) -> Summary {
        let r = Recorder::default();
        for (status, ms) in requests {
            r.record(&Outcome {
                status: *status,
                code: None,
                message: None,
                error: None,
                latency: Duration::from_millis(*ms),
                body: serde_json::Value::Null,
                data_text: String::new(),
            });
        }
        Summary::build(
            "test",
            "",
            &[],
            1,
            &r,
            Duration::from_secs(1),
            0,
            vec![check("holds", true, "")],
        )
    }

    #[test]
    fn a_5xx_fails_the_run_even_when_every_check_holds() {
        let fine = summary_with(&[(200, 1), (409, 2)]);
        assert!(fine.ok, "a 4xx is a business outcome");
        let failed = summary_with(&[(200, 1), (503, 2)]);
        assert!(!failed.ok);
        assert_eq!(failed.reasons(), ["1 failures (5xx or no answer)"]);
        assert!(!summary_with(&[(0, 1)]).ok, "no answer is a failure too");
    }

    #[test]
    fn p95_is_in_the_summary_text_and_json() {
        let lat: Vec<(u16, u64)> = (1..=100).map(|ms| (200, ms)).collect();
        let s = summary_with(&lat);
        assert!(
            (s.latency_ms.p95 - 95.0).abs() < 0.1,
            "{}",
            s.latency_ms.p95
        );
        assert!(s.render().contains("p95 95."), "{}", s.render());
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["latency_ms"]["p95"].as_f64().unwrap() > 94.0);
    }

    #[test]
    fn failures_are_described() {
        let r = Recorder::default();
        r.record(&Outcome {
            status: 503,
            code: Some("SERVICE_UNAVAILABLE".into()),
            message: Some("the store did not answer".into()),
            error: None,
            latency: Duration::from_millis(1),
            body: serde_json::Value::Null,
            data_text: String::new(),
        });
        let s = Summary::build("t", "", &[], 1, &r, Duration::from_secs(1), 0, vec![]);
        assert_eq!(
            s.failure_samples,
            ["503 SERVICE_UNAVAILABLE: the store did not answer"]
        );
        assert!(s
            .render()
            .contains("503 SERVICE_UNAVAILABLE: the store did not answer"));
    }
}

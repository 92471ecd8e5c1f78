//! Pass/fail thresholds of a run (`--threshold 'p99<100'`): a metric of the summary, an
//! operator and a limit. A run that misses one exits non-zero and its summary names it.

use crate::stats::{Summary, Verdict};
use std::fmt;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency percentile, or the largest latency, in milliseconds.
    P50,
    P90,
    P95,
    P99,
    Max,
    /// Requests per second over the run.
    Rps,
    /// Failures (5xx or no answer) over requests, a fraction from 0 to 1.
    ErrorRate,
}

impl Metric {
    const ALL: [(&'static str, Metric); 7] = [
        ("p50", Metric::P50),
        ("p90", Metric::P90),
        ("p95", Metric::P95),
        ("p99", Metric::P99),
        ("max", Metric::Max),
        ("rps", Metric::Rps),
        ("error_rate", Metric::ErrorRate),
    ];

    fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    fn is_latency(self) -> bool {
        !matches!(self, Metric::Rps | Metric::ErrorRate)
    }

    /// The metric's value in a summary.
    pub fn of(self, s: &Summary) -> f64 {
        let l = &s.latency_ms;
        match self {
            Metric::P50 => l.p50,
            Metric::P90 => l.p90,
            Metric::P95 => l.p95,
            Metric::P99 => l.p99,
            Metric::Max => l.max,
            Metric::Rps => s.throughput_rps,
            Metric::ErrorRate if s.requests == 0 => 0.0,
            Metric::ErrorRate => s.failures as f64 / s.requests as f64,
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            Metric::Rps => format!("{v:.0} req/s"),
            Metric::ErrorRate => format!("{v:.4} ({:.2}%)", v * 100.0),
            _ => format!("{v:.2} ms"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Op::Lt => measured < limit,
            Op::Le => measured <= limit,
            Op::Gt => measured > limit,
            Op::Ge => measured >= limit,
        }
    }
}

/// One `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    pub limit: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric.name(),
            self.op.symbol(),
            self.limit
        )
    }
}

/// Parses `METRIC OP VALUE`, e.g. `p99<100`, `rps>=5000`, `error_rate<0.01` or `error_rate<1%`
/// (latencies in ms, an optional `ms` suffix allowed). The message is clap's on a bad value.
pub fn parse(expr: &str) -> Result<Threshold, String> {
    let names = Metric::ALL.map(|(n, _)| n).join("|");
    let usage = format!("expected METRIC OP VALUE with METRIC one of {names} and OP one of <, <=, >, >= (e.g. 'p99<100', 'rps>5000', 'error_rate<0.01')");
    let s = expr.trim();
    let at = s
        .find(['<', '>'])
        .ok_or_else(|| format!("`{expr}` has no operator: {usage}"))?;
    let name = s[..at].trim().to_ascii_lowercase();
    let rest = &s[at..];
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else {
        return Err(format!("`{expr}`: {usage}"));
    };
    let metric = Metric::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .ok_or_else(|| format!("unknown metric `{name}` in `{expr}`: {usage}"))?;
    let mut value = value.trim();
    let mut scale = 1.0;
    if metric == Metric::ErrorRate {
        if let Some(v) = value.strip_suffix('%') {
            value = v.trim_end();
            scale = 0.01;
        }
    } else if metric.is_latency() {
        value = value.strip_suffix("ms").map_or(value, str::trim_end);
    }
    let limit = value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| format!("`{value}` in `{expr}` is not a number >= 0: {usage}"))?;
    if metric == Metric::ErrorRate && limit > 1.0 {
        return Err(format!(
            "`{expr}`: error_rate is a fraction from 0 to 1 (or a percentage with %)"
        ));
    }
    Ok(Threshold { metric, op, limit })
}

/// Judges every threshold on `summary` and adds the verdicts to it: the run passes only if
/// each was met.
pub fn judge_all(summary: &mut Summary, thresholds: &[Threshold]) {
    let verdicts = thresholds.iter().map(|t| t.judge(summary)).collect();
    summary.add_verdicts(verdicts);
}

impl Threshold {
    pub fn judge(&self, s: &Summary) -> Verdict {
        let measured = self.metric.of(s);
        let ok = self.op.holds(measured, self.limit);
        Verdict {
            threshold: self.to_string(),
            measured,
            ok,
            detail: format!(
                "{} {} (limit {}{})",
                self.metric.name(),
                self.metric.show(measured),
                self.op.symbol(),
                self.limit
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_metric_and_operator() {
        assert_eq!(
            parse("p99<100").unwrap(),
            Threshold {
                metric: Metric::P99,
                op: Op::Lt,
                limit: 100.0
            }
        );
        assert_eq!(parse(" rps >= 5000 ").unwrap().op, Op::Ge);
        assert_eq!(parse("p95<=12.5ms").unwrap().limit, 12.5);
        assert_eq!(parse("max>0").unwrap().metric, Metric::Max);
        assert_eq!(parse("P50<3").unwrap().metric, Metric::P50);
        assert_eq!(parse("p90<3").unwrap().metric, Metric::P90);
        assert_eq!(parse("error_rate<0.01").unwrap().limit, 0.01);
        assert_eq!(parse("error_rate<1%").unwrap().limit, 0.01);
        assert_eq!(parse("rps>5000").unwrap().to_string(), "rps>5000");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "p99",
            "p98<100",
            "p99<",
            "p99<abc",
            "p99=100",
            "p99<-1",
            "rps>NaN",
            "error_rate<2",
            "error_rate<150%",
            "<100",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains(bad.trim_end_matches('%')) || e.contains("expected"),
                "{bad}: {e}"
            );
        }
        assert!(parse("p98<100")
            .unwrap_err()
            .contains("unknown metric `p98`"));
    }

    #[test]
    fn a_threshold_passes_or_fails_on_the_measured_value() {
        let s = crate::stats::tests::summary_with(&[(200, 10), (200, 20), (503, 30)]);
        let judge = |e: &str| parse(e).unwrap().judge(&s);
        assert!(judge("max<31").ok);
        assert!(!judge("max<29").ok);
        assert!(judge("p50<25").ok);
        assert!(!judge("p99<25").ok);
        let v = judge("error_rate<0.1");
        assert!(!v.ok);
        assert!((v.measured - 1.0 / 3.0).abs() < 1e-9, "{v:?}");
        assert!(v.detail.contains("33.33%"), "{}", v.detail);
        assert!(judge("error_rate<=34%").ok);
        assert!(judge("rps>0").ok);
        assert!(!judge("rps>1000000000").ok);
    }

    #[test]
    fn a_missed_threshold_fails_the_run_and_is_named() {
        let mut s = crate::stats::tests::summary_with(&[(200, 50)]);
        judge_all(
            &mut s,
            &[parse("p99<100").unwrap(), parse("p50<10").unwrap()],
        );
        assert!(!s.ok);
        assert_eq!(s.reasons().len(), 1, "{:?}", s.reasons());
        assert!(s.reasons()[0].contains("p50<10"), "{:?}", s.reasons());
        let text = s.render();
        assert!(text.contains("[ok] threshold p99<100"), "{text}");
        assert!(
            text.contains("[FAILED] threshold p50<10: p50 50."),
            "{text}"
        );
    }
}

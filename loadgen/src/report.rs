//! Results files (one JSON summary per line) turned into markdown tables and SVG plots.

use crate::stats::Summary;
use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("could not read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("could not draw {0}: {1}")]
    Draw(String, String),
}

/// One line of a results file.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub label: String,
    pub concurrency: u64,
    pub rps: f64,
    pub tps: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub ok: bool,
}

pub fn read(path: &Path) -> Result<Vec<Row>, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::Read(path.display().to_string(), e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Row {
            scenario: v["scenario"].as_str().unwrap_or("").to_owned(),
            label: v["label"].as_str().unwrap_or("").to_owned(),
            concurrency: v["concurrency"].as_u64().unwrap_or(0),
            rps: v["throughput_rps"].as_f64().unwrap_or(0.0),
            tps: v["transactions_per_sec"].as_f64().unwrap_or(0.0),
            p50: v["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            p90: v["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
            p95: v["latency_ms"]["p95"].as_f64().unwrap_or(0.0),
            p99: v["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            ok: v["ok"].as_bool().unwrap_or(false),
        })
        .collect())
}

/// Rows of one summary, for appending to a results file.
pub fn line(summary: &Summary) -> String {
    serde_json::to_string(summary).unwrap_or_default()
}

/// A markdown table of the rows, grouped by scenario.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut by: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry(&r.scenario).or_default().push(r);
    }
    for (scenario, rows) in by {
        out.push_str(&format!("\n**{scenario}**\n\n| profile | concurrency | req/s | transactions/s | p50 ms | p90 ms | p95 ms | p99 ms | passed |\n|---|---|---|---|---|---|---|---|---|\n"));
        for r in rows {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                r.label,
                r.concurrency,
                r.rps,
                r.tps,
                r.p50,
                r.p90,
                r.p95,
                r.p99,
                if r.ok { "yes" } else { "**FAILED**" }
            ));
        }
    }
    out
}

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

fn draw_err(name: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Draw(name.to_owned(), e.to_string())
}

/// One figure of a row.
type Measure = fn(&Row) -> f64;

/// What each scenario is plotted by: requests per second, and the p95 and p99 latencies.
const PLOTTED: [(&str, Measure); 3] = [
    ("throughput", |r| r.rps),
    ("p95", |r| r.p95),
    ("p99", |r| r.p99),
];

/// For each scenario: requests per second against concurrency (one line per profile) and the
/// p95 and p99 latencies against concurrency, as SVG files in `dir`. Returns the files written.
pub fn plots(rows: &[Row], dir: &Path) -> Result<Vec<String>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Read(dir.display().to_string(), e))?;
    let mut written = Vec::new();
    let mut by: BTreeMap<&str, BTreeMap<&str, Vec<&Row>>> = BTreeMap::new();
    for r in rows {
        by.entry(&r.scenario)
            .or_default()
            .entry(&r.label)
            .or_default()
            .push(r);
    }
    for (scenario, profiles) in by {
        for (metric, value) in PLOTTED {
            let name = format!("{scenario}-{metric}.svg");
            let path = dir.join(&name);
            let max_x = profiles
                .values()
                .flatten()
                .map(|r| r.concurrency)
                .max()
                .unwrap_or(1) as f64;
            let max_y = profiles
                .values()
                .flatten()
                .map(|r| value(r))
                .fold(0.0, f64::max)
                * 1.15
                + 1e-9;
            let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_err(&name, e))?;
            let by = if scenario.starts_with("lock-contention") {
                "hot keys"
            } else {
                "concurrency"
            };
            let title = if metric == "throughput" {
                format!("{scenario}: requests/s by {by}")
            } else {
                format!("{scenario}: {metric} latency (ms) by {by}")
            };
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d((1f64..max_x * 1.05).log_scale(), 0f64..max_y)
                .map_err(|e| draw_err(&name, e))?;
            let x_desc = if scenario.starts_with("lock-contention") {
                "hot keys"
            } else {
                "concurrent connections"
            };
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(if metric == "throughput" {
                    "requests/s"
                } else {
                    "ms"
                })
                .draw()
                .map_err(|e| draw_err(&name, e))?;
            for (i, (label, rs)) in profiles.iter().enumerate() {
                let mut pts: Vec<(f64, f64)> = rs
                    .iter()
                    .map(|r| (r.concurrency as f64, value(r)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| draw_err(&name, e))?
                    .label(label.to_string())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| draw_err(&name, e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| draw_err(&name, e))?;
            root.present().map_err(|e| draw_err(&name, e))?;
            written.push(name);
        }
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(concurrency: u64, rps: f64, tps: f64) -> Row {
        Row {
            scenario: "coupon-drop".into(),
            label: "memory".into(),
            concurrency,
            rps,
            tps,
            p50: 1.0,
            p90: 2.0,
            p95: 2.5,
            p99: 3.0,
            ok: true,
        }
    }

    #[test]
    fn the_table_has_p95() {
        let table = markdown(&[row(16, 1_000.0, 50.0)]);
        assert!(table.contains("| p90 ms | p95 ms | p99 ms |"), "{table}");
        assert!(table.contains("| 2.00 | 2.50 | 3.00 |"), "{table}");
    }

    #[test]
    fn plots_show_requests_per_second_not_winners() {
        let dir = std::env::temp_dir().join(format!("stockade-plots-{}", std::process::id()));
        // A coupon drop: 1,000 requests/s, of which 50/s won a coupon.
        let rows = [row(16, 1_000.0, 50.0), row(64, 2_000.0, 50.0)];
        let files = plots(&rows, &dir).unwrap();
        assert_eq!(
            files,
            [
                "coupon-drop-throughput.svg",
                "coupon-drop-p95.svg",
                "coupon-drop-p99.svg"
            ]
        );
        let svg = std::fs::read_to_string(dir.join("coupon-drop-throughput.svg")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.contains("requests/s by concurrency"), "{svg}");
        // The y axis reaches the requests, far above the winners' 50/s.
        assert!(svg.contains("\n2000.0\n"), "{svg}");
    }
}

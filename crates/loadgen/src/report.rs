//! Printing results: a table on stdout, and optionally files: JSON lines
//! (one object per run, with its per-second `series`), a CSV of the
//! per-second series, and a CSV with one summary row per run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runner::Mode;
use crate::series::SecondRow;
use crate::stats::Summary;

/// One run's result (one JSON line of `--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub system: String,
    pub op: String,
    pub mode: String,
    /// Arrivals per second: the rate asked for in open loop, the rate
    /// operations were started at in closed loop.
    #[serde(default)]
    pub offered_rps: Option<f64>,
    /// The per-request deadline that defines goodput.
    #[serde(default)]
    pub deadline_ms: Option<f64>,
    /// Unmeasured load before the run.
    #[serde(default)]
    pub warmup_s: Option<f64>,
    #[serde(flatten)]
    pub summary: Summary,
    #[serde(default)]
    pub series: Vec<SecondRow>,
}

impl Row {
    /// The offered rate: as recorded, else from `mode` (`r=500/s`), else the
    /// rate operations were offered at.
    pub fn offered(&self) -> f64 {
        self.offered_rps
            .or_else(|| {
                self.mode
                    .strip_prefix("r=")
                    .and_then(|m| m.strip_suffix("/s"))
                    .and_then(|r| r.parse().ok())
            })
            .unwrap_or_else(|| {
                let answered = self.summary.ok + self.summary.failed;
                answered as f64 / self.summary.seconds.max(1e-9)
            })
    }
}

/// `c=16` (closed loop) or `r=5000/s` (open loop).
pub fn mode_label(mode: Mode) -> String {
    match mode {
        Mode::Closed { workers } => format!("c={workers}"),
        Mode::Open { rate, .. } => format!("r={rate:.0}/s"),
    }
}

/// The table header.
pub fn header() {
    println!(
        "{:<14} {:<8} {:<5} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  errors",
        "label", "op", "mode", "ok", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "failed"
    );
}

/// One table line.
pub fn print(row: &Row) {
    let s = &row.summary;
    println!(
        "{:<14} {:<8} {:<5} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9}  {}",
        row.label,
        row.op,
        row.mode,
        s.ok,
        s.throughput,
        s.p50_ms,
        s.p99_ms,
        s.p999_ms,
        s.max_ms,
        s.failed,
        errors_text(&s.errors, " ")
    );
}

/// After several open-loop runs: offered load against what came back.
pub fn print_sweep(rows: &[Row]) {
    println!();
    println!(
        "{:<14} {:>11} {:>11} {:>11} {:>8} {:>9} {:>9}",
        "sweep", "offered/s", "ok/s", "goodput/s", "errors", "p50 ms", "p99 ms"
    );
    for row in rows {
        let s = &row.summary;
        println!(
            "{:<14} {:>11.0} {:>11.0} {:>11.0} {:>7.2}% {:>9.2} {:>9.2}",
            row.label,
            row.offered(),
            s.throughput,
            s.goodput,
            s.error_rate * 100.0,
            s.p50_ms,
            s.p99_ms
        );
    }
}

fn errors_text(errors: &BTreeMap<String, u64>, separator: &str) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// Appends the row as one JSON line.
pub fn append_json(path: &Path, row: &Row) -> std::io::Result<()> {
    let line = serde_json::to_string(row).map_err(std::io::Error::other)?;
    append(path, None, &[line])
}

/// Reads every run of a JSON-lines file written by `--json` (a JSON array
/// of runs, or a single run, is accepted too).
pub fn read_json(path: &Path) -> std::io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let bad = |e: serde_json::Error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(bad);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(bad))
        .collect()
}

/// Quotes a CSV field if it needs it (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// The header of `--csv` (one row per second of each run).
pub const SERIES_CSV_HEADER: &str = "label,system,op,mode,offered_rps,deadline_ms,second,\
offered,completed,ok,good,failed,p50_ms,p90_ms,p99_ms,max_ms,errors";

/// The `--csv` rows of a run, one per second.
pub fn series_csv_rows(row: &Row) -> Vec<String> {
    let run = format!(
        "{},{},{},{},{:.3},{}",
        csv_field(&row.label),
        csv_field(&row.system),
        csv_field(&row.op),
        csv_field(&row.mode),
        row.offered(),
        opt(row.deadline_ms)
    );
    row.series
        .iter()
        .map(|s| {
            format!(
                "{run},{},{},{},{},{},{},{},{},{},{},{}",
                s.second,
                s.offered,
                s.completed,
                s.ok,
                s.good,
                s.failed,
                opt(s.p50_ms),
                opt(s.p90_ms),
                opt(s.p99_ms),
                opt(s.max_ms),
                csv_field(&errors_text(&s.errors, ";"))
            )
        })
        .collect()
}

/// The header of `--summary-csv` (one row per run).
pub const SUMMARY_CSV_HEADER: &str = "label,system,op,mode,offered_rps,deadline_ms,seconds,\
offered,ok,good,failed,throughput,goodput,error_rate,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,\
send_lag_p99_ms,send_lag_max_ms,errors";

/// The `--summary-csv` row of a run.
pub fn summary_csv_row(row: &Row) -> String {
    let s = &row.summary;
    format!(
        "{},{},{},{},{:.3},{},{:.3},{},{},{},{},{:.3},{:.3},{:.6},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
        csv_field(&row.label),
        csv_field(&row.system),
        csv_field(&row.op),
        csv_field(&row.mode),
        row.offered(),
        opt(row.deadline_ms),
        s.seconds,
        s.offered,
        s.ok,
        s.good,
        s.failed,
        s.throughput,
        s.goodput,
        s.error_rate,
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.p999_ms,
        s.max_ms,
        s.send_lag_p99_ms,
        s.send_lag_max_ms,
        csv_field(&errors_text(&s.errors, ";"))
    )
}

/// Appends the run's per-second rows to a `--csv` file.
pub fn append_series_csv(path: &Path, row: &Row) -> std::io::Result<()> {
    append(path, Some(SERIES_CSV_HEADER), &series_csv_rows(row))
}

/// Appends the run's summary row to a `--summary-csv` file.
pub fn append_summary_csv(path: &Path, row: &Row) -> std::io::Result<()> {
    append(path, Some(SUMMARY_CSV_HEADER), &[summary_csv_row(row)])
}

/// Appends lines, first the header if the file is new or empty.
fn append(path: &Path, header: Option<&str>, lines: &[String]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut out = String::new();
    if let Some(header) = header
        && file.metadata()?.len() == 0
    {
        out.push_str(header);
        out.push('\n');
    }
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    file.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        let mut errors = BTreeMap::new();
        errors.insert("Unavailable".to_string(), 2);
        errors.insert("DeadlineExceeded".to_string(), 1);
        Row {
            label: "limits, on".into(),
            system: "deposit".into(),
            op: "deposit".into(),
            mode: "r=500/s".into(),
            offered_rps: Some(500.0),
            deadline_ms: Some(1000.0),
            warmup_s: Some(1.0),
            summary: Summary {
                ok: 997,
                failed: 3,
                seconds: 2.0,
                throughput: 498.5,
                offered: 1000,
                good: 990,
                goodput: 495.0,
                error_rate: 0.003,
                p50_ms: 2.5,
                p90_ms: 4.0,
                p99_ms: 9.5,
                p999_ms: 20.0,
                max_ms: 31.0,
                send_lag_p99_ms: 0.5,
                send_lag_max_ms: 1.0,
                errors: errors.clone(),
            },
            series: vec![
                SecondRow {
                    second: 0,
                    offered: 500,
                    completed: 498,
                    ok: 498,
                    good: 495,
                    failed: 0,
                    errors: BTreeMap::new(),
                    p50_ms: Some(2.5),
                    p90_ms: Some(4.0),
                    p99_ms: Some(9.0),
                    max_ms: Some(30.0),
                },
                SecondRow {
                    second: 1,
                    offered: 500,
                    completed: 502,
                    ok: 499,
                    good: 495,
                    failed: 3,
                    errors,
                    p50_ms: None,
                    p90_ms: None,
                    p99_ms: None,
                    max_ms: None,
                },
            ],
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn series_rows_one_per_second() {
        let rows = series_csv_rows(&sample());
        assert_eq!(rows.len(), 2);
        let columns = SERIES_CSV_HEADER.split(',').count();
        assert_eq!(
            rows[0],
            "\"limits, on\",deposit,deposit,r=500/s,500.000,1000.000,0,500,498,498,495,0,\
2.500,4.000,9.000,30.000,"
        );
        assert_eq!(
            rows[1],
            "\"limits, on\",deposit,deposit,r=500/s,500.000,1000.000,1,500,502,499,495,3,\
,,,,DeadlineExceeded=1;Unavailable=2"
        );
        // The quoted label holds one comma.
        assert_eq!(rows[1].split(',').count(), columns + 1);
    }

    #[test]
    fn summary_row_matches_its_header() {
        let row = summary_csv_row(&sample());
        assert!(row.starts_with("\"limits, on\",deposit,deposit,r=500/s,500.000,1000.000,2.000,1000,997,990,3,498.500,495.000,0.003000,"));
        assert!(row.ends_with(",DeadlineExceeded=1;Unavailable=2"));
        assert_eq!(
            row.split(',').count(),
            SUMMARY_CSV_HEADER.split(',').count() + 1
        );
    }

    #[test]
    fn json_lines_round_trip_and_old_lines_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        append_json(&path, &sample()).unwrap();
        // A line as loadgen wrote it before series and goodput existed.
        let old = r#"{"label":"storage","system":"storage","op":"put","mode":"c=16","ok":10,"failed":0,"seconds":1.0,"throughput":10.0,"p50_ms":1.0,"p90_ms":1.0,"p99_ms":1.0,"p999_ms":1.0,"max_ms":1.0,"errors":{}}"#;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "{old}").unwrap();
        let rows = read_json(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].series, sample().series);
        assert_eq!(rows[0].summary.good, 990);
        assert_eq!(rows[1].series.len(), 0);
        assert!((rows[1].offered() - 10.0).abs() < 1e-9);
        let legacy = Row {
            offered_rps: None,
            ..sample()
        };
        assert!((legacy.offered() - 500.0).abs() < 1e-9);
    }

    #[test]
    fn csv_files_get_one_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        append_summary_csv(&path, &sample()).unwrap();
        append_summary_csv(&path, &sample()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], SUMMARY_CSV_HEADER);
        let path = dir.path().join("t.csv");
        append_series_csv(&path, &sample()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(SERIES_CSV_HEADER));
    }
}

//! Printing results: a table on stdout, optionally JSON lines in a file.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::runner::Mode;
use crate::stats::Summary;

/// One run's result.
#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub system: String,
    pub op: String,
    pub mode: String,
    #[serde(flatten)]
    pub summary: Summary,
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
    let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
        errors.join(" ")
    );
}

/// Appends the row as one JSON line.
pub fn append_json(path: &Path, row: &Row) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::to_string(row).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")
}

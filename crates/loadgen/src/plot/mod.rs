//! Charts of `--json` results, drawn with plotters to PNG or SVG.
//!
//! - `latency`: one run (or several, end to end) over time: latency
//!   percentiles per second (log scale) above, and per second what was
//!   offered, what succeeded, what was good (within the deadline) and what
//!   failed below.
//! - `goodput`: one or more sweeps against offered load, one colour per
//!   label: throughput (wide, light) and goodput (solid) above, p50 (dashed) and
//!   p99 (solid) latency below.
//!
//! - faults: a chaos run (see the nemesis): operations per second that
//!   happened, failed or may have, under the faults in force, and one lane
//!   per kind of fault.
//!
//! Text is drawn with an embedded font (DejaVu Sans, see
//! `assets/DejaVuSans-LICENSE.txt`), so no system font is needed.

mod faults;
mod panels;
mod style;

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cli::{PlotArgs, PlotKind};
use crate::report::{Row, read_json};

pub use self::faults::{FaultData, FaultSpan};
use self::faults::{fault_lanes_panel, outcomes_panel};
use self::panels::{goodput_panel, latency_panel, rate_panel, sweep_latency_panel};
use self::style::{FAMILY, register_font};

/// Reads the inputs and draws the chart `args` asks for; returns the kind
/// drawn and the file written.
pub fn plot(args: &PlotArgs) -> anyhow::Result<(PlotKind, PathBuf)> {
    let mut rows = Vec::new();
    for input in &args.input {
        rows.extend(read_json(input).with_context(|| format!("reading {}", input.display()))?);
    }
    if rows.is_empty() {
        bail!("no runs in {:?}", args.input);
    }
    let kind = match args.kind {
        PlotKind::Auto if rows.len() > 1 && args.run.is_none() => PlotKind::Goodput,
        PlotKind::Auto => PlotKind::Latency,
        kind => kind,
    };
    let chart = match kind {
        PlotKind::Latency => {
            let chosen =
                match args.run {
                    Some(i) => vec![rows.get(i).cloned().ok_or_else(|| {
                        anyhow!("--run {i}: the inputs hold {} runs", rows.len())
                    })?],
                    None => rows,
                };
            Chart::Latency(Box::new(latency_data(&chosen)?))
        }
        _ => Chart::Goodput(sweep_curves(&rows)),
    };
    let title = args.title.clone().unwrap_or_else(|| default_title(&chart));
    let out = match (&args.out, args.input.first()) {
        (Some(out), _) => out.clone(),
        (None, Some(first)) => default_out(first),
        (None, None) => bail!("no --input"),
    };
    draw_file(&out, (args.width, args.height), &title, &chart)?;
    Ok((kind, out))
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub enum Chart {
    Latency(Box<LatencyData>),
    Goodput(Vec<Curve>),
    /// A chaos run: outcomes per second under the faults in force.
    Faults(Box<FaultData>),
}

fn default_title(chart: &Chart) -> String {
    match chart {
        Chart::Latency(d) => format!("{}: latency over time", d.title),
        Chart::Goodput(curves) => {
            let labels: Vec<&str> = curves.iter().map(|c| c.label.as_str()).collect();
            format!(
                "throughput and goodput vs offered load ({})",
                labels.join(", ")
            )
        }
        Chart::Faults(_) => "operations under faults".into(),
    }
}

/// Draws `chart` to `out`, a `.png` or `.svg` file.
pub fn draw_file(out: &Path, size: (u32, u32), title: &str, chart: &Chart) -> anyhow::Result<()> {
    register_font()?;
    let extension = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, title, chart)?;
            root.present()?;
        }
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, title, chart)?;
            root.present()?;
        }
        _ => bail!("{}: the chart file must end in .png or .svg", out.display()),
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    chart: &Chart,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FAMILY, 22))?;
    let (_, height) = root.dim_in_pixel();
    let (upper, lower) = root.split_vertically((f64::from(height) * 0.58) as u32);
    match chart {
        Chart::Latency(data) => {
            latency_panel(&upper, data)?;
            rate_panel(&lower, data)?;
        }
        Chart::Goodput(curves) => {
            goodput_panel(&upper, curves)?;
            sweep_latency_panel(&lower, curves)?;
        }
        Chart::Faults(data) => {
            outcomes_panel(&upper, data)?;
            fault_lanes_panel(&lower, data)?;
        }
    }
    Ok(())
}

/// Per-second series of one or more runs laid end to end.
#[derive(Debug, Clone, Default)]
pub struct LatencyData {
    pub title: String,
    /// (second, ms) of each percentile.
    pub p50: Vec<(f64, f64)>,
    pub p90: Vec<(f64, f64)>,
    pub p99: Vec<(f64, f64)>,
    pub max: Vec<(f64, f64)>,
    /// (second, per second).
    pub offered: Vec<(f64, f64)>,
    pub ok: Vec<(f64, f64)>,
    pub good: Vec<(f64, f64)>,
    pub failed: Vec<(f64, f64)>,
    /// Where each run starts, with its mode (`r=500/s`).
    pub runs: Vec<(f64, String)>,
    /// The time axis' end.
    pub seconds: f64,
}

/// Lays the runs' per-second series end to end.
pub fn latency_data(rows: &[Row]) -> anyhow::Result<LatencyData> {
    let mut d = LatencyData::default();
    let mut offset = 0.0;
    for row in rows {
        d.runs.push((offset, row.mode.clone()));
        for s in &row.series {
            // Each second's numbers sit at its middle.
            let x = offset + s.second as f64 + 0.5;
            let push = |v: Option<f64>, to: &mut Vec<(f64, f64)>| {
                if let Some(v) = v.filter(|v| *v > 0.0) {
                    to.push((x, v));
                }
            };
            push(s.p50_ms, &mut d.p50);
            push(s.p90_ms, &mut d.p90);
            push(s.p99_ms, &mut d.p99);
            push(s.max_ms, &mut d.max);
            d.offered.push((x, s.offered as f64));
            d.ok.push((x, s.ok as f64));
            d.good.push((x, s.good as f64));
            d.failed.push((x, s.failed as f64));
        }
        offset += (row.series.len() as f64).max(row.summary.seconds.ceil());
    }
    if d.offered.is_empty() {
        bail!("the runs have no per-second series (written by an older loadgen?)");
    }
    d.seconds = offset.max(1.0);
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        let name = format!("{} {}", row.label, row.op);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    d.title = names.join(", ");
    Ok(d)
}

/// One sweep: its label and one point per offered rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<SweepPoint>,
}

/// One run of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    pub offered: f64,
    pub throughput: f64,
    pub goodput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Groups runs by label (in order of first appearance), each by offered load.
pub fn sweep_curves(rows: &[Row]) -> Vec<Curve> {
    let mut curves: Vec<Curve> = Vec::new();
    for row in rows {
        let point = SweepPoint {
            offered: row.offered(),
            throughput: row.summary.throughput,
            goodput: row.summary.goodput,
            p50_ms: row.summary.p50_ms,
            p99_ms: row.summary.p99_ms,
        };
        match curves.iter_mut().find(|c| c.label == row.label) {
            Some(c) => c.points.push(point),
            None => curves.push(Curve {
                label: row.label.clone(),
                points: vec![point],
            }),
        }
    }
    for c in &mut curves {
        c.points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    }
    curves
}

/// The default chart file next to the first input: `runs.jsonl` → `runs.png`.
pub fn default_out(input: &Path) -> PathBuf {
    input.with_extension("png")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::style::{linear_range, log_range};
    use super::*;
    use crate::series::SecondRow;
    use crate::stats::Summary;

    fn run(label: &str, rate: f64, capacity: f64) -> Row {
        let ok = rate.min(capacity);
        let series = (0..3)
            .map(|second| SecondRow {
                second,
                offered: rate as u64,
                completed: rate as u64,
                ok: ok as u64,
                good: (ok * 0.9) as u64,
                failed: (rate - ok) as u64,
                errors: BTreeMap::new(),
                p50_ms: Some(2.0 + second as f64),
                p90_ms: Some(5.0),
                p99_ms: Some(20.0 * rate / capacity),
                max_ms: Some(50.0 * rate / capacity),
            })
            .collect();
        Row {
            label: label.into(),
            system: "deposit".into(),
            op: "deposit".into(),
            mode: format!("r={rate:.0}/s"),
            offered_rps: Some(rate),
            deadline_ms: Some(1000.0),
            warmup_s: Some(1.0),
            summary: Summary {
                ok: (ok * 3.0) as u64,
                failed: ((rate - ok) * 3.0) as u64,
                seconds: 3.0,
                throughput: ok,
                offered: (rate * 3.0) as u64,
                good: (ok * 2.7) as u64,
                goodput: ok * 0.9,
                error_rate: (rate - ok) / rate,
                p50_ms: 2.0,
                p90_ms: 5.0,
                p99_ms: 20.0 * rate / capacity,
                p999_ms: 30.0,
                max_ms: 50.0,
                send_lag_p99_ms: 0.0,
                send_lag_max_ms: 0.0,
                errors: BTreeMap::new(),
            },
            series,
        }
    }

    fn sweeps() -> Vec<Row> {
        let mut rows = Vec::new();
        for rate in [800.0, 200.0, 1400.0, 2000.0] {
            rows.push(run("limits off", rate, 1000.0));
            rows.push(run("limits on", rate, 1200.0));
        }
        rows
    }

    #[test]
    fn curves_group_by_label_and_sort_by_load() {
        let curves = sweep_curves(&sweeps());
        assert_eq!(curves.len(), 2);
        assert_eq!(curves[0].label, "limits off");
        let offered: Vec<f64> = curves[0].points.iter().map(|p| p.offered).collect();
        assert_eq!(offered, vec![200.0, 800.0, 1400.0, 2000.0]);
        assert!((curves[1].points[3].throughput - 1200.0).abs() < 1e-9);
    }

    #[test]
    fn runs_are_laid_end_to_end() {
        let rows = [run("a", 100.0, 1000.0), run("a", 200.0, 1000.0)];
        let d = latency_data(&rows).unwrap();
        assert_eq!(d.runs.len(), 2);
        assert!((d.runs[1].0 - 3.0).abs() < 1e-9);
        assert!((d.seconds - 6.0).abs() < 1e-9);
        assert_eq!(d.p50.len(), 6);
        assert!((d.p50[3].0 - 3.5).abs() < 1e-9);
        assert!((d.offered[4].1 - 200.0).abs() < 1e-9);
    }

    #[test]
    fn ranges_have_room() {
        let r = log_range([2.0, 40.0].into_iter());
        assert!(r.start <= 1.0 && r.end >= 60.0, "{r:?}");
        assert_eq!(log_range(std::iter::empty()), 0.1..1000.0);
        let r = linear_range([0.0, 100.0].into_iter());
        assert!(r.end >= 110.0 - 1e-9);
    }

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 1000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn plots_a_sweep_to_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart::Goodput(sweep_curves(&sweeps()));
        let png = dir.path().join("sweep.png");
        draw_file(&png, (900, 700), "test sweep", &chart).unwrap();
        assert_png(&png);
        let svg = dir.path().join("sweep.svg");
        draw_file(&svg, (900, 700), "test sweep", &chart).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..40]);
        assert!(text.contains("limits on: goodput"));
    }

    #[test]
    fn plots_latency_over_time_from_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("runs.jsonl");
        for row in sweeps().iter().take(3) {
            crate::report::append_json(&input, row).unwrap();
        }
        let out = default_out(&input);
        let args = PlotArgs {
            input: vec![input.clone()],
            out: Some(out.clone()),
            kind: PlotKind::Latency,
            run: None,
            title: None,
            width: 1000,
            height: 700,
        };
        assert_eq!(plot(&args).unwrap(), (PlotKind::Latency, out.clone()));
        assert_png(&out);
        // Several runs and no kind: a goodput chart.
        let args = PlotArgs {
            kind: PlotKind::Auto,
            ..args
        };
        let args = PlotArgs { out: None, ..args };
        assert_eq!(plot(&args).unwrap(), (PlotKind::Goodput, out));
        let bad = PlotArgs {
            out: Some(dir.path().join("chart.gif")),
            ..args
        };
        assert!(plot(&bad).is_err());
    }
}

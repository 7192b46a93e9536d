//! The chart of a chaos run: what the workload saw per second (above),
//! under the faults that were in force, one lane per kind of fault (below).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::*;

/// A fault in force from `from` to `to` (seconds since the run began).
#[derive(Debug, Clone)]
pub struct FaultSpan {
    pub from: f64,
    pub to: f64,
    /// Its kind (`kill leader`), one lane each.
    pub kind: String,
}

/// A chaos run, second by second.
#[derive(Debug, Clone, Default)]
pub struct FaultData {
    /// (second, per second) of operations that happened, certainly did
    /// not, and may have.
    pub ok: Vec<(f64, f64)>,
    pub fail: Vec<(f64, f64)>,
    pub info: Vec<(f64, f64)>,
    pub faults: Vec<FaultSpan>,
    /// The time axis' end.
    pub seconds: f64,
}

impl FaultData {
    /// The kinds of fault, in order of first appearance: the lanes.
    fn lanes(&self) -> Vec<&str> {
        let mut lanes: Vec<&str> = Vec::new();
        for span in &self.faults {
            if !lanes.contains(&span.kind.as_str()) {
                lanes.push(&span.kind);
            }
        }
        lanes
    }
}

fn shade(kind: usize) -> RGBAColor {
    color(kind + 3).mix(0.18)
}

pub(super) fn outcomes_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &FaultData,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let all = d.ok.iter().chain(&d.fail).chain(&d.info);
    let y = linear_range(all.map(|p| p.1 * 1.3));
    let mut chart = chart_on(area, 64).build_cartesian_2d(0.0..d.seconds, y.clone())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&num_label)
        .y_desc("operations per second")
        .y_label_formatter(&num_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    let lanes = d.lanes();
    chart.draw_series(d.faults.iter().map(|f| {
        let lane = lanes.iter().position(|l| *l == f.kind).unwrap_or(0);
        Rectangle::new([(f.from, y.start), (f.to, y.end)], shade(lane).filled())
    }))?;
    let lines = [
        ("ok", &d.ok, color(2)),
        ("fail", &d.fail, color(1)),
        ("info (unknown)", &d.info, color(4)),
    ];
    for (name, points, c) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
            .label(name)
            .legend(legend_line(c));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

pub(super) fn fault_lanes_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &FaultData,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let lanes = d.lanes();
    let count = lanes.len().max(1) as f64;
    let mut chart = chart_on(area, 64).build_cartesian_2d(0.0..d.seconds, 0.0..count)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("seconds (shaded: a fault in force)")
        .x_label_formatter(&num_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    for (i, lane) in lanes.iter().enumerate() {
        let base = count - 1.0 - i as f64;
        chart.draw_series(d.faults.iter().filter(|f| f.kind == *lane).map(|f| {
            Rectangle::new(
                [(f.from, base + 0.15), (f.to, base + 0.85)],
                color(i + 3).filled(),
            )
        }))?;
        chart.draw_series(std::iter::once(Text::new(
            (*lane).to_string(),
            (0.5, base + 0.55),
            (FAMILY, 13),
        )))?;
    }
    Ok(())
}

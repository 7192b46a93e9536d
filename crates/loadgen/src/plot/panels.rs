//! The four panels: latency and rates over time (one run), goodput and
//! latency against offered load (sweeps).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::*;
use super::{Curve, LatencyData};

pub(super) fn latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &LatencyData,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let all = d.p50.iter().chain(&d.p90).chain(&d.p99).chain(&d.max);
    let y = log_range(all.map(|p| p.1));
    let mut chart = chart_on(area, 64).build_cartesian_2d(0.0..d.seconds, y.clone().log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&num_label)
        .y_desc("latency, ms (log)")
        .y_label_formatter(&ms_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    for (x, mode) in &d.runs {
        if d.runs.len() > 1 {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(*x, y.start), (*x, y.end)],
                RGBColor(160, 160, 160).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                mode.clone(),
                (*x + 0.2, y.end / 1.6),
                (FAMILY, 13),
            )))?;
        }
    }
    let lines = [
        ("p50", &d.p50, color(2)),
        ("p90", &d.p90, color(0)),
        ("p99", &d.p99, color(3)),
        ("max", &d.max, color(1)),
    ];
    for (name, points, c) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
            .label(name)
            .legend(legend_line(c));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

pub(super) fn rate_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &LatencyData,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let all = d
        .offered
        .iter()
        .chain(&d.ok)
        .chain(&d.good)
        .chain(&d.failed);
    // Room above the lines for the legend.
    let y = linear_range(all.map(|p| p.1 * 1.4));
    let mut chart = chart_on(area, 64).build_cartesian_2d(0.0..d.seconds, y)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&num_label)
        .y_desc("per second")
        .y_label_formatter(&num_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    // Ok under goodput: where every success is in time they coincide.
    let lines = [
        (
            "offered",
            &d.offered,
            RGBColor(110, 110, 110).stroke_width(2),
        ),
        ("ok", &d.ok, underlay(color(0))),
        (
            "goodput (ok within deadline)",
            &d.good,
            color(2).stroke_width(2),
        ),
        ("failed", &d.failed, color(1).stroke_width(2)),
    ];
    for (name, points, style) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(name)
            .legend(legend_style(style, 20));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

pub(super) fn goodput_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x = linear_range(points().map(|p| p.offered));
    let y = linear_range(points().flat_map(|p| [p.offered, p.throughput, p.goodput]));
    let mut chart = chart_on(area, 70).build_cartesian_2d(x.clone(), y)?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests/s")
        .x_label_formatter(&num_label)
        .y_desc("responses/s")
        .y_label_formatter(&num_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    let grey = RGBColor(170, 170, 170);
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (x.end, x.end)],
            grey.stroke_width(1),
        ))?
        .label("offered = answered")
        .legend(legend_line(grey));
    for (i, curve) in curves.iter().enumerate() {
        let c = color(i);
        let good: Vec<(f64, f64)> = curve
            .points
            .iter()
            .map(|p| (p.offered, p.goodput))
            .collect();
        let thr: Vec<(f64, f64)> = curve
            .points
            .iter()
            .map(|p| (p.offered, p.throughput))
            .collect();
        // Throughput under goodput: they coincide until answers come late.
        chart
            .draw_series(LineSeries::new(thr.iter().copied(), underlay(c)))?
            .label(format!("{}: throughput (ok)", curve.label))
            .legend(legend_style(underlay(c), 20));
        chart
            .draw_series(LineSeries::new(good.iter().copied(), c.stroke_width(2)))?
            .label(format!("{}: goodput (ok within deadline)", curve.label))
            .legend(legend_line(c));
        chart.draw_series(good.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

pub(super) fn sweep_latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x = linear_range(points().map(|p| p.offered));
    let y = log_range(points().flat_map(|p| [p.p50_ms, p.p99_ms]));
    let mut chart = chart_on(area, 70).build_cartesian_2d(x, y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests/s")
        .x_label_formatter(&num_label)
        .y_desc("latency, ms (log)")
        .y_label_formatter(&ms_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    for (i, curve) in curves.iter().enumerate() {
        let c = color(i);
        let p99: Vec<(f64, f64)> = curve
            .points
            .iter()
            .filter(|p| p.p99_ms > 0.0)
            .map(|p| (p.offered, p.p99_ms))
            .collect();
        let p50: Vec<(f64, f64)> = curve
            .points
            .iter()
            .filter(|p| p.p50_ms > 0.0)
            .map(|p| (p.offered, p.p50_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(p99.iter().copied(), c.stroke_width(3)))?
            .label(format!("{}: p99", curve.label))
            .legend(legend_line(c));
        chart.draw_series(p99.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        chart
            .draw_series(DashedLineSeries::new(
                p50.iter().copied(),
                8,
                5,
                c.stroke_width(2),
            ))?
            .label(format!("{}: p50", curve.label))
            .legend(legend_dashed(c));
        chart.draw_series(p50.iter().map(|&p| Circle::new(p, 3, c.stroke_width(1))))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

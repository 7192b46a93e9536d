//! Colours, fonts, axis ranges, labels and legends shared by every panel.

use std::ops::Range;
use std::sync::OnceLock;

use anyhow::bail;

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

pub(super) static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
pub(super) const FAMILY: &str = "sans-serif";

/// Colours of the series (Tableau 10).
pub(super) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Registers the embedded font as the charts' family (once per process).
pub(super) fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        bail!("the embedded font does not load")
    }
}

/// A log-scale range covering the positive values, with some room.
pub(super) fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.1..1000.0;
    }
    let lo = 10f64.powf((lo / 1.5).log10().floor());
    let hi = 10f64.powf((hi * 1.5).log10().ceil());
    lo..hi.max(lo * 10.0)
}

/// A linear range from 0 covering the values, with some room.
pub(super) fn linear_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let hi = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    0.0..(hi * 1.1).max(1.0)
}

/// An axis label: whole numbers without decimals.
pub(super) fn num_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').to_string()
    }
}

pub(super) fn ms_label(v: &f64) -> String {
    if *v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

pub(super) fn legend_line(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    legend_style(c.stroke_width(2), 20)
}

pub(super) fn legend_dashed(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    legend_style(c.stroke_width(2), 8)
}

pub(super) fn legend_style(
    style: ShapeStyle,
    len: i32,
) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style)
}

/// A wide, light line, for a series another one is often drawn over.
pub(super) fn underlay(c: RGBColor) -> ShapeStyle {
    c.mix(0.45).stroke_width(5)
}

/// A chart builder with the margins every panel uses; `y_labels` is the
/// width left for the y axis' labels.
pub(super) fn chart_on<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    y_labels: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(y_labels);
    builder
}

/// The legend box every panel draws, in its corner.
pub(super) fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()?;
    Ok(())
}

//! The SVG chart of a run, drawn with `plotters` (SVG backend, no font
//! files: text is emitted as SVG `<text>` and laid out by the viewer).
//!
//! Three panels: per-phase medians stacked per mote configuration; the
//! distribution of guest entry → ready per mote configuration; the
//! distribution of host start → ready line (mote) or start → QEMU exit
//! (null guest, other kernels) per configuration. Distributions are strip
//! plots (every counted boot a dot) over the IQR box and the median.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

use super::configuration::Guest;
use super::results::{BenchRun, Figure};
use crate::measure::stats;

const WIDTH: u32 = 1100;
const ROW_HEIGHT: u32 = 34;
const PANEL_EXTRA: u32 = 110;
const LABEL_AREA: u32 = 190;

/// One row of a distribution panel.
struct Strip {
    name: String,
    /// Milliseconds or microseconds, as the panel's axis says.
    values: Vec<f64>,
}

pub(crate) fn render_svg(run: &BenchRun) -> Result<String> {
    let motes: Vec<String> = run
        .mote_configurations()
        .map(|configuration| configuration.name.clone())
        .collect();
    let guest_strips: Vec<Strip> = motes
        .iter()
        .map(|name| Strip {
            name: name.clone(),
            values: run.values(name, &Figure::EntryToReady),
        })
        .collect();
    let host_strips: Vec<Strip> = run
        .configurations
        .iter()
        .map(|record| {
            let configuration = &record.configuration;
            let figure = match configuration.guest {
                Guest::Mote => Figure::ReadyLine,
                Guest::Null | Guest::External { .. } => Figure::Exit,
            };
            Strip {
                name: configuration.name.clone(),
                values: run
                    .values(&configuration.name, &figure)
                    .into_iter()
                    .map(|us| us / 1000.0)
                    .collect(),
            }
        })
        .collect();

    let panel_height = |rows: usize| rows.max(1) as u32 * ROW_HEIGHT + PANEL_EXTRA;
    let phase_count = motes.first().map_or(0, |name| {
        run.series(name)
            .iter()
            .filter(|series| series.figure.is_top_level_phase())
            .count()
    });
    let heights = [
        // Room for the legend: one line per phase.
        panel_height(motes.len()).max(phase_count as u32 * 16 + PANEL_EXTRA),
        panel_height(guest_strips.len()),
        panel_height(host_strips.len()),
    ];
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, heights.iter().sum())).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (stacked, rest) = root.split_vertically(heights[0]);
        let (guest, host) = rest.split_vertically(heights[1]);
        draw_stacked_phases(&stacked, run, &motes)?;
        draw_strips(
            &guest,
            "guest: entry -> ready (us), every counted boot; box = IQR, bar = median",
            "us",
            &guest_strips,
        )?;
        draw_strips(
            &host,
            "host: QEMU start -> ready line (mote) / QEMU exit (null guest, other kernels) (ms)",
            "ms",
            &host_strips,
        )?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {error}")
}

type Area<'backend> = DrawingArea<SVGBackend<'backend>, Shift>;

type RowChart<'area, 'backend> = ChartContext<
    'area,
    SVGBackend<'backend>,
    Cartesian2d<RangedCoordf64, SegmentedCoord<RangedCoordusize>>,
>;

/// A panel with one row per name, the first on top, over an x axis from 0
/// to `x_max` in `unit`.
fn row_chart<'area, 'backend>(
    area: &'area Area<'backend>,
    caption: &str,
    unit: &str,
    names: &[String],
    x_max: f64,
) -> Result<RowChart<'area, 'backend>> {
    let rows = names.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(LABEL_AREA)
        .build_cartesian_2d(0.0..x_max, (0..rows - 1).into_segmented())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(index) => {
                names.get(rows - 1 - *index).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .x_desc(unit)
        .x_label_formatter(&|value| format!("{value:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

fn draw_stacked_phases(area: &Area<'_>, run: &BenchRun, motes: &[String]) -> Result<()> {
    // Top-level phases in the order the first configuration traced them.
    let mut phases: Vec<Figure> = Vec::new();
    for name in motes {
        for series in run.series(name) {
            if series.figure.is_top_level_phase() && !phases.contains(&series.figure) {
                phases.push(series.figure);
            }
        }
    }
    let medians: Vec<Vec<f64>> = motes
        .iter()
        .map(|name| {
            phases
                .iter()
                .map(|phase| run.median(name, phase).unwrap_or(0.0))
                .collect()
        })
        .collect();
    let longest = medians
        .iter()
        .map(|row| row.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0);
    let rows = motes.len().max(1);
    let mut chart = row_chart(
        area,
        "median time per top-level boot phase (tslog, us), stacked: entry -> ready",
        "us",
        motes,
        longest * 1.3,
    )?;
    for (phase_index, phase) in phases.iter().enumerate() {
        let colour = Palette99::pick(phase_index).to_rgba();
        let bars: Vec<Rectangle<(f64, SegmentValue<usize>)>> = medians
            .iter()
            .enumerate()
            .map(|(index, row_medians)| {
                let row = rows - 1 - index;
                let start: f64 = row_medians[..phase_index].iter().sum();
                let end = start + row_medians[phase_index];
                let mut bar = Rectangle::new(
                    [
                        (start, SegmentValue::Exact(row)),
                        (end, SegmentValue::Exact(row + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                bar
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(phase.label().trim().to_owned())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn draw_strips(area: &Area<'_>, caption: &str, unit: &str, strips: &[Strip]) -> Result<()> {
    let rows = strips.len().max(1);
    let largest = strips
        .iter()
        .flat_map(|strip| strip.values.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-3);
    let names: Vec<String> = strips.iter().map(|strip| strip.name.clone()).collect();
    let mut chart = row_chart(area, caption, unit, &names, largest * 1.05)?;
    for (index, strip) in strips.iter().enumerate() {
        let Some(summary) = stats::summarize(&strip.values) else {
            continue;
        };
        let row = rows - 1 - index;
        let colour = Palette99::pick(index).to_rgba();
        let mut iqr_box = Rectangle::new(
            [
                (summary.q1, SegmentValue::Exact(row)),
                (summary.q3, SegmentValue::Exact(row + 1)),
            ],
            colour.mix(0.25).filled(),
        );
        iqr_box.set_margin(4, 4, 0, 0);
        chart.draw_series([iqr_box]).map_err(plot_error)?;
        chart
            .draw_series([PathElement::new(
                vec![
                    (summary.median, SegmentValue::Exact(row)),
                    (summary.median, SegmentValue::Exact(row + 1)),
                ],
                BLACK.stroke_width(2),
            )])
            .map_err(plot_error)?;
        // Deterministic vertical jitter so equal values stay visible.
        chart
            .draw_series(strip.values.iter().enumerate().map(|(index, &value)| {
                let jitter = (index * 7 % 13) as i32 - 6;
                EmptyElement::at((value, SegmentValue::CenterOf(row)))
                    + Circle::new((0, jitter), 3, colour.filled())
            }))
            .map_err(plot_error)?;
    }
    Ok(())
}

//! The SVG chart of a `bench --http` run (plotters' SVG backend, as
//! `chart.rs`): requests per second and p99 latency at each step of the
//! ladder, one line per configuration.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::http::HttpRun;

const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 360;

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {error}")
}

/// One configuration's figure at each step (`None`: wrk gave none).
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

pub(crate) fn render_http_svg(run: &HttpRun) -> Result<String> {
    let ladder: Vec<usize> = run
        .configurations
        .first()
        .map(|configuration| {
            configuration
                .steps
                .iter()
                .map(|step| step.connections)
                .collect()
        })
        .unwrap_or_default();
    let series = |figure: fn(&super::wrk::WrkReport) -> Option<f64>| -> Vec<Series> {
        run.configurations
            .iter()
            .map(|configuration| Series {
                name: configuration.name.clone(),
                values: configuration
                    .steps
                    .iter()
                    .map(|step| step.wrk.as_ref().ok().and_then(figure))
                    .collect(),
            })
            .collect()
    };
    let throughput = series(|report| Some(report.requests_per_second));
    let p99 = series(|report| report.p99_us.map(|us| us / 1e3));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * 2)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let panels = root.split_evenly((2, 1));
        draw_panel(
            &panels[0],
            &format!("GET {}: requests per second", run.path),
            "req/s",
            &ladder,
            &throughput,
        )?;
        draw_panel(
            &panels[1],
            &format!("GET {}: p99 latency", run.path),
            "ms",
            &ladder,
            &p99,
        )?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    ladder: &[usize],
    series: &[Series],
) -> Result<()> {
    let steps = ladder.len().max(1);
    let y_max = series
        .iter()
        .flat_map(|series| series.values.iter().flatten())
        .fold(0.0_f64, |max, &value| max.max(value))
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..steps - 1, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_labels(steps)
        .x_label_formatter(&|index| {
            ladder
                .get(*index)
                .map(|connections| format!("{connections} connections"))
                .unwrap_or_default()
        })
        .y_desc(unit)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    for (index, one) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let points: Vec<(usize, f64)> = one
            .values
            .iter()
            .enumerate()
            .filter_map(|(step, value)| value.map(|value| (step, value)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(one.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_configuration_and_both_panels() {
        let svg = render_http_svg(&super::super::http::sample_run()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("mote-qemu-tcg-http"));
        assert!(svg.contains("requests per second"));
        assert!(svg.contains("p99 latency"));
        assert!(svg.contains("1000 connections"));
    }
}

//! The SVG plot of a run (`loadtest bwe --plot FILE.svg`): per second of scenario time, the line's
//! capacity, the media the county received and what the relay offered the line (kbit/s, left axis),
//! and the 95th percentile queueing delay (ms, right axis).

use std::path::Path;

use plotters::prelude::*;

use super::analysis::BweReport;

/// Draws `report` into an SVG file at `path`.
pub fn svg(report: &BweReport, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(report: &BweReport, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let series = &report.series;
    let top_kbps = series
        .iter()
        .flat_map(|p| {
            [
                p.capacity_kbps.unwrap_or(0.0),
                p.received_kbps,
                p.offered_kbps,
            ]
        })
        .fold(0.0, f64::max)
        .max(100.0)
        * 1.15;
    let top_ms = series
        .iter()
        .filter_map(|p| p.queue_delay_p95_ms)
        .fold(0.0, f64::max)
        .max(100.0)
        * 1.15;
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("loadtest bwe --scenario {}", report.scenario),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..report.duration_s, 0.0..top_kbps)?
        .set_secondary_coord(0.0..report.duration_s, 0.0..top_ms);
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_desc("scenario time, s")
        .y_desc("kbit/s")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("queueing delay p95, ms")
        .draw()?;
    // The capacity as steps: each second's value from its start to its end.
    let capacity = series.iter().flat_map(|p| {
        let c = p.capacity_kbps.unwrap_or(0.0);
        [(p.t_s - 1.0, c), (p.t_s, c)]
    });
    chart
        .draw_series(LineSeries::new(capacity, BLACK.stroke_width(2)))?
        .label("capacity")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|p| (p.t_s, p.offered_kbps)),
            grey,
        ))?
        .label("offered to the line (all packets)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], grey));
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|p| (p.t_s, p.received_kbps)),
            BLUE.stroke_width(2),
        ))?
        .label("received media")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE));
    chart
        .draw_secondary_series(LineSeries::new(
            series
                .iter()
                .filter_map(|p| Some((p.t_s, p.queue_delay_p95_ms?))),
            RED,
        ))?
        .label("queueing delay p95 (right)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

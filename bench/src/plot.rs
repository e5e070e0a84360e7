//! The window sweep plot: throughput and p99 latency against the window,
//! one line per measured system (SVG, drawn with `plotters`).

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

/// One system's points: (window, req/s, p99 µs).
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(usize, f64, f64)>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

pub fn draw(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(plot_err)?;
    let (top, bottom) = root.split_vertically(450);

    let windows = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let max_window = windows.clone().max().unwrap_or(1).max(2) as f64;
    let x_range = (1.0..max_window * 1.2).log_scale();
    let max_rate = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1 / 1000.0))
        .fold(1.0_f64, f64::max);
    let p99s = series.iter().flat_map(|s| s.points.iter().map(|p| p.2));
    let (min_p99, max_p99) = p99s.fold((f64::MAX, 1.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min_p99 = if min_p99 == f64::MAX { 1.0 } else { min_p99 };

    let mut chart = ChartBuilder::on(&top)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), 0.0..max_rate * 1.1)
        .map_err(plot_err)?;
    draw_lines(&mut chart, series, "throughput (k req/s)", |p| p.1 / 1000.0)?;

    let mut chart = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            x_range,
            (min_p99 * 0.8..max_p99 * 1.25)
                .log_scale()
                .with_key_points(one_two_five(min_p99 * 0.8, max_p99 * 1.25)),
        )
        .map_err(plot_err)?;
    draw_lines(&mut chart, series, "p99 latency (µs, log scale)", |p| p.2)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Draws the mesh, one line with points per series (y from `y_of`) and
/// the legend.
fn draw_lines<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<LogCoord<f64>, Y>>,
    series: &[Series],
    y_desc: &str,
    y_of: impl Fn(&(usize, f64, f64)) -> f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("requests in flight per client (window)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 as f64, y_of(p))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// 1, 2, 5, 10, 20, 50… within `lo..hi`: labels for a log axis.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut points = Vec::new();
    let mut decade = 10f64.powf(lo.max(1e-9).log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                points.push(v);
            }
        }
        decade *= 10.0;
    }
    points
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

//! `--plot FILE`: throughput and p99 latency against the window, measured
//! by `lhcluster bench`'s sweep (or read back from its JSON) and drawn.

use std::path::Path;
use std::process::ExitCode;

use lhcluster_cli::bench::report::{Report, human_bytes};
use lhcluster_cli::bench::{self, Args};

use crate::plot;

/// Measures every window, draws the plot into `path`, prints the sweep's
/// JSON with `--json`.
pub fn run(args: &Args, windows: &[usize], path: &Path) -> anyhow::Result<ExitCode> {
    let reports = bench::sweep(args, windows)?;
    plot::draw(path, &title(args), &series(&reports))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!("plot written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws the plot into `path` from the JSON of an earlier sweep.
pub fn replot(args: &Args, json: &Path, path: &Path) -> anyhow::Result<ExitCode> {
    plot::draw(path, &title(args), &series_from_json(json)?)?;
    println!("plot written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// One series per system, one point per window.
fn series(reports: &[Report]) -> Vec<plot::Series> {
    let mut series: Vec<plot::Series> = Vec::new();
    for report in reports {
        for s in &report.systems {
            let point = (
                report.config.window,
                s.median.req_per_s,
                s.median.latency_us.p99,
            );
            push_point(&mut series, &s.name, point);
        }
    }
    series
}

/// The plot's series from the JSON of an earlier sweep.
fn series_from_json(path: &Path) -> anyhow::Result<Vec<plot::Series>> {
    let text = std::fs::read_to_string(path)?;
    let reports: serde_json::Value = serde_json::from_str(&text)?;
    let mut series: Vec<plot::Series> = Vec::new();
    for report in reports.as_array().into_iter().flatten() {
        let window = report["config"]["window"].as_u64().unwrap_or(0) as usize;
        for s in report["systems"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or("?");
            let point = (
                window,
                s["median"]["req_per_s"].as_f64().unwrap_or(0.0),
                s["median"]["latency_us"]["p99"].as_f64().unwrap_or(0.0),
            );
            push_point(&mut series, name, point);
        }
    }
    anyhow::ensure!(!series.is_empty(), "no sweep results in {}", path.display());
    Ok(series)
}

/// Adds `point` to the series labelled `label` (a new one if none is).
fn push_point(series: &mut Vec<plot::Series>, label: &str, point: (usize, f64, f64)) {
    match series.iter_mut().find(|x| x.label == label) {
        Some(x) => x.points.push(point),
        None => series.push(plot::Series {
            label: label.to_owned(),
            points: vec![point],
        }),
    }
}

fn title(args: &Args) -> String {
    format!(
        "{} {} over {}, {} client(s), {} worker(s) × capacity {}",
        human_bytes(args.size),
        args.mode(),
        args.transport.name(),
        args.clients.max(1),
        args.workers.max(1),
        args.capacity.max(1)
    )
}

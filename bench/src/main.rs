//! `lhcluster-bench`: the benchmark lab (unpublished). It takes every flag
//! of `lhcluster bench`, measures with the same load generator (the
//! `lhcluster-cli` library), and adds what an operator tool does not need:
//! `--plot` (a window sweep drawn as SVG, with `plotters`) and `--pending`
//! (the broker's memory per queued request). The criterion benches of the
//! codec and the broker state machine are in `benches/`. See
//! docs/benchmarks.md.

// A binary: `pub` marks what a module offers the rest of the crate.
#![allow(unreachable_pub)]

mod pending;
mod plot;
mod sweep;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lhcluster_cli::bench;

/// The benchmark lab: `lhcluster bench`, plus window sweeps with plots and
/// the broker's memory per pending request.
#[derive(Debug, Parser)]
#[command(name = "lhcluster-bench", version)]
struct Cli {
    #[command(flatten)]
    load: bench::Args,
    /// Instead: fill an in-process broker with N pending requests (no
    /// workers) and report its memory per pending request.
    #[arg(long, value_name = "N", conflicts_with = "plot")]
    pending: Option<u64>,
    /// Instead: sweep the window (--windows) and draw throughput and p99
    /// latency against it into this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// With --plot: draw from the JSON of an earlier sweep (`--plot FILE
    /// --json` output) instead of measuring again.
    #[arg(long, value_name = "JSON", requires = "plot")]
    replot: Option<PathBuf>,
    /// Windows of the --plot sweep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256"
    )]
    windows: Vec<usize>,
}

const EXAMPLES: &str = "Examples:
  lhcluster-bench --baseline                        # what `lhcluster bench --baseline` does
  lhcluster-bench --pending 1000000                 # broker memory per queued request
  lhcluster-bench --baseline --plot docs/bench-window.svg --json > sweep.json
  lhcluster-bench --plot docs/bench-window.svg --replot sweep.json";

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // The flattened arguments bring `lhcluster bench`'s examples: show ours.
    let matches = Cli::command().after_help(EXAMPLES).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging();
    let result = run(cli);
    // Let what the roles queued leave before the process exits.
    lhcluster::terminate_context(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lhcluster-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match (cli.pending, &cli.plot, &cli.replot) {
        (_, Some(path), Some(json)) => sweep::replot(&cli.load, json, path),
        (Some(n), _, _) => {
            bench::prepare(&cli.load)?;
            pending::report(&cli.load, n)
        }
        (None, Some(path), None) => {
            bench::prepare(&cli.load)?;
            sweep::run(&cli.load, &cli.windows, path)
        }
        (None, None, _) => bench::run(cli.load),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

//! `lhcluster stats`: a live snapshot from a running broker.

use std::process::ExitCode;
use std::time::Duration;

use crate::common::parse_duration;

/// Query a running broker's statistics over the protocol.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  lhcluster stats --broker tcp://127.0.0.1:5555 --json")]
pub struct Args {
    /// The broker's frontend endpoint.
    #[arg(long)]
    broker: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stats = lhcluster::broker::query_stats(&args.broker, args.timeout)?;
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{stats}");
    println!(
        "{:>12} {:>10} {:>10} {:>8} {:>12} {:>12}",
        "type", "pending", "in_flight", "workers", "received", "completed"
    );
    for (t, s) in &stats.types {
        println!(
            "{t:>12} {:>10} {:>10} {:>8} {:>12} {:>12}",
            s.pending, s.in_flight, s.workers, s.received, s.completed
        );
    }
    Ok(ExitCode::SUCCESS)
}

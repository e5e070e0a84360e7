//! `lhcluster stats`: a live snapshot from a running broker.

use std::process::ExitCode;
use std::time::Duration;

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{diagnose, parse_duration, short_duration};

/// Query a running broker's statistics over the protocol.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  lhcluster stats --broker tcp://127.0.0.1:5555 --json")]
pub struct Args {
    /// The broker's frontend endpoint.
    #[arg(
        long,
        visible_alias = "to",
        env = "LHCLUSTER_BROKER",
        value_name = "ENDPOINT"
    )]
    broker: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
    /// How long to wait for a connection to the broker; past it:
    /// `cannot reach the broker at …`.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    connect_timeout: Duration,
    #[command(flatten)]
    keys: ConnectKeyFlags,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (server, own) = args.keys.read()?;
    let stats = match lhcluster::broker::query_stats_with_keys(
        &args.broker,
        args.connect_timeout,
        args.timeout,
        server.as_ref(),
        own.as_ref(),
    ) {
        Ok(stats) => stats,
        Err(e @ lhcluster::Error::Unreachable { .. }) => {
            anyhow::bail!(diagnose("broker", &args.broker, zmq::DEALER, e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{stats}");
    // A type is shown `name (id)` when a worker named it (protocol 1.6).
    let labels: Vec<String> = (stats.types.iter())
        .map(|(t, s)| match &s.name {
            Some(name) => format!("{name} ({t})"),
            None => t.to_string(),
        })
        .collect();
    let w = labels.iter().map(String::len).max().unwrap_or(0).max(12);
    println!(
        "{:>w$} {:>10} {:>10} {:>8} {:>12} {:>12} {:>17} {:>17} {:>17}",
        "type",
        "pending",
        "in_flight",
        "workers",
        "received",
        "completed",
        "wait p50/p99",
        "service p50/p99",
        "e2e p50/p99"
    );
    for (label, s) in labels.iter().zip(stats.types.values()) {
        println!(
            "{label:>w$} {:>10} {:>10} {:>8} {:>12} {:>12} {:>17} {:>17} {:>17}",
            s.pending,
            s.in_flight,
            s.workers,
            s.received,
            s.completed,
            p50_p99(&s.queue_wait),
            p50_p99(&s.service),
            p50_p99(&s.end_to_end)
        );
    }
    if let Some(c) = &stats.cluster {
        print_cluster(c);
    }
    Ok(ExitCode::SUCCESS)
}

/// A latency's p50 and p99 as `p50/p99`, estimated from the broker's
/// buckets (within a factor of two); `-` without samples.
fn p50_p99(h: &lhcluster::LatencyHistogram) -> String {
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!("{}/{}", short_duration(p50), short_duration(p99)),
        _ => "-".to_owned(),
    }
}

/// A clustered broker's routes: one line per peer, with what it serves.
fn print_cluster(c: &lhcluster::ClusterStats) {
    let name = c
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    println!(
        "cluster: this broker {}{name}; forwarded out={} in={}, executed out={} in={}, \
         relayed={} owner_lost={} peer_losses={} malformed={}",
        c.id,
        c.forwarded_out,
        c.forwarded_in,
        c.executed_out,
        c.executed_in,
        c.relayed,
        c.owner_lost,
        c.peer_losses,
        c.malformed
    );
    println!(
        "{:>18} {:>9} {:>24} {:>10} {:>10}  serves (type: capacity/free/pending)",
        "peer", "state", "endpoint", "fwd_to", "exec_to"
    );
    for p in &c.peers {
        let peer = p
            .name
            .clone()
            .or_else(|| p.id.clone())
            .unwrap_or_else(|| "-".to_owned());
        let serves: Vec<String> = p
            .serves
            .iter()
            .map(|(t, s)| format!("{t}: {}/{}/{}", s.capacity, s.free, s.pending))
            .collect();
        println!(
            "{peer:>18} {:>9} {:>24} {:>10} {:>10}  {}",
            p.state,
            p.endpoint.as_deref().unwrap_or("-"),
            p.forwarded_to,
            p.executed_to,
            serves.join(", ")
        );
    }
}

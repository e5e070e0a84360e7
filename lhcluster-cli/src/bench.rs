//! The load generator behind `lhcluster bench` (see docs/benchmarks.md),
//! shared with the benchmark lab (`bench/`, the unpublished
//! `lhcluster-bench`), which adds the window sweep plot and the broker's
//! memory per pending request.
//!
//! Starts (in-process, or against an external broker's endpoints) a broker,
//! optionally a client proxy, W echo workers of capacity C and K client
//! threads that each keep a window of requests in flight; reports
//! throughput, latency percentiles, CPU time per request and peak memory.
//! `--baseline` measures plain ZeroMQ in the same run and prints
//! lhcluster's ratios to it.

pub mod cluster;
pub mod lhc;
pub mod load;
pub mod report;
pub mod sys;
pub mod transport;
pub mod zmq_baseline;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use lhcluster::Flags;
use serde::Serialize;

use crate::parse_duration;
use cluster::Placement;
use load::{LoadSpec, RunResult};
use report::{Config, Ratios, Report, SystemReport};
use transport::Transport;
use zmq_baseline::Topology;

/// A system `lhcluster bench` can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    Direct,
    #[value(name = "3hop")]
    ThreeHop,
    Lhcluster,
    /// lhcluster with CURVE on every socket (`--curve`).
    #[value(name = "lhcluster-curve")]
    LhclusterCurve,
}

/// A receipt a request asks for.
#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Receipt {
    Sent,
    Received,
}

/// Measure throughput, latency, CPU and memory of a broker under load.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  lhcluster bench --baseline                        # 64 B two-way, tcp, window 64
  lhcluster bench --baseline --window 1             # round-trip latency
  lhcluster bench --baseline --size 64KiB --window 8
  lhcluster bench --proxy --baseline
  lhcluster bench --curve --size 64KiB              # CURVE on every hop against plaintext
  lhcluster bench --baseline --brokers 2 --placement split   # every request crosses
  lhcluster bench --frontend tcp://10.0.0.5:5555 --backend tcp://10.0.0.5:5556")]
pub struct Args {
    /// Transport of the in-process broker (and of the baselines).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Frontend of an external broker to load (with --backend) instead of
    /// starting one in-process; workers and clients still run here.
    #[arg(long, requires = "backend")]
    pub frontend: Option<String>,
    /// Backend of the external broker.
    #[arg(long, requires = "frontend")]
    pub backend: Option<String>,
    /// Put a client proxy between the clients and the broker.
    #[arg(long)]
    pub proxy: bool,
    /// Start an in-process cluster of this many brokers (a full mesh over
    /// the --transport) instead of one broker.
    #[arg(long, default_value_t = 1, conflicts_with_all = ["frontend", "proxy"])]
    pub brokers: usize,
    /// Where clients and workers connect in a cluster: `split` (clients on
    /// the first broker, workers on the last: every request crosses),
    /// `same` (both on the first broker), `spread` (client i and worker i
    /// on broker i mod N).
    #[arg(long, value_enum, default_value_t = Placement::Split)]
    pub placement: Placement,
    /// Each client names its own request ids (a range of its own) instead
    /// of letting its client pick ids its broker owns (docs/clustering.md
    /// §9): in a cluster, ids another broker owns cross to it and back.
    #[arg(long)]
    pub own_ids: bool,
    /// Echo workers.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Capacity of each worker (requests it runs at once, on as many
    /// handler threads). The default takes the default window of one
    /// client: the broker forwards at once, as the baselines do.
    #[arg(long, default_value_t = 64)]
    pub capacity: u32,
    /// Requests each worker may be handed beyond its capacity, held in
    /// order until a handler is free (`WorkerConfig::prefetch`).
    #[arg(long, default_value_t = 0)]
    pub prefetch: u32,
    /// Run the echo handlers inline, on each worker's I/O thread
    /// (`WorkerConfig::inline`), instead of on a pool of `capacity`
    /// handler threads.
    #[arg(long)]
    pub inline: bool,
    /// Each client thread drives its own `LocalClient` (socket I/O on that
    /// thread, no client driver thread) instead of using a `Client`.
    /// Two-way requests, or one-way with a receipt.
    #[arg(long)]
    pub local_client: bool,
    /// Client threads, each with its own client (connection).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Payload bytes per request, at least 16 (a timestamp and the client
    /// index travel in it). Suffixes: k/KiB (1024), M/MiB.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Measured interval of each run.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Measure this many requests (over all clients) instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Warm-up before each measured interval (not counted).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Repeat every measurement this many times (interleaving the systems)
    /// and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// One-way requests. Without a receipt, latency is client → handler,
    /// and the window counts requests not yet at a worker.
    #[arg(long)]
    pub one_way: bool,
    /// Ask for a receipt (repeatable); a one-way request then completes
    /// at its receipt.
    #[arg(long, value_enum)]
    pub receipt: Vec<Receipt>,
    /// Request types each worker registers; requests cycle over them.
    #[arg(long, default_value_t = 1)]
    pub types: u32,
    /// Extra registered workers that serve other types and never get work.
    #[arg(long, default_value_t = 0)]
    pub idle_workers: usize,
    /// Also measure plain ZeroMQ in the same run (direct DEALER↔ROUTER
    /// echo, and client → forwarding thread → worker echo), with the same
    /// transport, payload and window, and print lhcluster's ratios.
    #[arg(long)]
    pub baseline: bool,
    /// Which systems to measure (overrides --baseline): any of `direct`,
    /// `3hop`, `lhcluster`, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub systems: Vec<System>,
    /// Also measure lhcluster with CURVE on every socket (broker, proxy,
    /// workers, clients; members of a cluster share a key pair) in the same
    /// run, and print its ratios to plaintext lhcluster (docs/security.md).
    #[arg(long, conflicts_with = "frontend")]
    pub curve: bool,
    /// libzmq I/O threads of the process's context (all roles of the run
    /// share it); with CURVE they do the encryption. Default: libzmq's, 1.
    #[arg(long)]
    pub io_threads: Option<i32>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses `64`, `64k`, `64KiB`, `1M`, `1MiB` (binary multiples).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: usize = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?} (use k, KiB, M, MiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

impl Args {
    fn flags(&self) -> Flags {
        let mut flags = Flags::empty();
        if self.one_way {
            flags |= Flags::ONE_WAY;
        }
        for r in &self.receipt {
            flags |= match r {
                Receipt::Sent => Flags::RECEIPT_ON_SEND,
                Receipt::Received => Flags::RECEIPT_ON_RECEIVE,
            };
        }
        flags
    }

    /// The load of one measured interval with `window` requests in flight
    /// per client.
    pub fn spec(&self, window: usize) -> LoadSpec {
        LoadSpec {
            clients: self.clients.max(1),
            window: window.max(1),
            size: self.size,
            warmup: self.warmup,
            duration: self.duration,
            count: self.count,
            progress: std::io::stderr().is_terminal(),
        }
    }

    /// How the lhcluster side is set up.
    pub fn setup(&self) -> lhc::Setup {
        lhc::Setup {
            transport: self.transport,
            external: self.frontend.clone().zip(self.backend.clone()),
            proxy: self.proxy,
            workers: self.workers.max(1),
            capacity: self.capacity.max(1),
            prefetch: self.prefetch,
            inline: self.inline,
            local_client: self.local_client,
            types: self.types.max(1),
            idle_workers: self.idle_workers,
            flags: self.flags(),
            brokers: self.brokers.max(1),
            placement: self.placement,
            own_ids: self.own_ids,
            curve: false,
        }
    }

    /// `two-way`, `one-way`, with the receipts asked for.
    pub fn mode(&self) -> String {
        let mut mode = if self.one_way { "one-way" } else { "two-way" }.to_owned();
        for r in &self.receipt {
            mode.push_str(match r {
                Receipt::Sent => ", receipt sent",
                Receipt::Received => ", receipt received",
            });
        }
        mode
    }
}

/// Checks what clap cannot (flag combinations, the payload's minimum
/// size) and starts libzmq's I/O threads: call it before measuring.
pub fn prepare(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.size >= 16,
        "--size must be at least 16 bytes (a timestamp and the client index travel in the payload)"
    );
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.brokers >= 1, "--brokers must be at least 1");
    anyhow::ensure!(
        !(args.local_client && args.one_way && args.receipt.is_empty()),
        "--local-client needs two-way requests or a --receipt (a local client must be polled \
         to make progress; one-way requests without a receipt give it nothing to wait for)"
    );
    // libzmq starts its I/O threads with the first socket of a context, and
    // a thread inherits its creator's name: start them from this thread, so
    // that the CPU breakdown counts them as `zmq-io`, not as whichever role
    // happened to open the first socket.
    if let Some(n) = args.io_threads {
        anyhow::ensure!(n >= 1, "--io-threads must be at least 1");
        lhcluster::context().set_io_threads(n)?;
    }
    drop(lhcluster::context().socket(zmq::PAIR)?);
    Ok(())
}

/// `lhcluster bench`: one measurement of every chosen system, reported as
/// text or JSON.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    prepare(&args)?;
    let report = measure(&args, args.window)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report::print(&report, &args);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every system, `--runs` times, interleaved; medians.
pub fn measure(args: &Args, window: usize) -> anyhow::Result<Report> {
    let spec = args.spec(window);
    let setup = args.setup();
    let mut chosen = args.systems.clone();
    if chosen.is_empty() {
        if args.baseline {
            chosen.extend([System::Direct, System::ThreeHop]);
        }
        chosen.push(System::Lhcluster);
    }
    if args.curve {
        // Plaintext lhcluster too: the ratios compare CURVE to it.
        chosen.extend([System::Lhcluster, System::LhclusterCurve]);
    }
    anyhow::ensure!(
        !(chosen.contains(&System::LhclusterCurve) && setup.external.is_some()),
        "lhcluster-curve starts its own broker (its keys are made for the run): \
         not with --frontend"
    );
    let curve_setup = lhc::Setup {
        curve: true,
        ..setup.clone()
    };
    // Baselines first, lhcluster last (the ratios compare it to the rest).
    chosen.sort_by_key(|s| match s {
        System::Direct => 0,
        System::ThreeHop => 1,
        System::Lhcluster => 2,
        System::LhclusterCurve => 3,
    });
    chosen.dedup();
    let mut systems: Vec<(System, Vec<RunResult>)> =
        chosen.into_iter().map(|s| (s, Vec::new())).collect();
    for _ in 0..args.runs.max(1) {
        for (system, runs) in &mut systems {
            let result = match system {
                System::Direct => zmq_baseline::run(Topology::Direct, &spec, args.transport, 1)?,
                System::ThreeHop => {
                    zmq_baseline::run(Topology::ThreeHop, &spec, args.transport, setup.workers)?
                }
                System::Lhcluster => lhc::run(&setup, &spec)?,
                System::LhclusterCurve => lhc::run(&curve_setup, &spec)?,
            };
            runs.push(result);
        }
    }
    let has_lhcluster = systems
        .iter()
        .any(|(s, _)| matches!(s, System::Lhcluster | System::LhclusterCurve));
    let systems: Vec<SystemReport> = systems
        .into_iter()
        .map(|(system, runs)| SystemReport {
            name: match system {
                System::Direct => Topology::Direct.label().to_owned(),
                System::ThreeHop => Topology::ThreeHop.label().to_owned(),
                System::Lhcluster => setup.label(),
                System::LhclusterCurve => curve_setup.label(),
            },
            median: report::median(&runs),
            runs,
        })
        .collect();
    let ratios = match systems.split_last() {
        Some((lhc, baselines)) if has_lhcluster => baselines
            .iter()
            .rev()
            .map(|b| Ratios {
                baseline: b.name.clone(),
                throughput: report::ratio(lhc.median.req_per_s, b.median.req_per_s),
                p50: report::ratio(lhc.median.latency_us.p50, b.median.latency_us.p50),
                p99: report::ratio(lhc.median.latency_us.p99, b.median.latency_us.p99),
                cpu_per_request: report::ratio(lhc.median.cpu_us_per_req, b.median.cpu_us_per_req),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Report {
        config: Config::new(args, window),
        systems,
        ratios,
    })
}

/// Measures every chosen system at each window in turn (one line of
/// progress per window unless `--json`): the points of a throughput and
/// latency curve.
pub fn sweep(args: &Args, windows: &[usize]) -> anyhow::Result<Vec<Report>> {
    anyhow::ensure!(!windows.is_empty(), "no window to sweep");
    let mut reports = Vec::with_capacity(windows.len());
    for &window in windows {
        let report = measure(args, window)?;
        if !args.json {
            let parts: Vec<String> = report
                .systems
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.0} req/s p99 {:.0} µs",
                        s.name, s.median.req_per_s, s.median.latency_us.p99
                    )
                })
                .collect();
            println!("window {window:>4}: {}", parts.join(" | "));
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }
}

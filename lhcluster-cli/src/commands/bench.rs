//! `lhcluster bench`: load generator and benchmark (see docs/benchmarks.md).
//!
//! Starts (in-process, or against an external broker's endpoints) a broker,
//! optionally a client proxy, W echo workers of capacity C and K client
//! threads that each keep a window of requests in flight; reports
//! throughput, latency percentiles, CPU time per request and peak memory.
//! `--baseline` measures plain ZeroMQ in the same run, `--pending N` the
//! broker's memory per queued request, `--plot FILE` sweeps the window.

mod lhc;
mod load;
mod pending;
mod plot;
mod sys;
mod transport;
mod zmq_baseline;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use lhcluster::Flags;
use serde::Serialize;

use crate::common::parse_duration;
use load::{Latency, LoadSpec, RunResult};
use transport::Transport;
use zmq_baseline::Topology;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Direct,
    #[value(name = "3hop")]
    ThreeHop,
    Lhcluster,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Receipt {
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
  lhcluster bench --pending 1000000                 # broker memory per queued request
  lhcluster bench --baseline --plot docs/bench-window.svg
  lhcluster bench --frontend tcp://10.0.0.5:5555 --backend tcp://10.0.0.5:5556")]
pub struct Args {
    /// Transport of the in-process broker (and of the baselines).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Frontend of an external broker to load (with --backend) instead of
    /// starting one in-process; workers and clients still run here.
    #[arg(long, requires = "backend")]
    frontend: Option<String>,
    /// Backend of the external broker.
    #[arg(long, requires = "frontend")]
    backend: Option<String>,
    /// Put a client proxy between the clients and the broker.
    #[arg(long)]
    proxy: bool,
    /// Echo workers.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Capacity of each worker (requests it runs at once, on as many
    /// handler threads). The default takes the default window of one
    /// client: the broker forwards at once, as the baselines do.
    #[arg(long, default_value_t = 64)]
    capacity: u32,
    /// Run the echo handlers inline, on each worker's I/O thread
    /// (`WorkerConfig::inline`), instead of on a pool of `capacity`
    /// handler threads.
    #[arg(long)]
    inline: bool,
    /// Each client thread drives its own `LocalClient` (socket I/O on that
    /// thread, no client driver thread) instead of using a `Client`.
    /// Two-way requests, or one-way with a receipt.
    #[arg(long)]
    local_client: bool,
    /// Client threads, each with its own client (connection).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Payload bytes per request, at least 16 (a timestamp and the client
    /// index travel in it). Suffixes: k/KiB (1024), M/MiB.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    size: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Measured interval of each run.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
    /// Measure this many requests (over all clients) instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Warm-up before each measured interval (not counted).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Repeat every measurement this many times (interleaving the systems)
    /// and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// One-way requests. Without a receipt, latency is client → handler,
    /// and the window counts requests not yet at a worker.
    #[arg(long)]
    one_way: bool,
    /// Ask for a receipt (repeatable); a one-way request then completes
    /// at its receipt.
    #[arg(long, value_enum)]
    receipt: Vec<Receipt>,
    /// Request types each worker registers; requests cycle over them.
    #[arg(long, default_value_t = 1)]
    types: u32,
    /// Extra registered workers that serve other types and never get work.
    #[arg(long, default_value_t = 0)]
    idle_workers: usize,
    /// Also measure plain ZeroMQ in the same run (direct DEALER↔ROUTER
    /// echo, and client → forwarding thread → worker echo), with the same
    /// transport, payload and window, and print lhcluster's ratios.
    #[arg(long)]
    baseline: bool,
    /// Which systems to measure (overrides --baseline): any of `direct`,
    /// `3hop`, `lhcluster`, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    /// Instead: fill an in-process broker with N pending requests (no
    /// workers) and report its memory per pending request.
    #[arg(long, value_name = "N")]
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
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Parses `64`, `64k`, `64KiB`, `1M`, `1MiB` (binary multiples).
fn parse_size(text: &str) -> Result<usize, String> {
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

    fn spec(&self, window: usize) -> LoadSpec {
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

    fn setup(&self) -> lhc::Setup {
        lhc::Setup {
            transport: self.transport,
            external: self.frontend.clone().zip(self.backend.clone()),
            proxy: self.proxy,
            workers: self.workers.max(1),
            capacity: self.capacity.max(1),
            inline: self.inline,
            local_client: self.local_client,
            types: self.types.max(1),
            idle_workers: self.idle_workers,
            flags: self.flags(),
        }
    }

    fn mode(&self) -> String {
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

#[derive(Debug, Serialize)]
struct Config {
    transport: Transport,
    external_broker: Option<String>,
    proxy: bool,
    workers: usize,
    capacity: u32,
    inline: bool,
    local_client: bool,
    clients: usize,
    size: usize,
    window: usize,
    duration_s: Option<f64>,
    count: Option<u64>,
    warmup_s: f64,
    runs: usize,
    mode: String,
    types: u32,
    idle_workers: usize,
}

impl Config {
    fn new(args: &Args, window: usize) -> Self {
        Self {
            transport: args.transport,
            external_broker: args.frontend.clone(),
            proxy: args.proxy,
            workers: args.workers.max(1),
            capacity: args.capacity.max(1),
            inline: args.inline,
            local_client: args.local_client,
            clients: args.clients.max(1),
            size: args.size,
            window,
            duration_s: args.count.is_none().then_some(args.duration.as_secs_f64()),
            count: args.count,
            warmup_s: args.warmup.as_secs_f64(),
            runs: args.runs.max(1),
            mode: args.mode(),
            types: args.types.max(1),
            idle_workers: args.idle_workers,
        }
    }
}

#[derive(Debug, Serialize)]
struct SystemReport {
    name: String,
    median: RunResult,
    runs: Vec<RunResult>,
}

#[derive(Debug, Serialize)]
struct Ratios {
    baseline: String,
    throughput: f64,
    p50: f64,
    p99: f64,
    cpu_per_request: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    config: Config,
    systems: Vec<SystemReport>,
    ratios: Vec<Ratios>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.size >= 16,
        "--size must be at least 16 bytes (a timestamp and the client index travel in the payload)"
    );
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        !(args.local_client && args.one_way && args.receipt.is_empty()),
        "--local-client needs two-way requests or a --receipt (a local client must be polled \
         to make progress; one-way requests without a receipt give it nothing to wait for)"
    );
    // libzmq starts its I/O threads with the first socket of a context, and
    // a thread inherits its creator's name: start them from this thread, so
    // that the CPU breakdown counts them as `zmq-io`, not as whichever role
    // happened to open the first socket.
    drop(lhcluster::context().socket(zmq::PAIR)?);
    if let Some(n) = args.pending {
        anyhow::ensure!(
            args.frontend.is_none(),
            "--pending measures an in-process broker; it cannot use --frontend/--backend"
        );
        return run_pending(&args, n);
    }
    if let Some(path) = &args.plot {
        return run_sweep(&args, path);
    }
    let report = measure(&args, args.window)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &args);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every system, `--runs` times, interleaved; medians.
fn measure(args: &Args, window: usize) -> anyhow::Result<Report> {
    let spec = args.spec(window);
    let setup = args.setup();
    let mut chosen = args.systems.clone();
    if chosen.is_empty() {
        if args.baseline {
            chosen.extend([System::Direct, System::ThreeHop]);
        }
        chosen.push(System::Lhcluster);
    }
    // Baselines first, lhcluster last (the ratios compare it to the rest).
    chosen.sort_by_key(|s| match s {
        System::Direct => 0,
        System::ThreeHop => 1,
        System::Lhcluster => 2,
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
            };
            runs.push(result);
        }
    }
    let has_lhcluster = systems.iter().any(|(s, _)| *s == System::Lhcluster);
    let systems: Vec<SystemReport> = systems
        .into_iter()
        .map(|(system, runs)| SystemReport {
            name: match system {
                System::Direct => Topology::Direct.label().to_owned(),
                System::ThreeHop => Topology::ThreeHop.label().to_owned(),
                System::Lhcluster => setup.label().to_owned(),
            },
            median: median(&runs),
            runs,
        })
        .collect();
    let ratios = match systems.split_last() {
        Some((lhc, baselines)) if has_lhcluster => baselines
            .iter()
            .rev()
            .map(|b| Ratios {
                baseline: b.name.clone(),
                throughput: ratio(lhc.median.req_per_s, b.median.req_per_s),
                p50: ratio(lhc.median.latency_us.p50, b.median.latency_us.p50),
                p99: ratio(lhc.median.latency_us.p99, b.median.latency_us.p99),
                cpu_per_request: ratio(lhc.median.cpu_us_per_req, b.median.cpu_us_per_req),
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

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn median_of(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The median of every figure, taken separately.
fn median(runs: &[RunResult]) -> RunResult {
    let m = |f: &dyn Fn(&RunResult) -> f64| median_of(runs.iter().map(f).collect());
    let by_thread = |f: &dyn Fn(&RunResult) -> &BTreeMap<String, f64>| {
        let mut threads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in runs {
            for (k, v) in f(r) {
                threads.entry(k.clone()).or_default().push(*v);
            }
        }
        threads
            .into_iter()
            .map(|(k, v)| (k, median_of(v)))
            .collect::<BTreeMap<_, _>>()
    };
    RunResult {
        completed: m(&|r| r.completed as f64) as u64,
        errors: m(&|r| r.errors as f64) as u64,
        elapsed_s: m(&|r| r.elapsed_s),
        req_per_s: m(&|r| r.req_per_s),
        mb_per_s: m(&|r| r.mb_per_s),
        latency_us: Latency {
            p50: m(&|r| r.latency_us.p50),
            p90: m(&|r| r.latency_us.p90),
            p99: m(&|r| r.latency_us.p99),
            p999: m(&|r| r.latency_us.p999),
            max: m(&|r| r.latency_us.max),
            mean: m(&|r| r.latency_us.mean),
        },
        cpu_us_per_req: m(&|r| r.cpu_us_per_req),
        cpu_us_per_req_by_thread: by_thread(&|r| &r.cpu_us_per_req_by_thread),
        context_switches_per_req: m(&|r| r.context_switches_per_req),
        context_switches_per_req_by_thread: by_thread(&|r| &r.context_switches_per_req_by_thread),
        peak_rss_kb: m(&|r| r.peak_rss_kb as f64) as u64,
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn header_line(args: &Args, window: usize) -> String {
    let broker = match &args.frontend {
        Some(f) => format!("external broker {f}"),
        None => format!("in-process broker over {}", args.transport.name()),
    };
    let length = match args.count {
        Some(n) => format!("{n} requests"),
        None => format!("{:?}", args.duration),
    };
    let mut extra = String::new();
    if args.proxy {
        extra.push_str(", through a proxy");
    }
    if args.types > 1 {
        extra.push_str(&format!(", {} request types", args.types));
    }
    if args.idle_workers > 0 {
        extra.push_str(&format!(", {} idle workers", args.idle_workers));
    }
    if args.inline {
        extra.push_str(", inline handlers");
    }
    if args.local_client {
        extra.push_str(", local clients");
    }
    format!(
        "{broker}{extra}: {}, {}, {} client(s) × window {window}, {} worker(s) × capacity {}; \
         {length} per run, {} run(s){}",
        human_bytes(args.size),
        args.mode(),
        args.clients.max(1),
        args.workers.max(1),
        args.capacity.max(1),
        args.runs.max(1),
        if args.runs > 1 { ", medians" } else { "" },
    )
}

fn print_report(report: &Report, args: &Args) {
    println!("{}", header_line(args, report.config.window));
    println!();
    println!(
        "{:<16} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "system",
        "req/s",
        "MB/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "CPU µs/req",
        "peak RSS"
    );
    for s in &report.systems {
        let r = &s.median;
        println!(
            "{:<16} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {:>10.2} {:>7} MB",
            s.name,
            r.req_per_s,
            r.mb_per_s,
            r.latency_us.p50,
            r.latency_us.p90,
            r.latency_us.p99,
            r.latency_us.p999,
            r.latency_us.max,
            r.cpu_us_per_req,
            r.peak_rss_kb / 1024,
        );
    }
    if !report.ratios.is_empty() {
        println!();
        if args.one_way {
            println!("(the baselines are two-way echoes)");
        }
        for r in &report.ratios {
            println!(
                "lhcluster / {:<11} throughput {:.2}×, p50 {:.2}×, p99 {:.2}×, CPU per request {:.2}×",
                r.baseline, r.throughput, r.p50, r.p99, r.cpu_per_request
            );
        }
    }
    println!();
    println!("CPU µs per request by thread:");
    for s in &report.systems {
        let parts: Vec<String> = s
            .median
            .cpu_us_per_req_by_thread
            .iter()
            .filter(|(_, v)| **v >= 0.005)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        println!("  {:<16} {}", s.name, parts.join(", "));
    }
    let errors: u64 = report.systems.iter().map(|s| s.median.errors).sum();
    if errors > 0 {
        println!();
        println!("failed requests (median per run): {errors}");
    }
}

fn run_pending(args: &Args, n: u64) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        runs.push(pending::run(n, args.size, args.transport)?);
    }
    let per = median_of(runs.iter().map(|r| r.bytes_per_request).collect());
    let overhead = median_of(runs.iter().map(|r| r.overhead_bytes_per_request).collect());
    if args.json {
        let doc = serde_json::json!({
            "pending": n,
            "payload_bytes": args.size,
            "transport": args.transport,
            "median_bytes_per_request": per,
            "median_overhead_bytes_per_request": overhead,
            "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "broker with {n} pending requests of {} over {} ({} run(s){}):",
            human_bytes(args.size),
            args.transport.name(),
            runs.len(),
            if runs.len() > 1 { ", medians" } else { "" }
        );
        for r in &runs {
            println!(
                "  RSS {} → {} MB in {:.1} s: {:.0} bytes per request, {:.0} beyond the payload",
                r.rss_before_kb / 1024,
                r.rss_after_kb / 1024,
                r.fill_seconds,
                r.bytes_per_request,
                r.overhead_bytes_per_request
            );
        }
        println!(
            "memory per pending request: {per:.0} bytes, {overhead:.0} beyond the {}-byte payload",
            args.size
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The plot's series from the JSON of an earlier sweep.
fn series_from_json(path: &std::path::Path) -> anyhow::Result<Vec<plot::Series>> {
    let text = std::fs::read_to_string(path)?;
    let reports: serde_json::Value = serde_json::from_str(&text)?;
    let mut series: Vec<plot::Series> = Vec::new();
    for report in reports.as_array().into_iter().flatten() {
        let window = report["config"]["window"].as_u64().unwrap_or(0) as usize;
        for s in report["systems"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or("?").to_owned();
            let point = (
                window,
                s["median"]["req_per_s"].as_f64().unwrap_or(0.0),
                s["median"]["latency_us"]["p99"].as_f64().unwrap_or(0.0),
            );
            match series.iter_mut().find(|x| x.label == name) {
                Some(x) => x.points.push(point),
                None => series.push(plot::Series {
                    label: name,
                    points: vec![point],
                }),
            }
        }
    }
    anyhow::ensure!(!series.is_empty(), "no sweep results in {}", path.display());
    Ok(series)
}

fn sweep_title(args: &Args) -> String {
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

fn run_sweep(args: &Args, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    if let Some(json) = &args.replot {
        plot::draw(path, &sweep_title(args), &series_from_json(json)?)?;
        println!("plot written to {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(!args.windows.is_empty(), "--windows is empty");
    let mut reports = Vec::new();
    for &window in &args.windows {
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
    let mut series: Vec<plot::Series> = Vec::new();
    for report in &reports {
        for s in &report.systems {
            let point = (
                report.config.window,
                s.median.req_per_s,
                s.median.latency_us.p99,
            );
            match series.iter_mut().find(|x| x.label == s.name) {
                Some(x) => x.points.push(point),
                None => series.push(plot::Series {
                    label: s.name.clone(),
                    points: vec![point],
                }),
            }
        }
    }
    plot::draw(path, &sweep_title(args), &series)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!("plot written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
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

    #[test]
    fn medians_take_the_middle_value() {
        assert_eq!(median_of(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_of(vec![]), 0.0);
    }
}

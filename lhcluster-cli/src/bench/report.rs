//! The report of a measurement: its configuration, each system's runs and
//! their medians, lhcluster's ratios to the baselines; printed as text or
//! serialised as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Args;
use super::cluster::{Hops, Placement};
use super::load::{Latency, RunResult};
use super::transport::Transport;

/// The configuration of a measurement, as reported.
#[derive(Debug, Serialize)]
pub struct Config {
    pub transport: Transport,
    pub external_broker: Option<String>,
    pub proxy: bool,
    pub workers: usize,
    pub capacity: u32,
    pub prefetch: u32,
    pub inline: bool,
    pub local_client: bool,
    pub clients: usize,
    pub size: usize,
    pub window: usize,
    pub duration_s: Option<f64>,
    pub count: Option<u64>,
    pub warmup_s: f64,
    pub runs: usize,
    pub mode: String,
    pub types: u32,
    pub idle_workers: usize,
    pub brokers: usize,
    pub placement: Placement,
    pub own_ids: bool,
}

impl Config {
    /// The configuration of `args` at `window`.
    pub fn new(args: &Args, window: usize) -> Self {
        Self {
            transport: args.transport,
            external_broker: args.frontend.clone(),
            proxy: args.proxy,
            workers: args.workers.max(1),
            capacity: args.capacity.max(1),
            prefetch: args.prefetch,
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
            brokers: args.brokers.max(1),
            placement: args.placement,
            own_ids: args.own_ids,
        }
    }
}

/// One system's runs and the median of each figure.
#[derive(Debug, Serialize)]
pub struct SystemReport {
    pub name: String,
    pub median: RunResult,
    pub runs: Vec<RunResult>,
}

/// lhcluster's figures over a baseline's.
#[derive(Debug, Serialize)]
pub struct Ratios {
    pub baseline: String,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_per_request: f64,
}

/// What one measurement gave.
#[derive(Debug, Serialize)]
pub struct Report {
    pub config: Config,
    pub systems: Vec<SystemReport>,
    pub ratios: Vec<Ratios>,
}

/// `a / b`, NaN without a baseline figure.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The median of `values` (0 when there is none).
pub fn median_of(mut values: Vec<f64>) -> f64 {
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
pub fn median(runs: &[RunResult]) -> RunResult {
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
        cluster: runs.iter().any(|r| r.cluster.is_some()).then(|| {
            let hops = |f: &dyn Fn(&Hops) -> f64| {
                median_of(
                    runs.iter()
                        .filter_map(|r| r.cluster.as_ref())
                        .map(f)
                        .collect(),
                )
            };
            Hops {
                forwarded_per_req: hops(&|h| h.forwarded_per_req),
                executed_per_req: hops(&|h| h.executed_per_req),
            }
        }),
    }
}

/// `64 B`, `64 KiB`, `1 MiB`: whole binary multiples only.
pub fn human_bytes(n: usize) -> String {
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
        None if args.brokers > 1 => format!(
            "in-process cluster of {} brokers over {}, placement {}{}",
            args.brokers,
            args.transport.name(),
            args.placement.name(),
            if args.own_ids { ", own ids" } else { "" },
        ),
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
    if args.prefetch > 0 {
        extra.push_str(&format!(", prefetch {}", args.prefetch));
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

/// Prints `report` as text.
pub fn print(report: &Report, args: &Args) {
    println!("{}", header_line(args, report.config.window));
    println!();
    println!(
        "{:<22} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
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
            "{:<22} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {:>10.2} {:>7} MB",
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
        // The ratios are of the last system (lhcluster, or with --curve
        // lhcluster+curve) to each one before it.
        let measured = report
            .systems
            .last()
            .map_or("lhcluster", |s| s.name.as_str());
        for r in &report.ratios {
            println!(
                "{measured} / {:<11} throughput {:.2}×, p50 {:.2}×, p99 {:.2}×, CPU per request {:.2}×",
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
        println!("  {:<22} {}", s.name, parts.join(", "));
    }
    for s in &report.systems {
        if let Some(h) = &s.median.cluster {
            println!();
            println!(
                "{}: broker-to-broker hops per request: {:.2} forwarded to the owner, \
                 {:.2} executed elsewhere",
                s.name, h.forwarded_per_req, h.executed_per_req
            );
        }
    }
    let errors: u64 = report.systems.iter().map(|s| s.median.errors).sum();
    if errors > 0 {
        println!();
        println!("failed requests (median per run): {errors}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_value() {
        assert_eq!(median_of(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_of(vec![]), 0.0);
    }
}

//! `--pending N`: how much memory the broker needs per queued request.
//!
//! An in-process broker with no worker is filled with N one-way requests
//! (which the client does not keep), in batches that wait for the broker to
//! catch up so that little sits in socket queues. Resident memory (VmRSS)
//! is read before and after; the difference over N, minus the payload
//! size, is the broker's cost per pending request (state, queue, frame
//! bookkeeping, allocator overhead).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lhcluster::client::{Client, ClientConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Frame};
use lhcluster_cli::bench::Args;
use lhcluster_cli::bench::report::{human_bytes, median_of};
use lhcluster_cli::bench::sys;
use lhcluster_cli::bench::transport::{self, Transport};
use serde::Serialize;

/// One fill of the broker.
#[derive(Clone, Debug, Serialize)]
pub struct PendingResult {
    pub requests: u64,
    pub payload_bytes: usize,
    pub transport: Transport,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// (after − before) / N.
    pub bytes_per_request: f64,
    /// The same minus the payload size.
    pub overhead_bytes_per_request: f64,
    pub fill_seconds: f64,
}

/// `--runs` fills of `n` requests, reported as text or JSON.
pub fn report(args: &Args, n: u64) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.frontend.is_none(),
        "--pending measures an in-process broker; it cannot use --frontend/--backend"
    );
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        runs.push(run(n, args.size, args.transport)?);
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

const BATCH: u64 = 10_000;
/// A batch that was not taken in within this time means requests were lost.
const STALL: Duration = Duration::from_secs(30);

/// Fills a new broker with `n` requests of `size` bytes and measures it.
pub fn run(n: u64, size: usize, transport: Transport) -> anyhow::Result<PendingResult> {
    let mut config = BrokerConfig::new(
        transport.bind_endpoint("front"),
        transport.bind_endpoint("back"),
    );
    // Room for the warm-up requests too (another type, see below).
    let warm = BATCH.min(n) * 2;
    let bound = usize::try_from(n + warm).unwrap_or(usize::MAX);
    config.max_pending_per_type = bound.max(config.max_pending_per_type);
    config.max_pending_total = bound.max(config.max_pending_total);
    let broker = Broker::start(config).context("starting the broker")?;
    let client = Client::connect(ClientConfig::new(broker.frontend()))?;
    anyhow::ensure!(
        client.wait_connected(Duration::from_secs(10)),
        "the client did not connect"
    );
    let payload = vec![0xa5_u8; size];
    // Warm up the paths (channels, socket queues) with a few batches of
    // another type, so their buffers are not counted.
    for id in 1..=warm {
        send_typed(&client, 2, id, &payload)?;
    }
    wait_pending(&broker, warm)?;
    std::thread::sleep(Duration::from_millis(200));
    let rss_before_kb = sys::rss_kb();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch = BATCH.min(n - sent);
        for i in 0..batch {
            send_typed(&client, 1, sent + i + 1, &payload)?;
        }
        sent += batch;
        // Keep at most one batch in the socket queues.
        wait_pending(&broker, warm + sent.saturating_sub(BATCH))?;
    }
    wait_pending(&broker, warm + n)?;
    let fill_seconds = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let rss_after_kb = sys::rss_kb();
    let _ = client.stop();
    let (front, back) = (broker.frontend().to_owned(), broker.backend().to_owned());
    let _ = broker.stop();
    transport::cleanup(&front);
    transport::cleanup(&back);
    let per = (rss_after_kb.saturating_sub(rss_before_kb) as f64 * 1024.0) / n.max(1) as f64;
    Ok(PendingResult {
        requests: n,
        payload_bytes: size,
        transport,
        rss_before_kb,
        rss_after_kb,
        bytes_per_request: per,
        overhead_bytes_per_request: per - size as f64,
        fill_seconds,
    })
}

fn send_typed(client: &Client, t: u32, id: u64, payload: &[u8]) -> anyhow::Result<()> {
    let handle = client
        .request(t)
        .id(id)
        .flags(Flags::ONE_WAY)
        .payload(vec![Frame::from(payload)])
        .send()?;
    drop(handle);
    Ok(())
}

fn wait_pending(broker: &Broker, at_least: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let stats = broker.stats()?;
        if stats.pending >= at_least {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < STALL,
            "the broker holds {} pending requests, expected {at_least}: requests were lost \
             (overloaded: {}, undeliverable: {})",
            stats.pending,
            stats.requests_overloaded,
            stats.undeliverable
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

//! The load engine shared by every measured system: K client threads keep
//! a window of requests in flight; after a warm-up, a measured interval
//! counts completions and records their latency; then the threads stop
//! sending and drain what is in flight.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::sys;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// How long client threads wait for in-flight requests after the end.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(35);

/// What one measured interval looks like (shared by every system).
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub clients: usize,
    pub window: usize,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub count: Option<u64>,
    pub progress: bool,
}

/// One client thread's counters, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Slot {
    completed: AtomicU64,
    errors: AtomicU64,
    hist: Mutex<Option<Histogram<u64>>>,
    /// For one-way flow control: requests sent and not yet seen by a worker.
    pub in_flight: AtomicU64,
    waiting: AtomicBool,
    thread: OnceLock<Thread>,
}

/// Shared between the coordinator, the client threads and (one-way) the
/// worker handlers.
#[derive(Debug)]
pub struct Control {
    state: AtomicU8,
    pub slots: Vec<Slot>,
    /// Time origin of the timestamps carried in payloads.
    pub epoch: Instant,
}

pub fn new_histogram() -> Histogram<u64> {
    // 100 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(100, 100_000_000_000, 3).expect("valid histogram bounds")
}

impl Control {
    pub fn new(clients: usize) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU8::new(WARMUP),
            slots: (0..clients)
                .map(|_| Slot {
                    hist: Mutex::new(Some(new_histogram())),
                    ..Slot::default()
                })
                .collect(),
            epoch: Instant::now(),
        })
    }

    /// Whether client threads should keep sending.
    pub fn sending(&self) -> bool {
        self.state.load(Ordering::Relaxed) != STOP
    }

    /// A request of client `idx` completed after `latency_ns`.
    pub fn record(&self, idx: usize, latency_ns: u64) {
        if self.state.load(Ordering::Relaxed) != MEASURE {
            return;
        }
        let slot = &self.slots[idx];
        slot.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = slot.hist.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            h.saturating_record(latency_ns.max(100));
        }
    }

    /// A request of client `idx` failed.
    pub fn error(&self, idx: usize) {
        if self.state.load(Ordering::Relaxed) == MEASURE {
            self.slots[idx].errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Nanoseconds since the epoch, for payload timestamps.
    pub fn stamp(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Writes the timestamp and the client index into the payload head.
    pub fn stamp_payload(&self, buf: &mut [u8], idx: usize) {
        buf[..8].copy_from_slice(&self.stamp().to_le_bytes());
        buf[8..12].copy_from_slice(&(idx as u32).to_le_bytes());
    }

    /// Reads what [`Control::stamp_payload`] wrote: (latency, client index).
    pub fn read_stamp(&self, bytes: &[u8]) -> Option<(u64, usize)> {
        let sent = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let idx = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        (idx < self.slots.len()).then(|| (self.stamp().saturating_sub(sent), idx))
    }

    /// One-way flow control, sender side: registers the calling thread and
    /// blocks while `window` requests are in flight. `false` once stopping.
    pub fn acquire(&self, idx: usize, window: usize) -> bool {
        let slot = &self.slots[idx];
        slot.thread.get_or_init(std::thread::current);
        loop {
            if !self.sending() {
                return false;
            }
            if slot.in_flight.load(Ordering::SeqCst) < window as u64 {
                slot.in_flight.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            slot.waiting.store(true, Ordering::SeqCst);
            if slot.in_flight.load(Ordering::SeqCst) < window as u64 {
                slot.waiting.store(false, Ordering::SeqCst);
                continue;
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    /// One-way flow control, worker side: a request of client `idx` arrived.
    pub fn release(&self, idx: usize) {
        let slot = &self.slots[idx];
        slot.in_flight.fetch_sub(1, Ordering::SeqCst);
        if slot.waiting.swap(false, Ordering::SeqCst) {
            if let Some(t) = slot.thread.get() {
                t.unpark();
            }
        }
    }

    /// Waits (bounded) until the one-way requests of client `idx` arrived.
    pub fn drain_one_way(&self, idx: usize) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.slots[idx].in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn completed(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.completed.load(Ordering::Relaxed))
            .sum()
    }
}

/// Latency percentiles, in µs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// What one measured interval gave.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    pub completed: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    /// Payload bytes per second, one direction.
    pub mb_per_s: f64,
    pub latency_us: Latency,
    /// CPU time of every thread of the process during the interval, per
    /// completed request.
    pub cpu_us_per_req: f64,
    /// The same, by thread group.
    pub cpu_us_per_req_by_thread: std::collections::BTreeMap<String, f64>,
    /// Context switches of every thread during the interval, per request.
    pub context_switches_per_req: f64,
    /// The same, by thread group.
    pub context_switches_per_req_by_thread: std::collections::BTreeMap<String, f64>,
    /// Peak resident memory of the process during the interval.
    pub peak_rss_kb: u64,
    /// Broker-to-broker hops per request, for an in-process cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::Hops>,
}

/// Runs one measured interval: `spawn(idx, control)` starts client thread
/// `idx` (it sends while [`Control::sending`], reports through `control`,
/// and drains before it returns).
pub fn run(
    label: &str,
    spec: &LoadSpec,
    control: Arc<Control>,
    mut spawn: impl FnMut(usize, Arc<Control>) -> std::io::Result<JoinHandle<()>>,
) -> anyhow::Result<RunResult> {
    let mut threads = Vec::with_capacity(spec.clients);
    for idx in 0..spec.clients {
        threads.push(spawn(idx, control.clone())?);
    }
    std::thread::sleep(spec.warmup);
    let cpu0 = sys::CpuSnapshot::take();
    sys::reset_peak_rss();
    let t0 = Instant::now();
    control.state.store(MEASURE, Ordering::SeqCst);

    let bar = spec.progress.then(|| progress_bar(label, spec));
    let mut last_draw = t0;
    let (t1, cpu1) = loop {
        let now = Instant::now();
        let done = match spec.count {
            Some(n) => control.completed() >= n,
            None => now.duration_since(t0) >= spec.duration,
        };
        if done {
            break (now, sys::CpuSnapshot::take());
        }
        if let Some(bar) = &bar {
            if now.duration_since(last_draw) >= Duration::from_millis(100) {
                last_draw = now;
                let completed = control.completed();
                let elapsed = now.duration_since(t0);
                bar.set_position(match spec.count {
                    Some(_) => completed,
                    None => elapsed.as_millis() as u64,
                });
                bar.set_message(format!(
                    "{:.0} req/s",
                    completed as f64 / elapsed.as_secs_f64().max(1e-9)
                ));
            }
        }
        let tick = if spec.count.is_some() { 1 } else { 10 };
        std::thread::sleep(Duration::from_millis(tick));
    };
    let peak_rss_kb = sys::peak_rss_kb();
    control.state.store(STOP, Ordering::SeqCst);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // Wake one-way senders parked on their window.
    for slot in &control.slots {
        if let Some(t) = slot.thread.get() {
            t.unpark();
        }
    }
    for t in threads {
        let _ = t.join();
    }

    let mut hist = new_histogram();
    let mut completed = 0;
    let mut errors = 0;
    for slot in &control.slots {
        completed += slot.completed.load(Ordering::Relaxed);
        errors += slot.errors.load(Ordering::Relaxed);
        if let Some(h) = slot.hist.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = hist.add(&h);
        }
    }
    let elapsed_s = t1.duration_since(t0).as_secs_f64();
    let req_per_s = completed as f64 / elapsed_s.max(1e-9);
    let per_req = |ns: u64| ns as f64 / 1000.0 / completed.max(1) as f64;
    let by_thread = cpu1.since(&cpu0);
    let switches = cpu1.switches_since(&cpu0);
    let cpu_total: u64 = by_thread.values().sum();
    Ok(RunResult {
        completed,
        errors,
        elapsed_s,
        req_per_s,
        mb_per_s: req_per_s * spec.size as f64 / 1e6,
        latency_us: Latency::from_histogram(&hist),
        cpu_us_per_req: per_req(cpu_total),
        cpu_us_per_req_by_thread: by_thread
            .into_iter()
            .filter(|(_, ns)| *ns > 0)
            .map(|(name, ns)| (name, per_req(ns)))
            .collect(),
        context_switches_per_req: switches.values().sum::<u64>() as f64 / completed.max(1) as f64,
        context_switches_per_req_by_thread: switches
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name, n as f64 / completed.max(1) as f64))
            .collect(),
        peak_rss_kb,
        cluster: None,
    })
}

fn progress_bar(label: &str, spec: &LoadSpec) -> ProgressBar {
    let (len, unit) = match spec.count {
        Some(n) => (n, "{pos}/{len}"),
        None => (spec.duration.as_millis() as u64, "{elapsed}"),
    };
    let bar = ProgressBar::new(len);
    let template = format!("{{prefix:>12}} [{{bar:30}}] {unit} {{msg}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

//! `lhcluster broker`: runs a broker until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lhcluster::{Broker, BrokerConfig};

use crate::common::{metrics, parse_duration, read_toml, serve_metrics, set, shutdown_signal};

/// Run a broker: clients and proxies connect to the frontend, workers to
/// the backend.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster broker --frontend tcp://*:5555 --backend tcp://*:5556 --metrics 127.0.0.1:9100"
)]
pub struct Args {
    /// Endpoint for clients and proxies (tcp://, ipc://, inproc://).
    #[arg(long)]
    frontend: Option<String>,
    /// Endpoint for workers.
    #[arg(long)]
    backend: Option<String>,
    /// TOML file with the broker's settings, keys as a `[[broker]]` table of
    /// a cluster file (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most requests queued per request type.
    #[arg(long)]
    max_pending_per_type: Option<usize>,
    /// Most requests queued in total.
    #[arg(long, visible_alias = "max-pending")]
    max_pending_total: Option<usize>,
    /// The broker's heartbeat interval (e.g. 1s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// A peer is dead after this many of its intervals in silence.
    #[arg(long)]
    liveness: Option<u32>,
    /// Most dispatches of a RETRY_ON_DEATH request.
    #[arg(long)]
    max_tries: Option<u32>,
    /// Log the stats at info level this often (e.g. 30s).
    #[arg(long, visible_alias = "stats-interval", value_parser = parse_duration)]
    stats_log_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = match &self.config {
            Some(path) => read_toml(path)?,
            None => BrokerConfig::new("", ""),
        };
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.backend);
        set(&mut config.max_pending_per_type, &self.max_pending_per_type);
        set(&mut config.max_pending_total, &self.max_pending_total);
        set(&mut config.heartbeat, &self.heartbeat);
        set(&mut config.liveness, &self.liveness);
        set(&mut config.max_tries, &self.max_tries);
        if self.stats_log_interval.is_some() {
            config.stats_log_interval = self.stats_log_interval;
        }
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let signal = shutdown_signal()?;
    let broker = Broker::start(config)?;
    println!(
        "broker frontend={} backend={}",
        broker.frontend(),
        broker.backend()
    );
    if let Some(addr) = &args.metrics {
        let b = broker.clone();
        serve_metrics(addr, move || {
            let mut registry = prometheus_client::registry::Registry::default();
            if let Ok(stats) = b.stats() {
                metrics::add_broker(&mut registry, &stats);
            }
            metrics::render(&registry)
        })?;
    }
    let _ = signal.recv();
    tracing::info!("signal received: stopping");
    broker.stop()?;
    Ok(ExitCode::SUCCESS)
}

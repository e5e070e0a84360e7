//! `lhcluster broker`: runs a broker until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lhcluster::{Broker, BrokerConfig};
use serde::Deserialize;

use crate::common::{metrics, parse_duration, serve_metrics, shutdown_signal};

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
    /// TOML file with these settings (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most requests queued per request type.
    #[arg(long)]
    max_pending_per_type: Option<usize>,
    /// Most requests queued in total.
    #[arg(long)]
    max_pending: Option<usize>,
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
    #[arg(long, value_parser = parse_duration)]
    stats_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
}

/// The broker settings of a config file (`broker --config`, or a
/// `[[broker]]` table of a cluster file).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Frontend endpoint.
    pub frontend: Option<String>,
    /// Backend endpoint.
    pub backend: Option<String>,
    /// Heartbeat interval, e.g. "1s".
    pub heartbeat: Option<String>,
    /// Liveness (missed intervals).
    pub liveness: Option<u32>,
    /// Queue bound per type.
    pub max_pending_per_type: Option<usize>,
    /// Queue bound in total.
    pub max_pending: Option<usize>,
    /// Dispatches of a RETRY_ON_DEATH request.
    pub max_tries: Option<u32>,
    /// Stats log period, e.g. "30s".
    pub stats_interval: Option<String>,
}

impl BrokerSection {
    /// A broker configuration from this section (endpoints required).
    pub fn to_config(&self) -> anyhow::Result<BrokerConfig> {
        let frontend = self
            .frontend
            .clone()
            .context("the broker needs a frontend endpoint")?;
        let backend = self
            .backend
            .clone()
            .context("the broker needs a backend endpoint")?;
        let mut config = BrokerConfig::new(frontend, backend);
        if let Some(h) = &self.heartbeat {
            config.heartbeat = parse_duration(h).map_err(anyhow::Error::msg)?;
        }
        if let Some(s) = &self.stats_interval {
            config.stats_log_interval = Some(parse_duration(s).map_err(anyhow::Error::msg)?);
        }
        if let Some(v) = self.liveness {
            config.liveness = v;
        }
        if let Some(v) = self.max_pending_per_type {
            config.max_pending_per_type = v;
        }
        if let Some(v) = self.max_pending {
            config.max_pending_total = v;
        }
        if let Some(v) = self.max_tries {
            config.max_tries = v;
        }
        Ok(config)
    }
}

/// Reads a TOML file into a section type.
pub fn read_toml<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut section: BrokerSection = match &args.config {
        Some(path) => read_toml(path)?,
        None => BrokerSection::default(),
    };
    if args.frontend.is_some() {
        section.frontend = args.frontend.clone();
    }
    if args.backend.is_some() {
        section.backend = args.backend.clone();
    }
    let mut config = section.to_config()?;
    if let Some(v) = args.max_pending_per_type {
        config.max_pending_per_type = v;
    }
    if let Some(v) = args.max_pending {
        config.max_pending_total = v;
    }
    if let Some(v) = args.heartbeat {
        config.heartbeat = v;
    }
    if let Some(v) = args.liveness {
        config.liveness = v;
    }
    if let Some(v) = args.max_tries {
        config.max_tries = v;
    }
    if args.stats_interval.is_some() {
        config.stats_log_interval = args.stats_interval;
    }
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

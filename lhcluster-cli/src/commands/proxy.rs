//! `lhcluster proxy`: runs a client proxy until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use serde::Deserialize;

use super::broker::read_toml;
use crate::common::{metrics, parse_duration, serve_metrics, shutdown_signal};

/// Run a client proxy: clients connect to it as to a broker; it buffers
/// their requests until confirmed and re-sends them across broker restarts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster proxy --broker tcp://127.0.0.1:5555 --bind tcp://*:5550"
)]
pub struct Args {
    /// The broker's frontend endpoint.
    #[arg(long)]
    broker: Option<String>,
    /// Endpoint clients connect to.
    #[arg(long)]
    bind: Option<String>,
    /// TOML file with these settings (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most requests buffered.
    #[arg(long)]
    max_buffered: Option<usize>,
    /// The proxy's heartbeat interval.
    #[arg(long, value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// First re-send delay of an unconfirmed request.
    #[arg(long, value_parser = parse_duration)]
    resend: Option<Duration>,
    /// Log the stats at info level this often.
    #[arg(long, value_parser = parse_duration)]
    stats_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
}

/// The proxy settings of a config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Broker frontend endpoint.
    pub broker: Option<String>,
    /// Client-facing endpoint.
    pub bind: Option<String>,
    /// Heartbeat interval.
    pub heartbeat: Option<String>,
    /// Buffer bound (requests).
    pub max_buffered: Option<usize>,
    /// Buffer bound (bytes).
    pub max_buffered_bytes: Option<usize>,
    /// First re-send delay.
    pub resend: Option<String>,
    /// Stats log period.
    pub stats_interval: Option<String>,
}

impl ProxySection {
    /// A proxy configuration from this section.
    pub fn to_config(&self) -> anyhow::Result<ClientProxyConfig> {
        let bind = self
            .bind
            .clone()
            .context("the proxy needs a bind endpoint")?;
        let broker = self
            .broker
            .clone()
            .context("the proxy needs a broker endpoint")?;
        let mut config = ClientProxyConfig::new(bind, broker);
        if let Some(h) = &self.heartbeat {
            config.heartbeat = parse_duration(h).map_err(anyhow::Error::msg)?;
        }
        if let Some(v) = &self.resend {
            config.resend_initial = parse_duration(v).map_err(anyhow::Error::msg)?;
        }
        if let Some(s) = &self.stats_interval {
            config.stats_log_interval = Some(parse_duration(s).map_err(anyhow::Error::msg)?);
        }
        if let Some(v) = self.max_buffered {
            config.max_buffered = v;
        }
        if let Some(v) = self.max_buffered_bytes {
            config.max_buffered_bytes = v;
        }
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut section: ProxySection = match &args.config {
        Some(path) => read_toml(path)?,
        None => ProxySection::default(),
    };
    if args.broker.is_some() {
        section.broker = args.broker.clone();
    }
    if args.bind.is_some() {
        section.bind = args.bind.clone();
    }
    let mut config = section.to_config()?;
    if let Some(v) = args.max_buffered {
        config.max_buffered = v;
    }
    if let Some(v) = args.heartbeat {
        config.heartbeat = v;
    }
    if let Some(v) = args.resend {
        config.resend_initial = v;
    }
    if args.stats_interval.is_some() {
        config.stats_log_interval = args.stats_interval;
    }
    let signal = shutdown_signal()?;
    let proxy = ClientProxy::start(config)?;
    println!("proxy bind={}", proxy.endpoint());
    if let Some(addr) = &args.metrics {
        let p = proxy.clone();
        serve_metrics(addr, move || {
            let mut registry = prometheus_client::registry::Registry::default();
            if let Ok(stats) = p.stats() {
                metrics::add_proxy(&mut registry, &stats);
            }
            metrics::render(&registry)
        })?;
    }
    let _ = signal.recv();
    tracing::info!("signal received: stopping");
    proxy.stop()?;
    Ok(ExitCode::SUCCESS)
}

//! `lhcluster proxy`: runs a client proxy until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};

use crate::common::{metrics, parse_duration, read_toml, serve_metrics, set, shutdown_signal};

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
    /// TOML file with the proxy's settings, keys as a `[[proxy]]` table of
    /// a cluster file (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most requests buffered.
    #[arg(long)]
    max_buffered: Option<usize>,
    /// The proxy's heartbeat interval.
    #[arg(long, value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// First re-send delay of an unconfirmed request.
    #[arg(long, visible_alias = "resend", value_parser = parse_duration)]
    resend_initial: Option<Duration>,
    /// Log the stats at info level this often.
    #[arg(long, visible_alias = "stats-interval", value_parser = parse_duration)]
    stats_log_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<ClientProxyConfig> {
        let mut config = match &self.config {
            Some(path) => read_toml(path)?,
            None => ClientProxyConfig::new("", ""),
        };
        set(&mut config.bind, &self.bind);
        if let Some(broker) = &self.broker {
            config.brokers = vec![broker.clone()];
        }
        set(&mut config.max_buffered, &self.max_buffered);
        set(&mut config.heartbeat, &self.heartbeat);
        set(&mut config.resend_initial, &self.resend_initial);
        if self.stats_log_interval.is_some() {
            config.stats_log_interval = self.stats_log_interval;
        }
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
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

//! `lhcluster proxy`: runs a client proxy until SIGINT / SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};

use crate::common::{parse_duration, parse_metrics_addr, set};
use crate::daemon::{self, ConfigFlags};

/// Run a client proxy: clients connect to it as to a broker; it buffers
/// their requests until confirmed and re-sends them across broker restarts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster proxy --broker tcp://127.0.0.1:5555 --bind tcp://*:5550"
)]
pub struct Args {
    /// The broker's frontend endpoint; repeat it to give several (one is
    /// used at a time, the next when it is gone).
    #[arg(long)]
    broker: Vec<String>,
    /// Endpoint clients connect to.
    #[arg(long)]
    bind: Option<String>,
    #[command(flatten)]
    config: ConfigFlags,
    /// Most requests buffered.
    #[arg(long)]
    max_buffered: Option<usize>,
    /// First re-send delay of an unconfirmed request.
    #[arg(long, visible_alias = "resend", value_parser = parse_duration)]
    resend_initial: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check
    /// at http://ADDR/healthz (ADDR: HOST:PORT, e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    metrics: Option<String>,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<ClientProxyConfig> {
        let mut config: ClientProxyConfig = self.config.load()?;
        set(&mut config.bind, &self.bind);
        if !self.broker.is_empty() {
            config.brokers.clone_from(&self.broker);
        }
        set(&mut config.max_buffered, &self.max_buffered);
        set(&mut config.resend_initial, &self.resend_initial);
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    daemon::run(
        "proxy",
        config,
        ClientProxy::start,
        ClientProxy::stop,
        args.metrics.as_deref(),
    )
}

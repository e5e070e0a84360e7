//! `lhcluster proxy`: runs a client proxy until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};

use crate::commands::keys::{self, SecretKeyFlag, ServerKeyFlag};
use crate::common::{parse_duration, parse_metrics_addr, set};
use crate::daemon::{self, ConfigFlags, InputLimitFlags, InputLimits};

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
    // The client side's CURVE key (clients then need its public key), also
    // the proxy's own key towards a CURVE broker.
    #[command(flatten)]
    secret_key: SecretKeyFlag,
    #[command(flatten)]
    server_key: ServerKeyFlag,
    /// File of the client public keys the client side lets in, one per
    /// line (needs --secret-key).
    #[arg(long, value_name = "FILE")]
    client_keys: Option<PathBuf>,
    #[command(flatten)]
    limits: InputLimitFlags,
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
        self.secret_key.apply(&mut config.curve_secret_key)?;
        self.server_key.apply(&mut config.curve_server_key)?;
        keys::apply_list(&self.client_keys, &mut config.curve_client_keys)?;
        config.apply_limits(&self.limits);
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    // SIGHUP: the client key list read again (the config file's and the
    // key file), put in force for the handshakes and requests to come.
    let reload = |proxy: &ClientProxy| -> anyhow::Result<()> {
        match args.config()?.curve_client_keys {
            Some(list) => proxy.reload_keys(list)?,
            None => tracing::info!("SIGHUP: the proxy has no client key list to reload"),
        }
        Ok(())
    };
    daemon::run(
        "proxy",
        config,
        ClientProxy::start,
        ClientProxy::stop,
        args.metrics.as_deref(),
        Some(&reload),
    )
}

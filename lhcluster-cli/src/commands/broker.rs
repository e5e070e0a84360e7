//! `lhcluster broker`: runs a broker until SIGINT / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use lhcluster::{Broker, BrokerConfig};

use crate::commands::keys::{self, SecretKeyFlag};
use crate::common::{parse_metrics_addr, set};
use crate::daemon::{self, ConfigFlags, InputLimitFlags, InputLimits};

/// Run a broker: clients and proxies connect to the frontend, workers to
/// the backend.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  lhcluster broker --frontend tcp://*:5555 --backend tcp://*:5556 --metrics 127.0.0.1:9100\n  lhcluster broker --cluster tcp://*:5557 --peer tcp://b2:5557 --peer tcp://b3:5557   (one of three; docs/clustering.md)"
)]
pub struct Args {
    /// Endpoint for clients and proxies (tcp://, ipc://, inproc://).
    #[arg(long)]
    frontend: Option<String>,
    /// Endpoint for workers.
    #[arg(long)]
    backend: Option<String>,
    #[command(flatten)]
    config: ConfigFlags,
    /// Most requests queued per request type.
    #[arg(long)]
    max_pending_per_type: Option<usize>,
    /// Most requests queued in total.
    #[arg(long, visible_alias = "max-pending")]
    max_pending_total: Option<usize>,
    /// Most dispatches of a RETRY_ON_DEATH request.
    #[arg(long)]
    max_tries: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check
    /// at http://ADDR/healthz (ADDR: HOST:PORT, e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    metrics: Option<String>,
    /// Endpoint where the other brokers of a cluster connect.
    #[arg(long, value_name = "ENDPOINT")]
    cluster: Option<String>,
    /// Cluster endpoint of another broker of the cluster (repeat for each;
    /// every broker should list every other).
    #[arg(long = "peer", value_name = "ENDPOINT")]
    peers: Vec<String>,
    /// This broker's name in the cluster (logs and stats).
    #[arg(long)]
    name: Option<String>,
    /// Bind a watch tap here (a PUB socket) that publishes each request
    /// and outcome, without payloads, for `lhcluster watch`; off by
    /// default. With --secret-key it takes the frontend's key and client
    /// key list.
    #[arg(long, value_name = "ENDPOINT")]
    watch: Option<String>,
    #[command(flatten)]
    secret_key: SecretKeyFlag,
    /// File of the client public keys the frontend lets in, one per line
    /// (needs --secret-key).
    #[arg(long, value_name = "FILE")]
    client_keys: Option<PathBuf>,
    /// File of the worker public keys the backend lets in, one per line
    /// (needs --secret-key).
    #[arg(long, value_name = "FILE")]
    worker_keys: Option<PathBuf>,
    #[command(flatten)]
    limits: InputLimitFlags,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<BrokerConfig> {
        let mut config: BrokerConfig = self.config.load()?;
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.backend);
        set(&mut config.max_pending_per_type, &self.max_pending_per_type);
        set(&mut config.max_pending_total, &self.max_pending_total);
        set(&mut config.max_tries, &self.max_tries);
        if self.cluster.is_some() {
            config.cluster_bind = self.cluster.clone();
        }
        if !self.peers.is_empty() {
            config.cluster_peers = self.peers.clone();
        }
        if self.name.is_some() {
            config.name = self.name.clone();
        }
        if self.watch.is_some() {
            config.watch = self.watch.clone();
        }
        self.secret_key.apply(&mut config.curve_secret_key)?;
        keys::apply_list(&self.client_keys, &mut config.curve_client_keys)?;
        keys::apply_list(&self.worker_keys, &mut config.curve_worker_keys)?;
        config.apply_limits(&self.limits);
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    // SIGHUP: the key lists read again (the config file's and the key
    // files), put in force for the handshakes and messages to come.
    let reload = |broker: &Broker| -> anyhow::Result<()> {
        let fresh = args.config()?;
        broker.reload_keys(fresh.curve_client_keys, fresh.curve_worker_keys)?;
        Ok(())
    };
    daemon::run(
        "broker",
        config,
        Broker::start,
        Broker::stop,
        args.metrics.as_deref(),
        Some(&reload),
    )
}

//! What the daemons (`broker`, `proxy`, `notify-broker`, `worker`, and the
//! roles of `up`) share: the flags of the options every role has, the
//! config file, the ready line, metrics, and running until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::Receiver;
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};
use lhcluster::worker::WorkerConfig;
use lhcluster::{Broker, BrokerConfig};
use prometheus_client::registry::Registry;

use crate::common::{MetricsServer, metrics, parse_duration, read_toml, set, shutdown_signal};
use lhcluster_cli::bench::parse_size;

/// The flags of the options every role has, named as its config's keys
/// (docs/operations.md, configuration reference). A flag given wins over
/// the file and the default.
#[derive(Debug, clap::Args)]
pub struct SharedFlags {
    /// This role's heartbeat interval (e.g. 1s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// A peer is dead after this many of its intervals in silence.
    #[arg(long)]
    liveness: Option<u32>,
    /// Log the stats at info level this often (e.g. 30s).
    #[arg(long, visible_alias = "stats-interval", value_parser = parse_duration)]
    stats_log_interval: Option<Duration>,
}

/// The input limits of a role that binds (docs/security.md, "Limits on
/// input").
#[derive(Debug, Default, clap::Args)]
pub struct InputLimitFlags {
    /// Largest frame a peer may send (e.g. 16MiB, the default; suffixes
    /// k/KiB, M/MiB): libzmq cuts the connection of a peer that sends a
    /// larger one.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,
    /// Most frames a message may have (default 1024): one with more, or
    /// with more bytes in all than --max-message-size, is dropped and
    /// counted.
    #[arg(long, value_name = "N")]
    max_message_frames: Option<usize>,
}

/// A config with input limits.
pub trait InputLimits {
    /// Sets the limits whose flag is given.
    fn apply_limits(&mut self, flags: &InputLimitFlags);
}

macro_rules! input_limits {
    ($($config:ty),*) => {$(
        impl InputLimits for $config {
            fn apply_limits(&mut self, flags: &InputLimitFlags) {
                set(&mut self.max_message_size, &flags.max_message_size);
                set(&mut self.max_message_frames, &flags.max_message_frames);
            }
        }
    )*};
}

input_limits!(BrokerConfig, ClientProxyConfig, NotifyBrokerConfig);

/// A daemon's configuration: a file, or the defaults, with the flags of the
/// shared options over it.
#[derive(Debug, clap::Args)]
pub struct ConfigFlags {
    /// TOML file with this role's settings, keys as its table in a cluster
    /// file (`[[broker]]`, `[[proxy]]`, `[[notify_broker]]`); flags win over
    /// the file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    shared: SharedFlags,
}

impl ConfigFlags {
    /// The file's configuration (or the defaults), with the shared flags
    /// applied; the caller applies its role's own flags.
    pub fn load<C: SharedOptions + serde::de::DeserializeOwned>(&self) -> anyhow::Result<C> {
        let mut config: C = match &self.config {
            Some(path) => read_toml(path)?,
            // No file reads as an empty one: every key at its default, no
            // endpoint yet (the role's own flags give them).
            None => toml::from_str("")?,
        };
        config.apply(&self.shared);
        Ok(config)
    }
}

/// A role's config, which the shared flags apply to.
pub trait SharedOptions {
    /// Sets the options whose flag is given.
    fn apply(&mut self, flags: &SharedFlags);
}

/// Every role's config names the shared options alike (the library's
/// rule), so one body serves them all.
macro_rules! shared_options {
    ($($config:ty),*) => {$(
        impl SharedOptions for $config {
            fn apply(&mut self, flags: &SharedFlags) {
                set(&mut self.heartbeat, &flags.heartbeat);
                set(&mut self.liveness, &flags.liveness);
                if let Some(interval) = flags.stats_log_interval {
                    self.stats_log_interval = Some(interval);
                }
            }
        }
    )*};
}

shared_options!(
    BrokerConfig,
    ClientProxyConfig,
    NotifyBrokerConfig,
    WorkerConfig
);

/// A role the CLI runs as a daemon.
pub trait Daemon: Clone + Send + 'static {
    /// The role's configuration.
    type Config;
    /// The endpoints its ready line names, in order, with their names
    /// (`frontend`, `backend`…), as the role reports them (a `tcp://…:0`
    /// port resolved; `*` as `127.0.0.1`, a form peers can connect to).
    fn endpoints(&self) -> Vec<(&'static str, String)>;
    /// The same endpoints as configured, in the same order.
    fn configured(config: &Self::Config) -> Vec<String>;
    /// Adds the role's current statistics to a metrics registry (roles
    /// without metrics add nothing).
    fn add_metrics(&self, _registry: &mut Registry) {}
    /// Whether the role still serves: its driver thread answers (`/healthz`).
    fn healthy(&self) -> bool;
}

/// What a role's ready line says after its name, once its sockets are
/// bound (docs/operations.md: scripts wait for it): each endpoint as
/// bound, `tcp://0.0.0.0:PORT` for a `tcp://*:…` bind.
pub fn ready<D: Daemon>(role: &D, configured: &[String]) -> String {
    let endpoints = role.endpoints();
    let words: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (name, endpoint))| {
            let bound = as_bound(endpoint, configured.get(i).map(String::as_str));
            format!("{name}={bound}")
        })
        .collect();
    words.join(" ")
}

/// A reported endpoint as it was bound: the role reports a `tcp://*:…`
/// bind as `tcp://127.0.0.1:…` (where a peer on this host connects); the
/// socket listens on every interface, `0.0.0.0`.
fn as_bound(reported: &str, configured: Option<&str>) -> String {
    let wildcard = configured.is_some_and(|c| c.starts_with("tcp://*:"));
    match reported.strip_prefix("tcp://127.0.0.1:") {
        Some(port) if wildcard => format!("tcp://0.0.0.0:{port}"),
        _ => reported.to_owned(),
    }
}

impl Daemon for Broker {
    type Config = BrokerConfig;
    fn healthy(&self) -> bool {
        self.stats().is_ok()
    }
    fn endpoints(&self) -> Vec<(&'static str, String)> {
        let mut endpoints = vec![
            ("frontend", self.frontend().to_owned()),
            ("backend", self.backend().to_owned()),
        ];
        if let Some(cluster) = self.cluster_endpoint() {
            endpoints.push(("cluster", cluster.to_owned()));
        }
        if let Some(watch) = self.watch_endpoint() {
            endpoints.push(("watch", watch.to_owned()));
        }
        endpoints
    }
    fn configured(config: &BrokerConfig) -> Vec<String> {
        let mut endpoints = vec![config.frontend.clone(), config.backend.clone()];
        endpoints.extend(config.cluster_bind.clone());
        endpoints.extend(config.watch.clone());
        endpoints
    }
    fn add_metrics(&self, registry: &mut Registry) {
        metrics::add_broker(registry, self);
    }
}

impl Daemon for NotifyBroker {
    type Config = NotifyBrokerConfig;
    fn healthy(&self) -> bool {
        self.stats().is_ok()
    }
    fn endpoints(&self) -> Vec<(&'static str, String)> {
        vec![
            ("subscribers", self.frontend().to_owned()),
            ("publishers", self.backend().to_owned()),
        ]
    }
    fn configured(config: &NotifyBrokerConfig) -> Vec<String> {
        vec![config.frontend.clone(), config.backend.clone()]
    }
    fn add_metrics(&self, registry: &mut Registry) {
        metrics::add_notify_broker(registry, self);
    }
}

impl Daemon for ClientProxy {
    type Config = ClientProxyConfig;
    fn healthy(&self) -> bool {
        self.stats().is_ok()
    }
    fn endpoints(&self) -> Vec<(&'static str, String)> {
        vec![("bind", self.endpoint().to_owned())]
    }
    fn configured(config: &ClientProxyConfig) -> Vec<String> {
        vec![config.bind.clone()]
    }
    fn add_metrics(&self, registry: &mut Registry) {
        metrics::add_proxy(registry, self);
    }
}

/// What a daemon does on SIGHUP: reload what it can (its key files), or
/// nothing.
pub type Reload<'a, D> = Option<&'a dyn Fn(&D) -> anyhow::Result<()>>;

/// Runs a role as a daemon: starts it, prints its ready line (`name …`),
/// serves its metrics at `metrics` if given, calls `reload` on each SIGHUP
/// (a failed reload is logged and changes nothing), and stops it on SIGINT
/// or SIGTERM.
pub fn run<D: Daemon>(
    name: &str,
    config: D::Config,
    start: impl FnOnce(D::Config) -> Result<D, lhcluster::Error>,
    stop: impl FnOnce(&D) -> Result<(), lhcluster::Error>,
    metrics: Option<&str>,
    reload: Reload<'_, D>,
) -> anyhow::Result<ExitCode> {
    // First, before any thread starts: SIGHUP is then never a thread's.
    let hangup = crate::common::hangup_signal()?;
    // Before starting: a signal from then on stops the role gracefully.
    let signal = shutdown_signal()?;
    // Bound before the role starts: a port in use stops nothing.
    let metrics = metrics.map(MetricsServer::bind).transpose()?;
    let configured = D::configured(&config);
    let role = start(config)?;
    if let Some(server) = metrics {
        let (r, h) = (role.clone(), role.clone());
        server.serve(move |registry| r.add_metrics(registry), move || h.healthy())?;
    }
    println!("{name} {}", ready(&role, &configured));
    loop {
        crossbeam_channel::select! {
            recv(signal) -> _ => break,
            recv(hangup) -> _ => match reload {
                Some(reload) => match reload(&role) {
                    Ok(()) => tracing::info!("SIGHUP: key files reloaded"),
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "SIGHUP: reload failed; the keys in force are unchanged"
                    ),
                },
                None => tracing::info!("SIGHUP: nothing to reload for {name}"),
            },
        }
    }
    tracing::info!("signal received: stopping");
    stop(&role)?;
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGINT or SIGTERM on `signal`, then stops the role.
pub fn until_signal(
    signal: &Receiver<()>,
    stop: impl FnOnce() -> Result<(), lhcluster::Error>,
) -> anyhow::Result<ExitCode> {
    let _ = signal.recv();
    tracing::info!("signal received: stopping");
    stop()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    fn load<C: SharedOptions + serde::de::DeserializeOwned>(args: &[&str]) -> C {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        cli.flags.load().unwrap()
    }

    #[test]
    fn a_wildcard_bind_is_shown_as_bound() {
        assert_eq!(
            as_bound("tcp://127.0.0.1:6655", Some("tcp://*:6655")),
            "tcp://0.0.0.0:6655"
        );
        assert_eq!(
            as_bound("tcp://127.0.0.1:41000", Some("tcp://*:0")),
            "tcp://0.0.0.0:41000"
        );
        for configured in [Some("tcp://127.0.0.1:0"), Some("ipc:///tmp/x"), None] {
            assert_eq!(
                as_bound("tcp://127.0.0.1:41000", configured),
                "tcp://127.0.0.1:41000"
            );
        }
    }

    #[test]
    fn without_flags_every_option_keeps_the_library_default() {
        let b: BrokerConfig = load(&[]);
        let d = BrokerConfig::new("", "");
        assert_eq!(
            (b.heartbeat, b.liveness, b.stats_log_interval, b.hwm),
            (d.heartbeat, d.liveness, d.stats_log_interval, d.hwm)
        );
        assert_eq!((b.frontend.as_str(), b.backend.as_str()), ("", ""));
    }

    #[test]
    fn the_shared_flags_set_the_same_options_on_every_role() {
        let args = [
            "--heartbeat",
            "250ms",
            "--liveness",
            "5",
            "--stats-interval",
            "30s",
        ];
        let expect = (Duration::from_millis(250), 5, Some(Duration::from_secs(30)));
        let b: BrokerConfig = load(&args);
        let p: ClientProxyConfig = load(&args);
        let n: NotifyBrokerConfig = load(&args);
        let w: WorkerConfig = load(&args);
        for got in [
            (b.heartbeat, b.liveness, b.stats_log_interval),
            (p.heartbeat, p.liveness, p.stats_log_interval),
            (n.heartbeat, n.liveness, n.stats_log_interval),
            (w.heartbeat, w.liveness, w.stats_log_interval),
        ] {
            assert_eq!(got, expect);
        }
    }
}

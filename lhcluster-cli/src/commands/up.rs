//! `lhcluster up FILE`: runs every role a TOML cluster file declares, in
//! one process, until SIGINT / SIGTERM; SIGHUP reloads their key lists. Format: docs/operations.md and
//! examples/cluster.toml.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};
use lhcluster::{Broker, BrokerConfig};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::worker::WorkerTable;
use crate::common::{MetricsServer, parse_metrics_addr, read_toml, shutdown_signal};
use crate::daemon::{self, Daemon};

/// Run all the roles of a cluster file in one process.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  lhcluster up examples/cluster.toml")]
pub struct Args {
    /// The cluster file (TOML).
    file: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check
    /// at http://ADDR/healthz (ADDR: HOST:PORT; overrides the file).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    metrics: Option<String>,
}

/// A cluster file: each table is read straight into the library's config
/// of that role (keys as its fields: docs/operations.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Where to serve metrics.
    pub metrics: Option<String>,
    /// Brokers.
    #[serde(default)]
    pub broker: Vec<BrokerConfig>,
    /// Client proxies.
    #[serde(default)]
    pub proxy: Vec<ClientProxyConfig>,
    /// Notify brokers.
    #[serde(default)]
    pub notify_broker: Vec<NotifyBrokerConfig>,
    /// Generic workers.
    #[serde(default)]
    pub worker: Vec<WorkerTable>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file: ClusterFile = read_toml(&args.file)?;
    if file.broker.is_empty()
        && file.proxy.is_empty()
        && file.notify_broker.is_empty()
        && file.worker.is_empty()
    {
        anyhow::bail!("{} declares no role", args.file.display());
    }
    // First, before any thread starts: SIGHUP is then never a thread's.
    let hangup = crate::common::hangup_signal()?;
    let signal = shutdown_signal()?;
    // Bound before any role starts: a port in use stops nothing.
    let metrics = match args.metrics.as_deref().or(file.metrics.as_deref()) {
        Some(addr) => {
            parse_metrics_addr(addr)
                .map_err(|e| anyhow::anyhow!("{}: `metrics`: {e}", args.file.display()))?;
            Some(MetricsServer::bind(addr)?)
        }
        None => None,
    };
    let brokers = start_each("broker", file.broker, Broker::start)?;
    let notify_brokers = start_each("notify-broker", file.notify_broker, NotifyBroker::start)?;
    let proxies = start_each("proxy", file.proxy, ClientProxy::start)?;
    let mut workers = Vec::with_capacity(file.worker.len());
    for (i, table) in file.worker.iter().enumerate() {
        workers.push(table.start().with_context(|| format!("worker #{i}"))?);
        println!("worker #{i} started");
    }
    if let Some(server) = metrics {
        let (b, n, p) = (brokers.clone(), notify_brokers.clone(), proxies.clone());
        let (hb, hn, hp) = (brokers.clone(), notify_brokers.clone(), proxies.clone());
        server.serve(
            move |registry| {
                add_numbered(registry, &b);
                add_numbered(registry, &n);
                add_numbered(registry, &p);
            },
            move || {
                hb.iter().all(Daemon::healthy)
                    && hn.iter().all(Daemon::healthy)
                    && hp.iter().all(Daemon::healthy)
            },
        )?;
    }
    println!("cluster up");
    loop {
        crossbeam_channel::select! {
            recv(signal) -> _ => break,
            recv(hangup) -> _ => match reload(&args.file, &brokers, &proxies, &notify_brokers) {
                Ok(()) => tracing::info!("SIGHUP: key files reloaded"),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "SIGHUP: reload failed; the keys in force are unchanged"
                ),
            },
        }
    }
    tracing::info!("signal received: stopping the cluster");
    // Stop in reverse: workers first, brokers last.
    for w in &workers {
        let _ = w.stop();
    }
    for p in &proxies {
        let _ = p.stop();
    }
    for nb in &notify_brokers {
        let _ = nb.stop();
    }
    for b in &brokers {
        let _ = b.stop();
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: reads the file again and puts each role's key lists in force
/// (docs/security.md, "Reloading keys"); the roles themselves stay as
/// started. A file that no longer reads, or declares another number of
/// roles, changes nothing.
fn reload(
    path: &std::path::Path,
    brokers: &[Broker],
    proxies: &[ClientProxy],
    notify_brokers: &[NotifyBroker],
) -> anyhow::Result<()> {
    let file: ClusterFile = read_toml(path)?;
    let counts = [
        ("broker", brokers.len(), file.broker.len()),
        ("proxy", proxies.len(), file.proxy.len()),
        (
            "notify_broker",
            notify_brokers.len(),
            file.notify_broker.len(),
        ),
    ];
    for (table, running, declared) in counts {
        anyhow::ensure!(
            running == declared,
            "{} now declares {declared} [[{table}]] tables, {running} run: restart to change the roles",
            path.display()
        );
    }
    for (i, (role, fresh)) in brokers.iter().zip(file.broker).enumerate() {
        role.reload_keys(fresh.curve_client_keys, fresh.curve_worker_keys)
            .with_context(|| format!("broker #{i}"))?;
    }
    for (i, (role, fresh)) in proxies.iter().zip(file.proxy).enumerate() {
        if let Some(list) = fresh.curve_client_keys {
            role.reload_keys(list)
                .with_context(|| format!("proxy #{i}"))?;
        }
    }
    for (i, (role, fresh)) in notify_brokers.iter().zip(file.notify_broker).enumerate() {
        role.reload_keys(fresh.curve_subscriber_keys, fresh.curve_publisher_keys)
            .with_context(|| format!("notify-broker #{i}"))?;
    }
    Ok(())
}

/// Adds the metrics of each role, labelled with its number in the file.
fn add_numbered(registry: &mut Registry, roles: &[impl Daemon]) {
    for (i, role) in roles.iter().enumerate() {
        let label = (Cow::Borrowed("instance"), Cow::Owned(i.to_string()));
        role.add_metrics(registry.sub_registry_with_label(label));
    }
}

/// Starts the roles of one kind in the file's order, each with its ready
/// line, numbered (`broker #0 frontend=… backend=…`).
fn start_each<R: Daemon>(
    kind: &str,
    configs: Vec<R::Config>,
    start: impl Fn(R::Config) -> Result<R, lhcluster::Error>,
) -> anyhow::Result<Vec<R>> {
    let mut started = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let configured = R::configured(&config);
        let role = start(config).with_context(|| format!("{kind} #{i}"))?;
        println!("{kind} #{i} {}", daemon::ready(&role, &configured));
        started.push(role);
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> ClusterFile {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every value of examples/cluster.toml reaches the library's configs.
    fn assert_example_values(file: &ClusterFile) {
        let b = &file.broker[0];
        assert_eq!(
            (b.frontend.as_str(), b.backend.as_str()),
            ("tcp://*:5555", "tcp://*:5556")
        );
        assert_eq!(b.heartbeat, Duration::from_secs(1));
        assert_eq!((b.liveness, b.max_tries), (3, 2));
        assert_eq!(
            (b.max_pending_per_type, b.max_pending_total),
            (100_000, 1_000_000)
        );
        assert_eq!(b.stats_log_interval, Some(Duration::from_secs(60)));
        let p = &file.proxy[0];
        assert_eq!(p.bind, "tcp://*:5550");
        assert_eq!(p.brokers, ["tcp://127.0.0.1:5555"]);
        assert_eq!(p.resend_initial, Duration::from_secs(2));
        assert_eq!(p.max_buffered, 100_000);
        assert_eq!(file.notify_broker[0].backend, "tcp://*:5561");
        let w = &file.worker[1];
        assert_eq!(w.config.brokers, ["tcp://127.0.0.1:5556"]);
        assert_eq!(w.config.capacity, 2);
        assert_eq!(w.exec.as_deref(), Some("tr a-z A-Z"));
        assert!(file.worker[0].echo);
        for config in &file.broker {
            config.validate().unwrap();
        }
        for config in &file.proxy {
            config.validate().unwrap();
        }
        for table in &file.worker {
            table.config.validate().unwrap();
        }
    }

    #[test]
    fn the_example_file_reads_into_the_library_configs() {
        let text = include_str!("../../../examples/cluster.toml");
        assert_example_values(&parse(text));
    }

    /// The keys cluster files were written with before they were renamed to
    /// the library's names (`max_pending`, `stats_interval`, `resend`,
    /// `broker = "…"`) still read the same.
    #[test]
    fn files_with_the_older_key_names_still_read() {
        let text = r#"
metrics = "127.0.0.1:9100"

[[broker]]
frontend = "tcp://*:5555"
backend = "tcp://*:5556"
heartbeat = "1s"
liveness = 3
max_pending_per_type = 100000
max_pending = 1000000
max_tries = 2
stats_interval = "60s"

[[proxy]]
bind = "tcp://*:5550"
broker = "tcp://127.0.0.1:5555"
heartbeat = "1s"
max_buffered = 100000
resend = "2s"

[[notify_broker]]
frontend = "tcp://*:5560"
backend = "tcp://*:5561"

[[worker]]
broker = "tcp://127.0.0.1:5556"
types = ["echo"]
echo = true
capacity = 4

[[worker]]
broker = "tcp://127.0.0.1:5556"
types = ["upper", 42]
exec = "tr a-z A-Z"
capacity = 2
"#;
        assert_example_values(&parse(text));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_name() {
        for (text, needle) in [
            (
                "[[broker]]\nfrontend = \"tcp://*:1\"\nbakend = \"x\"",
                "bakend",
            ),
            ("[[proxy]]\nresnd = \"1s\"", "resnd"),
            (
                "[[worker]]\ntypes = [1]\necho = true\ncapacty = 2",
                "capacty",
            ),
            ("[[broker]]\nheartbeat = \"soon\"", "soon"),
            ("[[notify_broker]]\nhwm = \"many\"", "hwm"),
        ] {
            let e = toml::from_str::<ClusterFile>(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}

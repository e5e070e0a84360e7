//! `lhcluster up FILE`: runs every role a TOML cluster file declares, in
//! one process, until SIGINT / SIGTERM. Format: docs/operations.md and
//! examples/cluster.toml.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lhcluster::Broker;
use lhcluster::client_proxy::ClientProxy;
use serde::Deserialize;

use super::broker::{BrokerSection, read_toml};
use super::notify_broker::NotifyBrokerSection;
use super::proxy::ProxySection;
use super::worker::WorkerSection;
use crate::common::{metrics, serve_metrics, shutdown_signal};

/// Run all the roles of a cluster file in one process.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  lhcluster up examples/cluster.toml")]
pub struct Args {
    /// The cluster file (TOML).
    file: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides the file).
    #[arg(long)]
    metrics: Option<String>,
}

/// A cluster file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Where to serve metrics.
    pub metrics: Option<String>,
    /// Brokers.
    #[serde(default)]
    pub broker: Vec<BrokerSection>,
    /// Client proxies.
    #[serde(default)]
    pub proxy: Vec<ProxySection>,
    /// Notify brokers.
    #[serde(default)]
    pub notify_broker: Vec<NotifyBrokerSection>,
    /// Generic workers.
    #[serde(default)]
    pub worker: Vec<WorkerSection>,
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
    let signal = shutdown_signal()?;
    let mut brokers: Vec<Broker> = Vec::new();
    for (i, section) in file.broker.iter().enumerate() {
        let broker = Broker::start(section.to_config()?).with_context(|| format!("broker #{i}"))?;
        println!(
            "broker #{i} frontend={} backend={}",
            broker.frontend(),
            broker.backend()
        );
        brokers.push(broker);
    }
    let mut notify_brokers = Vec::new();
    for (i, section) in file.notify_broker.iter().enumerate() {
        let nb = section
            .start()
            .with_context(|| format!("notify broker #{i}"))?;
        println!(
            "notify-broker #{i} frontend={} backend={}",
            nb.frontend(),
            nb.backend()
        );
        notify_brokers.push(nb);
    }
    let mut proxies: Vec<ClientProxy> = Vec::new();
    for (i, section) in file.proxy.iter().enumerate() {
        let proxy =
            ClientProxy::start(section.to_config()?).with_context(|| format!("proxy #{i}"))?;
        println!("proxy #{i} bind={}", proxy.endpoint());
        proxies.push(proxy);
    }
    let mut workers = Vec::new();
    for (i, section) in file.worker.iter().enumerate() {
        workers.push(section.start().with_context(|| format!("worker #{i}"))?);
        println!("worker #{i} started");
    }
    if let Some(addr) = args.metrics.as_deref().or(file.metrics.as_deref()) {
        let (b, p) = (brokers.clone(), proxies.clone());
        serve_metrics(addr, move || {
            let mut registry = prometheus_client::registry::Registry::default();
            for (i, broker) in b.iter().enumerate() {
                let label = (Cow::Borrowed("instance"), Cow::Owned(i.to_string()));
                if let Ok(stats) = broker.stats() {
                    metrics::add_broker(registry.sub_registry_with_label(label), &stats);
                }
            }
            for (i, proxy) in p.iter().enumerate() {
                let label = (Cow::Borrowed("instance"), Cow::Owned(i.to_string()));
                if let Ok(stats) = proxy.stats() {
                    metrics::add_proxy(registry.sub_registry_with_label(label), &stats);
                }
            }
            metrics::render(&registry)
        })?;
    }
    println!("cluster up");
    let _ = signal.recv();
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

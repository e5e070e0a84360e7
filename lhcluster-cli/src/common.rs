//! What the commands share: argument parsers, exit codes, signals, metrics.

use anyhow::Context;
use crossbeam_channel::Receiver;
use lhcluster::RequestType;

/// Generic failure (bad flag value, endpoint, config…).
pub const EXIT_ERROR: u8 = 1;

// In the library: `lhcluster bench`'s arguments, which the benchmark lab
// shares, parse durations too.
pub use lhcluster_cli::parse_duration;

/// Reads a TOML file into a config type (the library's configs read their
/// tables directly: `lhcluster` enables its `serde` feature).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// A flag overrides what the file (or the default) set, when given.
pub fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *field = value.clone();
    }
}

/// Parses a request type: a number, or a name mapped to the same id as
/// `#[derive(Request)]` computes ([`lhcluster::request_type_id`]).
pub fn parse_request_type(text: &str) -> Result<RequestType, String> {
    match text.parse::<RequestType>() {
        Ok(0) => Err("request type 0 is reserved".to_owned()),
        Ok(t) => Ok(t),
        Err(_) if !text.is_empty() => Ok(lhcluster::request_type_id(text)),
        Err(_) => Err("empty request type".to_owned()),
    }
}

/// A channel that yields on every SIGHUP. Call it before any thread is
/// started (`shutdown_signal` starts one): SIGHUP is blocked in this thread
/// and so in every thread started after it, and one thread of its own
/// waits for it (`sigwait`), so that no other thread is ever interrupted
/// by it nor killed (its default action).
#[cfg(unix)]
pub fn hangup_signal() -> anyhow::Result<Receiver<()>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set.thread_block().context("blocking SIGHUP")?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("lhcluster-sighup".to_owned())
        .spawn(move || {
            while let Ok(Signal::SIGHUP) = set.wait() {
                // One pending reload is enough: a burst of signals is one.
                let _ = tx.try_send(());
            }
        })
        .context("starting the SIGHUP thread")?;
    Ok(rx)
}

/// Elsewhere: no SIGHUP, a channel that never yields.
#[cfg(not(unix))]
pub fn hangup_signal() -> anyhow::Result<Receiver<()>> {
    Ok(crossbeam_channel::never())
}

/// A channel that yields once on SIGINT or SIGTERM.
pub fn shutdown_signal() -> anyhow::Result<Receiver<()>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    Ok(rx)
}

/// Serves Prometheus text exposition on `addr` (`GET /metrics`), on a
/// background thread: each scrape renders a fresh registry that `fill` adds
/// the current statistics to.
pub fn serve_metrics(
    addr: &str,
    fill: impl Fn(&mut prometheus_client::registry::Registry) + Send + 'static,
) -> anyhow::Result<std::net::SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("metrics listener has no IP address")?;
    std::thread::Builder::new()
        .name("lhcluster-metrics".to_owned())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid static header");
                    let mut registry = prometheus_client::registry::Registry::default();
                    fill(&mut registry);
                    tiny_http::Response::from_string(metrics::render(&registry)).with_header(header)
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })
        .context("spawning the metrics thread")?;
    tracing::info!(%bound, "serving metrics at /metrics");
    Ok(bound)
}

/// Renders broker and proxy statistics as OpenMetrics text.
pub mod metrics {
    use lhcluster::client_proxy::{ClientProxy, ClientProxyStats};
    use lhcluster::{Broker, BrokerStats};
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    /// A metric: its name, its help text and its value.
    type Metric<'a> = (&'a str, &'a str, u64);

    /// Registers counters and gauges (a gauge saturates at `i64::MAX`).
    fn register(registry: &mut Registry, counters: &[Metric<'_>], gauges: &[Metric<'_>]) {
        for &(name, help, value) in counters {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            registry.register(name, help, c);
        }
        for &(name, help, value) in gauges {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(name, help, g);
        }
    }

    /// Adds a broker's current statistics to `registry` (none if it does
    /// not answer: it is stopping).
    pub fn add_broker(registry: &mut Registry, broker: &Broker) {
        if let Ok(stats) = broker.stats() {
            add_broker_stats(registry, &stats);
        }
    }

    /// Adds a client proxy's current statistics to `registry` (none if it
    /// does not answer: it is stopping).
    pub fn add_proxy(registry: &mut Registry, proxy: &ClientProxy) {
        if let Ok(stats) = proxy.stats() {
            add_proxy_stats(registry, &stats);
        }
    }

    fn add_broker_stats(registry: &mut Registry, s: &BrokerStats) {
        let r = registry.sub_registry_with_prefix("lhcluster_broker");
        // One metric a line: a table, as rustfmt would spread it over five.
        #[rustfmt::skip]
        let counters = [
            ("requests_received", "Valid requests received", s.requests_received),
            ("requests_dispatched", "Dispatches to workers", s.requests_dispatched),
            ("requests_completed", "Results received", s.requests_completed),
            ("requests_rejected", "Duplicates answered REJECTED", s.requests_rejected),
            ("requests_overloaded", "Requests answered OVERLOADED", s.requests_overloaded),
            ("requests_no_workers", "Requests answered NO_WORKERS", s.requests_no_workers),
            ("requests_retried", "Re-dispatches after a worker death", s.requests_retried),
            ("requests_worker_death", "Requests answered WORKER_DEATH", s.requests_worker_death),
            ("malformed_frontend", "Malformed messages on the frontend", s.malformed_frontend),
            ("malformed_backend", "Malformed messages on the backend", s.malformed_backend),
            ("undeliverable", "Messages that could not be delivered", s.undeliverable),
            ("auth_failures", "CURVE handshakes refused by the key lists", s.auth_failures),
            ("requests_forbidden", "Requests refused FORBIDDEN: the client's key may not send the type", s.requests_forbidden),
            ("workers_forbidden", "Worker registrations refused FORBIDDEN: the worker's key may not register the types", s.workers_forbidden),
            ("oversized", "Messages dropped for having more than max_message_frames frames", s.oversized),
            ("worker_deaths", "Workers declared dead", s.worker_deaths),
            ("stale_results", "Results of an attempt no longer current, dropped", s.stale_results),
            ("outcomes_dropped_slow", "Responses and receipts dropped for a client over its outbox limit", s.outcomes_dropped_slow),
            ("messages_dropped_slow", "Other messages dropped for a peer over its outbox limit", s.messages_dropped_slow),
            ("refused_slow", "Requests refused OVERLOADED for a sender over its outbox limit", s.refused_slow),
            ("requests_dropped_slow", "Queued requests ended unrun when their client was cut", s.requests_dropped_slow),
            ("slow_consumers", "Clients and proxies cut for not reading", s.slow_consumers),
            ("slow_workers", "Workers declared dead for not reading", s.slow_workers),
            ("outbox_retries", "Tries to send an outbox backlog", s.outbox_retries),
        ];
        #[rustfmt::skip]
        let gauges = [
            ("pending", "Requests queued now", s.pending),
            ("in_flight", "Requests running now", s.in_flight),
            ("workers", "Workers connected now", s.workers),
            ("clients", "Clients connected now", s.clients),
            ("pending_bytes", "Payload bytes of queued requests and retry copies now", s.pending_bytes),
            ("outbox_bytes", "Bytes held in the outboxes now", s.outbox_bytes),
            ("outbox_peers", "Peers with an outbox backlog now", s.outbox_peers),
        ];
        register(r, &counters, &gauges);
        let pending = Family::<Vec<(String, String)>, Gauge>::default();
        let in_flight = Family::<Vec<(String, String)>, Gauge>::default();
        let workers = Family::<Vec<(String, String)>, Gauge>::default();
        for (t, ts) in &s.types {
            let labels = vec![("request_type".to_owned(), t.to_string())];
            pending.get_or_create(&labels).set(ts.pending as i64);
            in_flight.get_or_create(&labels).set(ts.in_flight as i64);
            workers.get_or_create(&labels).set(ts.workers as i64);
        }
        r.register("type_pending", "Requests queued now, per type", pending);
        r.register(
            "type_in_flight",
            "Requests running now, per type",
            in_flight,
        );
        r.register("type_workers", "Workers registered now, per type", workers);
        if let Some(c) = &s.cluster {
            add_cluster_stats(r, c);
        }
    }

    /// A clustered broker's routes: totals, and per peer what was forwarded
    /// and whether its route is up.
    fn add_cluster_stats(r: &mut Registry, c: &lhcluster::ClusterStats) {
        let r = r.sub_registry_with_prefix("cluster");
        #[rustfmt::skip]
        let counters = [
            ("forwarded_out", "Requests forwarded to their owner", c.forwarded_out),
            ("forwarded_in", "Requests received from an entry broker as their owner", c.forwarded_in),
            ("executed_out", "Requests given to another broker to run", c.executed_out),
            ("executed_in", "Requests run for another broker", c.executed_in),
            ("executions_returned", "Requests given back unrun and queued again", c.executions_returned),
            ("owner_lost", "Forwarded requests whose owner left the cluster", c.owner_lost),
            ("malformed", "Malformed or unexpected messages on the cluster sockets", c.malformed),
            ("peer_losses", "Routes lost (missed heartbeats or SHUTDOWN)", c.peer_losses),
        ];
        let up = c.peers.iter().filter(|p| p.state == "up").count() as u64;
        let gauges = [
            ("peers_up", "Cluster routes up now", up),
            (
                "relayed",
                "Forwarded two-way requests not yet answered",
                c.relayed,
            ),
        ];
        register(r, &counters, &gauges);
        let forwarded_to = Family::<Vec<(String, String)>, Counter>::default();
        let executed_to = Family::<Vec<(String, String)>, Counter>::default();
        let peer_up = Family::<Vec<(String, String)>, Gauge>::default();
        for p in &c.peers {
            let peer = p
                .name
                .clone()
                .or_else(|| p.id.clone())
                .or_else(|| p.endpoint.clone())
                .unwrap_or_default();
            let labels = vec![("peer".to_owned(), peer)];
            forwarded_to.get_or_create(&labels).inc_by(p.forwarded_to);
            executed_to.get_or_create(&labels).inc_by(p.executed_to);
            peer_up
                .get_or_create(&labels)
                .set(i64::from(p.state == "up"));
        }
        r.register(
            "peer_forwarded_to",
            "Requests forwarded to the peer as owner",
            forwarded_to,
        );
        r.register(
            "peer_executed_to",
            "Requests given to the peer to run",
            executed_to,
        );
        r.register("peer_up", "1 while the route to the peer is up", peer_up);
    }

    pub(super) fn add_proxy_stats(registry: &mut Registry, s: &ClientProxyStats) {
        let r = registry.sub_registry_with_prefix("lhcluster_proxy");
        #[rustfmt::skip]
        let counters = [
            ("requests_received", "Requests received from clients", s.requests_received),
            ("requests_resent", "Re-sends of unconfirmed requests", s.requests_resent),
            ("requests_overloaded", "Requests answered OVERLOADED", s.requests_overloaded),
            ("responses_forwarded", "Responses forwarded to clients", s.responses_forwarded),
            ("broker_losses", "Broker deaths or shutdowns seen", s.broker_losses),
            ("malformed_clients", "Malformed or unexpected messages from clients", s.malformed_clients),
            ("malformed_broker", "Malformed or unexpected messages from the broker", s.malformed_broker),
            ("outcomes_dropped_slow", "Responses and receipts dropped for a client over its outbox limit", s.outcomes_dropped_slow),
            ("messages_dropped_slow", "Other messages dropped for a client over its outbox limit", s.messages_dropped_slow),
            ("refused_slow", "Requests refused OVERLOADED for a client over its outbox limit", s.refused_slow),
            ("slow_consumers", "Clients cut for not reading", s.slow_consumers),
            ("auth_failures", "CURVE handshakes refused by the client key list", s.auth_failures),
            ("oversized", "Messages from clients dropped for having too many frames", s.oversized),
            ("outbox_retries", "Tries to send an outbox backlog", s.outbox_retries),
        ];
        #[rustfmt::skip]
        let gauges = [
            ("buffered", "Requests buffered now", s.buffered),
            ("buffered_bytes", "Payload bytes buffered now", s.buffered_bytes),
            ("clients", "Clients connected now", s.clients),
            ("outbox_bytes", "Bytes held in the outbox now", s.outbox_bytes),
            ("outbox_peers", "Clients with an outbox backlog now", s.outbox_peers),
        ];
        register(r, &counters, &gauges);
    }

    /// Encodes a registry as OpenMetrics text.
    pub fn render(registry: &Registry) -> String {
        let mut out = String::new();
        if encode(&mut out, registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_types_are_numbers_or_names() {
        assert_eq!(parse_request_type("7"), Ok(7));
        assert_eq!(
            parse_request_type("orders.create"),
            Ok(lhcluster::request_type_id("orders.create"))
        );
        assert!(parse_request_type("0").is_err());
        assert!(parse_request_type("").is_err());
    }

    /// The proxy exports its malformed input as the broker does.
    #[test]
    fn proxy_metrics_export_malformed_counts() {
        let mut stats = lhcluster::client_proxy::ClientProxyStats::default();
        stats.malformed_clients = 3;
        stats.malformed_broker = 4;
        let mut registry = prometheus_client::registry::Registry::default();
        metrics::add_proxy_stats(&mut registry, &stats);
        let text = metrics::render(&registry);
        assert!(
            text.contains("lhcluster_proxy_malformed_clients_total 3"),
            "{text}"
        );
        assert!(
            text.contains("lhcluster_proxy_malformed_broker_total 4"),
            "{text}"
        );
    }
}

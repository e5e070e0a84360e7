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

/// A request type given on the command line or in a file: its id, and its
/// name when it was given by name (which a worker sends to the broker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeArg {
    /// The id.
    pub id: RequestType,
    /// The name it was given as, if not a number.
    pub name: Option<String>,
}

/// Parses a request type as [`parse_request_type`] does, keeping the name.
pub fn parse_type_arg(text: &str) -> Result<TypeArg, String> {
    let id = parse_request_type(text)?;
    let name = text
        .parse::<RequestType>()
        .is_err()
        .then(|| text.to_owned());
    if let Some(name) = &name {
        if name.len() > lhcluster::MAX_TYPE_NAME_LEN {
            return Err(format!(
                "a request type name is at most {} bytes",
                lhcluster::MAX_TYPE_NAME_LEN
            ));
        }
    }
    Ok(TypeArg { id, name })
}

/// A duration in a few ASCII characters: `850us`, `12.3ms`, `4.1s`.
pub fn short_duration(d: std::time::Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.1}s", us as f64 / 1e6)
    }
}

/// What a trial connection to an endpoint found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The ZeroMQ handshake succeeded.
    Up,
    /// Something took the TCP connection and closed it during the
    /// handshake, again and again: most likely a ZeroMQ socket of a type
    /// that does not pair with ours (ZMTP exchanges socket types and
    /// closes a pair that does not match), such as the other side of a
    /// notify broker; possibly a server that requires CURVE keys and closed
    /// first.
    WrongSide,
    /// The handshake failed for a reason libzmq names (a security
    /// mismatch…): left to the role, which says more.
    Refused,
    /// No handshake within the timeout: nothing listens there, or it is
    /// unreachable.
    Unreachable,
}

/// Connects a throwaway socket of `kind` to `endpoint` and waits, up to
/// `timeout`, for the ZeroMQ handshake: it tells a peer of the wrong type
/// and an endpoint where nothing answers, at once and apart, with no
/// message sent.
pub fn probe(
    endpoint: &str,
    kind: zmq::SocketType,
    timeout: std::time::Duration,
    curve: Option<ProbeKeys<'_>>,
) -> anyhow::Result<Probe> {
    use zmq::SocketEvent as E;
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let context = lhcluster::context();
    let socket = context.socket(kind)?;
    socket.set_linger(0)?;
    // With the keys the tool will use, so that a CURVE server answers the
    // probe as it will answer the tool: a plain probe would only be closed,
    // sooner or later with a reason, which reads as the wrong side.
    if let Some(keys) = curve {
        let own = match keys.secret {
            Some(secret) => secret.clone(),
            None => lhcluster::curve::SecretKey::generate()?,
        };
        socket.set_curve_serverkey(keys.server.as_bytes())?;
        socket.set_curve_publickey(own.public_key().as_bytes())?;
        socket.set_curve_secretkey(own.to_z85().as_bytes())?;
    }
    // A closed handshake is tried again soon, for its reason.
    socket.set_reconnect_ivl(20)?;
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let monitor_endpoint = format!("inproc://lhcluster-cli-probe-{n}");
    let events = E::HANDSHAKE_SUCCEEDED as i32
        | E::HANDSHAKE_FAILED_PROTOCOL as i32
        | E::HANDSHAKE_FAILED_NO_DETAIL as i32
        | E::HANDSHAKE_FAILED_AUTH as i32
        | E::DISCONNECTED as i32
        | E::CONNECT_RETRIED as i32;
    socket.monitor(&monitor_endpoint, events)?;
    let monitor = context.socket(zmq::PAIR)?;
    monitor.set_linger(0)?;
    monitor.connect(&monitor_endpoint)?;
    socket
        .connect(endpoint)
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    let mut deadline = std::time::Instant::now() + timeout;
    // Connections closed during the handshake with no reason given.
    let mut closed = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let wait_ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
        if left.is_zero() || monitor.poll(zmq::POLLIN, wait_ms)? == 0 {
            return Ok(if closed > 0 {
                Probe::WrongSide
            } else {
                Probe::Unreachable
            });
        }
        let frames = monitor.recv_multipart(0)?;
        let head = frames.first().map(Vec::as_slice).unwrap_or_default();
        let Some(&[lo, hi]) = head.get(..2) else {
            continue;
        };
        let event = u16::from_le_bytes([lo, hi]);
        let value = match head.get(2..6) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        };
        match event {
            e if e == E::HANDSHAKE_SUCCEEDED as u16 => return Ok(Probe::Up),
            // The TCP connect failed (refused: nothing listens there), and
            // libzmq will retry: no need to wait for it.
            e if e == E::CONNECT_RETRIED as u16 && closed == 0 => {
                return Ok(Probe::Unreachable);
            }
            // Security: the mechanisms differ (CURVE on one side only),
            // the keys do not match, or the server's ZAP said no.
            e if e == E::HANDSHAKE_FAILED_AUTH as u16 => return Ok(Probe::Refused),
            e if e == E::HANDSHAKE_FAILED_PROTOCOL as u16 => {
                return Ok(if is_security_error(value) {
                    Probe::Refused
                } else {
                    // Their READY named a socket type that does not pair
                    // with ours, or another ZMTP violation.
                    Probe::WrongSide
                });
            }
            // Closed during the handshake with no reason: the peer closed
            // it first, on our READY (socket types that do not pair) or
            // on our greeting (a security mismatch it saw before we did).
            // Give libzmq's reconnections a moment: a reason may come.
            e if e == E::HANDSHAKE_FAILED_NO_DETAIL as u16 || e == E::DISCONNECTED as u16 => {
                if closed == 0 {
                    let settle = std::time::Instant::now() + std::time::Duration::from_millis(300);
                    deadline = deadline.min(settle);
                }
                closed += 1;
            }
            _ => {}
        }
    }
}

/// With one endpoint in `to`, probes it as a `kind` socket (with the tool's
/// keys) and fails at once, with `wrong_side`'s text, when it is the other
/// side of a notify broker, or when nothing answers within `timeout`.
/// Several endpoints are tried by the role itself, one after the other.
pub fn check_notify_side(
    to: &[String],
    kind: zmq::SocketType,
    timeout: std::time::Duration,
    keys: Option<ProbeKeys<'_>>,
    wrong_side: impl FnOnce(&str) -> String,
) -> anyhow::Result<()> {
    let [endpoint] = to else {
        return Ok(());
    };
    match probe(endpoint, kind, timeout, keys)? {
        Probe::WrongSide => anyhow::bail!(wrong_side(endpoint)),
        Probe::Unreachable => anyhow::bail!(notify_unreachable_text(to, timeout)),
        Probe::Up | Probe::Refused => Ok(()),
    }
}

/// The CURVE keys a tool connects with, for [`probe`].
#[derive(Clone, Copy)]
pub struct ProbeKeys<'a> {
    /// The server's public key.
    pub server: &'a lhcluster::curve::PublicKey,
    /// The tool's own key; a new one when `None`.
    pub secret: Option<&'a lhcluster::curve::SecretKey>,
}

impl<'a> ProbeKeys<'a> {
    /// The keys of a role's config: `None` without a server key (no CURVE).
    pub fn of(
        server: Option<&'a lhcluster::curve::PublicKey>,
        secret: Option<&'a lhcluster::curve::SecretKey>,
    ) -> Option<Self> {
        server.map(|server| Self { server, secret })
    }
}

/// Whether a ZMTP handshake failure (`ZMQ_PROTOCOL_ERROR_*`, libzmq 4.3
/// zmq.h) is about security: the key exchange, a cryptographic failure,
/// mechanisms that differ, or the ZAP handler's answer.
fn is_security_error(value: u32) -> bool {
    const KEY_EXCHANGE: u32 = 0x1000_0003;
    const CRYPTOGRAPHIC: u32 = 0x1100_0001;
    const MECHANISM_MISMATCH: u32 = 0x1100_0002;
    const ZAP_FIRST: u32 = 0x2000_0000;
    matches!(value, KEY_EXCHANGE | CRYPTOGRAPHIC | MECHANISM_MISMATCH) || value >= ZAP_FIRST
}

/// What a notify tool says when no connection to the notify broker at
/// `to` was made within `timeout`.
pub fn notify_unreachable_text(to: &[String], timeout: std::time::Duration) -> String {
    format!(
        "cannot reach the notify broker at {} (no answer within {timeout:?})",
        to.join(", ")
    )
}

/// The error of a notify tool (a socket of `kind`) that could not connect
/// to `to`: with one endpoint, what a probe of it finds too.
pub fn notify_unreachable(
    to: &[String],
    kind: zmq::SocketType,
    timeout: std::time::Duration,
) -> anyhow::Error {
    let text = notify_unreachable_text(to, timeout);
    match to {
        [endpoint] => anyhow::anyhow!(diagnose("notify broker", endpoint, kind, text)),
        _ => anyhow::anyhow!(text),
    }
}

/// Says why a connection to `endpoint` never came up, more precisely than
/// `unreachable` when a probe of `kind` finds out: a handshake refused (a
/// security mismatch) or a connection taken but never answered.
pub fn diagnose(what: &str, endpoint: &str, kind: zmq::SocketType, unreachable: String) -> String {
    match probe(endpoint, kind, std::time::Duration::from_secs(1), None) {
        Ok(Probe::Refused) => format!(
            "the {what} at {endpoint} refused the handshake: a security mismatch (CURVE keys \
             on one side only, or keys that do not match: docs/security.md)"
        ),
        Ok(Probe::Up) => format!(
            "the {what} at {endpoint} took the connection but did not answer: another kind \
             of endpoint, or CURVE keys it does not accept (docs/security.md)"
        ),
        Ok(Probe::WrongSide) => format!(
            "{endpoint} closed the handshake: it is not a {what}'s endpoint (a ZeroMQ \
             socket of another kind, such as a notify broker's), or it requires CURVE keys \
             (docs/security.md)"
        ),
        _ => unreachable,
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

/// Parses a `--metrics` address: `HOST:PORT`, checked before anything
/// starts (a bare port is refused with the forms that work).
pub fn parse_metrics_addr(text: &str) -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let hint = "expected HOST:PORT, such as 127.0.0.1:9100 (this host only) or 0.0.0.0:9100 \
                (every interface)";
    if text.parse::<u16>().is_ok() {
        return Err(format!("{text:?} is a bare port: {hint}"));
    }
    match text.to_socket_addrs() {
        Ok(addrs) if !addrs.as_slice().is_empty() => Ok(text.to_owned()),
        Ok(_) => Err(format!("{text:?} resolves to no address: {hint}")),
        Err(e) => Err(format!("{text:?}: {e}: {hint}")),
    }
}

/// The HTTP listener of `/metrics` and `/healthz`: bound first (a port in
/// use is an error before any role starts), served once the roles run.
pub struct MetricsServer {
    server: tiny_http::Server,
    bound: std::net::SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` (`HOST:PORT`).
    pub fn bind(addr: &str) -> anyhow::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .context("metrics listener has no IP address")?;
        Ok(MetricsServer { server, bound })
    }

    /// Serves, on a background thread, Prometheus text exposition at
    /// `GET /metrics` (each scrape renders a fresh registry that `fill`
    /// adds the current statistics to) and `GET /healthz`: `200 ok` while
    /// `healthy` says the roles serve, `503 unavailable` once one has
    /// stopped.
    pub fn serve(
        self,
        fill: impl Fn(&mut prometheus_client::registry::Registry) + Send + 'static,
        healthy: impl Fn() -> bool + Send + 'static,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let MetricsServer { server, bound } = self;
        std::thread::Builder::new()
            .name("lhcluster-metrics".to_owned())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let response = match request.url() {
                        "/metrics" => {
                            let header = tiny_http::Header::from_bytes(
                                &b"Content-Type"[..],
                                &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                            )
                            .expect("a valid static header");
                            let mut registry = prometheus_client::registry::Registry::default();
                            fill(&mut registry);
                            tiny_http::Response::from_string(metrics::render(&registry))
                                .with_header(header)
                        }
                        "/healthz" if healthy() => tiny_http::Response::from_string("ok\n"),
                        "/healthz" => {
                            tiny_http::Response::from_string("unavailable\n").with_status_code(503)
                        }
                        _ => tiny_http::Response::from_string("see /metrics or /healthz\n")
                            .with_status_code(404),
                    };
                    let _ = request.respond(response);
                }
            })
            .context("spawning the metrics thread")?;
        tracing::info!(%bound, "serving metrics at /metrics, health at /healthz");
        Ok(bound)
    }
}

/// Renders broker and proxy statistics as OpenMetrics text.
pub mod metrics {
    use lhcluster::client_proxy::{ClientProxy, ClientProxyStats};
    use lhcluster::notify::{NotifyBroker, NotifyBrokerStats};
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

    pub(super) fn add_broker_stats(registry: &mut Registry, s: &BrokerStats) {
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
            ("requests_returned", "Requests a draining worker gave back unstarted, queued again", s.requests_returned),
            ("requests_worker_death", "Requests answered WORKER_DEATH", s.requests_worker_death),
            ("malformed_frontend", "Malformed messages on the frontend", s.malformed_frontend),
            ("malformed_backend", "Malformed messages on the backend", s.malformed_backend),
            ("undeliverable", "Messages that could not be delivered", s.undeliverable),
            ("auth_failures", "CURVE handshakes refused by the key lists", s.auth_failures),
            ("requests_forbidden", "Requests refused FORBIDDEN: the client's key may not send the type", s.requests_forbidden),
            ("workers_forbidden", "Worker registrations refused FORBIDDEN: the worker's key may not register the types", s.workers_forbidden),
            ("type_name_conflicts", "Worker registrations naming a request type differently from the name known for its id", s.type_name_conflicts),
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
            ("requests_expired", "Requests whose deadline passed while queued (never run)", s.requests_expired),
            ("requests_cancelled", "Requests their requester cancelled (taken out of the queue, or their worker told)", s.requests_cancelled),
            ("cancels_ignored", "CANCELs that cancelled nothing (request ended, or not the requester's)", s.cancels_ignored),
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
            let labels = type_labels(*t, ts);
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
        add_latency(r, s);
        if let Some(c) = &s.cluster {
            add_cluster_stats(r, c);
        }
    }

    /// Per type, one histogram series of a latency (a [`TypeStats`]
    /// field), rendered from the broker's own buckets: Prometheus's
    /// histogram types count observations themselves, these arrive
    /// counted.
    ///
    /// [`TypeStats`]: lhcluster::TypeStats
    #[derive(Debug)]
    struct TypeHistograms(Vec<Series>);

    /// One series: labels, sum (s), count, and per bucket its bound (s)
    /// and its own count.
    type Series = (Vec<(String, String)>, f64, u64, Vec<(f64, u64)>);

    impl prometheus_client::encoding::EncodeMetric for TypeHistograms {
        fn encode(
            &self,
            mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
        ) -> Result<(), std::fmt::Error> {
            for (labels, sum, count, buckets) in &self.0 {
                encoder
                    .encode_family(labels)?
                    .encode_histogram::<()>(*sum, *count, buckets, None)?;
            }
            Ok(())
        }

        fn metric_type(&self) -> prometheus_client::metrics::MetricType {
            prometheus_client::metrics::MetricType::Histogram
        }
    }

    /// The latency histograms per type, in seconds (`le` the bucket's
    /// bound, `+Inf` the last).
    fn add_latency(r: &mut Registry, s: &BrokerStats) {
        type Pick = fn(&lhcluster::TypeStats) -> &lhcluster::LatencyHistogram;
        let latencies: [(&str, &str, Pick); 3] = [
            (
                "queue_wait",
                "Time from arrival to first dispatch, per type",
                |t| &t.queue_wait,
            ),
            ("service", "Time from dispatch to result, per type", |t| {
                &t.service
            }),
            (
                "end_to_end",
                "Time from arrival to the result's outcome, per type",
                |t| &t.end_to_end,
            ),
        ];
        for (name, help, pick) in latencies {
            let series = (s.types.iter())
                .map(|(t, ts)| {
                    let h = pick(ts);
                    // The encoder takes each bucket's own count and
                    // accumulates; f64::MAX is its +Inf.
                    let buckets = h
                        .buckets()
                        .map(|(bound, n)| (bound.map_or(f64::MAX, |b| b.as_secs_f64()), n))
                        .collect();
                    (type_labels(*t, ts), h.sum_us as f64 / 1e6, h.count, buckets)
                })
                .collect();
            r.register_with_unit(
                name,
                help,
                prometheus_client::registry::Unit::Seconds,
                TypeHistograms(series),
            );
        }
    }

    /// The labels of a per-type series: `request_type` (the id), and
    /// `type_name` when a worker named the type (protocol 1.6; left out
    /// otherwise, which PromQL reads as the empty name).
    fn type_labels(t: lhcluster::RequestType, ts: &lhcluster::TypeStats) -> Vec<(String, String)> {
        let mut labels = vec![("request_type".to_owned(), t.to_string())];
        if let Some(name) = &ts.name {
            labels.push(("type_name".to_owned(), name.clone()));
        }
        labels
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

    /// Adds a notify broker's current statistics to `registry` (none if it
    /// does not answer: it is stopping).
    pub fn add_notify_broker(registry: &mut Registry, broker: &NotifyBroker) {
        if let Ok(stats) = broker.stats() {
            add_notify_broker_stats(registry, &stats);
        }
    }

    pub(super) fn add_notify_broker_stats(registry: &mut Registry, s: &NotifyBrokerStats) {
        let r = registry.sub_registry_with_prefix("lhcluster_notify_broker");
        #[rustfmt::skip]
        let counters = [
            ("forwarded", "Notifications forwarded to subscribers", s.forwarded),
            ("malformed", "Malformed notifications from publishers, dropped", s.malformed),
            ("subscribes", "Subscribe messages from subscribers", s.subscribes),
            ("unsubscribes", "Subscriptions no subscriber holds any more", s.unsubscribes),
            ("probes_answered", "Subscription probes answered", s.probes_answered),
            ("malformed_subscriptions", "Messages from subscribers that are not subscriptions", s.malformed_subscriptions),
            ("untracked_forwarded", "Notifications forwarded on topics beyond max_tracked_topics", s.untracked_forwarded),
            ("auth_failures", "CURVE handshakes refused by the key lists", s.auth_failures),
            ("notifications_forbidden", "Notifications dropped: their publisher's key was taken off the list by a reload", s.notifications_forbidden),
        ];
        let gauges = [(
            "active_subscriptions",
            "Distinct subscriptions held now",
            s.active_subscriptions,
        )];
        register(r, &counters, &gauges);
        let forwarded = Family::<Vec<(String, String)>, Counter>::default();
        for (topic, ts) in &s.topics {
            let labels = vec![("topic".to_owned(), topic.clone())];
            forwarded.get_or_create(&labels).inc_by(ts.forwarded);
        }
        r.register(
            "topic_forwarded",
            "Notifications forwarded, per topic (up to max_tracked_topics)",
            forwarded,
        );
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
            ("requests_forbidden", "Requests refused FORBIDDEN: their key was taken off the client list by a reload", s.requests_forbidden),
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
        let named = parse_type_arg("orders.create").unwrap();
        assert_eq!(named.id, lhcluster::request_type_id("orders.create"));
        assert_eq!(named.name.as_deref(), Some("orders.create"));
        assert_eq!(parse_type_arg("7").unwrap().name, None);
        assert!(parse_type_arg(&"n".repeat(129)).is_err());
    }

    #[test]
    fn notify_broker_metrics_carry_its_counters_and_topics() {
        let mut stats = lhcluster::notify::NotifyBrokerStats::default();
        stats.forwarded = 5;
        stats.active_subscriptions = 2;
        stats.auth_failures = 3;
        stats.notifications_forbidden = 4;
        let mut topic = lhcluster::notify::TopicStats::default();
        topic.forwarded = 5;
        stats.topics.insert("orders".to_owned(), topic);
        let mut registry = prometheus_client::registry::Registry::default();
        metrics::add_notify_broker_stats(&mut registry, &stats);
        let text = metrics::render(&registry);
        for line in [
            "lhcluster_notify_broker_forwarded_total 5",
            "lhcluster_notify_broker_active_subscriptions 2",
            "lhcluster_notify_broker_auth_failures_total 3",
            "lhcluster_notify_broker_notifications_forbidden_total 4",
            "lhcluster_notify_broker_topic_forwarded_total{topic=\"orders\"} 5",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }

    /// Per-type latency histograms: `_bucket` cumulative with `le` in
    /// seconds and `+Inf`, `_sum` in seconds, `_count`, labelled as the
    /// other per-type series.
    #[test]
    fn broker_metrics_carry_latency_histograms() {
        let mut stats = lhcluster::BrokerStats::default();
        let mut ts = lhcluster::TypeStats::default();
        ts.name = Some("orders.create".to_owned());
        // Two samples of at most 16 µs, one in (32, 64] µs: 80 µs in all.
        ts.end_to_end.counts = vec![2, 0, 1];
        ts.end_to_end.count = 3;
        ts.end_to_end.sum_us = 80;
        stats.types.insert(7, ts);
        let mut registry = prometheus_client::registry::Registry::default();
        metrics::add_broker_stats(&mut registry, &stats);
        let text = metrics::render(&registry);
        let labels = "request_type=\"7\",type_name=\"orders.create\"";
        for line in [
            "# TYPE lhcluster_broker_end_to_end_seconds histogram".to_owned(),
            format!("lhcluster_broker_end_to_end_seconds_count{{{labels}}} 3"),
            format!("lhcluster_broker_end_to_end_seconds_sum{{{labels}}} 0.00008"),
            format!("lhcluster_broker_end_to_end_seconds_bucket{{le=\"0.000016\",{labels}}} 2"),
            format!("lhcluster_broker_end_to_end_seconds_bucket{{le=\"0.000064\",{labels}}} 3"),
            format!("lhcluster_broker_end_to_end_seconds_bucket{{le=\"+Inf\",{labels}}} 3"),
            format!("lhcluster_broker_queue_wait_seconds_count{{{labels}}} 0"),
            format!("lhcluster_broker_service_seconds_count{{{labels}}} 0"),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
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

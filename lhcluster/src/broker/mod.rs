//! The broker: routes requests from clients to workers by request type,
//! queues them while no worker is free, and routes outcomes back.
//!
//! ```no_run
//! use lhcluster::{Broker, BrokerConfig};
//!
//! let broker = Broker::start(BrokerConfig::new("tcp://*:5555", "tcp://*:5556"))?;
//! println!("{}", broker.stats()?);
//! broker.stop()?;
//! # Ok::<(), lhcluster::Error>(())
//! ```

mod config;
pub(crate) mod core;
mod driver;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use config::BrokerConfig;
pub use stats::{
    BrokerStats, ClusterStats, LATENCY_BOUNDS_US, LatencyHistogram, PeerStats, ServedStats,
    TypeStats,
};

use crate::curve::KeyList;
use crate::error::Error;
use crate::io::set_option;
use crate::role::RoleHandle;

/// A running broker. Cheap to clone; every clone controls the same broker.
/// The broker stops when [`Broker::stop`] is called or the last clone is
/// dropped.
#[derive(Clone, Debug)]
pub struct Broker {
    role: Arc<RoleHandle<driver::Command>>,
    frontend: String,
    backend: String,
    cluster: Option<String>,
    watch: Option<String>,
}

#[cfg(test)]
crate::role::inject_panic!(Broker, role);

impl Broker {
    /// Binds both sockets and starts the driver thread. Bind errors (address
    /// in use, bad endpoint) are reported here.
    pub fn start(config: BrokerConfig) -> Result<Broker, Error> {
        config.validate()?;
        let (role, bound) = driver::spawn(config)?;
        Ok(Broker {
            role: Arc::new(role),
            frontend: bound.frontend,
            backend: bound.backend,
            cluster: bound.cluster,
            watch: bound.watch,
        })
    }

    /// The frontend endpoint actually bound (a `tcp://…:0` port resolved).
    pub fn frontend(&self) -> &str {
        &self.frontend
    }

    /// The cluster endpoint actually bound, if
    /// [`cluster_bind`](BrokerConfig::cluster_bind) is set.
    pub fn cluster_endpoint(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The watch tap's endpoint actually bound, if
    /// [`watch`](BrokerConfig::watch) is set.
    pub fn watch_endpoint(&self) -> Option<&str> {
        self.watch.as_deref()
    }

    /// The backend endpoint actually bound.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// A snapshot of the broker's statistics.
    pub fn stats(&self) -> Result<BrokerStats, Error> {
        self.role.request(driver::Command::Stats)
    }

    /// Puts new key lists in force (docs/security.md, "Reloading keys"):
    /// `clients` replaces `curve_client_keys`, `workers` replaces
    /// `curve_worker_keys`; `None` keeps that list. What a side had no list
    /// for at start cannot get one (an error; restart the broker).
    ///
    /// New CURVE handshakes are judged by the new lists; connections
    /// already made are kept, but held to them: from now on every REQUEST
    /// is checked against the client list (a key no longer listed gets
    /// `FORBIDDEN`), and a registered worker whose key no longer may
    /// register all its types is removed (its work in flight retried or
    /// answered as on its death) and told `FORBIDDEN`. Returns once the
    /// lists are in force. `lhcluster broker` calls it on SIGHUP.
    pub fn reload_keys(
        &self,
        clients: Option<KeyList>,
        workers: Option<KeyList>,
    ) -> Result<(), Error> {
        self.role.request(|done| driver::Command::ReloadKeys {
            frontend: clients,
            backend: workers,
            done,
        })?
    }

    /// Tells every worker and client that the broker is going away, closes
    /// the sockets and waits for the driver thread (up to the configured
    /// shutdown timeout). Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.role.stop(driver::Command::Stop)
    }
}

/// Asks a running broker for its statistics over the protocol
/// (`STATS_QUERY` on its frontend), as `lhcluster stats` does: waits up to
/// `timeout` for the answer ([`Error::Timeout`]), and fails sooner, with
/// [`Error::Unreachable`], if no connection to the endpoint is made within
/// it. [`query_stats_within`] gives the connection its own, shorter bound.
pub fn query_stats(frontend: &str, timeout: std::time::Duration) -> Result<BrokerStats, Error> {
    query_stats_within(frontend, timeout, timeout)
}

/// [`query_stats`], failing with [`Error::Unreachable`] ("cannot reach the
/// broker at …") when no connection to `frontend` is made (its ZeroMQ
/// handshake done) within `connect_timeout`; then waiting up to `timeout`
/// in all for the answer.
pub fn query_stats_within(
    frontend: &str,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<BrokerStats, Error> {
    query_stats_with_keys(frontend, connect_timeout, timeout, None, None)
}

/// [`query_stats_within`] of a CURVE broker (docs/security.md):
/// `server_key` is the broker's public key, `secret_key` the tool's own key
/// (needed when the broker has a client key list: it must be listed;
/// without one, a new key is made for the query). Without `server_key`, in
/// clear. A query the broker's CURVE refuses never completes its handshake:
/// it ends [`Error::Unreachable`] at `connect_timeout`.
pub fn query_stats_with_keys(
    frontend: &str,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
    server_key: Option<&crate::curve::PublicKey>,
    secret_key: Option<&crate::curve::SecretKey>,
) -> Result<BrokerStats, Error> {
    use std::time::Instant;

    use crate::error::zmq_err;
    use crate::protocol::{self, Message};

    crate::endpoint::validate(frontend)?;
    if secret_key.is_some() && server_key.is_none() {
        return Err(Error::Config(crate::ConfigError::invalid(
            "secret_key",
            "is set but the broker's public key is not, and it needs it (docs/security.md)",
        )));
    }
    let curve = crate::curve::SocketCurve::client(server_key, secret_key)?;
    // The socket's handshake events, read on a PAIR: a query to an endpoint
    // where nothing listens would otherwise look like a slow broker.
    let monitor_endpoint = format!(
        "inproc://lhcluster-stats-monitor-{:016x}",
        crate::peer::random_u64()
    );
    // One query out, one answer in: no queue to bound.
    let socket = crate::io::dealer_monitored(
        frontend,
        &crate::peer::random_routing_id(),
        16,
        curve.as_ref(),
        Some((
            &monitor_endpoint,
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32,
        )),
    )?;
    set_option!(socket, set_linger(0), "ZMQ_LINGER")?;
    let monitor = crate::context()
        .socket(zmq::PAIR)
        .map_err(zmq_err("creating a PAIR socket"))?;
    set_option!(monitor, set_linger(0), "ZMQ_LINGER")?;
    monitor
        .connect(&monitor_endpoint)
        .map_err(zmq_err("connecting the socket monitor"))?;
    let mut header = Vec::new();
    crate::io::send(&socket, None, Message::StatsQuery, &mut header)
        .map_err(zmq_err("sending STATS_QUERY"))?;
    // `Duration::MAX` and the like: no deadline.
    let start = Instant::now();
    let deadline = crate::deadline::deadline(start, timeout);
    let connect_deadline = crate::deadline::deadline(start, connect_timeout)
        .filter(|c| deadline.is_none_or(|d| *c < d));
    let mut connected = false;
    loop {
        let until = if connected {
            deadline
        } else {
            connect_deadline.or(deadline)
        };
        let ready = crate::io::wait(
            None,
            [Some(&socket), (!connected).then_some(&monitor)],
            until,
        )
        .map_err(zmq_err("polling"))?;
        if ready.sockets[1] {
            // Any event is the one asked for: the handshake succeeded.
            while monitor.recv_multipart(zmq::DONTWAIT).is_ok() {}
            connected = true;
        }
        if !ready.sockets[0] {
            let now = Instant::now();
            if !connected && until.is_some_and(|d| now >= d) {
                return Err(Error::Unreachable {
                    role: "broker",
                    endpoint: frontend.to_owned(),
                    timeout: connect_timeout.min(timeout),
                });
            }
            // The deadline passed, or a signal cut the wait short.
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout(timeout));
            }
            continue;
        }
        let Some(incoming) = crate::io::try_recv(&socket, false).map_err(zmq_err("receiving"))?
        else {
            continue;
        };
        let header = incoming.header.as_deref().unwrap_or(&[]);
        match protocol::decode_parts(header, incoming.payload) {
            Ok(Message::StatsReply { payload }) => {
                let json = payload.first().map(|f| f.to_vec()).unwrap_or_default();
                return serde_json::from_slice(&json).map_err(|e| Error::Protocol(e.to_string()));
            }
            // Not a broker (a proxy says so), or one that does not know the query.
            Ok(Message::Error(e)) => return Err(Error::Protocol(e.error)),
            // Anything else (say a REREGISTER) is not our answer.
            _ => {}
        }
    }
}

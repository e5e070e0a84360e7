//! Broker configuration.

use crate::config_common::{check_input_limits, check_outbox, positive, role_config, unset};
use crate::curve::KeyList;
use crate::error::ConfigError;

role_config! {
    /// How a [`Broker`](super::Broker) runs. Every field has a documented default
    /// ([`BrokerConfig::new`]); change fields directly, then start the broker.
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct BrokerConfig {
        /// Endpoint the frontend ROUTER binds, where clients and proxies connect
        /// (`tcp://`, `ipc://` or `inproc://`).
        pub frontend: String = String::new(),
        /// Endpoint the backend ROUTER binds, where workers connect.
        pub backend: String = String::new(),
        /// The broker's heartbeat interval, announced to every peer. Default: 1 s.
        pub heartbeat,
        /// A peer is dead after this many of its own announced intervals without
        /// a message. Default: 3.
        pub liveness,
        /// Most requests queued for one request type; more get `OVERLOADED`.
        /// Default: 100 000.
        pub max_pending_per_type: usize = 100_000,
        /// Most requests queued in total; more get `OVERLOADED`. Default: 1 000 000.
        /// Files may also call it `max_pending` (the CLI's older name).
        #[cfg_attr(feature = "serde", serde(alias = "max_pending"))]
        pub max_pending_total: usize = 1_000_000,
        /// How many times a `RETRY_ON_DEATH` request is dispatched at most
        /// (first try included). Default: 2.
        pub max_tries: u32 = 2,
        /// Most payload bytes of queued requests, with the copies kept for
        /// `RETRY_ON_DEATH`; a request that would be queued beyond it gets
        /// `OVERLOADED`. Default: 1 GiB.
        pub max_pending_bytes: usize = 1 << 30,
        /// High-water mark of each socket's inbound queue, per peer (what the
        /// broker has not read yet). Default: 100 000.
        pub hwm,
        /// ZeroMQ's outbound queue per peer, in messages; what does not fit
        /// waits in the broker's outbox, counted in bytes. Default: 256.
        pub peer_sndhwm,
        /// Most bytes the outbox holds for one peer (a client, proxy or worker
        /// that does not read); what does not fit is dropped and counted, and
        /// the peer is over its limit (docs/bounds.md §3). Default: 32 MiB.
        pub max_outbox_bytes_per_peer,
        /// Most bytes the outbox holds across peers. Default: 512 MiB.
        pub max_outbox_bytes_total,
        /// A peer over its outbox limit this long is cut: a client or proxy
        /// gets `SHUTDOWN` and is forgotten, a worker is declared dead.
        /// Default: 10 s.
        pub slow_consumer_timeout,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`.
        /// Files may also call it `stats_interval` (the CLI's older name).
        #[cfg_attr(feature = "serde", serde(alias = "stats_interval"))]
        pub stats_log_interval,
        /// How long [`Broker::stop`](super::Broker::stop) waits for the driver
        /// thread. Default: 5 s.
        pub shutdown_timeout,
        /// Endpoint the cluster ROUTER binds, where the other brokers of a
        /// cluster connect (docs/clustering.md). `None` (the default): not
        /// reachable by other brokers.
        pub cluster_bind: Option<String> = None,
        /// Cluster endpoints of the other brokers, which this broker dials.
        /// Every broker of a cluster should list every other (a full mesh); an
        /// endpoint listed twice is dialled once. Default: none.
        pub cluster_peers: Vec<String> = Vec::new(),
        /// This broker's name in the cluster, for logs and stats. Default: none.
        pub name: Option<String> = None,
        /// The CURVE secret key of the sockets it binds (docs/security.md):
        /// peers must then connect with its public key, and all traffic is
        /// encrypted. `None` (the default): no CURVE, traffic in clear.
        /// In a cluster its dials show this key too, and expect the other
        /// members to hold the same key pair.
        pub curve_secret_key,
        /// The client (and proxy) public keys the frontend lets in; any other
        /// is refused during the CURVE handshake and counted
        /// (`auth_failures`). `None` (the default): any client that holds the
        /// broker's public key. Needs `curve_secret_key`.
        pub curve_client_keys,
        /// The worker public keys the backend lets in, likewise. `None` (the
        /// default): any worker that holds the broker's public key.
        pub curve_worker_keys: Option<KeyList> = None,
        /// `ZMQ_MAXMSGSIZE` of the sockets it binds: the largest frame, in
        /// bytes, a peer may send. libzmq cuts the connection of a peer that
        /// sends a larger one (docs/security.md, "Limits on input").
        /// Default: 16 MiB.
        pub max_message_size,
        /// Endpoint of the watch tap: a PUB socket the broker binds and
        /// publishes each request and outcome on (type, id, status, sizes,
        /// timings; never payloads), for `lhcluster watch`
        /// (docs/operations.md, "watch"). With `curve_secret_key`, it takes the
        /// frontend's CURVE key and client key list. `None` (the default): no
        /// tap, and nothing is recorded.
        pub watch: Option<String> = None,
        /// The most frames a message it reads may have; one with more, or with
        /// more than `max_message_size` bytes in all, is dropped and counted
        /// (`oversized`). Default: 1024.
        pub max_message_frames,
    }
}

impl BrokerConfig {
    /// A configuration with the given endpoints and every other field at its
    /// default.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            frontend: frontend.into(),
            backend: backend.into(),
            ..unset()
        }
    }

    /// The bounds of the broker's outboxes.
    pub(crate) fn outbox_limits(&self) -> crate::outbox::Limits {
        crate::outbox::Limits {
            per_peer: self.max_outbox_bytes_per_peer,
            total: self.max_outbox_bytes_total,
            slow_timeout: self.slow_consumer_timeout,
        }
    }

    /// Checks the values that no broker can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::endpoint::require("frontend", &self.frontend)?;
        crate::endpoint::require("backend", &self.backend)?;
        positive("max_tries", self.max_tries)?;
        if let Some(bind) = &self.cluster_bind {
            crate::endpoint::require("cluster_bind", bind)?;
        }
        for peer in &self.cluster_peers {
            crate::endpoint::require("cluster_peers", peer)?;
        }
        if let Some(watch) = &self.watch {
            crate::endpoint::require("watch", watch)?;
        }
        positive("max_pending_bytes", self.max_pending_bytes)?;
        check_input_limits(self.max_message_size, self.max_message_frames)?;
        check_outbox(
            self.peer_sndhwm,
            self.max_outbox_bytes_per_peer,
            self.max_outbox_bytes_total,
            self.slow_consumer_timeout,
        )?;
        crate::curve::check_config(
            self.curve_secret_key.is_some(),
            (self.curve_secret_key.is_none()
                && (self.curve_client_keys.is_some() || self.curve_worker_keys.is_some()))
            .then_some(("curve_client_keys", "curve_secret_key")),
        )?;
        self.check_shared()
    }
}

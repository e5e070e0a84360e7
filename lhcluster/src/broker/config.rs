//! Broker configuration.

use std::time::Duration;

use crate::config_common::{check_shared, defaults, positive};
#[cfg(feature = "serde")]
use crate::config_serde as de;
use crate::error::ConfigError;

/// How a [`Broker`](super::Broker) runs. Every field has a documented default
/// ([`BrokerConfig::new`]); change fields directly, then start the broker.
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "BrokerConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// Endpoint the frontend ROUTER binds, where clients and proxies connect
    /// (`tcp://`, `ipc://` or `inproc://`).
    pub frontend: String,
    /// Endpoint the backend ROUTER binds, where workers connect.
    pub backend: String,
    /// The broker's heartbeat interval, announced to every peer. Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// A peer is dead after this many of its own announced intervals without
    /// a message. Default: 3.
    pub liveness: u32,
    /// Most requests queued for one request type; more get `OVERLOADED`.
    /// Default: 100 000.
    pub max_pending_per_type: usize,
    /// Most requests queued in total; more get `OVERLOADED`. Default: 1 000 000.
    /// Files may also call it `max_pending` (the CLI's older name).
    #[cfg_attr(feature = "serde", serde(alias = "max_pending"))]
    pub max_pending_total: usize,
    /// How many times a `RETRY_ON_DEATH` request is dispatched at most
    /// (first try included). Default: 2.
    pub max_tries: u32,
    /// High-water mark of each socket, per peer: beyond it the broker queues
    /// nothing more for that peer (what it could not send is counted as
    /// undeliverable). Default: 100 000.
    pub hwm: i32,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`.
    /// Files may also call it `stats_interval` (the CLI's older name).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "stats_interval", deserialize_with = "de::optional_duration")
    )]
    pub stats_log_interval: Option<Duration>,
    /// How long [`Broker::stop`](super::Broker::stop) waits for the driver
    /// thread. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// Endpoint the cluster ROUTER binds, where the other brokers of a
    /// cluster connect (docs/clustering.md). `None` (the default): not
    /// reachable by other brokers.
    pub cluster_bind: Option<String>,
    /// Cluster endpoints of the other brokers, which this broker dials.
    /// Every broker of a cluster should list every other (a full mesh); an
    /// endpoint listed twice is dialled once. Default: none.
    pub cluster_peers: Vec<String>,
    /// This broker's name in the cluster, for logs and stats. Default: none.
    pub name: Option<String>,
}

impl BrokerConfig {
    /// A configuration with the given endpoints and every other field at its
    /// default.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            frontend: frontend.into(),
            backend: backend.into(),
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            max_pending_per_type: 100_000,
            max_pending_total: 1_000_000,
            max_tries: 2,
            hwm: defaults::HWM,
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            cluster_bind: None,
            cluster_peers: Vec::new(),
            name: None,
        }
    }

    /// What a file starts from: the defaults, no endpoint yet.
    #[cfg(feature = "serde")]
    fn unset() -> Self {
        Self::new("", "")
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
        check_shared(
            self.heartbeat,
            self.liveness,
            self.hwm,
            self.stats_log_interval,
        )
    }
}

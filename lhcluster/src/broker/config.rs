//! Broker configuration.

use std::time::Duration;

use crate::error::ConfigError;

/// How a [`Broker`](super::Broker) runs. Every field has a documented default
/// ([`BrokerConfig::new`]); change fields directly, then start the broker.
///
/// With the `serde` feature it reads from a file (keys as the fields,
/// durations as `"100ms"`/`"5s"`, missing fields at their defaults, unknown
/// keys refused); see docs/operations.md.
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
    /// The broker's own heartbeat interval, announced to every peer.
    /// Default: 1 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub heartbeat: Duration,
    /// A peer is dead after this many of its own announced intervals without
    /// a message. Default: 3.
    pub liveness: u32,
    /// Most requests queued for one request type; more get `OVERLOADED`.
    /// Default: 100 000.
    pub max_pending_per_type: usize,
    /// Most requests queued in total; more get `OVERLOADED`. Default: 1 000 000.
    ///
    /// Files may also call it `max_pending` (the CLI's older name).
    #[cfg_attr(feature = "serde", serde(alias = "max_pending"))]
    pub max_pending_total: usize,
    /// How many times a `RETRY_ON_DEATH` request is dispatched at most
    /// (first try included). Default: 2.
    pub max_tries: u32,
    /// High-water mark of each socket, per peer, in messages: beyond it the
    /// broker queues nothing more for that peer (what it could not send is
    /// counted as undeliverable). Default: 100 000.
    pub hwm: i32,
    /// Period of the stats log line at info level; `None` turns it off.
    /// Default: `None` (`"off"` in a file).
    ///
    /// Files may also call it `stats_interval` (the CLI's older name).
    #[cfg_attr(
        feature = "serde",
        serde(
            alias = "stats_interval",
            deserialize_with = "crate::config_serde::optional_duration"
        )
    )]
    pub stats_log_interval: Option<Duration>,
    /// How long [`Broker::stop`](super::Broker::stop) waits for the driver
    /// thread. Default: 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub shutdown_timeout: Duration,
}

impl BrokerConfig {
    /// A configuration with the given endpoints and every other field at its
    /// default.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            frontend: frontend.into(),
            backend: backend.into(),
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            max_pending_per_type: 100_000,
            max_pending_total: 1_000_000,
            max_tries: 2,
            hwm: 100_000,
            stats_log_interval: None,
            shutdown_timeout: Duration::from_secs(5),
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
        if self.heartbeat.is_zero() {
            return Err(ConfigError::invalid("heartbeat", "must be > 0"));
        }
        if self.liveness == 0 {
            return Err(ConfigError::invalid("liveness", "must be > 0"));
        }
        if self.max_tries == 0 {
            return Err(ConfigError::invalid("max_tries", "must be > 0"));
        }
        if self.hwm <= 0 {
            return Err(ConfigError::invalid("hwm", "must be > 0"));
        }
        Ok(())
    }
}

//! Client configuration.

use std::time::Duration;

use crate::error::ConfigError;

/// How a [`Client`](super::Client) runs. Fields default as documented on
/// [`ClientConfig::new`].
///
/// With the `serde` feature it reads from a file (keys as the fields,
/// durations as `"100ms"`/`"5s"`, missing fields at their defaults, unknown
/// keys refused); see docs/operations.md.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "ClientConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Broker frontend (or client proxy) endpoints. One is used today; the
    /// list leaves room for failover and sharding without an API change.
    ///
    /// A file may give one endpoint as a string, and call it `broker`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "broker", deserialize_with = "crate::config_serde::endpoints")
    )]
    pub brokers: Vec<String>,
    /// Optional stable name: other clients can name it as `reply_to`.
    pub name: Option<String>,
    /// The client's heartbeat interval, announced to the broker. Default: 1 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub heartbeat: Duration,
    /// The broker is dead after this many of its intervals without a
    /// message. Default: 3.
    pub liveness: u32,
    /// Default per-request timeout; `None` (`"off"` in a file) waits for the
    /// broker's outcome (still bounded by broker liveness). Default: 30 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::optional_duration")
    )]
    pub request_timeout: Option<Duration>,
    /// First delay before reconnecting; doubles up to `reconnect_max`.
    /// Default: 100 ms.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub reconnect_max: Duration,
    /// Capacity of the [`events`](super::Client::events) channel; events
    /// beyond it are dropped and counted. Default: 1024.
    pub event_capacity: usize,
    /// High-water mark of the socket, in messages: while this many wait for
    /// the broker to read them, a further request fails at once ("cannot
    /// send"). Default: 100 000.
    pub hwm: i32,
    /// Period of the stats log line at info level; `None` (`"off"` in a
    /// file) turns it off. Default: `None`.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::optional_duration")
    )]
    pub stats_log_interval: Option<Duration>,
    /// How long [`Client::stop`](super::Client::stop) waits. Default: 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub shutdown_timeout: Duration,
}

impl ClientConfig {
    /// A configuration connecting to one broker frontend, defaults elsewhere.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            name: None,
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            request_timeout: Some(Duration::from_secs(30)),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            event_capacity: 1024,
            hwm: 100_000,
            stats_log_interval: None,
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// What a file starts from: the defaults, no broker yet.
    #[cfg(feature = "serde")]
    fn unset() -> Self {
        Self {
            brokers: Vec::new(),
            ..Self::new("")
        }
    }

    /// Checks the values that no client can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(first) = self.brokers.first() else {
            return Err(ConfigError::invalid(
                "brokers",
                "must name at least one endpoint",
            ));
        };
        crate::endpoint::require("brokers", first)?;
        if self.heartbeat.is_zero() {
            return Err(ConfigError::invalid("heartbeat", "must be > 0"));
        }
        if self.liveness == 0 {
            return Err(ConfigError::invalid("liveness", "must be > 0"));
        }
        if self.hwm <= 0 {
            return Err(ConfigError::invalid("hwm", "must be > 0"));
        }
        if self.name.as_deref() == Some("") {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        Ok(())
    }
}

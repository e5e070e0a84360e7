//! Client proxy configuration.

use std::time::Duration;

use crate::error::ConfigError;

/// How a [`ClientProxy`](super::ClientProxy) runs. Fields default as
/// documented on [`ClientProxyConfig::new`].
///
/// With the `serde` feature it reads from a file (keys as the fields,
/// durations as `"100ms"`/`"5s"`, missing fields at their defaults, unknown
/// keys refused); see docs/operations.md.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "ClientProxyConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ClientProxyConfig {
    /// Endpoint the client-facing ROUTER binds.
    pub bind: String,
    /// Broker frontend endpoints. One is used today; the list leaves room
    /// for failover without an API change.
    ///
    /// A file may give one endpoint as a string, and call it `broker`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "broker", deserialize_with = "crate::config_serde::endpoints")
    )]
    pub brokers: Vec<String>,
    /// The proxy's heartbeat interval, announced to clients and the broker.
    /// Default: 1 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub heartbeat: Duration,
    /// A peer is dead after this many of its intervals without a message.
    /// Default: 3.
    pub liveness: u32,
    /// Most requests buffered; more get `OVERLOADED`. Default: 100 000.
    pub max_buffered: usize,
    /// Most payload bytes buffered; more get `OVERLOADED`. Default: 256 MiB.
    pub max_buffered_bytes: usize,
    /// First re-send of an unconfirmed request; doubles up to
    /// `resend_max`. Default: 2 s.
    ///
    /// Files may also call it `resend` (the CLI's older name).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "resend", deserialize_with = "crate::config_serde::duration")
    )]
    pub resend_initial: Duration,
    /// Cap of the re-send interval. Default: 30 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub resend_max: Duration,
    /// First delay before reconnecting to the broker; doubles up to
    /// `reconnect_max`. Default: 100 ms.
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
    /// High-water mark of each socket, per peer, in messages: beyond it the
    /// proxy queues nothing more for that peer (a request it cannot pass on
    /// stays buffered and is re-sent). Default: 100 000.
    pub hwm: i32,
    /// Period of the stats log line at info level; `None` (`"off"` in a
    /// file) turns it off. Default: `None`.
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
    /// How long [`ClientProxy::stop`](super::ClientProxy::stop) waits.
    /// Default: 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration")
    )]
    pub shutdown_timeout: Duration,
}

impl ClientProxyConfig {
    /// A proxy binding `bind` for clients and connecting to one broker.
    pub fn new(bind: impl Into<String>, broker: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            brokers: vec![broker.into()],
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            max_buffered: 100_000,
            max_buffered_bytes: 256 << 20,
            resend_initial: Duration::from_secs(2),
            resend_max: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            hwm: 100_000,
            stats_log_interval: None,
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// What a file starts from: the defaults, no endpoint yet.
    #[cfg(feature = "serde")]
    fn unset() -> Self {
        Self {
            brokers: Vec::new(),
            ..Self::new("", "")
        }
    }

    /// Checks the values that no proxy can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::endpoint::require("bind", &self.bind)?;
        let Some(first) = self.brokers.first() else {
            return Err(ConfigError::invalid(
                "brokers",
                "must name at least one endpoint",
            ));
        };
        crate::endpoint::require("brokers", first)?;
        if self.heartbeat.is_zero() || self.resend_initial.is_zero() {
            return Err(ConfigError::invalid(
                "heartbeat/resend_initial",
                "must be > 0",
            ));
        }
        if self.liveness == 0 {
            return Err(ConfigError::invalid("liveness", "must be > 0"));
        }
        if self.hwm <= 0 {
            return Err(ConfigError::invalid("hwm", "must be > 0"));
        }
        Ok(())
    }
}

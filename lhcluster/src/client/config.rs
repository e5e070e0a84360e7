//! Client configuration.

use std::time::Duration;

use crate::config_common::{check_brokers, check_reconnect, check_shared, defaults};
#[cfg(feature = "serde")]
use crate::config_serde as de;
use crate::curve::{PublicKey, SecretKey};
use crate::error::ConfigError;

/// How a [`Client`](super::Client) runs. Fields default as documented on
/// each.
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "ClientConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Broker frontend (or client proxy) endpoints, used one at a time: the
    /// first, then the next when the client loses its broker (the guide's
    /// "Several brokers"). A file may give one endpoint as a string, and
    /// call it `broker`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "broker", deserialize_with = "de::endpoints")
    )]
    pub brokers: Vec<String>,
    /// Optional stable name: other clients can name it as `reply_to`.
    pub name: Option<String>,
    /// The client's heartbeat interval, announced to the broker. Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// The broker is dead after this many of its intervals without a
    /// message. Default: 3.
    pub liveness: u32,
    /// Default per-request timeout; `None` waits for the broker's outcome
    /// (still bounded by broker liveness). Default: 30 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub request_timeout: Option<Duration>,
    /// How long [`Client::connect`](super::Client::connect) waits for a
    /// session with a broker (its `WELCOME`) before failing with
    /// [`Error::Unreachable`](crate::Error::Unreachable) ("cannot reach the
    /// broker at …"). `None`: do not wait; `connect` returns at once and the
    /// client keeps trying in the background (requests sent meanwhile wait
    /// for the session, within their timeout). Default: `None`.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub connect_timeout: Option<Duration>,
    /// First delay before reconnecting (> 0); doubles up to `reconnect_max`.
    /// Default: 100 ms.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_max: Duration,
    /// Capacity of the [`events`](super::Client::events) channel; events
    /// beyond it are dropped and counted. Default: 1024.
    pub event_capacity: usize,
    /// High-water mark of the socket: while this many messages wait for the
    /// broker to read them, a further request fails at once ("cannot send").
    /// Default: 100 000.
    pub hwm: i32,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub stats_log_interval: Option<Duration>,
    /// How long [`Client::stop`](super::Client::stop) waits. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// The CURVE public key of the broker (or proxy) (docs/security.md): with it,
    /// the connection is encrypted and reaches only the holder of the
    /// matching secret key. `None` (the default): no CURVE. Every endpoint
    /// in `brokers` is expected to hold this key.
    pub curve_server_key: Option<PublicKey>,
    /// This role's own CURVE secret key, which the broker may check
    /// against its list of allowed keys. `None` (the default): a new one at
    /// each start, when `curve_server_key` is set.
    pub curve_secret_key: Option<SecretKey>,
}

impl ClientConfig {
    /// A configuration connecting to one broker frontend, defaults elsewhere.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            name: None,
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            request_timeout: Some(Duration::from_secs(30)),
            connect_timeout: None,
            reconnect_min: defaults::RECONNECT_MIN,
            reconnect_max: defaults::RECONNECT_MAX,
            event_capacity: 1024,
            hwm: defaults::HWM,
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            curve_server_key: None,
            curve_secret_key: None,
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
        check_brokers(&self.brokers)?;
        if self.name.as_deref() == Some("") {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        check_reconnect(self.reconnect_min)?;
        crate::curve::check_config(
            self.curve_server_key.is_some(),
            (self.curve_secret_key.is_some() && self.curve_server_key.is_none())
                .then_some(("curve_secret_key", "curve_server_key")),
        )?;
        check_shared(
            self.heartbeat,
            self.liveness,
            self.hwm,
            self.stats_log_interval,
        )
    }
}

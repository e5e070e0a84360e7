//! Client configuration.

use std::time::Duration;

use crate::config_common::{check_brokers, check_reconnect, role_config, unset};
use crate::error::ConfigError;

role_config! {
    /// How a [`Client`](super::Client) runs. Fields default as documented on
    /// each.
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct ClientConfig {
        /// Broker frontend (or client proxy) endpoints, used one at a time: the
        /// first, then the next when the client loses its broker (the guide's
        /// "Several brokers"). A file may give one endpoint as a string, and
        /// call it `broker`.
        pub brokers,
        /// Optional stable name: other clients can name it as `reply_to`.
        pub name: Option<String> = None,
        /// The client's heartbeat interval, announced to the broker. Default: 1 s.
        pub heartbeat,
        /// The broker is dead after this many of its intervals without a
        /// message. Default: 3.
        pub liveness,
        /// Default per-request timeout; `None` waits for the broker's outcome
        /// (still bounded by broker liveness). Default: 30 s.
        pub request_timeout: Option<Duration> = Some(Duration::from_secs(30)),
        /// How long [`Client::connect`](super::Client::connect) waits for a
        /// session with a broker (its `WELCOME`) before failing with
        /// [`Error::Unreachable`](crate::Error::Unreachable) ("cannot reach the
        /// broker at …"). `None`: do not wait; `connect` returns at once and the
        /// client keeps trying in the background (requests sent meanwhile wait
        /// for the session, within their timeout). Default: `None`.
        pub connect_timeout: Option<Duration> = None,
        /// First delay before reconnecting (> 0); doubles up to `reconnect_max`.
        /// Default: 100 ms.
        pub reconnect_min,
        /// Cap of the reconnect delay. Default: 5 s.
        pub reconnect_max,
        /// Capacity of the [`events`](super::Client::events) channel; events
        /// beyond it are dropped and counted. Default: 1024.
        pub event_capacity: usize = 1024,
        /// High-water mark of the socket: while this many messages wait for the
        /// broker to read them, a further request fails at once ("cannot send").
        /// Default: 100 000.
        pub hwm,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`.
        pub stats_log_interval,
        /// How long [`Client::stop`](super::Client::stop) waits. Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE public key of the broker (or proxy) (docs/security.md): with it,
        /// the connection is encrypted and reaches only the holder of the
        /// matching secret key. `None` (the default): no CURVE. Every endpoint
        /// in `brokers` is expected to hold this key.
        pub curve_server_key,
        /// This role's own CURVE secret key, which the broker may check
        /// against its list of allowed keys. `None` (the default): a new one at
        /// each start, when `curve_server_key` is set.
        pub curve_secret_key,
    }
}

impl ClientConfig {
    /// A configuration connecting to one broker frontend, defaults elsewhere.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            ..unset()
        }
    }

    /// Checks the values that no client can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_brokers(&self.brokers)?;
        if self.name.as_deref() == Some("") {
            return Err(ConfigError::invalid("name", "must not be empty"));
        }
        check_reconnect(self.reconnect_min)?;
        crate::curve::check_client_keys(&self.curve_server_key, &self.curve_secret_key)?;
        self.check_shared()
    }
}

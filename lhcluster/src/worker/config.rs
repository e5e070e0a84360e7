//! Worker configuration.

use std::time::Duration;

use crate::error::ConfigError;

/// How a [`Worker`](super::Worker) runs. Fields default as documented on
/// [`WorkerConfig::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Broker backend endpoints. One is used today; the list leaves room for
    /// failover without an API change.
    pub brokers: Vec<String>,
    /// Optional name, shown in the broker's logs and stats.
    pub name: Option<String>,
    /// How many requests run at once, on as many handler threads. Default: 1.
    /// With [`inline`](Self::inline), how many the broker may hand this
    /// worker at once: they queue here and run one after the other.
    pub capacity: u32,
    /// Runs handlers on the worker's own I/O thread, one at a time, instead
    /// of on a pool of `capacity` threads. Default: `false`.
    ///
    /// This saves two thread hand-offs per request (to a handler thread and
    /// back), which is most of a request's cost when handlers take
    /// microseconds. Only for handlers that are quick and never block: while
    /// one runs, the worker reads nothing, so it answers no heartbeat, and a
    /// handler running longer than the broker's `liveness` × heartbeat gets
    /// the worker declared dead (its requests then fail or are retried
    /// elsewhere, as after a crash). An inline handler must not call its own
    /// [`Worker`](super::Worker) (`stats`, `stop`): that waits for the very
    /// thread running the handler.
    pub inline: bool,
    /// The worker's heartbeat interval, announced to the broker. Default: 1 s.
    pub heartbeat: Duration,
    /// The broker is dead after this many of its intervals without a
    /// message. Default: 3.
    pub liveness: u32,
    /// First delay before reconnecting; doubles up to `reconnect_max`.
    /// Default: 100 ms.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 5 s.
    pub reconnect_max: Duration,
    /// How long [`Worker::stop`](super::Worker::stop) lets running handlers
    /// finish. Default: 5 s.
    pub shutdown_timeout: Duration,
}

impl WorkerConfig {
    /// A configuration connecting to one broker backend, defaults elsewhere.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            name: None,
            capacity: 1,
            inline: false,
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Checks the values that no worker can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(first) = self.brokers.first() else {
            return Err(ConfigError::invalid(
                "brokers",
                "must name at least one endpoint",
            ));
        };
        crate::endpoint::validate(first)?;
        if self.capacity == 0 {
            return Err(ConfigError::invalid("capacity", "must be > 0"));
        }
        if self.heartbeat.is_zero() {
            return Err(ConfigError::invalid("heartbeat", "must be > 0"));
        }
        if self.liveness == 0 {
            return Err(ConfigError::invalid("liveness", "must be > 0"));
        }
        Ok(())
    }
}

//! Worker configuration.

use crate::config_common::{check_brokers, check_reconnect, positive, role_config, unset};
use crate::error::ConfigError;

role_config! {
    /// How a [`Worker`](super::Worker) runs. Fields default as documented on
    /// each.
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct WorkerConfig {
        /// Broker backend endpoints, used one at a time: the first, then the
        /// next when the worker loses its broker (the guide's "Several
        /// brokers"). A file may give one endpoint as a string, and call it
        /// `broker`.
        pub brokers,
        /// Optional name, shown in the broker's logs and stats.
        pub name: Option<String> = None,
        /// How many requests run at once, on as many handler threads. Default: 1.
        /// A fast type's requests (its handler has lately taken at most 20 µs
        /// on average) run on the thread that reads the socket instead, in one
        /// of these places; should one run long, another thread takes the
        /// socket over (docs/guide.md, "Worker"). With [`inline`](Self::inline),
        /// how many the broker may hand this worker at once: they queue here
        /// and run one after the other.
        pub capacity: u32 = 1,
        /// How many requests the broker may hand this worker beyond the
        /// `capacity` it runs at once. Default: 0.
        ///
        /// They wait here, in the order they came, and start as soon as a
        /// handler is free, instead of after a round trip to the broker (the
        /// worker's RESULT out, the next DISPATCH back): for fast handlers that
        /// round trip is most of the time, and `capacity` 1 with `prefetch` 32
        /// runs many times faster than without. The price: a prefetched
        /// request waits behind a slow one even when another worker is free,
        /// and the broker counts it in flight here (a worker that dies ends or
        /// retries it like the running ones). Raise it for handlers that take
        /// microseconds; keep 0 for slow or uneven ones. A graceful stop hands
        /// the requests that have not started back to the broker (protocol
        /// 1.8), which dispatches them to another worker at once: never failed,
        /// no attempt used (counted `requests_returned`); only the running ones
        /// finish within `shutdown_timeout`. At a broker older than 1.8 (or
        /// with no session at the stop), they run within `shutdown_timeout`,
        /// as before.
        pub prefetch: u32 = 0,
        /// Runs every handler on the worker's own I/O thread, one at a time,
        /// instead of on a pool of `capacity` threads. Default: `false`.
        ///
        /// This saves two thread hand-offs per request (to a handler thread and
        /// back), which is most of a request's cost when handlers take
        /// microseconds; without it the worker does so too, for the types it
        /// has timed as fast, with a second thread ready to take its socket
        /// over, which costs a little more. Only for handlers that are quick
        /// and never block: while
        /// one runs, the worker reads nothing, so it answers no heartbeat, and a
        /// handler running longer than the broker's `liveness` × heartbeat gets
        /// the worker declared dead (its requests then fail or are retried
        /// elsewhere, as after a crash). An inline handler must not call its own
        /// [`Worker`](super::Worker) (`stats`, `stop`): that waits for the very
        /// thread running the handler.
        pub inline: bool = false,
        /// The worker's heartbeat interval, announced to the broker. Default: 1 s.
        pub heartbeat,
        /// The broker is dead after this many of its intervals without a
        /// message. Default: 3.
        pub liveness,
        /// First delay before reconnecting (> 0); doubles up to `reconnect_max`.
        /// Default: 100 ms.
        pub reconnect_min,
        /// Cap of the reconnect delay. Default: 5 s.
        pub reconnect_max,
        /// High-water mark of the socket: while this many results wait for the
        /// broker to read them, a further one is dropped with a warning.
        /// Default: 100 000.
        pub hwm,
        /// Most payload bytes of results kept while there is no session with a
        /// broker (disconnected, or re-registering); a result that does not
        /// fit is kept as a `FAILED` result without payload, counted in
        /// `results_truncated` (docs/bounds.md §3). Default: 64 MiB.
        pub max_unsent_bytes: usize = 64 << 20,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`.
        pub stats_log_interval,
        /// How long [`Worker::stop`](super::Worker::stop) lets running handlers
        /// finish. Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE public key of the broker (docs/security.md): with it,
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

impl WorkerConfig {
    /// A configuration connecting to one broker backend, defaults elsewhere.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            ..unset()
        }
    }

    /// How many requests the broker may hand this worker at once: what it
    /// runs plus what it prefetches.
    pub fn credits(&self) -> u32 {
        self.capacity.saturating_add(self.prefetch)
    }

    /// Checks the values that no worker can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_brokers(&self.brokers)?;
        positive("capacity", self.capacity)?;
        positive("max_unsent_bytes", self.max_unsent_bytes)?;
        // Results, receipts and heartbeats in the DEALER's pipe: with more
        // room than that, a send with a session never fails (what is
        // refused would be lost).
        if i64::from(self.hwm) <= 2 * i64::from(self.credits()) + 16 {
            return Err(ConfigError::invalid(
                "hwm",
                "must be > 2 × (capacity + prefetch) + 16 (the results and receipts a worker may owe)",
            ));
        }
        check_reconnect(self.reconnect_min)?;
        crate::curve::check_client_keys(&self.curve_server_key, &self.curve_secret_key)?;
        self.check_shared()
    }
}

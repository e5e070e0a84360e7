//! Configuration of the notification roles.

use std::time::Duration;

use crate::config_common::{
    check_endpoints, check_input_limits, check_reconnect, positive, role_config, unset,
};
use crate::curve::KeyList;
use crate::error::ConfigError;

/// The reconnect cap of the publisher and the subscriber (ZeroMQ's
/// `ZMQ_RECONNECT_IVL_MAX` on their socket): 2 s, not the request roles'
/// 5 s, the default these roles have always had.
const NOTIFY_RECONNECT_MAX: Duration = Duration::from_secs(2);

role_config! {
    /// How a [`NotifyBroker`](super::NotifyBroker) runs. Every field has a
    /// documented default ([`NotifyBrokerConfig::new`]); change fields directly,
    /// then start the broker.
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct NotifyBrokerConfig {
        /// Endpoint the frontend (XPUB) binds, where subscribers connect.
        pub frontend: String = String::new(),
        /// Endpoint the backend (XSUB) binds, where publishers connect.
        pub backend: String = String::new(),
        /// High-water mark of a publisher's connection, in notifications:
        /// it buffers at most this many not yet forwarded. Default: 100 000.
        pub hwm,
        /// High-water mark of a subscriber's connection, in notifications: a
        /// subscriber that falls this far behind loses the notifications
        /// beyond it (ZeroMQ PUB semantics), which bounds what the broker
        /// holds for it to this many times the largest notification
        /// (docs/bounds.md §3). Default: 1 000.
        pub peer_sndhwm: i32 = 1_000,
        /// Interval of the ZeroMQ (ZMTP) heartbeats on every connection.
        /// Default: 1 s.
        pub heartbeat,
        /// A connection is closed after this many heartbeat intervals without
        /// traffic. Default: 3.
        pub liveness,
        /// Most distinct topics with their own counters in
        /// [`NotifyBrokerStats::topics`](super::NotifyBrokerStats::topics);
        /// notifications on further topics are counted in
        /// `untracked_forwarded`. Default: 10 000.
        pub max_tracked_topics: usize = 10_000,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`. Files may also call it `stats_interval` (the CLI's
        /// older name).
        #[cfg_attr(feature = "serde", serde(alias = "stats_interval"))]
        pub stats_log_interval,
        /// How long [`NotifyBroker::stop`](super::NotifyBroker::stop) waits for
        /// the driver thread. Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE secret key of the sockets it binds (docs/security.md):
        /// peers must then connect with its public key, and all traffic is
        /// encrypted. `None` (the default): no CURVE, traffic in clear.
        pub curve_secret_key,
        /// The subscriber public keys the frontend lets in (docs/security.md);
        /// any other is refused during the CURVE handshake and counted
        /// (`auth_failures`). `None` (the default): any subscriber that holds
        /// the broker's public key. Needs `curve_secret_key`.
        pub curve_subscriber_keys: Option<KeyList> = None,
        /// The publisher public keys the backend lets in, likewise. `None`
        /// (the default): any publisher that holds the broker's public key.
        pub curve_publisher_keys: Option<KeyList> = None,
        /// `ZMQ_MAXMSGSIZE` of the sockets it binds: the largest frame, in
        /// bytes, a peer may send. libzmq cuts the connection of a peer that
        /// sends a larger one (docs/security.md, "Limits on input").
        /// Default: 16 MiB.
        pub max_message_size,
        /// The most frames a notification may have; one with more, or with
        /// more than `max_message_size` bytes in all, is dropped and counted as
        /// malformed. Default: 1024.
        pub max_message_frames,
    }
}

impl NotifyBrokerConfig {
    /// A configuration with the given endpoints and every other field at its
    /// default.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            frontend: frontend.into(),
            backend: backend.into(),
            ..unset()
        }
    }

    /// Checks the values that no broker can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::endpoint::require("frontend", &self.frontend)?;
        crate::endpoint::require("backend", &self.backend)?;
        positive("peer_sndhwm", self.peer_sndhwm)?;
        check_input_limits(self.max_message_size, self.max_message_frames)?;
        let lists = self.curve_subscriber_keys.is_some() || self.curve_publisher_keys.is_some();
        crate::curve::check_config(
            self.curve_secret_key.is_some(),
            (lists && self.curve_secret_key.is_none())
                .then_some(("curve_subscriber_keys", "curve_secret_key")),
        )?;
        self.check_shared()
    }
}

role_config! {
    /// How a [`NotifyPublisher`](super::NotifyPublisher) runs. Fields default as
    /// documented on [`NotifyPublisherConfig::new`].
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct NotifyPublisherConfig {
        /// The NotifyBroker backends to connect to, all of them at once
        /// ([`NotifyPublisher::connect`](super::NotifyPublisher::connect): each
        /// notification goes to every broker connected), or the endpoints to
        /// bind for direct subscribers
        /// ([`NotifyPublisher::bind`](super::NotifyPublisher::bind)). A file
        /// may give one endpoint as a string, and call it `endpoint`.
        pub endpoints,
        /// How long [`NotifyPublisher::connect`](super::NotifyPublisher::connect)
        /// waits for the broker to be ready to take notifications; past it,
        /// `connect` fails. `None`: do not wait (notifications published before
        /// the connection is up are dropped and counted). Default: 5 s.
        pub connect_timeout: Option<Duration> = Some(Duration::from_secs(5)),
        /// Most notifications waiting between `publish` and the socket; when it
        /// is full, `publish` drops the notification and returns
        /// [`PublishError::QueueFull`](super::PublishError::QueueFull).
        /// Default: 10 000.
        pub queue_capacity: usize = 10_000,
        /// High-water mark of the socket, per connection, in notifications:
        /// beyond it ZeroMQ drops notifications for that peer. Default: 100 000.
        pub hwm,
        /// Interval of the ZeroMQ (ZMTP) heartbeats. Default: 1 s.
        pub heartbeat,
        /// A connection is closed (and re-established) after this many heartbeat
        /// intervals without traffic. Default: 3.
        pub liveness,
        /// First delay before reconnecting to the broker (> 0); doubles up to
        /// `reconnect_max`. Default: 100 ms.
        pub reconnect_min,
        /// Cap of the reconnect delay. Default: 2 s.
        pub reconnect_max: Duration = NOTIFY_RECONNECT_MAX,
        /// How long notifications already handed to the socket may still be
        /// sent after [`stop`](super::NotifyPublisher::stop). Default: 1 s.
        pub linger: Duration = Duration::from_secs(1),
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`.
        pub stats_log_interval,
        /// How long `stop` waits for the driver thread. Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE secret key (docs/security.md): of the endpoints it binds
        /// ([`bind`](super::NotifyPublisher::bind)), or its own key towards the
        /// notify brokers ([`connect`](super::NotifyPublisher::connect), with
        /// `curve_server_key`). `None` (the default): no CURVE when binding.
        pub curve_secret_key,
        /// The notify brokers' CURVE public key, when connecting: with it, the
        /// connection is encrypted and reaches only the holder of the matching
        /// secret key. `None` (the default): no CURVE when connecting.
        pub curve_server_key,
        /// When binding: `ZMQ_MAXMSGSIZE` of its sockets, the largest frame,
        /// in bytes, a subscriber may send (a subscription). Default: 16 MiB.
        pub max_message_size,
    }
}

impl NotifyPublisherConfig {
    /// A configuration for `endpoint`, defaults elsewhere.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            ..unset()
        }
    }

    /// Checks the values that no publisher can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_endpoints("endpoints", &self.endpoints)?;
        check_input_limits(self.max_message_size, 1)?;
        positive("queue_capacity", self.queue_capacity)?;
        check_reconnect(self.reconnect_min)?;
        crate::curve::check_config(
            self.curve_server_key.is_some() || self.curve_secret_key.is_some(),
            None,
        )?;
        self.check_shared()
    }
}

role_config! {
    /// How a [`NotifySubscriber`](super::NotifySubscriber) runs. Fields default
    /// as documented on [`NotifySubscriberConfig::new`].
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct NotifySubscriberConfig {
        /// The NotifyBroker frontends (or publishers' bound endpoints) to
        /// connect to, one at a time: with several, the subscriber moves to the
        /// next when its own stops answering (docs/notifications.md,
        /// "Several notify brokers"). A file may give one endpoint as a
        /// string, and call it `endpoint`.
        pub endpoints,
        /// Topics subscribed exactly from the start.
        pub topics: Vec<String> = Vec::new(),
        /// Prefixes subscribed from the start (every topic starting with one).
        pub prefixes: Vec<String> = Vec::new(),
        /// How long `connect`, `subscribe` and `subscribe_prefix` wait for the
        /// broker (or publisher) to confirm that the subscriptions are in force.
        /// Past it, they fail (the subscriptions stay registered and take effect
        /// when the connection comes up). `None`: do not wait, for peers that do
        /// not answer probes (a plain ZeroMQ PUB). Default: 5 s.
        pub confirm_timeout: Option<Duration> = Some(Duration::from_secs(5)),
        /// Most notifications waiting for the handler; beyond it, notifications
        /// are dropped and counted. Default: 10 000.
        pub queue_capacity: usize = 10_000,
        /// Receive high-water mark of the socket, in notifications. Default:
        /// 100 000.
        pub hwm,
        /// Interval of the ZeroMQ (ZMTP) heartbeats. Default: 1 s.
        pub heartbeat,
        /// A connection is closed (and re-established) after this many heartbeat
        /// intervals without traffic. Default: 3.
        pub liveness,
        /// First delay before reconnecting (> 0); doubles up to `reconnect_max`.
        /// Default: 100 ms.
        pub reconnect_min,
        /// Cap of the reconnect delay. Default: 2 s.
        pub reconnect_max: Duration = NOTIFY_RECONNECT_MAX,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`.
        pub stats_log_interval,
        /// How long `stop` waits for the driver thread, and for a running
        /// handler to return. Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE public key of the notify broker (or publisher) (docs/security.md): with it,
        /// the connection is encrypted and reaches only the holder of the
        /// matching secret key. `None` (the default): no CURVE. Every endpoint
        /// in `endpoints` is expected to hold this key.
        pub curve_server_key,
        /// This role's own CURVE secret key, which the notify broker may check
        /// against its list of allowed keys. `None` (the default): a new one at
        /// each start, when `curve_server_key` is set.
        pub curve_secret_key,
    }
}

impl NotifySubscriberConfig {
    /// A configuration for `endpoint` with no subscription yet, defaults
    /// elsewhere.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            ..unset()
        }
    }

    /// Adds an exact subscription to `topic`.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Adds a prefix subscription.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Checks the values that no subscriber can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_endpoints("endpoints", &self.endpoints)?;
        for topic in &self.topics {
            super::validate_topic(topic)?;
        }
        for prefix in &self.prefixes {
            super::validate_prefix(prefix)?;
        }
        positive("queue_capacity", self.queue_capacity)?;
        check_reconnect(self.reconnect_min)?;
        crate::curve::check_client_keys(&self.curve_server_key, &self.curve_secret_key)?;
        self.check_shared()
    }
}

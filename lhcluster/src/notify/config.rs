//! Configuration of the notification roles.

use std::time::Duration;

use crate::config_common::{
    check_endpoints, check_input_limits, check_reconnect, check_shared, defaults, positive,
};
#[cfg(feature = "serde")]
use crate::config_serde as de;
use crate::curve::{KeyList, PublicKey, SecretKey};
use crate::error::ConfigError;

/// The reconnect cap of the publisher and the subscriber (ZeroMQ's
/// `ZMQ_RECONNECT_IVL_MAX` on their socket): 2 s, not the request roles'
/// 5 s, the default these roles have always had.
const NOTIFY_RECONNECT_MAX: Duration = Duration::from_secs(2);

/// How a [`NotifyBroker`](super::NotifyBroker) runs. Every field has a
/// documented default ([`NotifyBrokerConfig::new`]); change fields directly,
/// then start the broker.
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "NotifyBrokerConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct NotifyBrokerConfig {
    /// Endpoint the frontend (XPUB) binds, where subscribers connect.
    pub frontend: String,
    /// Endpoint the backend (XSUB) binds, where publishers connect.
    pub backend: String,
    /// High-water mark of a publisher's connection, in notifications:
    /// it buffers at most this many not yet forwarded. Default: 100 000.
    pub hwm: i32,
    /// High-water mark of a subscriber's connection, in notifications: a
    /// subscriber that falls this far behind loses the notifications
    /// beyond it (ZeroMQ PUB semantics), which bounds what the broker
    /// holds for it to this many times the largest notification
    /// (docs/bounds.md §3). Default: 1 000.
    pub peer_sndhwm: i32,
    /// Interval of the ZeroMQ (ZMTP) heartbeats on every connection.
    /// Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// A connection is closed after this many heartbeat intervals without
    /// traffic. Default: 3.
    pub liveness: u32,
    /// Most distinct topics with their own counters in
    /// [`NotifyBrokerStats::topics`](super::NotifyBrokerStats::topics);
    /// notifications on further topics are counted in
    /// `untracked_forwarded`. Default: 10 000.
    pub max_tracked_topics: usize,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`. Files may also call it `stats_interval` (the CLI's
    /// older name).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "stats_interval", deserialize_with = "de::optional_duration")
    )]
    pub stats_log_interval: Option<Duration>,
    /// How long [`NotifyBroker::stop`](super::NotifyBroker::stop) waits for
    /// the driver thread. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// The CURVE secret key of the sockets it binds (docs/security.md):
    /// peers must then connect with its public key, and all traffic is
    /// encrypted. `None` (the default): no CURVE, traffic in clear.
    pub curve_secret_key: Option<SecretKey>,
    /// The subscriber public keys the frontend lets in (docs/security.md);
    /// any other is refused during the CURVE handshake and counted
    /// (`auth_failures`). `None` (the default): any subscriber that holds
    /// the broker's public key. Needs `curve_secret_key`.
    pub curve_subscriber_keys: Option<KeyList>,
    /// The publisher public keys the backend lets in, likewise. `None`
    /// (the default): any publisher that holds the broker's public key.
    pub curve_publisher_keys: Option<KeyList>,
    /// `ZMQ_MAXMSGSIZE` of the sockets it binds: the largest frame, in
    /// bytes, a peer may send. libzmq cuts the connection of a peer that
    /// sends a larger one (docs/security.md, "Limits on input").
    /// Default: 16 MiB.
    pub max_message_size: usize,
    /// The most frames a notification may have; one with more, or with
    /// more than `max_message_size` bytes in all, is dropped and counted as
    /// malformed. Default: 1024.
    pub max_message_frames: usize,
}

impl NotifyBrokerConfig {
    /// A configuration with the given endpoints and every other field at its
    /// default.
    pub fn new(frontend: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            frontend: frontend.into(),
            backend: backend.into(),
            hwm: defaults::HWM,
            peer_sndhwm: 1_000,
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            max_tracked_topics: 10_000,
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            curve_secret_key: None,
            curve_subscriber_keys: None,
            curve_publisher_keys: None,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_message_frames: defaults::MAX_MESSAGE_FRAMES,
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
        positive("peer_sndhwm", self.peer_sndhwm)?;
        check_input_limits(self.max_message_size, self.max_message_frames)?;
        let lists = self.curve_subscriber_keys.is_some() || self.curve_publisher_keys.is_some();
        crate::curve::check_config(
            self.curve_secret_key.is_some(),
            (lists && self.curve_secret_key.is_none())
                .then_some(("curve_subscriber_keys", "curve_secret_key")),
        )?;
        check_shared(
            self.heartbeat,
            self.liveness,
            self.hwm,
            self.stats_log_interval,
        )
    }
}

/// How a [`NotifyPublisher`](super::NotifyPublisher) runs. Fields default as
/// documented on [`NotifyPublisherConfig::new`].
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "NotifyPublisherConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct NotifyPublisherConfig {
    /// The NotifyBroker backends to connect to, all of them at once
    /// ([`NotifyPublisher::connect`](super::NotifyPublisher::connect): each
    /// notification goes to every broker connected), or the endpoints to
    /// bind for direct subscribers
    /// ([`NotifyPublisher::bind`](super::NotifyPublisher::bind)). A file
    /// may give one endpoint as a string, and call it `endpoint`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "endpoint", deserialize_with = "de::endpoints")
    )]
    pub endpoints: Vec<String>,
    /// How long [`NotifyPublisher::connect`](super::NotifyPublisher::connect)
    /// waits for the broker to be ready to take notifications; past it,
    /// `connect` fails. `None`: do not wait (notifications published before
    /// the connection is up are dropped and counted). Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub connect_timeout: Option<Duration>,
    /// Most notifications waiting between `publish` and the socket; when it
    /// is full, `publish` drops the notification and returns
    /// [`PublishError::QueueFull`](super::PublishError::QueueFull).
    /// Default: 10 000.
    pub queue_capacity: usize,
    /// High-water mark of the socket, per connection, in notifications:
    /// beyond it ZeroMQ drops notifications for that peer. Default: 100 000.
    pub hwm: i32,
    /// Interval of the ZeroMQ (ZMTP) heartbeats. Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// A connection is closed (and re-established) after this many heartbeat
    /// intervals without traffic. Default: 3.
    pub liveness: u32,
    /// First delay before reconnecting to the broker (> 0); doubles up to
    /// `reconnect_max`. Default: 100 ms.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 2 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_max: Duration,
    /// How long notifications already handed to the socket may still be
    /// sent after [`stop`](super::NotifyPublisher::stop). Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub linger: Duration,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub stats_log_interval: Option<Duration>,
    /// How long `stop` waits for the driver thread. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// The CURVE secret key (docs/security.md): of the endpoints it binds
    /// ([`bind`](super::NotifyPublisher::bind)), or its own key towards the
    /// notify brokers ([`connect`](super::NotifyPublisher::connect), with
    /// `curve_server_key`). `None` (the default): no CURVE when binding.
    pub curve_secret_key: Option<SecretKey>,
    /// The notify brokers' CURVE public key, when connecting: with it, the
    /// connection is encrypted and reaches only the holder of the matching
    /// secret key. `None` (the default): no CURVE when connecting.
    pub curve_server_key: Option<PublicKey>,
    /// When binding: `ZMQ_MAXMSGSIZE` of its sockets, the largest frame,
    /// in bytes, a subscriber may send (a subscription). Default: 16 MiB.
    pub max_message_size: usize,
}

impl NotifyPublisherConfig {
    /// A configuration for `endpoint`, defaults elsewhere.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            connect_timeout: Some(Duration::from_secs(5)),
            queue_capacity: 10_000,
            hwm: defaults::HWM,
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            reconnect_min: defaults::RECONNECT_MIN,
            reconnect_max: NOTIFY_RECONNECT_MAX,
            linger: Duration::from_secs(1),
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            curve_secret_key: None,
            curve_server_key: None,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
        }
    }

    /// What a file starts from: the defaults, no endpoint yet.
    #[cfg(feature = "serde")]
    fn unset() -> Self {
        Self {
            endpoints: Vec::new(),
            ..Self::new("")
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
        check_shared(
            self.heartbeat,
            self.liveness,
            self.hwm,
            self.stats_log_interval,
        )
    }
}

/// How a [`NotifySubscriber`](super::NotifySubscriber) runs. Fields default
/// as documented on [`NotifySubscriberConfig::new`].
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default = "NotifySubscriberConfig::unset", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct NotifySubscriberConfig {
    /// The NotifyBroker frontends (or publishers' bound endpoints) to
    /// connect to, one at a time: with several, the subscriber moves to the
    /// next when its own stops answering (docs/notifications.md,
    /// "Several notify brokers"). A file may give one endpoint as a
    /// string, and call it `endpoint`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "endpoint", deserialize_with = "de::endpoints")
    )]
    pub endpoints: Vec<String>,
    /// Topics subscribed exactly from the start.
    pub topics: Vec<String>,
    /// Prefixes subscribed from the start (every topic starting with one).
    pub prefixes: Vec<String>,
    /// How long `connect`, `subscribe` and `subscribe_prefix` wait for the
    /// broker (or publisher) to confirm that the subscriptions are in force.
    /// Past it, they fail (the subscriptions stay registered and take effect
    /// when the connection comes up). `None`: do not wait, for peers that do
    /// not answer probes (a plain ZeroMQ PUB). Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub confirm_timeout: Option<Duration>,
    /// Most notifications waiting for the handler; beyond it, notifications
    /// are dropped and counted. Default: 10 000.
    pub queue_capacity: usize,
    /// Receive high-water mark of the socket, in notifications. Default:
    /// 100 000.
    pub hwm: i32,
    /// Interval of the ZeroMQ (ZMTP) heartbeats. Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// A connection is closed (and re-established) after this many heartbeat
    /// intervals without traffic. Default: 3.
    pub liveness: u32,
    /// First delay before reconnecting (> 0); doubles up to `reconnect_max`.
    /// Default: 100 ms.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 2 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_max: Duration,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::optional_duration"))]
    pub stats_log_interval: Option<Duration>,
    /// How long `stop` waits for the driver thread, and for a running
    /// handler to return. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// The CURVE public key of the notify broker (or publisher) (docs/security.md): with it,
    /// the connection is encrypted and reaches only the holder of the
    /// matching secret key. `None` (the default): no CURVE. Every endpoint
    /// in `endpoints` is expected to hold this key.
    pub curve_server_key: Option<PublicKey>,
    /// This role's own CURVE secret key, which the notify broker may check
    /// against its list of allowed keys. `None` (the default): a new one at
    /// each start, when `curve_server_key` is set.
    pub curve_secret_key: Option<SecretKey>,
}

impl NotifySubscriberConfig {
    /// A configuration for `endpoint` with no subscription yet, defaults
    /// elsewhere.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            topics: Vec::new(),
            prefixes: Vec::new(),
            confirm_timeout: Some(Duration::from_secs(5)),
            queue_capacity: 10_000,
            hwm: defaults::HWM,
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            reconnect_min: defaults::RECONNECT_MIN,
            reconnect_max: NOTIFY_RECONNECT_MAX,
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            curve_server_key: None,
            curve_secret_key: None,
        }
    }

    /// What a file starts from: the defaults, no endpoint yet.
    #[cfg(feature = "serde")]
    fn unset() -> Self {
        Self {
            endpoints: Vec::new(),
            ..Self::new("")
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

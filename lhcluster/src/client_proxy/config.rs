//! Client proxy configuration.

use std::time::Duration;

use crate::config_common::{
    check_brokers, check_input_limits, check_outbox, check_reconnect, check_shared, defaults,
    positive,
};
#[cfg(feature = "serde")]
use crate::config_serde as de;
use crate::curve::{KeyList, PublicKey, SecretKey};
use crate::error::ConfigError;

/// How a [`ClientProxy`](super::ClientProxy) runs. Fields default as
/// documented on each.
///
/// With the [`serde` feature](crate#feature-flags) it reads from a file. The
/// options every role has mean the same on each: docs/operations.md's
/// configuration reference explains them.
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
    /// Broker frontend endpoints, used one at a time: the first, then the
    /// next when the proxy loses its broker (it re-sends its buffer there).
    /// A file may give one endpoint as a string, and call it `broker`.
    #[cfg_attr(
        feature = "serde",
        serde(alias = "broker", deserialize_with = "de::endpoints")
    )]
    pub brokers: Vec<String>,
    /// The proxy's heartbeat interval, announced to clients and the broker.
    /// Default: 1 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub heartbeat: Duration,
    /// A peer is dead after this many of its intervals without a message.
    /// Default: 3.
    pub liveness: u32,
    /// Most requests buffered; more get `OVERLOADED`. Default: 100 000.
    pub max_buffered: usize,
    /// Most payload bytes buffered; more get `OVERLOADED`. Default: 256 MiB.
    pub max_buffered_bytes: usize,
    /// First re-send of an unconfirmed request (> 0); doubles up to
    /// `resend_max`. Default: 2 s. Files may also call it `resend` (the
    /// CLI's older name).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "resend", deserialize_with = "de::duration")
    )]
    pub resend_initial: Duration,
    /// Cap of the re-send interval. Default: 30 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub resend_max: Duration,
    /// First delay before reconnecting to the broker (> 0); doubles up to
    /// `reconnect_max`. Default: 100 ms.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub reconnect_max: Duration,
    /// High-water mark of each socket, per peer: beyond it the proxy queues
    /// nothing more for that peer (a request it cannot pass on stays
    /// buffered and is re-sent). On the clients' ROUTER it bounds the
    /// inbound queue only (see `peer_sndhwm`). Default: 100 000.
    pub hwm: i32,
    /// ZeroMQ's outbound queue per client, in messages; what does not fit
    /// waits in the proxy's outbox, counted in bytes. Default: 256.
    pub peer_sndhwm: i32,
    /// Most bytes the outbox holds for one client that does not read;
    /// what does not fit is dropped and counted, and the client is over
    /// its limit (docs/bounds.md §3). Default: 32 MiB.
    pub max_outbox_bytes_per_peer: usize,
    /// Most bytes the outbox holds across clients. Default: 512 MiB.
    pub max_outbox_bytes_total: usize,
    /// A client over its outbox limit this long is cut: it gets
    /// `SHUTDOWN` and its buffered requests are dropped. Default: 10 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub slow_consumer_timeout: Duration,
    /// Period of the stats log line, at info level; `None` for none.
    /// Default: `None`. Files may also call it `stats_interval` (the CLI's
    /// older name).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "stats_interval", deserialize_with = "de::optional_duration")
    )]
    pub stats_log_interval: Option<Duration>,
    /// How long [`ClientProxy::stop`](super::ClientProxy::stop) waits.
    /// Default: 5 s.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]
    pub shutdown_timeout: Duration,
    /// The CURVE secret key of its client side (docs/security.md): clients
    /// must then connect with its public key. Also its own key towards the
    /// broker when `curve_server_key` is set. `None` (the default): its
    /// client side runs in clear.
    pub curve_secret_key: Option<SecretKey>,
    /// The broker's CURVE public key: with it, the connection upstream is
    /// encrypted and reaches only the holder of the matching secret key.
    /// `None` (the default): no CURVE upstream.
    pub curve_server_key: Option<PublicKey>,
    /// The client public keys its client side lets in (docs/security.md);
    /// any other is refused during the CURVE handshake and counted
    /// (`auth_failures`). The types after a key are not checked here: the
    /// broker checks the proxy's own key. `None` (the default): any client
    /// that holds the proxy's public key. Needs `curve_secret_key`.
    pub curve_client_keys: Option<KeyList>,
    /// `ZMQ_MAXMSGSIZE` of the sockets it binds: the largest frame, in
    /// bytes, a peer may send. libzmq cuts the connection of a peer that
    /// sends a larger one (docs/security.md, "Limits on input").
    /// Default: 16 MiB.
    pub max_message_size: usize,
    /// The most frames a message it reads may have; one with more, or with
    /// more than `max_message_size` bytes in all, is dropped and counted
    /// (`oversized`). Default: 1024.
    pub max_message_frames: usize,
}

impl ClientProxyConfig {
    /// A proxy binding `bind` for clients and connecting to one broker.
    pub fn new(bind: impl Into<String>, broker: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            brokers: vec![broker.into()],
            heartbeat: defaults::HEARTBEAT,
            liveness: defaults::LIVENESS,
            max_buffered: 100_000,
            max_buffered_bytes: 256 << 20,
            resend_initial: Duration::from_secs(2),
            resend_max: Duration::from_secs(30),
            reconnect_min: defaults::RECONNECT_MIN,
            reconnect_max: defaults::RECONNECT_MAX,
            hwm: defaults::HWM,
            peer_sndhwm: defaults::PEER_SNDHWM,
            max_outbox_bytes_per_peer: defaults::MAX_OUTBOX_BYTES_PER_PEER,
            max_outbox_bytes_total: defaults::MAX_OUTBOX_BYTES_TOTAL,
            slow_consumer_timeout: defaults::SLOW_CONSUMER_TIMEOUT,
            stats_log_interval: None,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            curve_secret_key: None,
            curve_server_key: None,
            curve_client_keys: None,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_message_frames: defaults::MAX_MESSAGE_FRAMES,
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

    /// The bounds of the outbox towards clients.
    pub(crate) fn outbox_limits(&self) -> crate::outbox::Limits {
        crate::outbox::Limits {
            per_peer: self.max_outbox_bytes_per_peer,
            total: self.max_outbox_bytes_total,
            slow_timeout: self.slow_consumer_timeout,
        }
    }

    /// Checks the values that no proxy can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::endpoint::require("bind", &self.bind)?;
        check_brokers(&self.brokers)?;
        positive("resend_initial", self.resend_initial)?;
        check_reconnect(self.reconnect_min)?;
        check_outbox(
            self.peer_sndhwm,
            self.max_outbox_bytes_per_peer,
            self.max_outbox_bytes_total,
            self.slow_consumer_timeout,
        )?;
        check_input_limits(self.max_message_size, self.max_message_frames)?;
        crate::curve::check_config(
            self.curve_server_key.is_some() || self.curve_secret_key.is_some(),
            (self.curve_client_keys.is_some() && self.curve_secret_key.is_none())
                .then_some(("curve_client_keys", "curve_secret_key")),
        )?;
        check_shared(
            self.heartbeat,
            self.liveness,
            self.hwm,
            self.stats_log_interval,
        )
    }
}

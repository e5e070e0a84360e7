//! Client proxy configuration.

use std::time::Duration;

use crate::config_common::{
    check_brokers, check_input_limits, check_outbox, check_reconnect, positive, role_config, unset,
};
use crate::error::ConfigError;

role_config! {
    /// How a [`ClientProxy`](super::ClientProxy) runs. Fields default as
    /// documented on each.
    ///
    /// With the [`serde` feature](crate#feature-flags) it reads from a file. The
    /// options every role has mean the same on each: docs/operations.md's
    /// configuration reference explains them.
    pub struct ClientProxyConfig {
        /// Endpoint the client-facing ROUTER binds.
        pub bind: String = String::new(),
        /// Broker frontend endpoints, used one at a time: the first, then the
        /// next when the proxy loses its broker (it re-sends its buffer there).
        /// A file may give one endpoint as a string, and call it `broker`.
        pub brokers,
        /// The proxy's heartbeat interval, announced to clients and the broker.
        /// Default: 1 s.
        pub heartbeat,
        /// A peer is dead after this many of its intervals without a message.
        /// Default: 3.
        pub liveness,
        /// Most requests buffered; more get `OVERLOADED`. Default: 100 000.
        pub max_buffered: usize = 100_000,
        /// Most payload bytes buffered; more get `OVERLOADED`. Default: 256 MiB.
        pub max_buffered_bytes: usize = 256 << 20,
        /// First re-send of an unconfirmed request (> 0); doubles up to
        /// `resend_max`. Default: 2 s. Files may also call it `resend` (the
        /// CLI's older name).
        #[cfg_attr(feature = "serde", serde(alias = "resend"))]
        pub resend_initial: Duration = Duration::from_secs(2),
        /// Cap of the re-send interval. Default: 30 s.
        pub resend_max: Duration = Duration::from_secs(30),
        /// First delay before reconnecting to the broker (> 0); doubles up to
        /// `reconnect_max`. Default: 100 ms.
        pub reconnect_min,
        /// Cap of the reconnect delay. Default: 5 s.
        pub reconnect_max,
        /// High-water mark of each socket, per peer: beyond it the proxy queues
        /// nothing more for that peer (a request it cannot pass on stays
        /// buffered and is re-sent). On the clients' ROUTER it bounds the
        /// inbound queue only (see `peer_sndhwm`). Default: 100 000.
        pub hwm,
        /// ZeroMQ's outbound queue per client, in messages; what does not fit
        /// waits in the proxy's outbox, counted in bytes. Default: 256.
        pub peer_sndhwm,
        /// Most bytes the outbox holds for one client that does not read;
        /// what does not fit is dropped and counted, and the client is over
        /// its limit (docs/bounds.md §3). Default: 32 MiB.
        pub max_outbox_bytes_per_peer,
        /// Most bytes the outbox holds across clients. Default: 512 MiB.
        pub max_outbox_bytes_total,
        /// A client over its outbox limit this long is cut: it gets
        /// `SHUTDOWN` and its buffered requests are dropped. Default: 10 s.
        pub slow_consumer_timeout,
        /// Period of the stats log line, at info level; `None` for none.
        /// Default: `None`. Files may also call it `stats_interval` (the CLI's
        /// older name).
        #[cfg_attr(feature = "serde", serde(alias = "stats_interval"))]
        pub stats_log_interval,
        /// How long [`ClientProxy::stop`](super::ClientProxy::stop) waits.
        /// Default: 5 s.
        pub shutdown_timeout,
        /// The CURVE secret key of its client side (docs/security.md): clients
        /// must then connect with its public key. Also its own key towards the
        /// broker when `curve_server_key` is set. `None` (the default): its
        /// client side runs in clear.
        pub curve_secret_key,
        /// The broker's CURVE public key: with it, the connection upstream is
        /// encrypted and reaches only the holder of the matching secret key.
        /// `None` (the default): no CURVE upstream.
        pub curve_server_key,
        /// The client public keys its client side lets in (docs/security.md);
        /// any other is refused during the CURVE handshake and counted
        /// (`auth_failures`). The types after a key are not checked here: the
        /// broker checks the proxy's own key. `None` (the default): any client
        /// that holds the proxy's public key. Needs `curve_secret_key`.
        pub curve_client_keys,
        /// `ZMQ_MAXMSGSIZE` of the sockets it binds: the largest frame, in
        /// bytes, a peer may send. libzmq cuts the connection of a peer that
        /// sends a larger one (docs/security.md, "Limits on input").
        /// Default: 16 MiB.
        pub max_message_size,
        /// The most frames a message it reads may have; one with more, or with
        /// more than `max_message_size` bytes in all, is dropped and counted
        /// (`oversized`). Default: 1024.
        pub max_message_frames,
    }
}

impl ClientProxyConfig {
    /// A proxy binding `bind` for clients and connecting to one broker.
    pub fn new(bind: impl Into<String>, broker: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            brokers: vec![broker.into()],
            ..unset()
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
        self.check_shared()
    }
}

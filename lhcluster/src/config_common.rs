//! What the roles' configurations share: the defaults of the options every
//! role has, and the checks their `validate()` run.
//!
//! Every config names the same thing alike (`heartbeat`, `liveness`,
//! `reconnect_min`, `reconnect_max`, `hwm`, `stats_log_interval`,
//! `shutdown_timeout`) and gives it the same default; this module says each
//! default and each check once, and [`role_config!`] declares the configs.
//! The fields themselves stay on each config, not in a shared struct: users
//! read and set a flat struct of documented fields, and files are read with
//! `deny_unknown_fields`, which serde does not combine with
//! `#[serde(flatten)]`. What the shared options mean is explained once, in
//! docs/operations.md ("Configuration reference"); each field's doc says
//! what its role does with it, and its default.

use std::time::Duration;

use crate::error::ConfigError;

/// The defaults of the options every role has. Each config's field docs
/// repeat the value for their readers; `new()` takes it from here.
pub(crate) mod defaults {
    use std::time::Duration;

    /// A role's own heartbeat interval.
    pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
    /// Missed intervals before a peer is dead.
    pub(crate) const LIVENESS: u32 = 3;
    /// The first reconnect delay: docs/protocol.md §7.4's SHOULD.
    pub(crate) const RECONNECT_MIN: Duration = Duration::from_millis(100);
    /// The cap of the reconnect delay: docs/protocol.md §7.4's SHOULD.
    pub(crate) const RECONNECT_MAX: Duration = Duration::from_secs(5);
    /// ZeroMQ high-water mark of each socket, per peer, in messages.
    pub(crate) const HWM: i32 = 100_000;
    /// How long stopping a role may take.
    pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// `ZMQ_SNDHWM` of a bound ROUTER, per peer, in messages: small, since
    /// libzmq counts messages, not bytes, yet above the bursts a fast peer
    /// gets (a client's window of 64 in flight overflowed 64: docs/bounds.md
    /// §7).
    pub(crate) const PEER_SNDHWM: i32 = 256;
    /// Outbox bytes per peer (NATS's `max_pending` order of magnitude).
    pub(crate) const MAX_OUTBOX_BYTES_PER_PEER: usize = 32 << 20;
    /// Outbox bytes across a role's peers.
    pub(crate) const MAX_OUTBOX_BYTES_TOTAL: usize = 512 << 20;
    /// Over its outbox limit this long, a peer is cut (NATS's
    /// `write_deadline` order of magnitude).
    pub(crate) const SLOW_CONSUMER_TIMEOUT: Duration = Duration::from_secs(10);
    /// `ZMQ_MAXMSGSIZE` of a bound socket: the largest frame a peer may
    /// send (docs/security.md, "Limits on input").
    pub(crate) const MAX_MESSAGE_SIZE: usize = 16 << 20;
    /// The most frames one message read by a role that decodes may have.
    pub(crate) const MAX_MESSAGE_FRAMES: usize = 1024;
}

/// Declares a role's config: a flat struct of documented pub fields, with
/// what every config has (`Clone`, `Debug`, `#[non_exhaustive]`, and with
/// the `serde` feature `Deserialize` with `deny_unknown_fields` and the
/// missing fields at their defaults), and its [`Unset`] (every field at its
/// default, no endpoint yet: what a file starts from and `new` fills in).
///
/// A field is written `pub name: Type = default,`, or, for one of the
/// options several roles share, `pub name,`: then [`shared_option!`] gives
/// its type, its default and its file format. Every field keeps its own doc,
/// and may have more attributes (a serde `alias`). A field written with the
/// type `Duration` reads from a file as "100ms", "5s"… (`config_serde`), one
/// written `Option<Duration>` likewise or "off".
///
/// Each config also gets `check_shared(&self)`, [`check_shared`] of its
/// heartbeat, liveness, hwm and stats log interval, which every role has.
///
/// ```ignore
/// role_config! {
///     /// How a Thing runs.
///     pub struct ThingConfig {
///         /// Endpoints, used one at a time. Default: none.
///         pub brokers,
///         /// How many at once. Default: 1.
///         pub capacity: u32 = 1,
///         /// Thing's heartbeat interval. Default: 1 s.
///         pub heartbeat,
///         …
///     }
/// }
/// ```
macro_rules! role_config {
    (
        $(#[$attr:meta])*
        pub struct $name:ident { $($fields:tt)* }
    ) => {
        $crate::config_common::role_config!(@field [$(#[$attr])* $name] [] [] $($fields)*);
    };
    // `@field` reads the fields one at a time, with the struct's attributes
    // and name (`$head`), its fields so far and `unset`'s defaults so far.
    //
    // One of the options several roles share: `shared_option!` writes it
    // out, and hands it back (`@shared`) with the field's own attributes.
    (@field $head:tt $fields:tt $defaults:tt $(#[$a:meta])* pub $f:ident, $($rest:tt)*) => {
        $crate::config_common::shared_option!($f [$head $fields $defaults [$(#[$a])*] [$($rest)*]]);
    };
    (@shared [$head:tt $fields:tt $defaults:tt [$($a:tt)*] [$($rest:tt)*]] $($option:tt)*) => {
        $crate::config_common::role_config!(@field $head $fields $defaults $($a)* $($option)* $($rest)*);
    };
    // A duration, read from a file as "100ms", "5s"…
    (
        @field $head:tt [$($fields:tt)*] [$($defaults:tt)*]
        $(#[$a:meta])* pub $f:ident: Duration = $d:expr, $($rest:tt)*
    ) => {
        $crate::config_common::role_config!(
            @field $head
            [
                $($fields)* $(#[$a])*
                #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::config_serde::duration"))]
                pub $f: ::std::time::Duration,
            ]
            [$($defaults)* $f: $d,]
            $($rest)*
        );
    };
    // An optional duration: likewise, or "off" for `None`.
    (
        @field $head:tt [$($fields:tt)*] [$($defaults:tt)*]
        $(#[$a:meta])* pub $f:ident: Option<Duration> = $d:expr, $($rest:tt)*
    ) => {
        $crate::config_common::role_config!(
            @field $head
            [
                $($fields)* $(#[$a])*
                #[cfg_attr(
                    feature = "serde",
                    serde(deserialize_with = "crate::config_serde::optional_duration")
                )]
                pub $f: Option<::std::time::Duration>,
            ]
            [$($defaults)* $f: $d,]
            $($rest)*
        );
    };
    // Any other field, read from a file as its type reads.
    (
        @field $head:tt [$($fields:tt)*] [$($defaults:tt)*]
        $(#[$a:meta])* pub $f:ident: $t:ty = $d:expr, $($rest:tt)*
    ) => {
        $crate::config_common::role_config!(
            @field $head [$($fields)* $(#[$a])* pub $f: $t,] [$($defaults)* $f: $d,] $($rest)*
        );
    };
    // No field left: the struct, its `Unset` and its `check_shared`.
    (@field [$(#[$attr:meta])* $name:ident] [$($fields:tt)*] [$($defaults:tt)*]) => {
        $(#[$attr])*
        #[derive(Clone, Debug)]
        #[cfg_attr(
            feature = "serde",
            derive(serde::Deserialize),
            serde(default = "crate::config_common::unset", deny_unknown_fields)
        )]
        #[non_exhaustive]
        pub struct $name {
            $($fields)*
        }

        impl $crate::config_common::Unset for $name {
            fn unset() -> Self {
                use $crate::config_common::defaults;
                Self { $($defaults)* }
            }
        }

        impl $name {
            /// Checks the options every role has.
            fn check_shared(&self) -> Result<(), $crate::error::ConfigError> {
                $crate::config_common::check_shared(
                    self.heartbeat,
                    self.liveness,
                    self.hwm,
                    self.stats_log_interval,
                )
            }
        }
    };
}
pub(crate) use role_config;

/// The options several roles share, as a [`role_config!`] field `pub name,`
/// stands for them: `pub name: Type = default,` with the format a file
/// writes it in.
macro_rules! shared_option {
    (brokers $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            #[cfg_attr(
                feature = "serde",
                serde(alias = "broker", deserialize_with = "crate::config_serde::endpoints")
            )]
            pub brokers: Vec<String> = Vec::new(),
        );
    };
    (endpoints $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            #[cfg_attr(
                feature = "serde",
                serde(alias = "endpoint", deserialize_with = "crate::config_serde::endpoints")
            )]
            pub endpoints: Vec<String> = Vec::new(),
        );
    };
    (heartbeat $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub heartbeat: Duration = defaults::HEARTBEAT,
        );
    };
    (liveness $k:tt) => {
        $crate::config_common::role_config!(@shared $k pub liveness: u32 = defaults::LIVENESS,);
    };
    (reconnect_min $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub reconnect_min: Duration = defaults::RECONNECT_MIN,
        );
    };
    (reconnect_max $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub reconnect_max: Duration = defaults::RECONNECT_MAX,
        );
    };
    (hwm $k:tt) => {
        $crate::config_common::role_config!(@shared $k pub hwm: i32 = defaults::HWM,);
    };
    (stats_log_interval $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub stats_log_interval: Option<Duration> = None,
        );
    };
    (shutdown_timeout $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub shutdown_timeout: Duration = defaults::SHUTDOWN_TIMEOUT,
        );
    };
    (peer_sndhwm $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub peer_sndhwm: i32 = defaults::PEER_SNDHWM,
        );
    };
    (max_outbox_bytes_per_peer $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub max_outbox_bytes_per_peer: usize = defaults::MAX_OUTBOX_BYTES_PER_PEER,
        );
    };
    (max_outbox_bytes_total $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub max_outbox_bytes_total: usize = defaults::MAX_OUTBOX_BYTES_TOTAL,
        );
    };
    (slow_consumer_timeout $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub slow_consumer_timeout: Duration = defaults::SLOW_CONSUMER_TIMEOUT,
        );
    };
    (max_message_size $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub max_message_size: usize = defaults::MAX_MESSAGE_SIZE,
        );
    };
    (max_message_frames $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub max_message_frames: usize = defaults::MAX_MESSAGE_FRAMES,
        );
    };
    (curve_server_key $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub curve_server_key: Option<$crate::curve::PublicKey> = None,
        );
    };
    (curve_secret_key $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub curve_secret_key: Option<$crate::curve::SecretKey> = None,
        );
    };
    (curve_client_keys $k:tt) => {
        $crate::config_common::role_config!(@shared $k
            pub curve_client_keys: Option<$crate::curve::KeyList> = None,
        );
    };
    ($other:ident $k:tt) => {
        compile_error!(concat!(
            "`",
            stringify!($other),
            "` is no option several roles share: write `pub ",
            stringify!($other),
            ": Type = default,`"
        ));
    };
}
pub(crate) use shared_option;

/// A config with every field at its default and no endpoint yet: what a
/// file starts from, and what `new` fills in. [`role_config!`] implements
/// it.
pub(crate) trait Unset {
    /// The config with every field at its default, no endpoint yet.
    fn unset() -> Self;
}

/// [`Unset::unset`] of any config (serde's `default`, and `new`'s
/// `..unset()`).
pub(crate) fn unset<T: Unset>() -> T {
    T::unset()
}

/// Checks the input limits of a role that binds: > 0, and a size libzmq
/// takes (an `i64`).
pub(crate) fn check_input_limits(size: usize, frames: usize) -> Result<(), ConfigError> {
    positive("max_message_size", size)?;
    if i64::try_from(size).is_err() {
        return Err(ConfigError::invalid("max_message_size", "is too large"));
    }
    positive("max_message_frames", frames)
}

/// Checks the outbox options of a role with a bound ROUTER (the broker and
/// the proxy): all > 0, and a total that holds at least one peer's bound.
pub(crate) fn check_outbox(
    peer_sndhwm: i32,
    per_peer: usize,
    total: usize,
    slow_consumer_timeout: Duration,
) -> Result<(), ConfigError> {
    positive("peer_sndhwm", peer_sndhwm)?;
    positive("max_outbox_bytes_per_peer", per_peer)?;
    positive("slow_consumer_timeout", slow_consumer_timeout)?;
    if total < per_peer {
        return Err(ConfigError::invalid(
            "max_outbox_bytes_total",
            "must be >= max_outbox_bytes_per_peer",
        ));
    }
    Ok(())
}

/// Checks the options every role has: a heartbeat, a liveness, a
/// high-water mark and a stats log interval (when there is one) that are
/// all > 0 (a zero heartbeat would flood the peer, a zero liveness declares
/// it dead at once, a zero hwm means "no limit" to ZeroMQ, and a zero
/// interval would spin the driver writing a stats line on every pass;
/// "off" is `None`).
pub(crate) fn check_shared(
    heartbeat: Duration,
    liveness: u32,
    hwm: i32,
    stats_log_interval: Option<Duration>,
) -> Result<(), ConfigError> {
    positive("heartbeat", heartbeat)?;
    positive("liveness", liveness)?;
    positive("hwm", hwm)?;
    match stats_log_interval {
        Some(interval) => positive("stats_log_interval", interval),
        None => Ok(()),
    }
}

/// Checks the reconnect backoff of a connecting role: docs/protocol.md §7.4
/// requires a minimum > 0 (the delay doubles from it, so a zero minimum
/// would reconnect in a busy loop). The cap needs no check: a cap below the
/// minimum counts as the minimum.
pub(crate) fn check_reconnect(reconnect_min: Duration) -> Result<(), ConfigError> {
    positive("reconnect_min", reconnect_min)
}

/// Checks a connecting role's `brokers`: at least one, each a valid
/// endpoint (every one is used, in turn).
pub(crate) fn check_brokers(brokers: &[String]) -> Result<(), ConfigError> {
    check_endpoints("brokers", brokers)
}

/// Checks a list of endpoints, config field `field`: at least one, each
/// valid.
pub(crate) fn check_endpoints(
    field: &'static str,
    endpoints: &[String],
) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "must name at least one endpoint",
        ));
    }
    endpoints
        .iter()
        .try_for_each(|endpoint| crate::endpoint::require(field, endpoint))
}

/// Checks that `value` of config field `field` is > 0 (a count, a size, a
/// duration).
pub(crate) fn positive<T: PartialOrd + Default>(
    field: &'static str,
    value: T,
) -> Result<(), ConfigError> {
    if value > T::default() {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, "must be > 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::client_proxy::ClientProxyConfig;
    use crate::notify::{NotifyPublisherConfig, NotifySubscriberConfig};
    use crate::worker::WorkerConfig;

    /// `config` with `field` set to `value`, validated.
    macro_rules! validate_with {
        ($config:expr, $field:ident = $value:expr) => {{
            let mut config = $config;
            config.$field = $value;
            config.validate()
        }};
    }

    #[test]
    fn positive_refuses_zero_and_negative_values_of_any_kind() {
        assert!(positive("a", 1u32).is_ok());
        assert!(positive("a", Duration::from_nanos(1)).is_ok());
        assert_eq!(positive("a", 0usize).unwrap_err().field, "a");
        assert!(positive("a", Duration::ZERO).is_err());
        assert!(positive("a", -1i32).is_err());
    }

    #[test]
    fn outbox_checks_refuse_zeros_and_a_total_below_the_per_peer_bound() {
        use crate::broker::BrokerConfig;
        let broker = || BrokerConfig::new("tcp://*:1", "tcp://*:2");
        let proxy = || ClientProxyConfig::new("tcp://*:3", "tcp://b:1");
        assert!(broker().validate().is_ok() && proxy().validate().is_ok());
        let field = |r: Result<(), ConfigError>| r.unwrap_err().field;
        assert_eq!(
            field(validate_with!(broker(), peer_sndhwm = 0)),
            "peer_sndhwm"
        );
        assert_eq!(
            field(validate_with!(broker(), max_pending_bytes = 0)),
            "max_pending_bytes"
        );
        assert_eq!(
            field(validate_with!(
                proxy(),
                slow_consumer_timeout = Duration::ZERO
            )),
            "slow_consumer_timeout"
        );
        assert_eq!(
            field(validate_with!(proxy(), max_outbox_bytes_total = 1)),
            "max_outbox_bytes_total"
        );
        assert_eq!(
            field(validate_with!(broker(), max_outbox_bytes_per_peer = 0)),
            "max_outbox_bytes_per_peer"
        );
    }

    #[test]
    fn shared_checks_name_the_offending_field() {
        let ok = (defaults::HEARTBEAT, defaults::LIVENESS, defaults::HWM, None);
        assert!(check_shared(ok.0, ok.1, ok.2, ok.3).is_ok());
        let second = Some(Duration::from_secs(1));
        assert!(check_shared(ok.0, ok.1, ok.2, second).is_ok());
        let field = |r: Result<(), ConfigError>| r.unwrap_err().field;
        assert_eq!(
            field(check_shared(Duration::ZERO, ok.1, ok.2, ok.3)),
            "heartbeat"
        );
        assert_eq!(field(check_shared(ok.0, 0, ok.2, ok.3)), "liveness");
        assert_eq!(field(check_shared(ok.0, ok.1, 0, ok.3)), "hwm");
        let zero = Some(Duration::ZERO);
        assert_eq!(
            field(check_shared(ok.0, ok.1, ok.2, zero)),
            "stats_log_interval"
        );
        assert_eq!(field(check_brokers(&[])), "brokers");
        assert_eq!(field(check_brokers(&[String::new()])), "brokers");
        assert!(check_brokers(&["tcp://b:1".to_owned()]).is_ok());
        let second_bad = ["tcp://b:1".to_owned(), String::new()];
        assert_eq!(
            field(check_brokers(&second_bad)),
            "brokers",
            "every one is used"
        );
        assert!(check_brokers(&["tcp://b:1".to_owned(), "ipc:///b".to_owned()]).is_ok());
    }

    /// A zero stats log interval would spin every driver; each role's
    /// `validate` refuses it (and takes "off", `None`).
    #[test]
    fn every_role_refuses_a_zero_stats_log_interval() {
        let ep = "tcp://127.0.0.1:5555";
        let every_role = |interval: Option<Duration>| {
            [
                validate_with!(
                    crate::BrokerConfig::new("tcp://*:1", "tcp://*:2"),
                    stats_log_interval = interval
                ),
                validate_with!(ClientConfig::new(ep), stats_log_interval = interval),
                validate_with!(WorkerConfig::new(ep), stats_log_interval = interval),
                validate_with!(
                    ClientProxyConfig::new("tcp://*:5550", ep),
                    stats_log_interval = interval
                ),
                validate_with!(
                    crate::notify::NotifyBrokerConfig::new("tcp://*:1", "tcp://*:2"),
                    stats_log_interval = interval
                ),
                validate_with!(
                    NotifyPublisherConfig::new(ep),
                    stats_log_interval = interval
                ),
                validate_with!(
                    NotifySubscriberConfig::new(ep),
                    stats_log_interval = interval
                ),
            ]
        };
        for interval in [None, Some(Duration::from_millis(1))] {
            for result in every_role(interval) {
                assert_eq!(result, Ok(()));
            }
        }
        for result in every_role(Some(Duration::ZERO)) {
            assert_eq!(result.unwrap_err().field, "stats_log_interval");
        }
    }

    /// docs/protocol.md §7.4: the reconnect minimum MUST be > 0, for every
    /// role that reconnects.
    #[test]
    fn every_connecting_role_refuses_a_zero_reconnect_minimum() {
        let ep = "tcp://127.0.0.1:5555";
        let every_role = |min: Duration| {
            [
                validate_with!(ClientConfig::new(ep), reconnect_min = min),
                validate_with!(WorkerConfig::new(ep), reconnect_min = min),
                validate_with!(
                    ClientProxyConfig::new("tcp://*:5550", ep),
                    reconnect_min = min
                ),
                validate_with!(NotifyPublisherConfig::new(ep), reconnect_min = min),
                validate_with!(NotifySubscriberConfig::new(ep), reconnect_min = min),
            ]
        };
        for result in every_role(Duration::from_millis(1)) {
            assert_eq!(result, Ok(()));
        }
        for result in every_role(Duration::ZERO) {
            assert_eq!(result.unwrap_err().field, "reconnect_min");
        }
    }
}

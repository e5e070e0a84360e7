//! Notifications: fan-out of notifications by topic (NotifyType).
//!
//! - [`NotifyBroker`] binds a backend for publishers (XSUB) and a frontend
//!   for subscribers (XPUB), validates every notification and forwards it to
//!   the subscribers whose subscriptions match.
//! - [`NotifyPublisher`] connects to a broker backend, or binds its own
//!   endpoint for subscribers that connect to it directly ("direct mode").
//!   Publishing never blocks.
//! - [`NotifySubscriber`] connects to a broker frontend or to a publisher,
//!   and runs a handler for every notification on its own thread.
//!
//! Subscriptions are **exact** ([`NotifySubscriber::subscribe`]: `orders`
//! does not receive `orders-archive`) or **prefix** subscriptions
//! ([`NotifySubscriber::subscribe_prefix`]). When `subscribe` returns, the
//! subscription is in force at the broker (or direct publisher): a
//! notification published after that is delivered. `docs/notifications.md`
//! explains how, and `docs/protocol.md` (section "Notifications") is the
//! wire format.
//!
//! ```
//! use std::time::Duration;
//! use lhcluster::notify::*;
//!
//! let broker = NotifyBroker::start(NotifyBrokerConfig::new(
//!     "inproc://doc-notify-front",
//!     "inproc://doc-notify-back",
//! ))?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let subscriber = NotifySubscriber::connect(
//!     NotifySubscriberConfig::new(broker.frontend()).topic("orders"),
//!     move |n: RawNotification| {
//!         let _ = tx.send(n.topic);
//!         NotifyOutcome::Continue
//!     },
//! )?;
//! let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend()))?;
//! publisher.publish("orders-archive", Vec::new())?; // not subscribed
//! publisher.publish("orders", vec![b"42".as_slice().into()])?;
//! assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, "orders");
//! # subscriber.stop()?; publisher.stop()?; broker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod broker;
mod config;
mod publisher;
mod stats;
mod subscriber;
mod subscriptions;
#[cfg(test)]
mod tests;
pub(crate) mod typed;

use std::time::{Duration, Instant};

pub use broker::NotifyBroker;
pub use config::{NotifyBrokerConfig, NotifyPublisherConfig, NotifySubscriberConfig};
pub use publisher::{NotifyPublisher, PublishError};
pub use stats::{NotifyBrokerStats, NotifyPublisherStats, NotifySubscriberStats, TopicStats};
#[cfg(feature = "stream")]
pub use subscriber::NotifyStream;
pub use subscriber::{NotifyHandler, NotifyOutcome, NotifySubscriber};
pub use typed::{NotifyRouter, TypedPublishError};

pub use crate::protocol::RawNotification;

use crate::error::{ConfigError, Error};
use crate::log_limit::LogLimiter;
use crate::protocol::Frame;

use crate::io::READ_BATCH;
use crate::io::set_option;

/// Longest probe subscription a broker or publisher answers (the reference
/// subscriber uses 18 bytes).
const MAX_PROBE_LEN: usize = 64;

/// Checks a topic for an exact subscription or a publication: non-empty,
/// no NUL character (any other UTF-8 text is fine, spaces included).
pub(crate) fn validate_topic(topic: &str) -> Result<(), ConfigError> {
    if topic.is_empty() {
        return Err(ConfigError::invalid("topic", "must not be empty"));
    }
    validate_prefix(topic)
}

/// Checks a prefix subscription: no NUL character; empty means everything.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.contains('\0') {
        return Err(ConfigError::invalid(
            "topic",
            format!("{prefix:?} contains a NUL character"),
        ));
    }
    Ok(())
}

/// A message read from an XPUB socket: what a subscriber (or the broker's
/// XSUB) asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upstream<'a> {
    /// `0x01` + filter bytes.
    Subscribe(&'a [u8]),
    /// `0x00` + filter bytes.
    Unsubscribe(&'a [u8]),
    /// Anything else (a raw XSUB may send any message upstream).
    Invalid,
}

pub(crate) fn upstream(frame: &[u8]) -> Upstream<'_> {
    match frame.split_first() {
        Some((1, filter)) => Upstream::Subscribe(filter),
        Some((0, filter)) => Upstream::Unsubscribe(filter),
        _ => Upstream::Invalid,
    }
}

/// Whether subscription filter bytes are a probe (they start with 0x00, so
/// no notification topic frame can ever match them).
pub(crate) fn is_probe(filter: &[u8]) -> bool {
    filter.first() == Some(&0)
}

/// What became of a probe subscription handed to [`answer_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The answer went out.
    Answered,
    /// The socket did not take the answer (logged at debug: the prober
    /// probes again).
    Unsent,
    /// Longer than [`MAX_PROBE_LEN`]: not answered. Bad input, which the
    /// caller counts and warns about through its limiter
    /// ([`Ignored::warn`]).
    TooLong,
}

/// Answers a probe subscription on an XPUB socket: one frame holding the
/// probe bytes, which only the prober (and catch-all subscribers, which
/// ignore it) receives.
pub(crate) fn answer_probe(socket: &zmq::Socket, filter: &[u8]) -> Probe {
    if filter.len() > MAX_PROBE_LEN {
        return Probe::TooLong;
    }
    match socket.send(filter, zmq::DONTWAIT) {
        Ok(()) => Probe::Answered,
        Err(e) => {
            tracing::debug!(error = %e, "cannot answer a probe");
            Probe::Unsent
        }
    }
}

/// A message from a subscriber that the broker or a direct publisher
/// ignores: bad input, whose warnings go through a [`LogLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// A probe longer than [`MAX_PROBE_LEN`] bytes.
    LongProbe { len: usize },
    /// Neither a subscription nor an unsubscription (a raw XSUB may send
    /// any message upstream).
    NotASubscription { frames: usize },
}

impl Ignored {
    /// Logs it at warn, unless `limiter` holds the line back for its next
    /// summary. Counting it is the caller's (the counts stay exact).
    pub(crate) fn warn(self, limiter: &mut LogLimiter, now: Instant) {
        match self {
            Ignored::LongProbe { len } => {
                let reason = format_args!("probe of {len} bytes");
                if limiter.admit(now, &[], &reason) {
                    tracing::warn!(len, "probe subscription too long: ignored");
                }
            }
            Ignored::NotASubscription { frames } => {
                let reason = format_args!("not a subscription ({frames} frames)");
                if limiter.admit(now, &[], &reason) {
                    tracing::warn!(
                        frames,
                        "message from a subscriber is not a subscription: ignored"
                    );
                }
            }
        }
    }
}

/// What [`read_subscribers`] hands on to its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromSubscriber<'a> {
    /// A subscription (not a probe).
    Subscribe(&'a [u8]),
    /// An unsubscription (not of a probe).
    Unsubscribe(&'a [u8]),
    /// A probe, answered.
    ProbeAnswered,
    /// Bad input (a probe too long to answer, a message that is no
    /// subscription), warned about through the limiter; counting it is the
    /// role's.
    Malformed,
}

/// Reads a batch of what subscribers sent up an XPUB `socket` (the notify
/// broker's frontend, a bound publisher's socket): answers their probes,
/// warns about bad input through `bad_input`, and hands each message to
/// `handle`. `failed` is the warning when a receive fails.
pub(crate) fn read_subscribers(
    socket: &zmq::Socket,
    failed: &'static str,
    bad_input: &mut LogLimiter,
    mut handle: impl FnMut(FromSubscriber<'_>),
) {
    for _ in 0..READ_BATCH {
        let Some(frames) = recv_next(socket, failed) else {
            break;
        };
        match upstream(&frames[0]) {
            Upstream::Subscribe(filter) if is_probe(filter) => match answer_probe(socket, filter) {
                Probe::Answered => handle(FromSubscriber::ProbeAnswered),
                Probe::Unsent => {}
                Probe::TooLong => {
                    handle(FromSubscriber::Malformed);
                    let len = filter.len();
                    Ignored::LongProbe { len }.warn(bad_input, Instant::now());
                }
            },
            // A probe's unsubscription needs nothing.
            Upstream::Unsubscribe(filter) if is_probe(filter) => {}
            Upstream::Subscribe(filter) => handle(FromSubscriber::Subscribe(filter)),
            Upstream::Unsubscribe(filter) => handle(FromSubscriber::Unsubscribe(filter)),
            Upstream::Invalid => {
                handle(FromSubscriber::Malformed);
                let frames = frames.len();
                Ignored::NotASubscription { frames }.warn(bad_input, Instant::now());
            }
        }
    }
}

/// One wait of a notify role's driver ([`io::wait`](crate::io::wait)) on
/// its doorbell (commands) and its sockets, until `until`: what is ready, or
/// `None` when the poll failed, logged as the end of `role`'s driver (which
/// then stops). A macro, so that the log line keeps its driver's target.
macro_rules! driver_wait {
    ($doorbell:expr, $sockets:expr, $until:expr, $role:literal) => {
        $crate::io::wait(Some($doorbell), $sockets, $until)
            .inspect_err(|e| tracing::error!(error = %e, "{} poll failed: stopping", $role))
            .ok()
    };
}
pub(crate) use driver_wait;

/// The next message of a read batch: one whole multipart message, received
/// without blocking. `None` ends the batch: nothing is waiting, or the
/// receive failed (logged at warn as `failed`; the next poll tries again).
pub(crate) fn recv_next(socket: &zmq::Socket, failed: &'static str) -> Option<Vec<Frame>> {
    recv_all(socket).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "{failed}");
        None
    })
}

/// Receives one whole multipart message without blocking.
/// (All its frames in one list: a notification is forwarded verbatim.)
fn recv_all(socket: &zmq::Socket) -> zmq::Result<Option<Vec<Frame>>> {
    let Some(first) = crate::io::recv_first(socket)? else {
        return Ok(None);
    };
    let more = first.get_more();
    let mut frames = vec![first];
    crate::io::recv_rest(socket, more, &mut frames)?;
    Ok(Some(frames))
}

/// Sends a whole multipart message without blocking (PUB-like sockets
/// never refuse: they drop for a peer whose queue is full).
pub(crate) fn send_all(socket: &zmq::Socket, frames: Vec<Frame>) -> zmq::Result<()> {
    let last = frames.len();
    for (i, frame) in frames.into_iter().enumerate() {
        let more = if i + 1 < last { zmq::SNDMORE } else { 0 };
        socket.send(frame, more | zmq::DONTWAIT)?;
    }
    Ok(())
}

/// Liveness of ZeroMQ connections (ZMTP heartbeats): a PING every
/// `heartbeat`, the connection is dropped (and, on the connecting side,
/// re-established) after `liveness` intervals without traffic.
pub(crate) fn set_heartbeats(
    socket: &zmq::Socket,
    heartbeat: Duration,
    liveness: u32,
) -> Result<(), Error> {
    let ivl = i32::try_from(crate::peer::interval_to_ms(heartbeat)).unwrap_or(i32::MAX);
    let timeout = ivl.saturating_mul(i32::try_from(liveness).unwrap_or(i32::MAX));
    set_option!(socket, set_heartbeat_ivl(ivl), "ZMQ_HEARTBEAT_IVL")?;
    set_option!(
        socket,
        set_heartbeat_timeout(timeout),
        "ZMQ_HEARTBEAT_TIMEOUT"
    )?;
    // The TTL travels in deciseconds in a 16-bit field.
    set_option!(
        socket,
        set_heartbeat_ttl(timeout.min(6_553_500)),
        "ZMQ_HEARTBEAT_TTL"
    )?;
    Ok(())
}

/// Connects a publisher's or subscriber's socket to `endpoint`, retrying a
/// lost connection after `min` and backing off to `max`
/// (`ZMQ_RECONNECT_IVL`, `ZMQ_RECONNECT_IVL_MAX`).
pub(crate) fn connect(
    socket: &zmq::Socket,
    endpoint: &str,
    min: Duration,
    max: Duration,
) -> Result<(), Error> {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    set_option!(socket, set_reconnect_ivl(ms(min)), "ZMQ_RECONNECT_IVL")?;
    set_option!(
        socket,
        set_reconnect_ivl_max(ms(max.max(min))),
        "ZMQ_RECONNECT_IVL_MAX"
    )?;
    socket.connect(endpoint).map_err(|source| Error::Connect {
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// The endpoint actually bound, as libzmq reports it (what `unbind` needs).
pub(crate) fn bound_endpoint(socket: &zmq::Socket, configured: &str) -> String {
    match socket.get_last_endpoint() {
        Ok(Ok(ep)) if !ep.is_empty() => ep,
        _ => configured.to_owned(),
    }
}

/// A bound endpoint in a form peers can connect to (`0.0.0.0` becomes
/// `127.0.0.1`).
pub(crate) fn connectable(bound: &str) -> String {
    bound.replace("0.0.0.0", "127.0.0.1")
}

/// The error of a bounded wait for a connection or a confirmation.
pub(crate) fn not_connected(endpoint: &str) -> Error {
    Error::Connect {
        endpoint: endpoint.to_owned(),
        source: zmq::Error::ENOTCONN,
    }
}

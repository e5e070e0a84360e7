//! Statistics of the notification roles: counters since start and gauges.

use std::collections::BTreeMap;
use std::fmt;

/// Counters of one topic at a [`NotifyBroker`](super::NotifyBroker).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TopicStats {
    /// Notifications on this topic forwarded to the frontend.
    pub forwarded: u64,
}

/// A snapshot of a [`NotifyBroker`](super::NotifyBroker)'s statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NotifyBrokerStats {
    /// Valid notifications forwarded to the frontend (ZeroMQ then delivers
    /// each to every subscriber whose subscription matches, possibly none).
    pub forwarded: u64,
    /// Malformed notifications from publishers, dropped.
    pub malformed: u64,
    /// Subscribe messages from subscribers (one per subscriber and
    /// subscription, repeated after a reconnect; probes not included).
    pub subscribes: u64,
    /// Subscriptions that no subscriber holds any more.
    pub unsubscribes: u64,
    /// Probes answered (one per confirmed `subscribe`, see
    /// `docs/notifications.md`).
    pub probes_answered: u64,
    /// Messages from subscribers that are neither a subscription nor an
    /// unsubscription, or probes too long to answer (ignored).
    pub malformed_subscriptions: u64,
    /// Distinct subscriptions (exact or prefix) that at least one subscriber
    /// holds now.
    pub active_subscriptions: u64,
    /// Notifications forwarded on topics beyond `max_tracked_topics`.
    pub untracked_forwarded: u64,
    /// CURVE handshakes refused by `curve_subscriber_keys` or
    /// `curve_publisher_keys` (a key not listed, or a peer without CURVE;
    /// docs/security.md).
    pub auth_failures: u64,
    /// Notifications dropped because a key reload
    /// ([`NotifyBroker::reload_keys`](super::NotifyBroker::reload_keys))
    /// took their publisher's CURVE key off `curve_publisher_keys`.
    pub notifications_forbidden: u64,
    /// Per topic, for up to `max_tracked_topics` topics (the first seen).
    pub topics: BTreeMap<String, TopicStats>,
}

impl fmt::Display for NotifyBrokerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forwarded={} malformed={} topics={} active_subscriptions={} subscribes={} \
             unsubscribes={} probes={} malformed_subscriptions={}",
            self.forwarded,
            self.malformed,
            self.topics.len(),
            self.active_subscriptions,
            self.subscribes,
            self.unsubscribes,
            self.probes_answered,
            self.malformed_subscriptions,
        )
    }
}

/// A snapshot of a [`NotifyPublisher`](super::NotifyPublisher)'s statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NotifyPublisherStats {
    /// Notifications handed to the socket.
    pub published: u64,
    /// Notifications dropped because the publish queue was full.
    pub dropped_queue_full: u64,
    /// Notifications dropped because the publisher was not connected to its
    /// broker (connect mode only).
    pub dropped_disconnected: u64,
    /// Probes answered for direct subscribers (bind mode).
    pub probes_answered: u64,
    /// Times the broker became ready to take notifications: 1 after the
    /// first connection, one more after each reconnection (connect mode).
    pub connections: u64,
    /// Whether the broker is ready to take notifications now (connect
    /// mode); always `true` in bind mode.
    pub connected: bool,
}

impl NotifyPublisherStats {
    /// All notifications dropped by the publisher itself.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_disconnected
    }
}

impl fmt::Display for NotifyPublisherStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published={} dropped_queue_full={} dropped_disconnected={} connections={} \
             connected={}",
            self.published,
            self.dropped_queue_full,
            self.dropped_disconnected,
            self.connections,
            self.connected,
        )
    }
}

/// A snapshot of a [`NotifySubscriber`](super::NotifySubscriber)'s
/// statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NotifySubscriberStats {
    /// Valid notifications received from the socket.
    pub received: u64,
    /// Notifications passed to the handler.
    pub handled: u64,
    /// Notifications dropped because the handler queue was full.
    pub dropped_queue_full: u64,
    /// Notifications received but no longer subscribed to when their turn
    /// came (after an unsubscribe), not passed to the handler.
    pub filtered: u64,
    /// Malformed notifications received, dropped.
    pub malformed: u64,
    /// Handler calls that panicked (counted in `handled`; the subscriber
    /// carries on).
    pub handler_panics: u64,
    /// Notifications that did not decode as their topic's type, for a
    /// typed handler ([`NotifyRouter`](super::NotifyRouter)) or a typed
    /// stream (counted in `handled`): a publisher sending another type, or
    /// another version of it, under that topic.
    pub decode_errors: u64,
    /// Probes sent to confirm subscriptions.
    pub probes_sent: u64,
    /// Moves to the next notify broker of the list (the one used went
    /// silent): see docs/notifications.md, "Several notify brokers".
    pub failovers: u64,
    /// Notifications waiting for the handler now.
    pub queued: u64,
    /// Exact subscriptions now.
    pub topics: u64,
    /// Prefix subscriptions now.
    pub prefixes: u64,
}

impl fmt::Display for NotifySubscriberStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} handled={} dropped_queue_full={} filtered={} malformed={} \
             handler_panics={} decode_errors={} queued={} topics={} prefixes={}",
            self.received,
            self.handled,
            self.dropped_queue_full,
            self.filtered,
            self.malformed,
            self.handler_panics,
            self.decode_errors,
            self.queued,
            self.topics,
            self.prefixes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The periodic stats line shows every counter an operator can act on.
    #[test]
    fn broker_stats_line_shows_malformed_subscriptions() {
        let stats = NotifyBrokerStats {
            malformed: 2,
            malformed_subscriptions: 7,
            ..NotifyBrokerStats::default()
        };
        let line = stats.to_string();
        assert!(line.contains(" malformed=2 "), "{line}");
        assert!(line.ends_with(" malformed_subscriptions=7"), "{line}");
    }
}

//! Client statistics.

/// A snapshot of a client's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests sent to the broker.
    pub requests_sent: u64,
    /// Requests refused by the client itself: same (type, id) outstanding.
    pub requests_rejected_locally: u64,
    /// Requests failed at once because the broker was unreachable.
    pub requests_failed_disconnected: u64,
    /// Requests failed at once, unsent, because they were larger than the
    /// broker's `max_message_size` (`RequestError::TooLarge`).
    pub requests_too_large: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Requests the caller cancelled before their outcome
    /// ([`ResponseHandle::cancel`](super::ResponseHandle::cancel), or an
    /// awaited handle dropped).
    pub requests_cancelled: u64,
    /// Responses matched to an outstanding request.
    pub responses_received: u64,
    /// Responses for no outstanding request (late after a timeout, or a
    /// one-way refusal).
    pub responses_unmatched: u64,
    /// Receipts received.
    pub receipts_received: u64,
    /// Malformed or unexpected messages from the broker.
    pub malformed: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Times the broker was declared dead.
    pub broker_deaths: u64,
    /// Reconnect attempts.
    pub reconnects: u64,
    /// Moves to the next broker of the list (one broker lost, the next
    /// tried): see docs/guide.md, "Several brokers".
    pub failovers: u64,
    /// Events dropped because the events channel was full.
    pub events_dropped: u64,
    /// Requests waiting for their outcome now.
    pub outstanding: u64,
    /// Whether the client has a session with the broker now.
    pub connected: bool,
}

//! Worker statistics.

/// A snapshot of a worker's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Dispatches received.
    pub requests_received: u64,
    /// Handlers that returned a response.
    pub requests_succeeded: u64,
    /// Handlers that failed or panicked, and requests for unserved types.
    pub requests_failed: u64,
    /// Handlers that panicked (also counted in `requests_failed`).
    pub handler_panics: u64,
    /// Dispatches of a request already running here (not run twice).
    pub duplicates_ignored: u64,
    /// Running requests their requester cancelled (a CANCEL from the
    /// broker, protocol 1.5): their handler's context said so from then on.
    pub requests_cancelled: u64,
    /// CANCELs for a request no longer running here (it had finished), or
    /// for another dispatch of it: nothing to cancel.
    pub cancels_ignored: u64,
    /// Dispatches given back to the broker unstarted on a graceful stop
    /// (a `RESULT` `RETURNED`, protocol 1.8): prefetched requests, and any
    /// arriving after the stop, which the broker dispatches to another
    /// worker. Not counted in `requests_failed` or `requests_succeeded`.
    pub requests_returned: u64,
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
    /// Results and receipts of requests dispatched by a broker the worker
    /// has since left for another of its list: dropped, as they answer a
    /// session that no longer exists (never sent to the new broker).
    pub stale_dropped: u64,
    /// Results kept while disconnected as `FAILED` without their payload,
    /// which did not fit in `max_unsent_bytes`.
    pub results_truncated: u64,
    /// Results sent as `FAILED` without their payload because they were
    /// larger than the broker's `max_message_size` (its WELCOME).
    pub results_too_large: u64,
    /// Payload bytes of results kept for the next session now.
    pub unsent_bytes: u64,
    /// Times a handler running on the worker's socket thread (a fast type's,
    /// docs/guide.md, "Worker") ran long enough for another thread to take
    /// the socket over; its type then runs on the pool for its next 64
    /// runs (doubled at each further takeover of the type) and until it is
    /// fast again.
    pub socket_takeovers: u64,
    /// Requests running now.
    pub running: u64,
    /// Whether the worker is registered with a broker now.
    pub registered: bool,
    /// Registrations the broker refused because this worker's CURVE key
    /// may not register (some of) its request types (`ERROR` with status
    /// `FORBIDDEN`; docs/security.md). The worker keeps greeting, once per
    /// heartbeat interval, in case the broker's key list changes.
    pub registrations_forbidden: u64,
}

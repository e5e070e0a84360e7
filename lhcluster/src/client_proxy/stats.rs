//! Client proxy statistics.

/// A snapshot of a client proxy's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClientProxyStats {
    /// Requests received from clients.
    pub requests_received: u64,
    /// Requests sent to the broker (first sends).
    pub requests_forwarded: u64,
    /// Re-sends of unconfirmed requests (timer or broker reconnect).
    pub requests_resent: u64,
    /// Requests answered `OVERLOADED` by the proxy (buffer bound).
    pub requests_overloaded: u64,
    /// Buffered requests whose deadline passed before they were confirmed:
    /// not sent again (the broker, or the client's own timeout, ends them).
    pub requests_expired: u64,
    /// CANCELs from clients (protocol 1.5): the request's buffering ended,
    /// and the CANCEL went on to the broker (if it speaks 1.5).
    pub requests_cancelled: u64,
    /// Responses forwarded to clients.
    pub responses_forwarded: u64,
    /// Receipts forwarded to clients.
    pub receipts_forwarded: u64,
    /// Messages for a client that is gone.
    pub unroutable: u64,
    /// Malformed or unexpected messages from clients.
    pub malformed_clients: u64,
    /// Malformed or unexpected messages from the broker.
    pub malformed_broker: u64,
    /// Clients declared dead.
    pub client_deaths: u64,
    /// Times the broker was declared dead or said it was shutting down.
    pub broker_losses: u64,
    /// Requests answered `OVERLOADED` because their client was over its
    /// outbox limit (also counted in `requests_overloaded`).
    pub refused_slow: u64,
    /// Responses and receipts dropped because their client's outbox was
    /// at its byte bound, or freed when it was cut (docs/bounds.md §3).
    pub outcomes_dropped_slow: u64,
    /// Other messages (heartbeats, errors) dropped the same way.
    pub messages_dropped_slow: u64,
    /// Clients cut for not reading (`SHUTDOWN` sent).
    pub slow_consumers: u64,
    /// CURVE handshakes refused by `curve_client_keys` (a key not listed,
    /// or a client without CURVE; docs/security.md).
    pub auth_failures: u64,
    /// Requests refused `FORBIDDEN` because a key reload
    /// ([`ClientProxy::reload_keys`](super::ClientProxy::reload_keys))
    /// took their connection's CURVE key off `curve_client_keys`.
    pub requests_forbidden: u64,
    /// Messages from clients dropped unread for having more frames than
    /// `max_message_frames`, or more bytes in all than `max_message_size`
    /// (docs/security.md, "Limits on input").
    pub oversized: u64,
    /// Tries to send an outbox backlog.
    pub outbox_retries: u64,
    /// Bytes held in the outbox now.
    pub outbox_bytes: u64,
    /// Clients with an outbox backlog now.
    pub outbox_peers: u64,
    /// Requests buffered now.
    pub buffered: u64,
    /// Payload bytes buffered now.
    pub buffered_bytes: u64,
    /// Clients connected now.
    pub clients: u64,
    /// Whether the proxy has a session with the broker now.
    pub connected: bool,
}

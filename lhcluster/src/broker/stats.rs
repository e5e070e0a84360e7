//! Broker statistics: counters since start and current gauges.

use std::collections::BTreeMap;
use std::fmt;

use crate::protocol::RequestType;

/// Counters and gauges of one request type.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TypeStats {
    /// Requests received for this type.
    pub received: u64,
    /// Dispatches to workers (retries included).
    pub dispatched: u64,
    /// Results received from workers.
    pub completed: u64,
    /// Requests queued now.
    pub pending: u64,
    /// Requests running on workers now.
    pub in_flight: u64,
    /// Workers registered for the type now.
    pub workers: u64,
}

/// A snapshot of a broker's statistics. Serialized as JSON in the
/// protocol's `STATS_REPLY` (field names as here; unknown fields ignored,
/// missing ones 0, so the format can grow).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Valid requests received.
    pub requests_received: u64,
    /// Dispatches to workers (retries included).
    pub requests_dispatched: u64,
    /// Results received for requests the broker assigned.
    pub requests_completed: u64,
    /// Duplicates answered `REJECTED`.
    pub requests_rejected: u64,
    /// Requests answered `OVERLOADED`.
    pub requests_overloaded: u64,
    /// Requests answered `NO_WORKERS`.
    pub requests_no_workers: u64,
    /// Requests answered `UNKNOWN_REPLY_TO`.
    pub requests_unknown_reply_to: u64,
    /// Re-sends of a request the same origin already had pending or in flight.
    pub requests_resent: u64,
    /// Takeovers of a response by another requester (`ALLOW_REDIRECT`).
    pub requests_redirected: u64,
    /// Re-dispatches after a worker death (`RETRY_ON_DEATH`).
    pub requests_retried: u64,
    /// Requests answered `WORKER_DEATH`.
    pub requests_worker_death: u64,
    /// One-way requests lost with a dead worker (no `NOTIFY_ON_DEATH`).
    pub requests_dropped_on_death: u64,
    /// Requests whose deadline passed while they were queued: answered
    /// `EXPIRED` (two-way) or dropped (one-way), never run.
    pub requests_expired: u64,
    /// Requests their requester cancelled (protocol 1.5): taken out of the
    /// queue unrun, or, running, their worker told and their result
    /// dropped.
    pub requests_cancelled: u64,
    /// CANCELs that cancelled nothing: for a request that had ended (its
    /// outcome and the CANCEL crossed), or sent by another than the
    /// request's requester (ignored: a client cannot cancel another's
    /// request).
    pub cancels_ignored: u64,
    /// Messages the broker could not deliver (peer gone or not writable).
    pub undeliverable: u64,
    /// CURVE handshakes refused because the peer's key is not in the
    /// frontend's or the backend's list (`curve_client_keys`,
    /// `curve_worker_keys`), or because the peer did not use CURVE
    /// (docs/security.md).
    pub auth_failures: u64,
    /// Requests refused `FORBIDDEN`: the client's (or proxy's) key may not
    /// send their type (`curve_client_keys`; docs/security.md).
    pub requests_forbidden: u64,
    /// Worker registrations refused because the worker's key may not
    /// register (some of) its types (`curve_worker_keys`), and registered
    /// workers removed when a reload took a type away from their key.
    pub workers_forbidden: u64,
    /// Malformed or unexpected messages on the frontend.
    pub malformed_frontend: u64,
    /// Malformed or unexpected messages on the backend.
    pub malformed_backend: u64,
    /// Results for requests not assigned to the sending worker.
    pub unknown_results: u64,
    /// Results for a request assigned to the sending worker, but of another
    /// dispatch than the current one (another tag, or without a tag another
    /// attempt: a late result from before the worker was declared dead):
    /// dropped, no credit given back.
    pub stale_results: u64,
    /// Messages from unknown workers (answered `REREGISTER`).
    pub unknown_workers: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Workers that registered.
    pub workers_registered: u64,
    /// Workers declared dead (missed heartbeats).
    pub worker_deaths: u64,
    /// Clients declared dead.
    pub client_deaths: u64,
    /// Responses and receipts dropped because their client's outbox was
    /// at its byte bound, or freed when it was cut (docs/bounds.md §3).
    pub outcomes_dropped_slow: u64,
    /// Other messages (heartbeats, errors, dispatches) dropped the same way.
    pub messages_dropped_slow: u64,
    /// Requests answered `OVERLOADED` because their sender was over its
    /// outbox limit (also counted in `requests_overloaded`).
    pub refused_slow: u64,
    /// Queued requests ended without running when the client their
    /// outcome was for was cut.
    pub requests_dropped_slow: u64,
    /// Clients and proxies cut for not reading (`SHUTDOWN` sent).
    pub slow_consumers: u64,
    /// Workers declared dead for not reading their dispatches.
    pub slow_workers: u64,
    /// Messages dropped unread for having more frames than
    /// `max_message_frames`, or more bytes in all than `max_message_size`
    /// (docs/security.md, "Limits on input"). A single frame over
    /// `max_message_size` is not counted here: libzmq cuts its connection
    /// before the broker sees it.
    pub oversized: u64,
    /// Tries to send an outbox backlog.
    pub outbox_retries: u64,
    /// Bytes held in the outboxes now.
    pub outbox_bytes: u64,
    /// Peers with an outbox backlog now.
    pub outbox_peers: u64,
    /// Payload bytes of queued requests and retry copies now.
    pub pending_bytes: u64,
    /// Requests queued now.
    pub pending: u64,
    /// Requests running on workers now.
    pub in_flight: u64,
    /// Workers connected now.
    pub workers: u64,
    /// Clients (and proxies) connected now.
    pub clients: u64,
    /// Per request type, for the types the broker knows now.
    pub types: BTreeMap<RequestType, TypeStats>,
    /// The broker's cluster, when it is in one (docs/clustering.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// A broker's view of its cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ClusterStats {
    /// This broker's id (random, drawn at start), in hex.
    pub id: String,
    /// This broker's name, if configured.
    pub name: Option<String>,
    /// Requests this broker forwarded to their owner.
    pub forwarded_out: u64,
    /// Requests other brokers forwarded to this one as their owner.
    pub forwarded_in: u64,
    /// Requests this broker gave other brokers to run (EXECUTE sent).
    pub executed_out: u64,
    /// Requests other brokers gave this one to run (EXECUTE received).
    pub executed_in: u64,
    /// EXECUTEs given back `NO_WORKERS` and queued again here.
    pub executions_returned: u64,
    /// Forwarded requests whose owner left the cluster: sent again to the
    /// new owner (`RETRY_ON_DEATH`) or answered `WORKER_DEATH`.
    pub owner_lost: u64,
    /// Answers from an owner for a client this broker no longer knows, or
    /// with a route it cannot read.
    pub unroutable: u64,
    /// Malformed or unexpected messages on the cluster sockets.
    pub malformed: u64,
    /// ERRORs other brokers sent (refusals of what this broker sent).
    pub errors: u64,
    /// Routes declared dead (missed heartbeats) or ended by SHUTDOWN.
    pub peer_losses: u64,
    /// Two-way requests this broker forwarded whose answer has not come
    /// back yet (its relay records).
    pub relayed: u64,
    /// The configured peers and the members with a route up.
    pub peers: Vec<PeerStats>,
}

/// One route of a broker's cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PeerStats {
    /// The endpoint this broker dials, if it dials this peer.
    pub endpoint: Option<String>,
    /// `up`, `greeting` or `self` (an endpoint that reaches this broker).
    pub state: String,
    /// The member's id in hex, once greeted.
    pub id: Option<String>,
    /// The member's name, if it has one.
    pub name: Option<String>,
    /// What the member serves: per request type, the total capacity of its
    /// workers and (informative, as of its last SERVES) free slots and
    /// queued requests.
    pub serves: BTreeMap<RequestType, ServedStats>,
    /// Requests forwarded to it as their owner.
    pub forwarded_to: u64,
    /// Requests it forwarded to this broker.
    pub forwarded_from: u64,
    /// Requests this broker gave it to run.
    pub executed_to: u64,
    /// Requests it gave this broker to run.
    pub executed_from: u64,
}

/// What a cluster member serves of one request type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ServedStats {
    /// Total capacity of its workers of the type.
    pub capacity: u32,
    /// Free slots (informative).
    pub free: u32,
    /// Queued requests (informative).
    pub pending: u32,
}

impl fmt::Display for BrokerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} dispatched={} completed={} rejected={} overloaded={} no_workers={} \
             worker_death={} retried={} pending={} in_flight={} workers={} clients={} \
             malformed={} undeliverable={} stale_results={} unknown_results={} \
             pending_bytes={} outbox_bytes={} outbox_peers={} outcomes_dropped_slow={} \
             slow_consumers={} slow_workers={} auth_failures={} forbidden={} expired={} \
             cancelled={}",
            self.requests_received,
            self.requests_dispatched,
            self.requests_completed,
            self.requests_rejected,
            self.requests_overloaded,
            self.requests_no_workers,
            self.requests_worker_death,
            self.requests_retried,
            self.pending,
            self.in_flight,
            self.workers,
            self.clients,
            self.malformed_frontend + self.malformed_backend,
            self.undeliverable,
            self.stale_results,
            self.unknown_results,
            self.pending_bytes,
            self.outbox_bytes,
            self.outbox_peers,
            self.outcomes_dropped_slow,
            self.slow_consumers,
            self.slow_workers,
            self.auth_failures,
            self.requests_forbidden + self.workers_forbidden,
            self.requests_expired,
            self.requests_cancelled,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats line names the dropped results too: a worker answering
    /// dispatches the broker gave up is worth seeing in the log.
    #[test]
    fn the_stats_line_counts_dropped_results() {
        let stats = BrokerStats {
            stale_results: 2,
            unknown_results: 3,
            ..BrokerStats::default()
        };
        let line = stats.to_string();
        assert!(
            line.contains(" stale_results=2 unknown_results=3 "),
            "{line}"
        );
    }
}

//! Broker statistics: counters since start and current gauges.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::protocol::RequestType;

/// Counters and gauges of one request type.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TypeStats {
    /// The type's name, when a worker that registered it gave one
    /// (protocol 1.6; `None` from an older worker, or in the JSON of an
    /// older broker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// Time from a request's arrival at the broker to its first dispatch
    /// (to a worker, or to another broker of a cluster).
    pub queue_wait: LatencyHistogram,
    /// Time from a dispatch to its result.
    pub service: LatencyHistogram,
    /// Time from a request's arrival to its result, when the outcome is
    /// sent to the client (and for one-way requests, when it is done).
    /// Requests the broker ends itself (`EXPIRED`, `WORKER_DEATH`…) are
    /// counted by status, not here.
    pub end_to_end: LatencyHistogram,
}

/// The upper bounds of the latency histograms' buckets, in microseconds:
/// powers of two from 16 µs to 2^25 µs (33.6 s). A last bucket, past
/// them, holds the longer durations.
pub const LATENCY_BOUNDS_US: [u64; 22] = {
    let mut bounds = [0u64; 22];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = 1 << (i + 4);
        i += 1;
    }
    bounds
};

/// A histogram of durations over the fixed buckets of
/// [`LATENCY_BOUNDS_US`], counted since the broker learned the type (an
/// idle type is forgotten with its counters, as its other statistics).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LatencyHistogram {
    /// Samples per bucket, not cumulative: `counts[i]` those of at most
    /// `LATENCY_BOUNDS_US[i]` µs and more than the bound before it,
    /// `counts[22]` those above the last bound. Trailing empty buckets
    /// are left out: a missing entry is 0.
    pub counts: Vec<u64>,
    /// Samples in all.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Every bucket, in order: its upper bound (`None` for the last one,
    /// unbounded) and its samples (not cumulative).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = LATENCY_BOUNDS_US
            .iter()
            .map(|&us| Some(Duration::from_micros(us)))
            .chain([None]);
        bounds
            .enumerate()
            .map(|(i, bound)| (bound, self.counts.get(i).copied().unwrap_or(0)))
    }

    /// An estimate of the `q` quantile (0 to 1; 0.99 for p99) from the
    /// buckets, as Prometheus's `histogram_quantile` makes it: linear
    /// within the bucket the quantile falls in, so within a factor of two.
    /// One in the last, unbounded bucket is given as its lower bound
    /// (33.6 s: "at least"). `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0u64;
        for (bound, n) in self.buckets() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(upper) = bound else {
                    return Some(Duration::from_micros(lower));
                };
                let upper = upper.as_micros() as f64;
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                let us = lower as f64 + (upper - lower as f64) * within;
                return Some(Duration::from_micros(us.round() as u64));
            }
            below += n;
            if let Some(bound) = bound {
                lower = bound.as_micros() as u64;
            }
        }
        None
    }
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
    /// Results received for requests the broker assigned (not those that
    /// gave a request back unstarted: `requests_returned`).
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
    /// Requests a draining worker gave back unstarted (a `RESULT`
    /// `RETURNED`, protocol 1.8: prefetched ones, on a graceful stop):
    /// queued again at the head of their type's queue, no attempt used.
    pub requests_returned: u64,
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
    /// Worker registrations that named a request type differently from
    /// the name the broker already knew for its id: the id routes, the
    /// first name stays (and the mismatch is logged once per type).
    pub type_name_conflicts: u64,
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
    /// Watch tap events dropped because the broker's driver did not
    /// publish them in time (only with a `watch` endpoint).
    pub watch_events_dropped: u64,
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
             cancelled={} returned={}",
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
            self.requests_returned,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_estimated_within_their_bucket() {
        // 90 samples in (64, 128] µs, 10 in (1024, 2048] µs.
        let mut counts = vec![0; 8];
        counts[3] = 90;
        counts[7] = 10;
        let h = LatencyHistogram {
            counts,
            count: 100,
            sum_us: 0,
        };
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 > Duration::from_micros(64) && p50 <= Duration::from_micros(128));
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 > Duration::from_micros(1024) && p99 <= Duration::from_micros(2048));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(2048)));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        // In the unbounded bucket: "at least the last bound".
        let mut counts = vec![0; 23];
        counts[22] = 1;
        let slow = LatencyHistogram {
            counts,
            count: 1,
            sum_us: 0,
        };
        assert_eq!(slow.quantile(0.5), Some(Duration::from_micros(1 << 25)));
        assert_eq!(slow.buckets().count(), 23);
    }

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

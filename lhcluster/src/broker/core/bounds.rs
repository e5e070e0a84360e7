//! The broker's share of the byte bounds (docs/bounds.md): the payload
//! bytes it holds for queued requests and retries (`max_pending_bytes`),
//! and what it does when the driver's outbox reports a peer that does not
//! read (over its limit: its requests are refused `OVERLOADED`; cut: a
//! client is sent `SHUTDOWN` and forgotten, its queued requests ended, a
//! worker is declared dead).

use std::time::Instant;

use foldhash::{HashSet, HashSetExt};
use tracing::{info, warn};

use super::{BrokerCore, Dest, ReqKey, Side, Via, hex, peer_id};
use crate::broker::stats::BrokerStats;
use crate::log_limit::LogLimiter;
use crate::outbox::{OutboxStats, PeerEvent};
use crate::peer::PeerId;
use crate::protocol::{Message, Status};

/// The bounds state the core keeps.
#[derive(Debug)]
pub(super) struct Bounds {
    max_pending_bytes: usize,
    /// Payload bytes of queued requests and retry copies.
    pending_bytes: usize,
    /// Clients and proxies over their outbox limit.
    slow: HashSet<PeerId>,
    /// The driver's outboxes, frontend and backend, as last reported.
    outboxes: [OutboxStats; 2],
    /// Limits the warnings about peers over their limit (one that hovers
    /// at the total ceiling could otherwise write one every millisecond).
    log: LogLimiter,
}

impl Bounds {
    pub(super) fn new(max_pending_bytes: usize) -> Self {
        Self {
            max_pending_bytes,
            pending_bytes: 0,
            slow: HashSet::new(),
            outboxes: [OutboxStats::default(); 2],
            log: LogLimiter::new("peers over their outbox limit"),
        }
    }

    /// Whether `bytes` more would go beyond `max_pending_bytes`.
    pub(super) fn pending_full(&self, bytes: usize) -> bool {
        self.pending_bytes + bytes > self.max_pending_bytes
    }

    /// A payload of `bytes` is held from now on.
    pub(super) fn hold(&mut self, bytes: usize) {
        self.pending_bytes += bytes;
    }

    /// A payload of `bytes` is no longer held.
    pub(super) fn release(&mut self, bytes: usize) {
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
    }
}

impl BrokerCore {
    /// Refuses a request from a client or proxy over its outbox limit
    /// (`OVERLOADED`, before dedupe and dispatch: nothing runs); `true`
    /// when refused. One branch while no peer is over.
    pub(super) fn refuse_if_slow(&mut self, origin: &Dest, key: ReqKey) -> bool {
        if self.bounds.slow.is_empty() || !self.bounds.slow.contains(&origin.peer) {
            return false;
        }
        self.stats.requests_overloaded += 1;
        self.stats.refused_slow += 1;
        let error = "you are not reading your responses: over your outbox limit".to_owned();
        self.respond(origin, key, Status::Overloaded, Some(error));
        self.drop_type_if_idle(key.0);
        true
    }

    /// The driver's outbox reports a peer that does not read.
    pub(crate) fn on_peer_event(
        &mut self,
        now: Instant,
        side: Side,
        peer: &[u8],
        event: PeerEvent,
    ) {
        self.now = now;
        self.bounds.log.on_tick(now);
        match (side, event) {
            (Side::Frontend, PeerEvent::OverLimit) => {
                if self.bounds.log.admit(now, peer, &"over its outbox limit") {
                    warn!(peer = %hex(peer), "peer over its outbox limit: dropping outcomes");
                }
                self.bounds.slow.insert(peer_id(peer));
            }
            (Side::Frontend, PeerEvent::CaughtUp) => {
                if self.bounds.slow.remove(peer) {
                    info!(peer = %hex(peer), "peer caught up");
                }
            }
            (Side::Frontend, PeerEvent::Cut) => self.cut_client(peer),
            (Side::Backend, PeerEvent::Cut) => {
                let Some(&wk) = self.worker_ids.get(peer) else {
                    return;
                };
                warn!(
                    worker = ?self.worker_label(wk),
                    "worker not reading its dispatches: declaring it dead"
                );
                self.stats.slow_workers += 1;
                self.stats.worker_deaths += 1;
                self.remove_worker(now, wk);
            }
            (Side::Backend, PeerEvent::OverLimit) => {
                // Dispatches are bounded by credits: only a worker that
                // announced a huge capacity gets here.
                if self.bounds.log.admit(now, peer, &"over its outbox limit") {
                    warn!(peer = %hex(peer), "worker over its outbox limit: dropping messages");
                }
            }
            (Side::Backend, PeerEvent::CaughtUp) => {}
            // Cluster sockets have no outbox.
            (Side::Cluster | Side::Dial(_), _) => {}
        }
    }

    /// A client or proxy over its limit for too long: its queued requests
    /// whose outcome would go to it end without running, it is forgotten
    /// (names released), and told `SHUTDOWN`.
    fn cut_client(&mut self, peer: &[u8]) {
        self.bounds.slow.remove(peer);
        self.stats.slow_consumers += 1;
        let mut ended = Vec::new();
        for (&t, e) in &self.types {
            for &id in &e.pending {
                let key = (t, id);
                let for_peer = self
                    .requests
                    .get(&key)
                    .and_then(|&slot| self.reqs.get(slot))
                    .is_some_and(|r| {
                        let dest = r.response_dest();
                        dest.via == Via::Local && dest.peer.as_slice() == peer
                    });
                if for_peer {
                    ended.push(key);
                }
            }
        }
        for key in &ended {
            if let Some(e) = self.types.get_mut(&key.0) {
                e.pending.retain(|id| *id != key.1);
                e.last_returned = None;
                if e.pending.is_empty() {
                    self.nonempty_types.remove(&key.0);
                }
            }
            self.total_pending -= 1;
            self.remove_req(key);
            self.drop_type_if_idle(key.0);
        }
        self.stats.requests_dropped_slow += ended.len() as u64;
        warn!(
            peer = %hex(peer),
            queued_requests_ended = ended.len(),
            "slow consumer cut"
        );
        if let Some(ck) = self.clients.key(peer) {
            self.remove_client(ck);
        }
        self.send(Side::Frontend, peer_id(peer), Message::Shutdown);
    }

    /// The driver's outbox counters, for the stats.
    pub(crate) fn set_outbox_stats(&mut self, side: Side, stats: OutboxStats) {
        let i = match side {
            Side::Frontend => 0,
            Side::Backend => 1,
            Side::Cluster | Side::Dial(_) => return,
        };
        self.bounds.outboxes[i] = stats;
    }

    pub(super) fn fill_bound_stats(&self, stats: &mut BrokerStats) {
        stats.pending_bytes = self.bounds.pending_bytes as u64;
        for o in &self.bounds.outboxes {
            stats.outcomes_dropped_slow += o.outcomes_dropped;
            stats.messages_dropped_slow += o.others_dropped;
            stats.outbox_retries += o.retries;
            stats.outbox_bytes += o.bytes;
            stats.outbox_peers += o.peers;
            stats.undeliverable += o.gone;
        }
    }
}

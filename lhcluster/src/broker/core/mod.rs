//! The broker's sans-IO state machine.
//!
//! Inputs are decoded frames from the two ROUTER sockets, ticks and a stop
//! request, each with `now`; outputs are messages addressed to a peer on one
//! of the sockets, collected in an outbox that the driver drains. No socket,
//! no clock read: every behaviour is unit-tested with a fake clock.
//!
//! Data model (docs/architecture.md, "Broker"):
//! - `requests`: the dedupe index, (type, id) → the request's slot in `reqs`
//!   (its state, pending or in flight), so that the index stays small;
//! - per type: a FIFO of pending ids and the count of registered workers;
//! - free workers (with credits left), least recently used first: per type
//!   for workers serving few types, in one list for those serving many;
//! - `nonempty_types`: types with queued work, for round-robin service.
//!
//! This file holds the state and the entry points the driver calls; each
//! section of the machine is an `impl BrokerCore` block beside it:
//! `frontend` (clients and proxies, dedupe), `backend` (workers),
//! `dispatch` (free lists, queues, round-robin), `peers` (workers and
//! clients going away), `output` (what the broker sends); `stored` is how
//! a held payload is kept. A broker in a cluster (docs/clustering.md) also
//! has `cluster` (routes to the other brokers and membership), `relay` (the
//! entry broker's side: forwarding to the owner, relaying answers back) and
//! `remote` (the owner's and the executor's side: remote workers, EXECUTE).

mod authz;
mod backend;
mod bounds;
mod cancel;
mod cluster;
mod dispatch;
mod expiry;
mod frontend;
mod latency;
mod names;
mod output;
mod peers;
mod relay;
mod remote;
mod stored;
mod watch;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use tracing::{debug, info, warn};

use super::config::BrokerConfig;
use super::stats::{BrokerStats, TypeStats};
use crate::accept::Peers;
use crate::curve::PublicKey;
use crate::log_limit::LogLimiter;
use crate::peer::{Liveness, PeerId, interval_from_ms, interval_to_ms};
use crate::protocol::{self, Flags, Message, Payload, RequestId, RequestType, Route};
use crate::slab::{Key, Slab};
use stored::Stored;

/// Which broker socket a message arrives on or leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Clients and proxies.
    Frontend,
    /// Workers.
    Backend,
    /// Other brokers, on the bound cluster ROUTER (the peer is the routing
    /// id of the member's DEALER).
    Cluster,
    /// Another broker, on the DEALER this broker dialled (its index).
    Dial(u32),
}

pub(crate) use cluster::{ClusterFrom, dial_routing_id};

/// A message for the driver to send.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) side: Side,
    pub(crate) peer: PeerId,
    pub(crate) msg: Message,
}

type ReqKey = (RequestType, RequestId);

/// Where a response (or receipt) goes: a client's routing id, and the
/// route behind it (set by a proxy). Kept by routing id, not by client
/// record, so that a client that reconnects with the same id (or a proxy
/// re-sending for its clients) is the same origin and still gets its
/// responses.
///
/// In a cluster, a requester may be reached through another broker
/// ([`Via`]): then `peer` is empty and `route` is the encoded route that
/// broker gave (docs/clustering.md §6).
#[derive(Debug, PartialEq, Eq)]
struct Dest {
    peer: PeerId,
    route: Route,
    via: Via,
}

/// How a [`Dest`] is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// A client or proxy on this broker's frontend.
    Local,
    /// A client of the entry broker with this id (a forwarded request).
    Member(u64),
    /// The owner broker with this id, which gave us the request to run
    /// with this EXECUTE's attempt and tag (answered with EXECUTED).
    Owner { member: u64, attempt: u32, tag: u64 },
}

impl Dest {
    fn local(peer: &[u8], route: Route) -> Self {
        Self {
            peer: peer_id(peer),
            route,
            via: Via::Local,
        }
    }

    /// The same requester, whichever broker it was reached through (a
    /// client that moved to another entry broker is still the origin of
    /// what it sent before).
    fn same_requester(&self, other: &Dest) -> bool {
        match (self.via, other.via) {
            (Via::Local, Via::Local) => self.peer == other.peer && self.route == other.route,
            (Via::Member(_), Via::Member(_)) => self.route == other.route,
            (Via::Local, Via::Member(_)) => {
                relay::is_encoded(&other.route, &self.peer, &self.route)
            }
            (Via::Member(_), Via::Local) => {
                relay::is_encoded(&self.route, &other.peer, &other.route)
            }
            (Via::Owner { member: a, .. }, Via::Owner { member: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Clone for Dest {
    fn clone(&self) -> Self {
        Self {
            peer: peer_id(&self.peer),
            route: self.route.clone(),
            via: self.via,
        }
    }
}

/// A routing id as an owned [`PeerId`], copied in one go (`SmallVec`'s
/// `From<&[u8]>` and `Clone` copy byte by byte).
fn peer_id(bytes: &[u8]) -> PeerId {
    PeerId::from_slice(bytes)
}

#[derive(Debug)]
struct Req {
    /// The requester: receipts go here, and the response unless `reply_to`.
    origin: Dest,
    /// Boxed: rarely set, and a queued request should stay small.
    reply_to: Option<Box<Dest>>,
    flags: Flags,
    /// Dispatches so far (one given back unstarted does not count).
    attempts: u32,
    /// Its queue wait is in its type's histogram: once, at its first
    /// dispatch (a dispatch after a return or a retry is not its first).
    wait_counted: bool,
    receipt_sent: bool,
    /// The worker's RECEIPT_RECEIVED came for the current dispatch.
    received: bool,
    /// Dispatched to a worker (else queued).
    in_flight: bool,
    /// Its requester took it back while a worker ran it (protocol.md
    /// §8.6): the worker was told, and its RESULT only gives the credit
    /// back. A cancelled request is never queued (cancelling a queued one
    /// ends it at once).
    cancelled: bool,
    /// Broker-to-broker hops it took to get here: 0 from a client, 1
    /// forwarded by an entry broker, up to 2 given to run by an owner. A
    /// request that cannot take another hop is only served by local workers.
    hops: u8,
    /// When it must have left for a worker (docs/deadlines.md); `None`:
    /// no deadline.
    deadline: Option<Instant>,
    /// When it arrived here, for the latency histograms.
    arrived: Instant,
    /// When it was last dispatched, in µs after `arrived` (4 bytes, not
    /// another 16-byte `Instant`: a queued request should stay small).
    dispatched_us: u32,
    /// Queued: the payload. In flight: a copy, kept only for
    /// `RETRY_ON_DEATH` requests with tries left.
    payload: Stored,
}

impl Req {
    fn response_dest(&self) -> &Dest {
        self.reply_to.as_deref().unwrap_or(&self.origin)
    }

    /// Whether its end is sent to its destination: a two-way request's
    /// outcome, unless its requester cancelled it (it has ended it
    /// already), and any request an owner gave this broker to run (EXECUTED
    /// is what gives the owner's slot back, one-way and cancelled requests
    /// included).
    fn answered(&self) -> bool {
        (self.flags.is_two_way() && !self.cancelled) || matches!(self.origin.via, Via::Owner { .. })
    }
}

#[derive(Debug)]
struct WorkerEntry {
    id: PeerId,
    name: Option<String>,
    capacity: u32,
    /// Sorted, deduplicated.
    types: Vec<RequestType>,
    /// The requests in flight on it, each with the tag of the DISPATCH that
    /// gave it (protocol.md §8.3): a RESULT echoing another tag answers an
    /// earlier dispatch. Kept here, not in [`Req`], because only in-flight
    /// requests have one, and queued requests are many.
    assigned: HashMap<ReqKey, u64>,
    /// Round-robin cursor: the type served last.
    last_type: RequestType,
    /// Position in the free-worker lists (see [`INDEXED_TYPES`]), when the
    /// worker has free credits.
    lru_seq: Option<u64>,
    /// Said DISCONNECT with work in flight: gets no more work, and goes
    /// when its last result arrives.
    draining: bool,
    live: Liveness,
    /// A remote worker: the workers of type `types[0]` of the cluster
    /// member with this id, as one worker whose capacity is their total
    /// (docs/clustering.md §5). Its liveness is the member's route.
    remote: Option<u64>,
    /// The CURVE key of its READY, when the backend has a key list (a
    /// reload checks it again).
    key: Option<PublicKey>,
    /// The protocol minor version of its READY: CANCEL goes only to
    /// workers of minor 5 and up (a remote worker: its member's).
    minor: u32,
}

impl WorkerEntry {
    fn free(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.capacity
            .saturating_sub(u32::try_from(self.assigned.len()).unwrap_or(u32::MAX))
    }

    fn serves(&self, t: RequestType) -> bool {
        self.types.binary_search(&t).is_ok()
    }

    /// Listed in the free list of each of its types (else in `free_wide`).
    fn indexed(&self) -> bool {
        self.types.len() <= INDEXED_TYPES
    }

    fn is_local(&self) -> bool {
        self.remote.is_none()
    }
}

/// A free worker serving at most this many types is listed under each of
/// them, so finding the least recently used free worker of a type is one
/// lookup, however many workers serve other types. One serving more types
/// (listing it would cost that many updates per dispatch) goes in a single
/// list that is searched.
const INDEXED_TYPES: usize = 16;

/// What a FORWARD may add to a request beyond what its sender counted
/// (protocol.md §7.1): a `route` and a `reply_route` of at most 514 bytes
/// each (a length byte, two routing ids of up to 255 bytes, the field's
/// tag and length) and `hops`, rounded up.
const CLUSTER_ROOM: u64 = 1280;

/// What the broker keeps about a client (besides its liveness).
#[derive(Debug, Default)]
struct ClientInfo {
    /// The names it registered.
    names: Vec<String>,
    /// The protocol minor version of its greeting: VIEW goes only to
    /// clients of minor 3 and up.
    minor: u32,
}

#[derive(Debug, Default)]
struct TypeEntry {
    pending: VecDeque<RequestId>,
    /// The request a worker gave back last (RETURNED), while it waits at
    /// the head of `pending`: the next one given back goes behind it, so
    /// that those a worker gives back in a row keep their order. Forgotten
    /// when it leaves the queue (or when the queue is pruned: the next one
    /// given back then goes to the very head).
    last_returned: Option<RequestId>,
    /// Free workers serving the type and few others, by LRU position.
    free: BTreeMap<u64, Key>,
    /// Remote workers of the type with room, by LRU position: used only
    /// when no local worker is free.
    free_remote: BTreeMap<u64, Key>,
    in_flight: u64,
    /// Local workers registered for the type.
    workers: u32,
    /// Cluster members serving the type.
    remote_workers: u32,
    received: u64,
    dispatched: u64,
    completed: u64,
    /// Queue wait, service and end-to-end times: allocated on the first
    /// sample, so that a type that only has workers costs nothing here.
    latency: Option<Box<latency::TypeLatency>>,
}

impl TypeEntry {
    fn latency(&mut self) -> &mut latency::TypeLatency {
        self.latency.get_or_insert_with(Box::default)
    }
}

impl TypeEntry {
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.in_flight == 0
            && self.workers == 0
            && self.remote_workers == 0
    }
}

/// The broker state machine.
#[derive(Debug)]
pub(crate) struct BrokerCore {
    heartbeat: Duration,
    /// Told to every client, proxy and worker in WELCOME, which check what
    /// they send against it (protocol.md §7.1).
    max_message_size: u64,
    liveness: u32,
    max_pending_per_type: usize,
    max_pending_total: usize,
    max_tries: u32,

    workers: Slab<WorkerEntry>,
    worker_ids: HashMap<PeerId, Key>,
    clients: Peers<ClientInfo>,
    names: HashMap<String, Dest>,
    /// The dedupe index: where each pending or in-flight request is in
    /// `reqs` (a map of small values, so that a large queue costs little).
    requests: HashMap<ReqKey, Key>,
    reqs: Slab<Req>,
    types: HashMap<RequestType, TypeEntry>,
    nonempty_types: BTreeSet<RequestType>,
    /// Free workers serving more than [`INDEXED_TYPES`] types, by LRU
    /// position.
    free_wide: BTreeMap<u64, Key>,
    next_seq: u64,
    /// The tag of the last DISPATCH. Tags count up from a random start
    /// (48 bits: a tag stays a 7-byte varint), so that they are unique
    /// within this broker's lifetime and all but certainly unlike those of
    /// an earlier broker, whose results a worker may still send after a
    /// restart.
    last_dispatch_tag: u64,
    total_pending: usize,
    next_tick: Instant,
    /// The time of the input being handled.
    now: Instant,
    stats: BrokerStats,
    /// Limits the warnings about malformed and unexpected messages, per
    /// peer (the counters stay exact).
    bad_input: LogLimiter,
    /// Routes to the other brokers of a cluster; `None` for a lone broker.
    cluster: Option<cluster::Cluster>,
    /// Remote workers by (member, type).
    remote_ids: HashMap<(u64, RequestType), Key>,
    /// Deadlines of admitted requests, soonest first (an entry outlives
    /// its request, and is dropped when its time comes).
    expiries: BTreeSet<(Instant, ReqKey)>,
    /// The entry broker's records of the two-way requests it forwarded.
    relays: relay::Relays,
    /// Pending bytes and peers that do not read (docs/bounds.md).
    bounds: bounds::Bounds,
    /// What each key may register or send (docs/security.md).
    authz: authz::Authz,
    /// The names workers gave their types (protocol 1.6), for stats, logs
    /// and error texts only.
    type_names: names::TypeNames,
    /// The watch tap's events, when the broker has a `watch` endpoint
    /// (boxed: off, it is one pointer, and one branch per event).
    tap: Option<Box<watch::Tap>>,
    /// CURVE handshakes the ZAP handler refused, counted there.
    auth_failures: Arc<AtomicU64>,
    out: Vec<Outgoing>,
}

impl BrokerCore {
    /// The WELCOME every greeting peer gets: the broker's interval and the
    /// largest message it accepts. A broker of a cluster keeps
    /// [`CLUSTER_ROOM`] for what a FORWARD adds to a request, which the
    /// owner's cluster endpoint checks against its own `max_message_size`.
    fn welcome(&self) -> Message {
        let max_message_size = if self.cluster.is_some() {
            self.max_message_size.saturating_sub(CLUSTER_ROOM).max(1)
        } else {
            self.max_message_size
        };
        Message::Welcome {
            heartbeat_ms: interval_to_ms(self.heartbeat),
            max_message_size,
        }
    }

    pub(crate) fn new(config: &BrokerConfig, now: Instant) -> Self {
        Self {
            heartbeat: config.heartbeat,
            max_message_size: config.max_message_size as u64,
            liveness: config.liveness,
            max_pending_per_type: config.max_pending_per_type,
            max_pending_total: config.max_pending_total,
            max_tries: config.max_tries,
            workers: Slab::default(),
            worker_ids: HashMap::new(),
            clients: Peers::new(config.heartbeat, config.liveness),
            names: HashMap::new(),
            requests: HashMap::new(),
            reqs: Slab::default(),
            types: HashMap::new(),
            nonempty_types: BTreeSet::new(),
            free_wide: BTreeMap::new(),
            next_seq: 0,
            last_dispatch_tag: crate::peer::random_u64() >> 16,
            total_pending: 0,
            next_tick: crate::deadline::later(now, config.heartbeat / 2),
            now,
            stats: BrokerStats::default(),
            bad_input: LogLimiter::new("malformed messages"),
            cluster: cluster::Cluster::new(config, now),
            remote_ids: HashMap::new(),
            expiries: BTreeSet::new(),
            relays: relay::Relays::default(),
            bounds: bounds::Bounds::new(config.max_pending_bytes),
            authz: authz::Authz::new(
                config.curve_client_keys.clone(),
                config.curve_worker_keys.clone(),
            ),
            type_names: names::TypeNames::default(),
            tap: config.watch.is_some().then(Box::default),
            auth_failures: Arc::default(),
            out: Vec::new(),
        }
        .greeting_peers(now)
    }

    /// Messages to send, in order. The driver drains this after every input.
    pub(crate) fn outbox(&mut self) -> &mut Vec<Outgoing> {
        &mut self.out
    }

    /// When [`BrokerCore::on_tick`] should run next: the next heartbeat
    /// and liveness check, or sooner the summary of a flood of bad input
    /// (which would otherwise wait for a heartbeat tick).
    pub(crate) fn next_tick(&self) -> Instant {
        let tick = match self.bad_input.next_due() {
            Some(due) => self.next_tick.min(due),
            None => self.next_tick,
        };
        match self.expiries.first() {
            Some(&(at, _)) => tick.min(at),
            None => tick,
        }
    }

    /// Where the refused CURVE handshakes are counted (the ZAP handler's
    /// counter), for the stats.
    pub(crate) fn set_auth_failures(&mut self, counter: Arc<AtomicU64>) {
        self.auth_failures = counter;
    }

    /// Whether the messages of `side` need their CURVE key (the driver
    /// then reads it when the core asks).
    pub(crate) fn wants_keys(&self, side: Side) -> bool {
        match side {
            Side::Frontend => self.authz.checks_requests(),
            Side::Backend => self.authz.checks_workers(),
            Side::Cluster | Side::Dial(_) => false,
        }
    }

    /// Hands the watch tap's events to `publish` (topic, JSON text), if
    /// the tap is on.
    pub(crate) fn drain_watch(&mut self, publish: impl FnMut(&'static str, &str)) {
        if let Some(tap) = self.tap.as_deref_mut() {
            tap.drain(&self.type_names, publish);
        }
    }

    /// The driver could not deliver a message.
    pub(crate) fn count_undeliverable(&mut self) {
        self.stats.undeliverable += 1;
    }

    // ----- inputs -------------------------------------------------------

    /// A message from a client or proxy; `key` gives the CURVE key it came
    /// with, read only when the broker checks it (docs/security.md).
    pub(crate) fn on_frontend(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        payload: Payload,
        key: impl FnOnce() -> Option<PublicKey>,
    ) {
        self.now = now;
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => return self.malformed(Side::Frontend, peer, header, &e),
        };
        match msg {
            Message::Request(req) => self.on_request(now, peer, req, header, key),
            Message::Hello(hello) => {
                let minor = protocol::peek_minor(header);
                self.on_hello(now, peer, hello, minor);
            }
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                let client = self.touch_client(now, peer);
                self.clients.set_interval(client, heartbeat_ms);
            }
            Message::Disconnect { route } => self.on_client_disconnect(peer, route),
            Message::Cancel(cancel) => self.on_client_cancel(now, peer, cancel),
            Message::StatsQuery => {
                let json = serde_json::to_vec(&self.stats()).unwrap_or_default();
                let payload = vec![protocol::Frame::from(json)];
                self.send(
                    Side::Frontend,
                    peer_id(peer),
                    Message::StatsReply { payload },
                );
            }
            Message::Error(e) => {
                // Never answer an error with an error: that could loop.
                debug!(error = %e.error, "client reported an error");
            }
            other => {
                let text = format!("unexpected {} on the broker frontend", other.kind_name());
                self.unexpected(Side::Frontend, peer, header, &text);
            }
        }
    }

    /// A message from a worker; `key` gives the CURVE key it came with,
    /// read only for a READY when the backend has a key list.
    pub(crate) fn on_backend(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        payload: Payload,
        key: impl FnOnce() -> Option<PublicKey>,
    ) {
        self.now = now;
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => {
                self.malformed(Side::Backend, peer, header, &e);
                return self.fail_garbled_result(now, peer, header, e.to_string());
            }
        };
        if let Message::Ready(ready) = msg {
            let key = self.authz.checks_workers().then(key).flatten();
            let minor = protocol::peek_minor(header);
            return self.on_ready(now, peer, ready, key, minor);
        }
        if let Message::Error(e) = &msg {
            debug!(error = %e.error, "worker reported an error");
            return;
        }
        let Some(&wk) = self.worker_ids.get(peer) else {
            if matches!(
                msg,
                Message::Heartbeat { .. }
                    | Message::Result(_)
                    | Message::ReceiptReceived(_)
                    | Message::Disconnect { .. }
            ) {
                if !matches!(msg, Message::Disconnect { .. }) {
                    self.stats.unknown_workers += 1;
                    debug!("message from an unknown worker: asking it to re-register");
                    self.send(Side::Backend, peer_id(peer), Message::Reregister);
                }
            } else {
                let text = format!("unexpected {} on the broker backend", msg.kind_name());
                self.unexpected(Side::Backend, peer, header, &text);
            }
            return;
        };
        // Only a message the backend takes is a sign of life (protocol.md
        // §7.2): a worker that sends nothing but kinds it must not send is
        // broken, and its requests must not wait on it forever.
        let takes = matches!(
            msg,
            Message::Heartbeat { .. }
                | Message::Result(_)
                | Message::ReceiptReceived(_)
                | Message::Disconnect { .. }
        );
        if let Some(w) = self.workers.get_mut(wk).filter(|_| takes) {
            w.live.last_heard = now;
        }
        match msg {
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                if heartbeat_ms != 0 {
                    if let Some(w) = self.workers.get_mut(wk) {
                        w.live.peer_interval = interval_from_ms(heartbeat_ms);
                    }
                }
            }
            Message::Result(result) => self.on_result(now, wk, result),
            Message::ReceiptReceived(r) => self.on_receipt_received(wk, r),
            Message::Disconnect { .. } => {
                info!(worker = ?self.worker_label(wk), "worker disconnected");
                let idle = self.workers.get_mut(wk).is_some_and(|w| {
                    w.draining = true;
                    w.assigned.is_empty()
                });
                if idle {
                    self.remove_worker(now, wk);
                } else {
                    self.refresh_lru(wk);
                }
                self.send_serves_if_changed(true);
            }
            other => {
                let text = format!("unexpected {} on the broker backend", other.kind_name());
                self.unexpected(Side::Backend, peer, header, &text);
            }
        }
    }

    /// Periodic work: liveness checks and heartbeats.
    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.now = now;
        self.bad_input.on_tick(now);
        let mut shortest = self.heartbeat;
        let dead: Vec<Key> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_local() && w.live.is_dead(now, self.liveness))
            .map(|(k, _)| k)
            .collect();
        for wk in dead {
            warn!(worker = ?self.worker_label(wk), "worker missed its heartbeats: declaring it dead");
            self.stats.worker_deaths += 1;
            self.remove_worker(now, wk);
        }
        for ck in self.clients.dead(now) {
            warn!("client missed its heartbeats: forgetting it");
            self.stats.client_deaths += 1;
            self.remove_client(ck);
        }
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        let mut due = Vec::new();
        for (_, w) in self.workers.iter().filter(|(_, w)| w.is_local()) {
            shortest = shortest.min(w.live.peer_interval);
            if w.live.heartbeat_due(now, self.heartbeat) {
                due.push((Side::Backend, peer_id(&w.id)));
            }
        }
        let mut clients_due = Vec::new();
        shortest = shortest.min(self.clients.heartbeats_due(now, &mut clients_due));
        due.extend(clients_due.into_iter().map(|c| (Side::Frontend, c)));
        for (side, peer) in due {
            self.stats.heartbeats_sent += 1;
            self.send_tracked(now, side, peer, Message::Heartbeat { heartbeat_ms });
        }
        shortest = shortest.min(self.cluster_tick(now));
        // Last: requests queued again above (a retry) are judged too.
        self.expire_due(now);
        self.next_tick = crate::deadline::later(now, (shortest / 2).max(Duration::from_millis(1)));
    }

    /// The broker is stopping: tell every peer.
    pub(crate) fn on_stop(&mut self) {
        self.cluster_stop();
        let peers: Vec<(Side, PeerId)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_local())
            .map(|(_, w)| (Side::Backend, peer_id(&w.id)))
            .chain(
                self.clients
                    .iter()
                    .map(|(_, c)| (Side::Frontend, peer_id(&c.id))),
            )
            .collect();
        for (side, peer) in peers {
            self.send(side, peer, Message::Shutdown);
        }
    }

    /// A snapshot of the statistics.
    pub(crate) fn stats(&self) -> BrokerStats {
        let mut stats = self.stats.clone();
        stats.auth_failures = self.auth_failures.load(Ordering::Relaxed);
        stats.pending = self.total_pending as u64;
        stats.in_flight = self.types.values().map(|t| t.in_flight).sum();
        stats.workers = self.workers.iter().filter(|(_, w)| w.is_local()).count() as u64;
        stats.clients = self.clients.len() as u64;
        stats.types = self
            .types
            .iter()
            .map(|(&t, e)| {
                let mut ts = TypeStats {
                    name: self.type_names.get(t).map(str::to_owned),
                    received: e.received,
                    dispatched: e.dispatched,
                    completed: e.completed,
                    pending: e.pending.len() as u64,
                    in_flight: e.in_flight,
                    workers: u64::from(e.workers),
                    ..TypeStats::default()
                };
                if let Some(latency) = &e.latency {
                    latency.fill(&mut ts);
                }
                (t, ts)
            })
            .collect();
        stats.cluster = self.cluster_stats();
        stats.watch_events_dropped = self.tap.as_ref().map_or(0, |t| t.dropped());
        self.fill_bound_stats(&mut stats);
        stats
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_limit::INTERVAL;

    /// With a heartbeat longer than the limiter's interval, a flood's
    /// summary still comes out on time.
    #[test]
    fn the_next_tick_comes_when_a_flood_summary_is_due() {
        let t0 = Instant::now();
        let mut config = BrokerConfig::new("tcp://*:1", "tcp://*:2");
        config.heartbeat = Duration::from_secs(60);
        let mut core = BrokerCore::new(&config, t0);
        let heartbeat_tick = t0 + Duration::from_secs(30);
        assert_eq!(core.next_tick(), heartbeat_tick);
        for _ in 0..10 {
            core.on_frontend(t0, b"flood", &[0xFF; 4], Payload::new(), || None);
        }
        assert_eq!(core.next_tick(), t0 + INTERVAL);
        // The summary written, the heartbeat sets the pace again.
        core.on_tick(t0 + INTERVAL);
        assert_eq!(core.next_tick(), t0 + INTERVAL + Duration::from_secs(30));
    }
}

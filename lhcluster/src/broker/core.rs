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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use tracing::{debug, info, warn};

use super::config::BrokerConfig;
use super::stats::{BrokerStats, TypeStats};
use crate::accept::Peers;
use crate::peer::{Liveness, PeerId, interval_from_ms, interval_to_ms};
use crate::protocol::{
    self, DecodeError, ErrorReply, Flags, Frame, Hello, Message, Payload, Ready, Request,
    RequestId, RequestRef, RequestType, Response, Route, Status, WorkResult,
};
use crate::slab::{Key, Slab};

/// Which broker socket a message arrives on or leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Clients and proxies.
    Frontend,
    /// Workers.
    Backend,
}

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
#[derive(Debug, PartialEq, Eq)]
struct Dest {
    peer: PeerId,
    route: Route,
}

impl Clone for Dest {
    fn clone(&self) -> Self {
        Self {
            peer: peer_id(&self.peer),
            route: self.route.clone(),
        }
    }
}

/// A routing id as an owned [`PeerId`], copied in one go (`SmallVec`'s
/// `From<&[u8]>` and `Clone` copy byte by byte).
fn peer_id(bytes: &[u8]) -> PeerId {
    PeerId::from_slice(bytes)
}

/// Frames at most this long are copied out of libzmq's receive buffers when
/// a request is queued behind many others (see [`Stored::compact`]).
const COMPACT_MAX: usize = 8 * 1024;

/// Requests queued (in total) before new ones are stored compactly.
const COMPACT_AFTER: usize = 1024;

/// A request's payload while the broker holds it.
///
/// libzmq receives small messages (up to its 8 KiB batch) by reference into
/// a shared receive buffer, with bookkeeping for each message it could hold:
/// a frame kept for long pins about 18 KiB per 8 KiB of traffic. A long
/// queue therefore stores its small frames copied out (one allocation of
/// the frame's size), and a lone frame as plain bytes. Short queues (the
/// common case under load) and large frames keep the frames as received:
/// nothing is copied on the way through.
#[derive(Debug, Default)]
enum Stored {
    /// Nothing held (in flight without a retry copy).
    #[default]
    Nothing,
    /// Frames as received (or copied out, frame by frame).
    Frames(Payload),
    /// A single frame's bytes.
    Bytes(Box<[u8]>),
}

impl Stored {
    /// Holds `payload`, compacting it when the queue is long.
    fn new(payload: Payload, compact: bool) -> Self {
        if !compact {
            return Stored::Frames(payload);
        }
        match <[Frame; 1]>::try_from(payload) {
            Ok([frame]) if frame.len() <= COMPACT_MAX => Stored::Bytes(Box::from(&frame[..])),
            Ok([frame]) => Stored::Frames(vec![frame]),
            Err(frames) => Stored::Frames(
                frames
                    .into_iter()
                    .map(|f| {
                        if f.len() <= COMPACT_MAX {
                            Frame::from(&f[..])
                        } else {
                            f
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// A copy (for `RETRY_ON_DEATH`, which needs the request again if the
    /// worker dies).
    fn copy_of(payload: &Payload) -> Self {
        match payload.as_slice() {
            [frame] => Stored::Bytes(Box::from(&frame[..])),
            frames => Stored::Frames(frames.iter().map(|f| Frame::from(&f[..])).collect()),
        }
    }

    fn is_held(&self) -> bool {
        !matches!(self, Stored::Nothing)
    }

    /// The payload, for sending; leaves nothing held.
    fn take(&mut self) -> Payload {
        match std::mem::take(self) {
            Stored::Nothing => Payload::new(),
            Stored::Frames(frames) => frames,
            // Handed to libzmq without a copy.
            Stored::Bytes(bytes) => vec![Frame::from(bytes)],
        }
    }
}

#[derive(Debug)]
struct Req {
    /// The requester: receipts go here, and the response unless `reply_to`.
    origin: Dest,
    /// Boxed: rarely set, and a queued request should stay small.
    reply_to: Option<Box<Dest>>,
    flags: Flags,
    /// Dispatches so far.
    attempts: u32,
    receipt_sent: bool,
    /// The worker's RECEIPT_RECEIVED came for the current dispatch.
    received: bool,
    /// Dispatched to a worker (else queued).
    in_flight: bool,
    /// Queued: the payload. In flight: a copy, kept only for
    /// `RETRY_ON_DEATH` requests with tries left.
    payload: Stored,
}

impl Req {
    fn response_dest(&self) -> &Dest {
        self.reply_to.as_deref().unwrap_or(&self.origin)
    }
}

#[derive(Debug)]
struct WorkerEntry {
    id: PeerId,
    name: Option<String>,
    capacity: u32,
    /// Sorted, deduplicated.
    types: Vec<RequestType>,
    assigned: HashSet<ReqKey>,
    /// Round-robin cursor: the type served last.
    last_type: RequestType,
    /// Position in the free-worker lists (see [`INDEXED_TYPES`]), when the
    /// worker has free credits.
    lru_seq: Option<u64>,
    /// Said DISCONNECT with work in flight: gets no more work, and goes
    /// when its last result arrives.
    draining: bool,
    live: Liveness,
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
}

/// A free worker serving at most this many types is listed under each of
/// them, so finding the least recently used free worker of a type is one
/// lookup, however many workers serve other types. One serving more types
/// (listing it would cost that many updates per dispatch) goes in a single
/// list that is searched.
const INDEXED_TYPES: usize = 16;

/// What the broker keeps about a client (besides its liveness).
#[derive(Debug, Default)]
struct ClientInfo {
    /// The names it registered.
    names: Vec<String>,
}

#[derive(Debug, Default)]
struct TypeEntry {
    pending: VecDeque<RequestId>,
    /// Free workers serving the type and few others, by LRU position.
    free: BTreeMap<u64, Key>,
    in_flight: u64,
    workers: u32,
    received: u64,
    dispatched: u64,
    completed: u64,
}

impl TypeEntry {
    fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight == 0 && self.workers == 0
    }
}

/// The broker state machine.
#[derive(Debug)]
pub(crate) struct BrokerCore {
    heartbeat: Duration,
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
    total_pending: usize,
    next_tick: Instant,
    /// The time of the input being handled.
    now: Instant,
    stats: BrokerStats,
    out: Vec<Outgoing>,
}

impl BrokerCore {
    pub(crate) fn new(config: &BrokerConfig, now: Instant) -> Self {
        Self {
            heartbeat: config.heartbeat,
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
            total_pending: 0,
            next_tick: now + config.heartbeat / 2,
            now,
            stats: BrokerStats::default(),
            out: Vec::new(),
        }
    }

    /// Messages to send, in order. The driver drains this after every input.
    pub(crate) fn outbox(&mut self) -> &mut Vec<Outgoing> {
        &mut self.out
    }

    /// When [`BrokerCore::on_tick`] should run next.
    pub(crate) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// The driver could not deliver a message.
    pub(crate) fn count_undeliverable(&mut self) {
        self.stats.undeliverable += 1;
    }

    // ----- inputs -------------------------------------------------------

    /// A message from a client or proxy.
    pub(crate) fn on_frontend(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        payload: Payload,
    ) {
        self.now = now;
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => return self.malformed(Side::Frontend, peer, header, &e),
        };
        match msg {
            Message::Request(req) => self.on_request(now, peer, req),
            Message::Hello(hello) => self.on_hello(now, peer, hello),
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                let client = self.touch_client(now, peer);
                self.clients.set_interval(client, heartbeat_ms);
            }
            Message::Disconnect { route } => self.on_client_disconnect(peer, route),
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

    /// A message from a worker.
    pub(crate) fn on_backend(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        payload: Payload,
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
            return self.on_ready(now, peer, ready);
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
        let mut shortest = self.heartbeat;
        let dead: Vec<Key> = self
            .workers
            .iter()
            .filter(|(_, w)| w.live.is_dead(now, self.liveness))
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
        for (_, w) in self.workers.iter() {
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
        self.next_tick = now + (shortest / 2).max(Duration::from_millis(1));
    }

    /// The broker is stopping: tell every peer.
    pub(crate) fn on_stop(&mut self) {
        let peers: Vec<(Side, PeerId)> = self
            .workers
            .iter()
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
        stats.pending = self.total_pending as u64;
        stats.in_flight = self.types.values().map(|t| t.in_flight).sum();
        stats.workers = self.workers.len() as u64;
        stats.clients = self.clients.len() as u64;
        stats.types = self
            .types
            .iter()
            .map(|(&t, e)| {
                let ts = TypeStats {
                    received: e.received,
                    dispatched: e.dispatched,
                    completed: e.completed,
                    pending: e.pending.len() as u64,
                    in_flight: e.in_flight,
                    workers: u64::from(e.workers),
                };
                (t, ts)
            })
            .collect();
        stats
    }

    // ----- frontend -----------------------------------------------------

    fn on_hello(&mut self, now: Instant, peer: &[u8], hello: Hello) {
        let client = self.touch_client_quiet(now, peer);
        if hello.route.is_empty() {
            self.clients.set_interval(client, hello.heartbeat_ms);
            let heartbeat_ms = interval_to_ms(self.heartbeat);
            self.send_tracked(
                now,
                Side::Frontend,
                peer_id(peer),
                Message::Welcome { heartbeat_ms },
            );
        }
        if let Some(name) = hello.name {
            debug!(%name, "client registered its name");
            // One name per client (per route behind a proxy): a new name
            // replaces the old one.
            let previous: Vec<String> = self
                .names
                .iter()
                .filter(|(n, d)| d.peer.as_slice() == peer && d.route == hello.route && **n != name)
                .map(|(n, _)| n.clone())
                .collect();
            for old in previous {
                self.names.remove(&old);
                if let Some(c) = self.clients.get_mut(client) {
                    c.data.names.retain(|n| *n != old);
                }
            }
            let dest = Dest {
                peer: peer_id(peer),
                route: hello.route,
            };
            if let Some(old) = self.names.insert(name.clone(), dest) {
                if old.peer.as_slice() != peer {
                    if let Some(c) = self.clients.find_mut(&old.peer) {
                        c.data.names.retain(|n| *n != name);
                    }
                }
            }
            if let Some(c) = self.clients.get_mut(client) {
                if !c.data.names.contains(&name) {
                    c.data.names.push(name);
                }
            }
        }
    }

    fn on_client_disconnect(&mut self, peer: &[u8], route: Route) {
        let Some(ck) = self.clients.key(peer) else {
            return;
        };
        if route.is_empty() {
            debug!("client disconnected");
            self.remove_client(ck);
            return;
        }
        // A proxy says goodbye for one of its clients: forget its names.
        let names = &mut self.names;
        if let Some(c) = self.clients.get_mut(ck) {
            c.data.names.retain(|n| {
                let behind_route = names.get(n).is_some_and(|d| d.route == route);
                if behind_route {
                    names.remove(n);
                }
                !behind_route
            });
        }
    }

    fn on_request(&mut self, now: Instant, peer: &[u8], req: Request) {
        self.touch_client(now, peer);
        self.stats.requests_received += 1;
        let key = (req.request_type, req.request_id);
        self.types.entry(key.0).or_default().received += 1;
        let origin = Dest {
            peer: peer_id(peer),
            route: req.route,
        };
        let reply_to = match &req.reply_to {
            None => None,
            Some(name) => match self.names.get(name) {
                Some(dest) => Some(dest.clone()),
                None => {
                    self.stats.requests_unknown_reply_to += 1;
                    let error = format!("no client named {name:?} is connected");
                    self.respond(&origin, key, Status::UnknownReplyTo, Some(error));
                    return self.drop_type_if_idle(key.0);
                }
            },
        };
        if self.requests.contains_key(&key) {
            return self.on_duplicate(key, origin, reply_to, req.flags, req.payload);
        }
        let entry = self.types.entry(key.0).or_default();
        let (type_workers, type_pending) = (entry.workers, entry.pending.len());
        if req.flags.contains(Flags::FAIL_FAST) && type_workers == 0 {
            self.stats.requests_no_workers += 1;
            let error = format!("no worker serves request type {}", key.0);
            self.respond(&origin, key, Status::NoWorkers, Some(error));
            return self.drop_type_if_idle(key.0);
        }
        // Invariant: a type with queued work has no free worker, so only
        // look for one when its queue is empty.
        let worker = if type_pending == 0 {
            self.find_free_worker(key.0)
        } else {
            None
        };
        if worker.is_none()
            && (type_pending >= self.max_pending_per_type
                || self.total_pending >= self.max_pending_total)
        {
            self.stats.requests_overloaded += 1;
            let error = format!(
                "queue bound reached for request type {} ({} queued, {} in total)",
                key.0, type_pending, self.total_pending
            );
            self.respond(&origin, key, Status::Overloaded, Some(error));
            return self.drop_type_if_idle(key.0);
        }
        let (payload, stored) = match worker {
            Some(_) => (req.payload, Stored::Nothing),
            None => (Payload::new(), self.store(req.payload)),
        };
        let slot = self.reqs.insert(Req {
            origin,
            reply_to: reply_to.map(Box::new),
            flags: req.flags,
            attempts: 0,
            receipt_sent: false,
            received: false,
            in_flight: false,
            payload: stored,
        });
        self.requests.insert(key, slot);
        match worker {
            Some(wk) => self.dispatch(now, wk, key, payload),
            None => self.push_pending(key, false),
        }
    }

    /// Holds a queued payload, compactly once the queue is long.
    fn store(&self, payload: Payload) -> Stored {
        Stored::new(payload, self.total_pending >= COMPACT_AFTER)
    }

    fn req_mut(&mut self, key: &ReqKey) -> Option<&mut Req> {
        let slot = *self.requests.get(key)?;
        self.reqs.get_mut(slot)
    }

    fn remove_req(&mut self, key: &ReqKey) -> Option<Req> {
        let slot = self.requests.remove(key)?;
        self.reqs.remove(slot)
    }

    /// A queued request's payload, to dispatch it.
    fn take_payload(&mut self, key: &ReqKey) -> Payload {
        self.req_mut(key)
            .map(|r| r.payload.take())
            .unwrap_or_default()
    }

    fn on_duplicate(
        &mut self,
        key: ReqKey,
        origin: Dest,
        reply_to: Option<Dest>,
        flags: Flags,
        payload: Payload,
    ) {
        let compact = self.total_pending >= COMPACT_AFTER;
        let max_tries = self.max_tries;
        // Borrow the slab only: the counters are updated meanwhile.
        let slot = self.requests.get(&key).copied();
        let Some(existing) = slot.and_then(|slot| self.reqs.get_mut(slot)) else {
            return;
        };
        if existing.origin == origin {
            // An idempotent re-send (a proxy does this until confirmed).
            self.stats.requests_resent += 1;
            // Confirm again what was already confirmed: the earlier receipt
            // may be what the re-sender missed.
            let in_flight = existing.in_flight;
            let (origin, received) = (existing.origin.clone(), existing.received);
            if in_flight && flags.contains(Flags::RECEIPT_ON_SEND) {
                self.send_receipt_sent(&origin, key);
            }
            if in_flight && received && flags.contains(Flags::RECEIPT_ON_RECEIVE) {
                self.send_receipt_received(&origin, key);
            }
            return;
        }
        if !existing.flags.contains(Flags::ALLOW_REDIRECT) {
            self.stats.requests_rejected += 1;
            let error = format!(
                "request {}/{} is already pending or in progress",
                key.0, key.1
            );
            return self.respond(&origin, key, Status::Rejected, Some(error));
        }
        // Takeover: the newer requester gets the response.
        self.stats.requests_redirected += 1;
        let previous = std::mem::replace(&mut existing.origin, origin);
        let previous_flags = std::mem::replace(&mut existing.flags, flags);
        existing.reply_to = reply_to.map(Box::new);
        let mut receipt_for_new = None;
        match existing.in_flight {
            false => {
                existing.payload = Stored::new(payload, compact);
                // The new requester gets RECEIPT_SENT when it is dispatched.
                existing.receipt_sent = false;
            }
            true => {
                let tries_left = existing.attempts < max_tries;
                existing.payload = if flags.contains(Flags::RETRY_ON_DEATH) && tries_left {
                    Stored::new(payload, compact)
                } else {
                    Stored::Nothing
                };
                let received = existing.received && flags.contains(Flags::RECEIPT_ON_RECEIVE);
                // Sent below if asked; a retry must not send it again.
                existing.receipt_sent = true;
                receipt_for_new = Some((
                    existing.origin.clone(),
                    flags.contains(Flags::RECEIPT_ON_SEND),
                    received,
                ));
            }
        }
        debug!(
            request_type = key.0,
            request_id = key.1,
            "response taken over by a newer requester"
        );
        // A two-way requester always learns that its response went elsewhere
        // (it must not wait forever); a one-way one only if it asked.
        if previous_flags.is_two_way() || previous_flags.contains(Flags::NOTIFY_ON_REDIRECT) {
            let error = "another requester took over the response".to_owned();
            self.respond(&previous, key, Status::Redirected, Some(error));
        }
        // The new requester gets the receipts the request already earned.
        if let Some((dest, sent, received)) = receipt_for_new {
            if sent {
                self.send_receipt_sent(&dest, key);
            }
            if received {
                self.send_receipt_received(&dest, key);
            }
        }
    }

    // ----- backend ------------------------------------------------------

    fn on_ready(&mut self, now: Instant, peer: &[u8], ready: Ready) {
        let mut types = ready.request_types;
        types.sort_unstable();
        types.dedup();
        let interval = interval_from_ms(ready.heartbeat_ms);
        let wk = match self.worker_ids.get(peer).copied() {
            Some(wk) => {
                // Its types may change: off the free lists until served.
                self.unlist(wk);
                let w = self
                    .workers
                    .get_mut(wk)
                    .expect("worker_ids and workers agree");
                let old_types = std::mem::replace(&mut w.types, types.clone());
                w.capacity = ready.capacity;
                w.name = ready.name;
                w.draining = false;
                w.live.peer_interval = interval;
                w.live.last_heard = now;
                for t in old_types.iter().filter(|t| types.binary_search(t).is_err()) {
                    if let Some(e) = self.types.get_mut(t) {
                        e.workers -= 1;
                    }
                    self.drop_type_if_idle(*t);
                }
                for &t in types.iter().filter(|t| old_types.binary_search(t).is_err()) {
                    self.types.entry(t).or_default().workers += 1;
                }
                debug!(worker = ?self.worker_label(wk), "worker re-registered");
                wk
            }
            None => {
                for &t in &types {
                    self.types.entry(t).or_default().workers += 1;
                }
                let wk = self.workers.insert(WorkerEntry {
                    id: peer_id(peer),
                    name: ready.name,
                    capacity: ready.capacity,
                    types,
                    assigned: HashSet::new(),
                    last_type: 0,
                    lru_seq: None,
                    draining: false,
                    live: Liveness::new(now, interval),
                });
                self.worker_ids.insert(peer_id(peer), wk);
                self.stats.workers_registered += 1;
                info!(worker = ?self.worker_label(wk), capacity = ready.capacity, "worker registered");
                wk
            }
        };
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        self.send_tracked(
            now,
            Side::Backend,
            peer_id(peer),
            Message::Welcome { heartbeat_ms },
        );
        self.serve_worker(now, wk);
    }

    fn on_result(&mut self, now: Instant, wk: Key, result: WorkResult) {
        let key = (result.request_type, result.request_id);
        let assigned = self
            .workers
            .get_mut(wk)
            .is_some_and(|w| w.assigned.remove(&key));
        if !assigned {
            // Exact credits: only completions of work we assigned count.
            self.stats.unknown_results += 1;
            debug!(
                request_type = key.0,
                request_id = key.1,
                "result for a request not assigned to this worker: dropped"
            );
            return;
        }
        self.stats.requests_completed += 1;
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight -= 1;
            e.completed += 1;
        }
        if let Some(req) = self.remove_req(&key) {
            if req.flags.is_two_way() {
                let dest = req.response_dest().clone();
                self.send_response(&dest, key, result.status, result.error, result.payload);
            }
        }
        self.drop_type_if_idle(key.0);
        let drained = self
            .workers
            .get(wk)
            .is_some_and(|w| w.draining && w.assigned.is_empty());
        if drained {
            self.remove_worker(now, wk);
        } else {
            self.serve_worker(now, wk);
        }
    }

    /// A malformed message from a worker that names a request assigned to
    /// it (say a RESULT with an invalid status) ends that request as
    /// `FAILED`, instead of leaving it in flight until the worker dies.
    fn fail_garbled_result(&mut self, now: Instant, peer: &[u8], header: &[u8], error: String) {
        if protocol::peek_kind(header) != Some("RESULT") {
            return;
        }
        let Some(r) = protocol::peek_request_ref(header) else {
            return;
        };
        let Some(&wk) = self.worker_ids.get(peer) else {
            return;
        };
        let key = (r.request_type, r.request_id);
        if self
            .workers
            .get(wk)
            .is_some_and(|w| w.assigned.contains(&key))
        {
            let result = WorkResult {
                request_type: key.0,
                request_id: key.1,
                status: Status::Failed,
                error: Some(format!("the worker sent a malformed result: {error}")),
                payload: Payload::new(),
            };
            self.on_result(now, wk, result);
        }
    }

    fn on_receipt_received(&mut self, wk: Key, r: RequestRef) {
        let key = (r.request_type, r.request_id);
        let assigned = self
            .workers
            .get(wk)
            .is_some_and(|w| w.assigned.contains(&key));
        let origin = match self.req_mut(&key) {
            Some(req) if assigned => {
                req.received = true;
                req.flags
                    .contains(Flags::RECEIPT_ON_RECEIVE)
                    .then(|| req.origin.clone())
            }
            _ => {
                self.stats.unknown_results += 1;
                None
            }
        };
        if let Some(origin) = origin {
            self.send_receipt_received(&origin, key);
        }
    }

    // ----- dispatch -----------------------------------------------------

    /// The least recently used worker with free credits that serves `t`.
    fn find_free_worker(&self, t: RequestType) -> Option<Key> {
        let indexed = self
            .types
            .get(&t)
            .and_then(|e| e.free.first_key_value())
            .map(|(&seq, &wk)| (seq, wk));
        let wide = self
            .free_wide
            .iter()
            .find(|&(_, &wk)| self.workers.get(wk).is_some_and(|w| w.serves(t)))
            .map(|(&seq, &wk)| (seq, wk));
        match (indexed, wide) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|(_, wk)| wk),
        }
    }

    /// Moves a worker to the back of the LRU order (or out of it when it has
    /// no free credit).
    fn refresh_lru(&mut self, wk: Key) {
        let Some(w) = self.workers.get(wk) else {
            return;
        };
        let seq = (w.free() > 0).then(|| {
            self.next_seq += 1;
            self.next_seq
        });
        self.relist(wk, seq);
    }

    /// Takes a worker off the free lists.
    fn unlist(&mut self, wk: Key) {
        self.relist(wk, None);
    }

    /// Puts a worker at position `seq` of the free lists of its types (or
    /// the wide list), or takes it off them (`None`).
    fn relist(&mut self, wk: Key, seq: Option<u64>) {
        let Some(w) = self.workers.get_mut(wk) else {
            return;
        };
        let old = std::mem::replace(&mut w.lru_seq, seq);
        if old.is_none() && seq.is_none() {
            return;
        }
        if w.indexed() {
            for t in &w.types {
                if let Some(e) = self.types.get_mut(t) {
                    if let Some(old) = old {
                        e.free.remove(&old);
                    }
                    if let Some(seq) = seq {
                        e.free.insert(seq, wk);
                    }
                }
            }
        } else {
            if let Some(old) = old {
                self.free_wide.remove(&old);
            }
            if let Some(seq) = seq {
                self.free_wide.insert(seq, wk);
            }
        }
    }

    fn dispatch(&mut self, now: Instant, wk: Key, key: ReqKey, payload: Payload) {
        let max_tries = self.max_tries;
        let Some(req) = self.req_mut(&key) else {
            return;
        };
        req.attempts += 1;
        req.received = false;
        req.in_flight = true;
        req.payload = if req.flags.contains(Flags::RETRY_ON_DEATH) && req.attempts < max_tries {
            Stored::copy_of(&payload)
        } else {
            Stored::Nothing
        };
        let receipt = req.flags.contains(Flags::RECEIPT_ON_SEND) && !req.receipt_sent;
        req.receipt_sent |= receipt;
        let origin = receipt.then(|| req.origin.clone());
        let msg = Message::Dispatch(protocol::Dispatch {
            request_type: key.0,
            request_id: key.1,
            flags: req.flags,
            attempt: req.attempts,
            payload,
        });
        let Some(w) = self.workers.get_mut(wk) else {
            return;
        };
        w.assigned.insert(key);
        w.last_type = key.0;
        let peer = peer_id(&w.id);
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight += 1;
            e.dispatched += 1;
        }
        self.stats.requests_dispatched += 1;
        self.send_tracked(now, Side::Backend, peer, msg);
        if let Some(origin) = origin {
            self.send_receipt_sent(&origin, key);
        }
        self.refresh_lru(wk);
    }

    /// Gives a worker queued work from its types, round-robin, while it has
    /// free credits.
    fn serve_worker(&mut self, now: Instant, wk: Key) {
        while self.total_pending > 0 {
            let Some(w) = self.workers.get(wk) else {
                return;
            };
            if w.free() == 0 {
                break;
            }
            let Some(t) = self.next_type_with_pending(w) else {
                break;
            };
            let Some(id) = self.pop_pending(t) else {
                break;
            };
            let payload = self.take_payload(&(t, id));
            self.dispatch(now, wk, (t, id), payload);
        }
        self.refresh_lru(wk);
    }

    /// The next type after the worker's cursor that has queued work. Walks
    /// whichever list is shorter: the worker's types or the busy types.
    fn next_type_with_pending(&self, w: &WorkerEntry) -> Option<RequestType> {
        let after = w.last_type;
        if w.types.len() <= self.nonempty_types.len() {
            let start = w.types.partition_point(|&t| t <= after);
            let (head, tail) = w.types.split_at(start);
            tail.iter()
                .chain(head)
                .copied()
                .find(|t| self.nonempty_types.contains(t))
        } else {
            self.nonempty_types
                .range((Bound::Excluded(after), Bound::Unbounded))
                .chain(self.nonempty_types.range(..=after))
                .copied()
                .find(|&t| w.serves(t))
        }
    }

    /// Dispatches queued work of type `t` while a free worker serves it.
    fn drain_type(&mut self, now: Instant, t: RequestType) {
        while self.types.get(&t).is_some_and(|e| !e.pending.is_empty()) {
            let Some(wk) = self.find_free_worker(t) else {
                return;
            };
            let Some(id) = self.pop_pending(t) else {
                return;
            };
            let payload = self.take_payload(&(t, id));
            self.dispatch(now, wk, (t, id), payload);
        }
    }

    fn push_pending(&mut self, key: ReqKey, front: bool) {
        let e = self.types.entry(key.0).or_default();
        if front {
            e.pending.push_front(key.1);
        } else {
            e.pending.push_back(key.1);
        }
        self.total_pending += 1;
        self.nonempty_types.insert(key.0);
    }

    fn pop_pending(&mut self, t: RequestType) -> Option<RequestId> {
        let e = self.types.get_mut(&t)?;
        let id = e.pending.pop_front()?;
        self.total_pending -= 1;
        if e.pending.is_empty() {
            self.nonempty_types.remove(&t);
        }
        Some(id)
    }

    fn drop_type_if_idle(&mut self, t: RequestType) {
        if self.types.get(&t).is_some_and(TypeEntry::is_idle) {
            self.types.remove(&t);
        }
    }

    // ----- peers --------------------------------------------------------

    /// Removes a worker; its in-flight requests are retried or reported.
    fn remove_worker(&mut self, now: Instant, wk: Key) {
        self.unlist(wk);
        let Some(w) = self.workers.remove(wk) else {
            return;
        };
        self.worker_ids.remove(&w.id);
        for t in &w.types {
            if let Some(e) = self.types.get_mut(t) {
                e.workers -= 1;
            }
        }
        let mut retried_types = BTreeSet::new();
        for key in w.assigned {
            if let Some(e) = self.types.get_mut(&key.0) {
                e.in_flight -= 1;
            }
            let Some(req) = self.req_mut(&key) else {
                continue;
            };
            if req.in_flight && req.payload.is_held() {
                // The retry copy becomes the queued payload.
                req.in_flight = false;
                self.stats.requests_retried += 1;
                self.push_pending(key, true);
                retried_types.insert(key.0);
                continue;
            }
            let Some(req) = self.remove_req(&key) else {
                continue;
            };
            if req.flags.is_two_way() || req.flags.contains(Flags::NOTIFY_ON_DEATH) {
                self.stats.requests_worker_death += 1;
                let error = "the worker running the request died".to_owned();
                self.respond(req.response_dest(), key, Status::WorkerDeath, Some(error));
            } else {
                self.stats.requests_dropped_on_death += 1;
            }
        }
        for t in retried_types {
            self.drain_type(now, t);
        }
        for t in &w.types {
            self.drop_type_if_idle(*t);
        }
    }

    fn remove_client(&mut self, ck: Key) {
        let Some(c) = self.clients.remove(ck) else {
            return;
        };
        for name in c.data.names {
            if self.names.get(&name).is_some_and(|d| d.peer == c.id) {
                self.names.remove(&name);
            }
        }
    }

    /// Marks a client as heard from, registering it (quietly) if new.
    fn touch_client_quiet(&mut self, now: Instant, peer: &[u8]) -> Key {
        self.clients.touch(now, peer, ClientInfo::default).0
    }

    /// Like [`Self::touch_client_quiet`], and asks an unknown client to greet
    /// again (it may have a name to register, and its interval is unknown).
    fn touch_client(&mut self, now: Instant, peer: &[u8]) -> Key {
        let (ck, known) = self.clients.touch(now, peer, ClientInfo::default);
        if !known {
            debug!("message from an unknown client: asking it to greet again");
            self.send(Side::Frontend, peer_id(peer), Message::Reregister);
        }
        ck
    }

    fn worker_label(&self, wk: Key) -> String {
        match self.workers.get(wk) {
            Some(w) => w.name.clone().unwrap_or_else(|| hex(&w.id)),
            None => "?".to_owned(),
        }
    }

    // ----- output -------------------------------------------------------

    /// A message that does not decode: answered with an `ERROR` naming the
    /// request when the header does, never with a `RESPONSE` (a malformed
    /// REQUEST was not processed, so it has no outcome; protocol.md §12).
    /// An ERROR is never answered, so two peers cannot loop.
    fn malformed(&mut self, side: Side, peer: &[u8], header: &[u8], error: &DecodeError) {
        self.reject(side, peer, header, &error.to_string());
    }

    /// A valid message of a kind this socket does not take.
    fn unexpected(&mut self, side: Side, peer: &[u8], header: &[u8], error: &str) {
        self.reject(side, peer, header, error);
    }

    fn reject(&mut self, side: Side, peer: &[u8], header: &[u8], error: &str) {
        match side {
            Side::Frontend => self.stats.malformed_frontend += 1,
            Side::Backend => self.stats.malformed_backend += 1,
        }
        warn!(?side, peer = %hex(peer), %error, "malformed message");
        if protocol::peek_kind(header) == Some("ERROR") {
            return;
        }
        let reply = Message::Error(ErrorReply {
            error: error.to_owned(),
            request: protocol::peek_request_ref(header),
        });
        self.send(side, peer_id(peer), reply);
    }

    /// A broker status for a request (no payload).
    fn respond(&mut self, dest: &Dest, key: ReqKey, status: Status, error: Option<String>) {
        self.send_response(dest, key, status, error, Payload::new());
    }

    fn send_response(
        &mut self,
        dest: &Dest,
        key: ReqKey,
        status: Status,
        error: Option<String>,
        payload: Payload,
    ) {
        let msg = Message::Response(Response {
            request_type: key.0,
            request_id: key.1,
            status,
            error,
            route: dest.route.clone(),
            payload,
        });
        self.send_to_client(&dest.peer, msg);
    }

    fn send_receipt_received(&mut self, dest: &Dest, key: ReqKey) {
        let msg = Message::ReceiptReceived(RequestRef {
            request_type: key.0,
            request_id: key.1,
            route: dest.route.clone(),
        });
        self.send_to_client(&dest.peer, msg);
    }

    fn send_receipt_sent(&mut self, dest: &Dest, key: ReqKey) {
        let msg = Message::ReceiptSent(RequestRef {
            request_type: key.0,
            request_id: key.1,
            route: dest.route.clone(),
        });
        self.send_to_client(&dest.peer, msg);
    }

    /// Sends to a client by routing id. A client that is gone is noticed by
    /// the driver (the ROUTER refuses the message) and counted there.
    fn send_to_client(&mut self, peer: &PeerId, msg: Message) {
        let now = self.now;
        self.send_tracked(now, Side::Frontend, peer_id(peer), msg);
    }

    /// Sends and records the time, so heartbeats are only sent on silence.
    fn send_tracked(&mut self, now: Instant, side: Side, peer: PeerId, msg: Message) {
        let live = match side {
            Side::Backend => self
                .worker_ids
                .get(&peer)
                .and_then(|&k| self.workers.get_mut(k))
                .map(|w| &mut w.live),
            Side::Frontend => self.clients.find_mut(&peer).map(|c| &mut c.live),
        };
        if let Some(live) = live {
            live.last_sent = now;
        }
        self.send(side, peer, msg);
    }

    fn send(&mut self, side: Side, peer: PeerId, msg: Message) {
        self.out.push(Outgoing { side, peer, msg });
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

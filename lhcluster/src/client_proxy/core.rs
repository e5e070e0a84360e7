//! The client proxy's sans-IO state machine.
//!
//! Towards clients it behaves as a broker (HELLO → WELCOME, heartbeats,
//! requests in, outcomes out). Towards the broker it is one client that
//! multiplexes all of its clients with the `route` header field. It keeps
//! every request whose flags ask for a response or a receipt in a bounded
//! buffer, keyed by content (client, type, id), until that level is
//! confirmed, and re-sends it on every new broker session and on a timer
//! with backoff; the broker's dedupe of same-origin re-sends makes that
//! harmless.

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use tracing::{debug, info, warn};

use super::config::ClientProxyConfig;
use super::stats::ClientProxyStats;
use super::timers::ResendTimers;
use crate::accept::Peers;
use crate::broker::core::hex;
use crate::curve::PublicKey;
use crate::log_limit::LogLimiter;
use crate::outbox::{OutboxStats, PeerEvent};
use crate::peer::{PeerId, interval_to_ms};
use crate::protocol::ReceiptKind;
use crate::protocol::{
    self, CANCEL_MINOR, Cancel, ErrorReply, Flags, Frame, Hello, Message, Payload, Request,
    RequestId, RequestRef, RequestType, Response, Status, checked_size,
};
use crate::session::{BrokerSession, Greeting, Inbound, LinkAction, timing};
use crate::slab::Key;

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    ToClient(PeerId, Message),
    /// What the session asks of the link to the broker.
    Link(LinkAction),
}

impl From<LinkAction> for Action {
    fn from(action: LinkAction) -> Self {
        Action::Link(action)
    }
}

type EntryKey = (PeerId, RequestType, RequestId);

/// The confirmation that ends a buffered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// Two-way: the response (whatever its status).
    Response,
    /// One-way with receipts: the requested receipt.
    Receipt(ReceiptKind),
}

#[derive(Debug)]
struct Entry {
    flags: Flags,
    reply_to: Option<String>,
    /// The request's deadline, read when the client sent it: re-sends
    /// carry the time left, and one past it is answered `EXPIRED` here.
    deadline: Option<Instant>,
    payload: Payload,
    bytes: usize,
    confirm: Confirm,
    resend_interval: Duration,
    next_resend: Instant,
}

/// What a forwarded request carries besides its key and payload: flags,
/// reply-to and deadline.
type Forwarded = (Flags, Option<String>, Option<Instant>);

/// What the proxy keeps about a client (besides its liveness).
#[derive(Debug, Default)]
struct ClientInfo {
    /// The name it registered, greeted for it on every broker session.
    name: Option<String>,
    /// The protocol minor version of its HELLO (0 before one): a client
    /// older than 1.4 gets FORBIDDEN as an ERROR naming the request.
    minor: u32,
}

/// Room for the route the proxy adds to a request it forwards: a client's
/// routing id (at most 255 bytes in ZMTP) and its field's tag and length.
const ROUTE_ROOM: usize = 258;

#[derive(Debug)]
pub(crate) struct ProxyCore {
    heartbeat: Duration,
    /// The proxy's own `max_message_size`: its WELCOME tells clients the
    /// smaller of it and the broker's.
    max_message_size: usize,
    max_buffered: usize,
    max_buffered_bytes: usize,
    resend_initial: Duration,
    resend_max: Duration,
    session: BrokerSession,
    clients: Peers<ClientInfo>,
    buffer: HashMap<EntryKey, Entry>,
    timers: ResendTimers<EntryKey>,
    buffered_bytes: usize,
    /// The time of the input being handled (for heartbeat bookkeeping).
    now: Instant,
    stats: ClientProxyStats,
    /// Limits the warnings about malformed messages, per client (the
    /// counter stays exact).
    bad_input: LogLimiter,
    /// Clients over their outbox limit: their requests get `OVERLOADED`
    /// (docs/bounds.md §3).
    slow: HashSet<PeerId>,
    /// Limits the warnings about clients over their limit.
    slow_log: LogLimiter,
    /// Limits the warnings about requests refused after a key reload, once
    /// per key and then a summary.
    forbidden_log: LogLimiter,
    /// The driver's outbox towards clients, as last reported.
    outbox: OutboxStats,
    /// CANCELs of buffered requests that came without a session: sent at
    /// the next WELCOME (at most `max_buffered`).
    cancels_waiting: Vec<Cancel>,
    actions: Vec<Action>,
}

impl ProxyCore {
    pub(crate) fn new(config: &ClientProxyConfig, now: Instant) -> Self {
        Self {
            heartbeat: config.heartbeat,
            max_message_size: config.max_message_size,
            max_buffered: config.max_buffered,
            max_buffered_bytes: config.max_buffered_bytes,
            resend_initial: config.resend_initial,
            resend_max: config.resend_max.max(config.resend_initial),
            session: BrokerSession::new(
                now,
                timing!(config),
                config.brokers.clone(),
                Greeting::hello(None),
            ),
            clients: Peers::new(config.heartbeat, config.liveness),
            buffer: HashMap::new(),
            timers: ResendTimers::new(),
            buffered_bytes: 0,
            now,
            stats: ClientProxyStats::default(),
            bad_input: LogLimiter::new("malformed messages from clients"),
            slow: HashSet::new(),
            slow_log: LogLimiter::new("clients over their outbox limit"),
            forbidden_log: LogLimiter::with_limits(
                "requests refused after a key reload",
                1,
                crate::log_limit::INTERVAL,
                crate::log_limit::MAX_PEERS,
            ),
            outbox: OutboxStats::default(),
            cancels_waiting: Vec::new(),
            actions: vec![LinkAction::Connect.into()],
        }
    }

    pub(crate) fn actions(&mut self) -> &mut Vec<Action> {
        &mut self.actions
    }

    pub(crate) fn stats(&self) -> ClientProxyStats {
        let mut stats = self.stats.clone();
        stats.buffered = self.buffer.len() as u64;
        stats.buffered_bytes = self.buffered_bytes as u64;
        stats.clients = self.clients.len() as u64;
        stats.connected = self.session.is_ready();
        let counts = self.session.counts();
        stats.malformed_broker = counts.malformed;
        stats.broker_losses = counts.deaths + counts.shutdowns;
        stats.outcomes_dropped_slow = self.outbox.outcomes_dropped;
        stats.messages_dropped_slow = self.outbox.others_dropped;
        stats.outbox_retries = self.outbox.retries;
        stats.outbox_bytes = self.outbox.bytes;
        stats.outbox_peers = self.outbox.peers;
        stats.unroutable += self.outbox.gone;
        stats
    }

    /// The driver's outbox counters, for the stats.
    pub(crate) fn set_outbox_stats(&mut self, stats: OutboxStats) {
        self.outbox = stats;
    }

    /// The driver's outbox reports a client that does not read: over its
    /// limit, its requests are refused; cut, it is told `SHUTDOWN` and
    /// forgotten with its buffered requests (as on its death).
    pub(crate) fn on_peer_event(&mut self, now: Instant, peer: &[u8], event: PeerEvent) {
        self.now = now;
        self.slow_log.on_tick(now);
        match event {
            PeerEvent::OverLimit => {
                if self.slow_log.admit(now, peer, &"over its outbox limit") {
                    warn!(peer = %hex(peer), "client over its outbox limit: dropping outcomes");
                }
                self.slow.insert(peer.into());
            }
            PeerEvent::CaughtUp => {
                if self.slow.remove(peer) {
                    info!(peer = %hex(peer), "client caught up");
                }
            }
            PeerEvent::Cut => {
                self.slow.remove(peer);
                self.stats.slow_consumers += 1;
                warn!(peer = %hex(peer), "slow consumer cut");
                if let Some(client) = self.clients.key(peer) {
                    self.remove_client(now, client);
                }
                // Known or not any more: it gets the SHUTDOWN.
                self.actions
                    .push(Action::ToClient(peer.into(), Message::Shutdown));
            }
        }
    }

    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        // Clients are heartbeaten whether the broker is there or not.
        let clients =
            crate::deadline::later(now, (self.heartbeat / 2).max(Duration::from_millis(1)));
        let mut at = clients.min(self.session.next_tick(now));
        if let Some(t) = self.timers.next() {
            at = at.min(t);
        }
        at
    }

    /// The driver could not hand a message to a client's socket.
    pub(crate) fn count_unroutable(&mut self) {
        self.stats.unroutable += 1;
    }

    // ----- client side --------------------------------------------------

    pub(crate) fn on_client(&mut self, now: Instant, peer: &[u8], header: &[u8], payload: Payload) {
        self.now = now;
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => return self.client_malformed(peer, header, e.to_string()),
        };
        match msg {
            Message::Hello(hello) => {
                let minor = protocol::peek_minor(header);
                self.on_hello(now, peer, hello, minor);
            }
            Message::Heartbeat { heartbeat_ms } => {
                let client = self.touch_client(now, peer);
                self.clients.set_interval(client, heartbeat_ms);
            }
            Message::Request(r) => self.on_request(now, peer, r),
            Message::Cancel(c) => self.on_cancel(now, peer, c),
            Message::Disconnect { .. } => {
                debug!("client disconnected");
                if let Some(client) = self.clients.key(peer) {
                    self.remove_client(now, client);
                }
            }
            Message::Error(e) => debug!(error = %e.error, "client reported an error"),
            other => {
                let error = format!("unexpected {} on the proxy", other.kind_name());
                self.client_malformed(peer, header, error);
            }
        }
    }

    fn on_hello(&mut self, now: Instant, peer: &[u8], hello: Hello, minor: u32) {
        let (client, _) = self.clients.touch(now, peer, ClientInfo::default);
        self.clients.set_interval(client, hello.heartbeat_ms);
        if let Some(c) = self.clients.get_mut(client) {
            c.data.name = hello.name.clone();
            c.data.minor = minor;
        }
        let welcome = Message::Welcome {
            heartbeat_ms: interval_to_ms(self.heartbeat),
            max_message_size: self.client_limit() as u64,
        };
        self.send_client(peer.into(), welcome);
        if let Some(name) = hello.name {
            if self.session.is_ready() {
                self.forward_hello(now, peer, name);
            }
        }
    }

    fn on_request(&mut self, now: Instant, peer: &[u8], r: Request) {
        self.touch_client(now, peer);
        self.stats.requests_received += 1;
        if !self.slow.is_empty() && self.slow.contains(peer) {
            self.stats.requests_overloaded += 1;
            self.stats.refused_slow += 1;
            let error = "you are not reading your responses: over your outbox limit";
            return self.refuse(peer, &r, error.to_owned());
        }
        // Within the proxy's own limit (the driver drops larger ones) but
        // maybe over the broker's, which this client may not know yet.
        if let Some((size, limit)) = self.over_broker_limit(&r.payload, r.reply_to.as_deref()) {
            return self.refuse_too_large(peer, (r.request_type, r.request_id), size, limit);
        }
        let key: EntryKey = (peer.into(), r.request_type, r.request_id);
        let confirm = confirmation(r.flags, r.reply_to.is_some());
        let deadline = crate::deadline::from_wire_ms(now, r.deadline_ms);
        if self.buffer.contains_key(&key) {
            // The client sent it again: re-send it now.
            return self.resend(now, &key);
        }
        let bytes: usize = r.payload.iter().map(|f| f.len()).sum();
        if self.buffer.len() >= self.max_buffered
            || self.buffered_bytes + bytes > self.max_buffered_bytes
        {
            self.stats.requests_overloaded += 1;
            let error = format!(
                "the client proxy buffer is full ({} requests, {} bytes)",
                self.buffer.len(),
                self.buffered_bytes
            );
            return self.refuse(peer, &r, error);
        }
        let ready = self.session.is_ready();
        let Some(confirm) = confirm else {
            // Fire-and-forget one-way request: forwarded when possible, kept
            // only until it could be sent once.
            if ready {
                self.stats.requests_forwarded += 1;
                let (flags, reply_to) = (r.flags, r.reply_to);
                self.forward(
                    now,
                    peer,
                    key.1,
                    key.2,
                    (flags, reply_to, deadline),
                    r.payload,
                );
                return;
            }
            let what = (r.flags, r.reply_to, deadline);
            return self.buffer_entry(now, key, what, r.payload, bytes, None);
        };
        if ready {
            self.stats.requests_forwarded += 1;
            let copy = copy_payload(&r.payload);
            let what = (r.flags, r.reply_to.clone(), deadline);
            self.forward(now, peer, key.1, key.2, what, copy);
        }
        let what = (r.flags, r.reply_to, deadline);
        self.buffer_entry(now, key, what, r.payload, bytes, Some(confirm));
    }

    /// The largest request a client may send through the proxy, as its
    /// WELCOME says: `min(own, broker − ROUTE_ROOM)`, the broker's limit
    /// as its WELCOME said less the room of the route the proxy adds (at
    /// least 1: 0 would mean "not said").
    fn client_limit(&self) -> usize {
        match self.broker_limit() {
            Some(broker) => self.max_message_size.min(broker),
            None => self.max_message_size,
        }
    }

    /// The broker's limit for what a client sends through the proxy, once
    /// the broker's WELCOME said it.
    fn broker_limit(&self) -> Option<usize> {
        let broker = self.session.broker_max_message_size()?;
        Some(broker.saturating_sub(ROUTE_ROOM).max(1))
    }

    /// `(size, limit)` when a request is larger than the broker takes
    /// (checked as the client checks it, `checked_size`).
    fn over_broker_limit(
        &self,
        payload: &Payload,
        reply_to: Option<&str>,
    ) -> Option<(usize, usize)> {
        let limit = self.broker_limit()?;
        let size = checked_size(payload, reply_to.map_or(0, str::len));
        (size > limit).then_some((size, limit))
    }

    /// Answers a request the broker would drop for its size with an ERROR
    /// naming it, as an oversized message is answered: the broker would
    /// drop it (or cut the proxy's connection), and the client would wait.
    fn refuse_too_large(
        &mut self,
        peer: &[u8],
        (request_type, request_id): (RequestType, RequestId),
        size: usize,
        limit: usize,
    ) {
        self.stats.oversized += 1;
        let error = format!(
            "the request is {size} bytes, over the broker's max_message_size of {limit} \
             (less the proxy's route): dropped"
        );
        let request = Some(RequestRef {
            request_type,
            request_id,
            route: Vec::new(),
        });
        let reply = ErrorReply {
            error,
            request,
            status: None,
        };
        self.send_client(peer.into(), Message::Error(reply));
    }

    /// A client takes its request back (protocol 1.5): the proxy stops
    /// re-sending it (one never sent goes no further), and passes the
    /// CANCEL on with the client's route, so that the broker ends or flags
    /// what it holds. Also for a request not buffered here (a one-way one
    /// forwarded once): the broker may still hold it. Without a session,
    /// the CANCEL of a request it had buffered waits for the next WELCOME
    /// (the broker may still hold what an earlier session sent), within
    /// the buffer's count bound. A broker older than 1.5 is not told; the
    /// request then runs for nobody, as before.
    fn on_cancel(&mut self, now: Instant, peer: &[u8], c: Cancel) {
        self.touch_client(now, peer);
        self.stats.requests_cancelled += 1;
        let key: EntryKey = (peer.into(), c.request_type, c.request_id);
        let buffered = self.buffer.contains_key(&key);
        self.remove_entry(&key);
        let cancel = Cancel {
            request_type: c.request_type,
            request_id: c.request_id,
            route: peer.to_vec(),
            dispatch_tag: 0,
        };
        if self.session.is_ready() {
            self.send_cancel(now, cancel);
        } else if buffered && self.cancels_waiting.len() < self.max_buffered {
            self.cancels_waiting.push(cancel);
        }
    }

    /// Sends a CANCEL to a broker that takes it.
    fn send_cancel(&mut self, now: Instant, cancel: Cancel) {
        if self.session.broker_minor() >= CANCEL_MINOR {
            self.send_broker(now, Message::Cancel(cancel));
        }
    }

    /// Answers a request `OVERLOADED` from the proxy itself.
    fn refuse(&mut self, peer: &[u8], r: &Request, error: String) {
        let response = Message::Response(Response {
            request_type: r.request_type,
            request_id: r.request_id,
            status: Status::Overloaded,
            error: Some(error),
            route: Vec::new(),
            payload: Payload::new(),
        });
        self.send_client(peer.into(), response);
    }

    fn buffer_entry(
        &mut self,
        now: Instant,
        key: EntryKey,
        (flags, reply_to, deadline): Forwarded,
        payload: Payload,
        bytes: usize,
        confirm: Option<Confirm>,
    ) {
        self.buffered_bytes += bytes;
        let next_resend = self.timers.arm(now, self.resend_initial, key.clone());
        self.buffer.insert(
            key,
            Entry {
                flags,
                reply_to,
                deadline,
                payload,
                bytes,
                // A fire-and-forget request is done once sent: see `resend`.
                confirm: confirm.unwrap_or(Confirm::Receipt(ReceiptKind::Sent)),
                resend_interval: self.resend_initial,
                next_resend,
            },
        );
    }

    fn remove_client(&mut self, now: Instant, client: Key) {
        let Some(client) = self.clients.remove(client) else {
            return;
        };
        let peer = client.id.as_slice();
        let gone: Vec<EntryKey> = self
            .buffer
            .keys()
            .filter(|k| k.0.as_slice() == peer)
            .cloned()
            .collect();
        for key in gone {
            self.remove_entry(&key);
        }
        if client.data.name.is_some() && self.session.is_ready() {
            self.send_broker(
                now,
                Message::Disconnect {
                    route: peer.to_vec(),
                },
            );
        }
    }

    /// Marks a client as heard from; one unknown is asked to greet again
    /// (it may have a name to register, and its interval is unknown).
    fn touch_client(&mut self, now: Instant, peer: &[u8]) -> Key {
        let (client, known) = self.clients.touch(now, peer, ClientInfo::default);
        if !known {
            self.send_client(peer.into(), Message::Reregister);
        }
        client
    }

    /// A client's message over `max_message_frames` frames or
    /// `max_message_size` bytes in all: dropped unread, counted, logged
    /// through the limiter, and answered with an ERROR naming its request
    /// (when its `header` names one), so that the request ends at its
    /// client.
    pub(crate) fn on_oversized(&mut self, peer: &[u8], size: crate::io::Oversized, header: &[u8]) {
        self.stats.oversized += 1;
        let error = size.to_string();
        if self.bad_input.admit(self.now, peer, &error) {
            warn!(%error, "oversized message from a client");
        }
        self.answer_client_error(peer, header, error);
    }

    /// A REQUEST from a connection whose CURVE key a reload took off the
    /// client list (docs/security.md, "Reloading keys"): answered
    /// FORBIDDEN, counted, and not buffered or forwarded. Its connection
    /// stays (libzmq cannot close one peer of a ROUTER); a new one with
    /// that key is refused at its handshake.
    pub(crate) fn on_forbidden_request(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        key: &PublicKey,
    ) {
        self.now = now;
        self.stats.requests_forbidden += 1;
        let error = format!("forbidden: key {key} is no longer allowed on this proxy");
        self.forbidden_log.on_tick(now);
        if self.forbidden_log.admit(now, key.as_bytes(), &error) {
            warn!(%error, "refused a request (docs/security.md)");
        }
        let Some(r) = protocol::peek_request_ref(header) else {
            return self.answer_client_error(peer, header, error);
        };
        // The client is alive: it spoke.
        self.touch_client(now, peer);
        let response = Response {
            request_type: r.request_type,
            request_id: r.request_id,
            status: Status::Forbidden,
            error: Some(error),
            route: Vec::new(),
            payload: Vec::new(),
        };
        self.send_response(peer.into(), response);
    }

    fn client_malformed(&mut self, peer: &[u8], header: &[u8], error: String) {
        self.stats.malformed_clients += 1;
        if self.bad_input.admit(self.now, peer, &error) {
            warn!(%error, "malformed message from a client");
        }
        self.answer_client_error(peer, header, error);
    }

    /// Answers a client's message the proxy cannot take with an ERROR
    /// naming its request, if its header names one.
    fn answer_client_error(&mut self, peer: &[u8], header: &[u8], error: String) {
        if protocol::peek_kind(header) == Some("ERROR") {
            return; // never answer an error with an error
        }
        let request = protocol::peek_request_ref(header).map(|mut r| {
            r.route.clear();
            r
        });
        self.send_client(
            peer.into(),
            Message::Error(ErrorReply {
                error,
                request,
                status: None,
            }),
        );
    }

    // ----- broker side --------------------------------------------------

    /// A new broker session: greet for named clients, re-send everything.
    fn on_new_session(&mut self, now: Instant) {
        let named: Vec<(PeerId, String)> = self
            .clients
            .iter()
            .filter_map(|(_, c)| c.data.name.clone().map(|n| (c.id.clone(), n)))
            .collect();
        for (peer, name) in named {
            self.forward_hello(now, &peer, name);
        }
        let keys: Vec<EntryKey> = self.buffer.keys().cloned().collect();
        for key in keys {
            self.resend(now, &key);
        }
    }

    fn on_response(&mut self, r: Response) {
        let peer: PeerId = r.route.as_slice().into();
        self.remove_entry(&(peer.clone(), r.request_type, r.request_id));
        self.stats.responses_forwarded += 1;
        self.send_response(peer, r);
    }

    /// Sends a RESPONSE to a client: a FORBIDDEN one as an ERROR to a
    /// client that would not know the status.
    fn send_response(&mut self, peer: PeerId, r: Response) {
        let older = |minor: u32| minor < protocol::FORBIDDEN_MINOR;
        if r.status == Status::Forbidden
            && self
                .clients
                .find_mut(&peer)
                .is_none_or(|c| older(c.data.minor))
        {
            // A client older than 1.4 (or one that has not greeted) would
            // refuse the status: an ERROR naming the request ends it there
            // (protocol.md §10.2).
            let key = (r.request_type, r.request_id);
            let error = ErrorReply::forbidden_request(key, Vec::new(), r.error.unwrap_or_default());
            return self.send_client(peer, Message::Error(error));
        }
        let response = Message::Response(Response {
            route: Vec::new(),
            ..r
        });
        self.send_client(peer, response);
    }

    fn on_receipt(&mut self, r: RequestRef, kind: ReceiptKind) {
        let peer: PeerId = r.route.as_slice().into();
        let key = (peer.clone(), r.request_type, r.request_id);
        if self
            .buffer
            .get(&key)
            .is_some_and(|e| e.confirm == Confirm::Receipt(kind))
        {
            self.remove_entry(&key);
        }
        self.stats.receipts_forwarded += 1;
        let receipt = RequestRef {
            route: Vec::new(),
            ..r
        };
        let msg = match kind {
            ReceiptKind::Sent => Message::ReceiptSent(receipt),
            ReceiptKind::Received => Message::ReceiptReceived(receipt),
        };
        self.send_client(peer, msg);
    }

    fn on_broker_error(&mut self, e: ErrorReply) {
        self.session.broker_error(self.now, &e.error);
        if let Some(r) = e.request {
            let peer: PeerId = r.route.as_slice().into();
            self.remove_entry(&(peer.clone(), r.request_type, r.request_id));
            let request = Some(RequestRef {
                route: Vec::new(),
                ..r
            });
            self.send_client(
                peer,
                Message::Error(ErrorReply {
                    error: e.error,
                    request,
                    status: e.status,
                }),
            );
        }
    }

    // ----- time ---------------------------------------------------------

    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.now = now;
        self.bad_input.on_tick(now);
        for client in self.clients.dead(now) {
            warn!("client missed its heartbeats: dropping its buffered requests");
            self.stats.client_deaths += 1;
            self.remove_client(now, client);
        }
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        let mut due = Vec::new();
        self.clients.heartbeats_due(now, &mut due);
        for peer in due {
            self.send_client(peer, Message::Heartbeat { heartbeat_ms });
        }
        // The buffer is kept whatever happens to the broker.
        self.session.on_tick(now, &mut self.actions);
        while let Some((at, key)) = self.timers.pop_due(now) {
            let due = self.buffer.get(&key).is_some_and(|e| e.next_resend == at);
            if !due {
                continue;
            }
            if self.session.is_ready() {
                self.resend(now, &key);
            } else if let Some(e) = self.buffer.get_mut(&key) {
                // Not connected: the new session re-sends it anyway.
                e.next_resend = self.timers.arm(now, e.resend_interval, key);
            }
        }
    }

    pub(crate) fn on_stop(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self.clients.iter().map(|(_, c)| c.id.clone()).collect();
        for peer in peers {
            self.send_client(peer, Message::Shutdown);
        }
        self.session.stop(now, &mut self.actions);
    }

    // ----- helpers ------------------------------------------------------

    /// Sends (a copy of) a buffered request again and re-arms its timer with
    /// backoff. A fire-and-forget entry is dropped once sent.
    fn resend(&mut self, now: Instant, key: &EntryKey) {
        if !self.session.is_ready() {
            return;
        }
        let resend_max = self.resend_max;
        let Some(e) = self.buffer.get(key) else {
            return;
        };
        if e.deadline.is_some_and(|d| d <= now) {
            // Its requester has stopped waiting: not sent again.
            return self.expire_entry(key);
        }
        // Taken while the broker's limit was unknown, or under a broker
        // that took more than this one does.
        if let Some((size, limit)) = self.over_broker_limit(&e.payload, e.reply_to.as_deref()) {
            self.refuse_too_large(&key.0, (key.1, key.2), size, limit);
            return self.remove_entry(key);
        }
        let Some(e) = self.buffer.get_mut(key) else {
            return;
        };
        let (flags, reply_to, deadline) = (e.flags, e.reply_to.clone(), e.deadline);
        let fire_and_forget = confirmation(flags, reply_to.is_some()).is_none();
        let payload = if fire_and_forget {
            std::mem::take(&mut e.payload)
        } else {
            copy_payload(&e.payload)
        };
        e.resend_interval = e.resend_interval.saturating_mul(2).min(resend_max);
        if !fire_and_forget {
            e.next_resend = self.timers.arm(now, e.resend_interval, key.clone());
        }
        self.stats.requests_resent += 1;
        self.forward(
            now,
            &key.0,
            key.1,
            key.2,
            (flags, reply_to, deadline),
            payload,
        );
        if fire_and_forget {
            self.remove_entry(key);
        }
    }

    /// A buffered request whose deadline passed: it is not sent again, and
    /// the buffer lets it go. Nothing is answered here: the broker got the
    /// deadline with the request and ends it (`EXPIRED`, or its outcome if
    /// a worker took it in time), and the client's own timeout, the same
    /// deadline, ends a request the broker never got. Answering here could
    /// give a request two outcomes.
    fn expire_entry(&mut self, key: &EntryKey) {
        self.stats.requests_expired += 1;
        self.remove_entry(key);
    }

    fn forward(
        &mut self,
        now: Instant,
        peer: &[u8],
        request_type: RequestType,
        request_id: RequestId,
        (flags, reply_to, deadline): Forwarded,
        payload: Payload,
    ) {
        let request = Message::Request(Request {
            request_type,
            request_id,
            flags,
            route: peer.to_vec(),
            reply_to,
            deadline_ms: crate::deadline::wire_ms_until(now, deadline),
            payload,
        });
        self.send_broker(now, request);
    }

    fn forward_hello(&mut self, now: Instant, peer: &[u8], name: String) {
        let hello = Message::Hello(Hello {
            heartbeat_ms: interval_to_ms(self.heartbeat),
            name: Some(name),
            route: peer.to_vec(),
        });
        self.send_broker(now, hello);
    }

    fn remove_entry(&mut self, key: &EntryKey) {
        if let Some(e) = self.buffer.remove(key) {
            self.buffered_bytes -= e.bytes;
        }
        if self.buffer.is_empty() {
            self.timers.clear();
        }
    }

    fn send_client(&mut self, peer: PeerId, msg: Message) {
        // A REREGISTER or an ERROR may go to a client we do not know.
        let known = self.clients.sent(&peer, self.now);
        if !known && !matches!(msg, Message::Reregister | Message::Error(_)) {
            self.stats.unroutable += 1;
            return;
        }
        self.actions.push(Action::ToClient(peer, msg));
    }

    fn send_broker(&mut self, now: Instant, msg: Message) {
        self.session.send(now, msg, &mut self.actions);
    }
}

impl crate::link::Connecting for ProxyCore {
    type Action = Action;

    fn on_inbound(&mut self, now: Instant, inbound: Inbound) {
        self.now = now;
        match inbound {
            Inbound::Welcome { newly } => {
                for cancel in std::mem::take(&mut self.cancels_waiting) {
                    self.send_cancel(now, cancel);
                }
                if newly {
                    info!(
                        buffered = self.buffer.len(),
                        "connected to the broker: re-sending the buffer"
                    );
                    self.on_new_session(now);
                }
            }
            Inbound::Message(Message::Error(e)) => self.on_broker_error(e),
            Inbound::Message(Message::Response(r)) => self.on_response(r),
            Inbound::Message(Message::ReceiptSent(r)) => self.on_receipt(r, ReceiptKind::Sent),
            Inbound::Message(Message::ReceiptReceived(r)) => {
                self.on_receipt(r, ReceiptKind::Received);
            }
            // Its clients pick their own ids: the proxy has no use for it.
            Inbound::Message(Message::View { .. }) => {}
            Inbound::Message(other) => self.session.unexpected(now, &other, &mut self.actions),
            // A broker that lost us (it restarted) lost what we had sent it,
            // and one that is gone gets it again too: the next WELCOME
            // re-sends the buffer, which is kept.
            Inbound::Reregister | Inbound::Lost(_) => {}
            Inbound::Handled => {}
        }
    }

    fn parts(&mut self) -> (&mut BrokerSession, &mut Vec<Action>) {
        (&mut self.session, &mut self.actions)
    }
}

/// What confirms a request, so it can leave the buffer: its response when
/// it comes back here (two-way, no reply-to), else the receipt its flags ask
/// for; `None` for fire-and-forget (sent once, then forgotten). A reply-to
/// request's response goes to another client, so it is confirmed like a
/// one-way request.
fn confirmation(flags: Flags, has_reply_to: bool) -> Option<Confirm> {
    if flags.is_two_way() && !has_reply_to {
        Some(Confirm::Response)
    } else if flags.contains(Flags::RECEIPT_ON_RECEIVE) {
        Some(Confirm::Receipt(ReceiptKind::Received))
    } else if flags.contains(Flags::RECEIPT_ON_SEND) {
        Some(Confirm::Receipt(ReceiptKind::Sent))
    } else {
        None
    }
}

fn copy_payload(payload: &Payload) -> Payload {
    payload.iter().map(|f| Frame::from(&f[..])).collect()
}

//! Unit tests of the broker state machine (fake clock, no sockets).
//!
//! Every test drives a [`BrokerCore`] through a small [`Harness`]: inputs are
//! typed messages encoded to real header bytes (so the codec runs too), time
//! is `t0 + n ms` and never read from the system clock, and outputs are
//! drained from the outbox and matched one by one, in order.
//!
//! This file is the harness (and the helpers several sections share); each
//! section of tests is a file beside it, the randomized model check in
//! `model_check.rs`.

mod authz;
mod bounds;
mod cancel;
mod cluster;
mod deadlines;
mod dedupe;
mod latency;
mod liveness;
mod malformed;
mod model_check;
mod names;
mod one_way;
mod proxies;
mod queueing;
mod receipts;
mod redirect;
mod registration;
mod reply_to;
mod request_response;
mod returned;
mod scale;
mod stale_results;
mod stop;
mod unknown_peers;
mod watch;
mod worker_death;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::config::BrokerConfig;
use super::core::{BrokerCore, Side};
use super::stats::{BrokerStats, TypeStats};
use crate::protocol::{
    Dispatch, ErrorReply, Flags, Frame, Hello, Message, Payload, Ready, Request, RequestRef,
    Response, Status, WorkResult,
};

/// One output of the broker: socket, peer routing id, message.
type Out = (Side, Vec<u8>, Message);

/// The heartbeat interval the test peers announce, in ms.
const HB: u32 = 1000;

const CA: &[u8] = b"client-a";
const CB: &[u8] = b"client-b";
const CC: &[u8] = b"client-c";
const PROXY: &[u8] = b"proxy-1";
const W1: &[u8] = b"worker-1";
const W2: &[u8] = b"worker-2";
const W3: &[u8] = b"worker-3";

fn payload(frames: &[&[u8]]) -> Payload {
    frames.iter().map(|f| Frame::from(*f)).collect()
}

fn frames(p: &Payload) -> Vec<Vec<u8>> {
    p.iter().map(|f| f.to_vec()).collect()
}

fn owned(frames: &[&[u8]]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.to_vec()).collect()
}

fn encode(msg: Message) -> (Vec<u8>, Payload) {
    let mut header = Vec::new();
    let encoded = msg.encode(&mut header);
    (header, encoded.payload)
}

fn req(request_type: u32, request_id: u64, flags: Flags, body: &[&[u8]]) -> Request {
    Request {
        request_type,
        request_id,
        flags,
        route: Vec::new(),
        reply_to: None,
        deadline_ms: 0,
        payload: payload(body),
    }
}

fn show(o: &Out) -> String {
    format!(
        "{:?} to {:?}: {:?}",
        o.0,
        String::from_utf8_lossy(&o.1),
        o.2
    )
}

fn name(peer: &[u8]) -> String {
    String::from_utf8_lossy(peer).into_owned()
}

fn ts(
    received: u64,
    dispatched: u64,
    completed: u64,
    pending: u64,
    in_flight: u64,
    workers: u64,
) -> TypeStats {
    TypeStats {
        received,
        dispatched,
        completed,
        pending,
        in_flight,
        workers,
        ..TypeStats::default()
    }
}

struct Harness {
    core: BrokerCore,
    t0: Instant,
    now_ms: u64,
    queued: VecDeque<Out>,
    /// The attempt and tag of the last DISPATCH of each (worker, type, id),
    /// which [`Harness::result`] echoes as a worker does.
    dispatches: HashMap<(Vec<u8>, u32, u64), (u32, u64)>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// `CA` connected.
    fn with_client() -> Self {
        Self::new().and_client(CA)
    }

    /// `CA` and `CB` connected.
    fn with_two_clients() -> Self {
        let mut h = Self::with_client();
        h.connect(CB);
        h
    }

    /// `CA` connected, and `W1` serving type 7 with `capacity` credits.
    fn with_client_and_worker(capacity: u32) -> Self {
        Self::with_client().and_worker(capacity)
    }

    /// `CA` connected, and `W1` (type 7, `capacity` credits) running the
    /// plain request 7/1 (no flags, no payload) as attempt 1.
    fn with_request_running(capacity: u32) -> Self {
        let mut h = Self::with_client_and_worker(capacity);
        h.request_dispatched(CA, W1, 7, 1);
        h
    }

    /// `CA` connected, and `W1` (type 7, capacity 1) running attempt 1 of
    /// request 7/1, sent `RETRY_ON_DEATH` with `body`: the start of the
    /// tests of what a worker's death does to a retried request.
    fn with_a_retry_running(body: &[&[u8]]) -> Self {
        Self::with_a_retry_running_on(|_| {}, Flags::empty(), body)
    }

    /// [`Harness::with_a_retry_running`] on a broker configured by
    /// `config`, the request sent with `flags` too.
    fn with_a_retry_running_on(
        config: impl FnOnce(&mut BrokerConfig),
        flags: Flags,
        body: &[&[u8]],
    ) -> Self {
        let mut h = Self::with_config(config).and_client(CA).and_worker(1);
        h.request_dispatched_with(CA, W1, (7, 1), Flags::RETRY_ON_DEATH | flags, body);
        h
    }

    /// `CA` connected, then each `(client, name)` registering `name`, in
    /// order.
    fn with_named_clients(named: &[(&[u8], &str)]) -> Self {
        let mut h = Self::with_client();
        for (client, name) in named {
            h.connect_named(client, name);
        }
        h
    }

    /// `client` connected too.
    fn and_client(mut self, client: &[u8]) -> Self {
        self.connect(client);
        self
    }

    /// `W1` connected too, serving type 7 with `capacity` credits.
    fn and_worker(mut self, capacity: u32) -> Self {
        self.connect_worker(W1, &[7], capacity);
        self
    }

    /// `W2` connected too, serving type 7 with `capacity` credits.
    fn and_worker_2(mut self, capacity: u32) -> Self {
        self.connect_worker(W2, &[7], capacity);
        self
    }

    fn with_config(f: impl FnOnce(&mut BrokerConfig)) -> Self {
        let mut config = BrokerConfig::new("inproc://test-frontend", "inproc://test-backend");
        f(&mut config);
        let t0 = Instant::now();
        Self {
            core: BrokerCore::new(&config, t0),
            t0,
            now_ms: 0,
            queued: VecDeque::new(),
            dispatches: HashMap::new(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    /// Moves the fake clock to `ms` after `t0` (no tick).
    fn at(&mut self, ms: u64) {
        assert!(ms >= self.now_ms, "the fake clock only moves forward");
        self.now_ms = ms;
    }

    /// Moves the fake clock to `ms` after `t0` and runs a tick there.
    fn tick_at(&mut self, ms: u64) {
        self.at(ms);
        let now = self.now();
        self.core.on_tick(now);
    }

    /// Moves the fake clock forward by `ms` and runs a tick.
    fn tick(&mut self, ms: u64) {
        self.tick_at(self.now_ms + ms);
    }

    // --- inputs ---

    fn frontend_raw(&mut self, peer: &[u8], header: &[u8], payload: Payload) {
        let now = self.now();
        self.core.on_frontend(now, peer, header, payload, || None);
    }

    fn backend_raw(&mut self, peer: &[u8], header: &[u8], payload: Payload) {
        let now = self.now();
        self.core.on_backend(now, peer, header, payload, || None);
    }

    /// `peer` sends `header` and `payload` to the frontend, and gets an
    /// ERROR: that ERROR.
    fn frontend_refused(&mut self, peer: &[u8], header: &[u8], payload: Payload) -> ErrorReply {
        self.frontend_raw(peer, header, payload);
        self.expect_error(Side::Frontend, peer)
    }

    /// [`Harness::frontend_refused`], on the backend.
    fn backend_refused(&mut self, peer: &[u8], header: &[u8], payload: Payload) -> ErrorReply {
        self.backend_raw(peer, header, payload);
        self.expect_error(Side::Backend, peer)
    }

    fn client_sends(&mut self, peer: &[u8], msg: Message) {
        let (header, payload) = encode(msg);
        self.frontend_raw(peer, &header, payload);
    }

    fn worker_sends(&mut self, peer: &[u8], msg: Message) {
        let (header, payload) = encode(msg);
        self.backend_raw(peer, &header, payload);
    }

    fn hello(&mut self, client: &[u8], name: Option<&str>) {
        self.hello_every(client, name, HB);
    }

    /// A HELLO announcing the interval `heartbeat_ms`.
    fn hello_every(&mut self, client: &[u8], name: Option<&str>, heartbeat_ms: u32) {
        let hello = Hello {
            heartbeat_ms,
            name: name.map(str::to_owned),
            route: Vec::new(),
        };
        self.client_sends(client, Message::Hello(hello));
    }

    /// HELLO and its WELCOME.
    fn connect(&mut self, client: &[u8]) {
        self.hello(client, None);
        self.expect_welcome(Side::Frontend, client);
    }

    /// HELLO registering `name`, and its WELCOME.
    fn connect_named(&mut self, client: &[u8], name: &str) {
        self.hello(client, Some(name));
        self.expect_welcome(Side::Frontend, client);
    }

    fn ready_hb(&mut self, worker: &[u8], types: &[u32], capacity: u32, heartbeat_ms: u32) {
        self.worker_sends(worker, ready_message(types, capacity, heartbeat_ms));
    }

    fn ready(&mut self, worker: &[u8], types: &[u32], capacity: u32) {
        self.ready_hb(worker, types, capacity, HB);
    }

    /// READY and its WELCOME (dispatches of queued work may follow).
    fn connect_worker(&mut self, worker: &[u8], types: &[u32], capacity: u32) {
        self.ready(worker, types, capacity);
        self.expect_welcome(Side::Backend, worker);
    }

    /// A request without payload whose response is to go to the client
    /// registered as `reply_to`.
    fn request_reply_to(
        &mut self,
        client: &[u8],
        (t, id): (u32, u64),
        flags: Flags,
        reply_to: &str,
    ) {
        let request = Request {
            reply_to: Some(reply_to.to_owned()),
            ..req(t, id, flags, &[])
        };
        self.client_sends(client, Message::Request(request));
    }

    fn request(&mut self, client: &[u8], t: u32, id: u64, flags: Flags, body: &[&[u8]]) {
        self.client_sends(client, Message::Request(req(t, id, flags, body)));
    }

    /// A RESULT answering the last DISPATCH of `(t, id)` to `worker` (attempt
    /// 1 and no tag if there was none), echoing its attempt and tag as a
    /// worker does.
    fn result(&mut self, worker: &[u8], t: u32, id: u64, status: Status, body: &[&[u8]]) {
        let (attempt, tag) = self
            .dispatches
            .get(&(worker.to_vec(), t, id))
            .copied()
            .unwrap_or((1, 0));
        self.result_tagged(worker, t, id, (attempt, tag), status, body);
    }

    /// A RESULT with an explicit `attempt` and no tag, as a worker that
    /// predates tags sends it (0: a 1.0 worker, which sends no attempt
    /// either).
    fn result_attempt(
        &mut self,
        worker: &[u8],
        t: u32,
        id: u64,
        attempt: u32,
        status: Status,
        body: &[&[u8]],
    ) {
        self.result_tagged(worker, t, id, (attempt, 0), status, body);
    }

    /// A RESULT naming the dispatch `(attempt, dispatch_tag)` explicitly.
    fn result_tagged(
        &mut self,
        worker: &[u8],
        t: u32,
        id: u64,
        (attempt, dispatch_tag): (u32, u64),
        status: Status,
        body: &[&[u8]],
    ) {
        self.worker_sends(
            worker,
            Message::Result(WorkResult {
                request_type: t,
                request_id: id,
                attempt,
                dispatch_tag,
                status,
                error: None,
                payload: payload(body),
            }),
        );
    }

    fn receipt_received(&mut self, worker: &[u8], t: u32, id: u64) {
        self.worker_sends(
            worker,
            Message::ReceiptReceived(RequestRef {
                request_type: t,
                request_id: id,
                route: Vec::new(),
            }),
        );
    }

    fn worker_heartbeat(&mut self, worker: &[u8]) {
        self.worker_sends(worker, Message::Heartbeat { heartbeat_ms: 0 });
    }

    fn client_heartbeat(&mut self, client: &[u8]) {
        self.client_sends(client, Message::Heartbeat { heartbeat_ms: 0 });
    }

    // --- outputs ---

    fn pull(&mut self) {
        for o in self.core.outbox().drain(..) {
            if let Message::Dispatch(d) = &o.msg {
                let key = (o.peer.to_vec(), d.request_type, d.request_id);
                self.dispatches.insert(key, (d.attempt, d.dispatch_tag));
            }
            self.queued.push_back((o.side, o.peer.to_vec(), o.msg));
        }
    }

    /// Drains every output not matched yet.
    fn take(&mut self) -> Vec<Out> {
        self.pull();
        self.queued.drain(..).collect()
    }

    fn next_out(&mut self, what: &str) -> Out {
        self.pull();
        self.queued
            .pop_front()
            .unwrap_or_else(|| panic!("expected {what}, but the outbox is empty"))
    }

    fn expect_nothing(&mut self) {
        self.pull();
        let rest: Vec<String> = self.queued.iter().map(show).collect();
        assert!(
            rest.is_empty(),
            "expected no output, got:\n{}",
            rest.join("\n")
        );
    }

    /// The next output, which must be a `kind` message to `peer` on `side`.
    fn expect_kind(&mut self, side: Side, peer: &[u8], kind: &str) -> Message {
        match self.next_out(kind) {
            (s, p, m) if s == side && p == peer && m.kind_name() == kind => m,
            other => panic!("expected {kind} to {}, got {}", name(peer), show(&other)),
        }
    }

    fn expect_dispatch_to(&mut self, worker: &[u8]) -> Dispatch {
        match self.expect_kind(Side::Backend, worker, "DISPATCH") {
            Message::Dispatch(d) => d,
            _ => unreachable!("a DISPATCH"),
        }
    }

    /// A DISPATCH to `worker` of `(t, id)` with attempt `attempt`.
    fn expect_dispatch(&mut self, worker: &[u8], t: u32, id: u64, attempt: u32) -> Dispatch {
        let d = self.expect_dispatch_to(worker);
        assert_eq!(
            (d.request_type, d.request_id, d.attempt),
            (t, id, attempt),
            "DISPATCH to {}",
            name(worker)
        );
        d
    }

    fn expect_response(&mut self, client: &[u8]) -> Response {
        match self.expect_kind(Side::Frontend, client, "RESPONSE") {
            Message::Response(r) => r,
            _ => unreachable!("a RESPONSE"),
        }
    }

    /// A RESPONSE to `client` about `(t, id)` with `status`.
    fn expect_status(&mut self, client: &[u8], t: u32, id: u64, status: Status) -> Response {
        let r = self.expect_response(client);
        assert_eq!(
            (r.request_type, r.request_id, r.status),
            (t, id, status),
            "RESPONSE to {} (error {:?})",
            name(client),
            r.error
        );
        r
    }

    /// A receipt of `kind` (`RECEIPT_SENT`, `RECEIPT_RECEIVED`) to `client`
    /// about `(t, id)`.
    fn expect_receipt(&mut self, client: &[u8], kind: &str, t: u32, id: u64) -> RequestRef {
        let r = match self.expect_kind(Side::Frontend, client, kind) {
            Message::ReceiptSent(r) | Message::ReceiptReceived(r) => r,
            _ => unreachable!("a receipt"),
        };
        assert_eq!((r.request_type, r.request_id), (t, id), "{kind}");
        r
    }

    fn expect_receipt_sent(&mut self, client: &[u8], t: u32, id: u64) -> RequestRef {
        self.expect_receipt(client, "RECEIPT_SENT", t, id)
    }

    fn expect_receipt_received(&mut self, client: &[u8], t: u32, id: u64) -> RequestRef {
        self.expect_receipt(client, "RECEIPT_RECEIVED", t, id)
    }

    /// A WELCOME or a HEARTBEAT (`kind`): the broker announces its own
    /// interval.
    fn expect_interval(&mut self, side: Side, peer: &[u8], kind: &str) {
        match self.expect_kind(side, peer, kind) {
            Message::Welcome { heartbeat_ms, .. } | Message::Heartbeat { heartbeat_ms } => {
                assert_eq!(heartbeat_ms, 1000, "the broker announces its own interval");
            }
            _ => unreachable!("a WELCOME or a HEARTBEAT"),
        }
    }

    fn expect_welcome(&mut self, side: Side, peer: &[u8]) {
        self.expect_interval(side, peer, "WELCOME");
    }

    fn expect_reregister(&mut self, side: Side, peer: &[u8]) {
        self.expect_kind(side, peer, "REREGISTER");
    }

    fn expect_heartbeat(&mut self, side: Side, peer: &[u8]) {
        self.expect_interval(side, peer, "HEARTBEAT");
    }

    fn expect_error(&mut self, side: Side, peer: &[u8]) -> ErrorReply {
        match self.expect_kind(side, peer, "ERROR") {
            Message::Error(e) => e,
            _ => unreachable!("an ERROR"),
        }
    }

    // --- round trips ---

    /// `client` sends a plain request (no flags, no payload) that goes
    /// straight to `worker` as attempt 1.
    fn request_dispatched(&mut self, client: &[u8], worker: &[u8], t: u32, id: u64) {
        self.request_dispatched_with(client, worker, (t, id), Flags::empty(), &[]);
    }

    /// `client` sends a request with `flags` and `body` that goes straight
    /// to `worker` as attempt 1 (other outputs, such as receipts, may
    /// follow).
    fn request_dispatched_with(
        &mut self,
        client: &[u8],
        worker: &[u8],
        (t, id): (u32, u64),
        flags: Flags,
        body: &[&[u8]],
    ) -> Dispatch {
        self.request(client, t, id, flags, body);
        self.expect_dispatch(worker, t, id, 1)
    }

    /// `worker` sends an `OK` result (no payload) that is answered `OK` to
    /// `client`.
    fn result_answered(&mut self, worker: &[u8], client: &[u8], t: u32, id: u64) {
        self.result(worker, t, id, Status::Ok, &[]);
        self.expect_status(client, t, id, Status::Ok);
    }

    /// `client` sends a request without payload that is held (queued,
    /// refused quietly or deduplicated): nothing goes out.
    fn request_held(&mut self, client: &[u8], t: u32, id: u64, flags: Flags) {
        self.request(client, t, id, flags, &[]);
        self.expect_nothing();
    }

    /// [`Harness::result_answered`], and nothing else goes out.
    fn result_answered_alone(&mut self, worker: &[u8], client: &[u8], t: u32, id: u64) {
        self.result_answered(worker, client, t, id);
        self.expect_nothing();
    }

    /// `worker` sends an `OK` result carrying `body`, which reaches
    /// `client` as an `OK` response with the same payload; nothing else
    /// goes out.
    fn result_relayed(
        &mut self,
        worker: &[u8],
        client: &[u8],
        (t, id): (u32, u64),
        body: &[&[u8]],
    ) {
        self.result(worker, t, id, Status::Ok, body);
        let r = self.expect_status(client, t, id, Status::Ok);
        assert_eq!(frames(&r.payload), owned(body));
        self.expect_nothing();
    }

    /// The queued `(t, id)` goes to `worker` as attempt 1, alone, and its
    /// `OK` result is answered to `client`.
    fn dispatch_answered(&mut self, worker: &[u8], client: &[u8], t: u32, id: u64) {
        self.expect_dispatch_alone(worker, t, id, 1);
        self.result_answered(worker, client, t, id);
    }

    /// [`Harness::expect_status`], and nothing else goes out.
    fn expect_status_alone(&mut self, client: &[u8], t: u32, id: u64, status: Status) {
        self.expect_status(client, t, id, status);
        self.expect_nothing();
    }

    /// A DISPATCH to `worker` of `(t, id)`, attempt `attempt`, carrying
    /// `body`.
    fn expect_dispatch_of(
        &mut self,
        worker: &[u8],
        (t, id): (u32, u64),
        attempt: u32,
        body: &[&[u8]],
    ) {
        let d = self.expect_dispatch(worker, t, id, attempt);
        assert_eq!(frames(&d.payload), owned(body));
    }

    /// [`Harness::expect_dispatch`], and nothing else goes out.
    fn expect_dispatch_alone(&mut self, worker: &[u8], t: u32, id: u64, attempt: u32) {
        self.expect_dispatch(worker, t, id, attempt);
        self.expect_nothing();
    }

    /// `W2` (type 7, capacity 1) connects and `W1` dies by silence
    /// ([`kill_by_silence`], `CA` speaking): the retried request 7/1 goes
    /// to `W2` as attempt 2.
    fn retried_on_w2(&mut self) -> Dispatch {
        self.connect_worker(W2, &[7], 1);
        kill_by_silence(self, W1, &[W2], &[CA]);
        self.expect_dispatch(W2, 7, 1, 2)
    }

    // --- state ---

    fn stats(&self) -> BrokerStats {
        self.core.stats()
    }

    /// [`Harness::expect_nothing`], then the stats.
    fn quiet_stats(&mut self) -> BrokerStats {
        self.expect_nothing();
        self.stats()
    }

    /// The requests received, dispatched and completed.
    fn request_counts(&self) -> (u64, u64, u64) {
        let s = self.stats();
        (
            s.requests_received,
            s.requests_dispatched,
            s.requests_completed,
        )
    }

    /// A type's stats without its latency histograms (which the tests
    /// of `latency.rs` look at), so that counters compare with [`ts`].
    fn type_stats(&self, t: u32) -> TypeStats {
        TypeStats {
            queue_wait: Default::default(),
            service: Default::default(),
            end_to_end: Default::default(),
            ..self.type_stats_full(t)
        }
    }

    fn type_stats_full(&self, t: u32) -> TypeStats {
        self.stats()
            .types
            .get(&t)
            .cloned()
            .unwrap_or_else(|| panic!("type {t} is not in the stats"))
    }
}

/// A READY for `types` with `capacity` credits and the interval
/// `heartbeat_ms`, without names.
fn ready_message(types: &[u32], capacity: u32, heartbeat_ms: u32) -> Message {
    Message::Ready(Ready {
        heartbeat_ms,
        capacity,
        request_types: types.to_vec(),
        type_names: Vec::new(),
        name: None,
    })
}

/// Header bytes of `msg` with `major` rewritten (the first field is `08 01`).
fn with_major(msg: Message, major: u8) -> Vec<u8> {
    let (mut header, _) = encode(msg);
    assert_eq!(&header[..2], &[0x08, 0x01]);
    header[1] = major;
    header
}

/// Kills `worker` by silence: the `others` workers and `clients` speak
/// 2000 ms after now, the tick at 3001 ms after now declares `worker` (silent
/// since now, interval 1000 ms, liveness 3) dead. Heartbeats the broker sends
/// meanwhile are dropped; every other output stays queued, in order.
fn kill_by_silence(h: &mut Harness, worker: &[u8], others: &[&[u8]], clients: &[&[u8]]) {
    let deaths = h.stats().worker_deaths;
    let from = h.now_ms;
    h.at(from + 2000);
    for w in others {
        h.worker_heartbeat(w);
    }
    for c in clients {
        h.client_heartbeat(c);
    }
    h.tick_at(from + 3001);
    let rest: Vec<Out> = h
        .take()
        .into_iter()
        .filter(|o| !matches!(o.2, Message::Heartbeat { .. }))
        .collect();
    h.queued.extend(rest);
    assert_eq!(
        h.stats().worker_deaths,
        deaths + 1,
        "{} should have died",
        name(worker)
    );
}

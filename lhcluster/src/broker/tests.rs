//! Unit tests of the broker state machine (fake clock, no sockets).
//!
//! Every test drives a [`BrokerCore`] through a small [`Harness`]: inputs are
//! typed messages encoded to real header bytes (so the codec runs too), time
//! is `t0 + n ms` and never read from the system clock, and outputs are
//! drained from the outbox and matched one by one, in order.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::config::BrokerConfig;
use super::core::{BrokerCore, Side};
use super::stats::{BrokerStats, TypeStats};
use crate::protocol::{
    Dispatch, ErrorReply, Flags, Frame, Hello, Message, Payload, Ready, Request, RequestRef,
    Response, Status, WorkResult,
};

// ----- harness -----------------------------------------------------------

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
    }
}

struct Harness {
    core: BrokerCore,
    t0: Instant,
    now_ms: u64,
    queued: VecDeque<Out>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(|_| {})
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
        self.core.on_frontend(now, peer, header, payload);
    }

    fn backend_raw(&mut self, peer: &[u8], header: &[u8], payload: Payload) {
        let now = self.now();
        self.core.on_backend(now, peer, header, payload);
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
        self.client_sends(
            client,
            Message::Hello(Hello {
                heartbeat_ms: HB,
                name: name.map(str::to_owned),
                route: Vec::new(),
            }),
        );
    }

    /// HELLO and its WELCOME.
    fn connect(&mut self, client: &[u8]) {
        self.hello(client, None);
        self.expect_welcome(Side::Frontend, client);
    }

    fn ready_hb(&mut self, worker: &[u8], types: &[u32], capacity: u32, heartbeat_ms: u32) {
        self.worker_sends(
            worker,
            Message::Ready(Ready {
                heartbeat_ms,
                capacity,
                request_types: types.to_vec(),
                name: None,
            }),
        );
    }

    fn ready(&mut self, worker: &[u8], types: &[u32], capacity: u32) {
        self.ready_hb(worker, types, capacity, HB);
    }

    /// READY and its WELCOME (dispatches of queued work may follow).
    fn connect_worker(&mut self, worker: &[u8], types: &[u32], capacity: u32) {
        self.ready(worker, types, capacity);
        self.expect_welcome(Side::Backend, worker);
    }

    fn request(&mut self, client: &[u8], t: u32, id: u64, flags: Flags, body: &[&[u8]]) {
        self.client_sends(client, Message::Request(req(t, id, flags, body)));
    }

    fn result(&mut self, worker: &[u8], t: u32, id: u64, status: Status, body: &[&[u8]]) {
        self.worker_sends(
            worker,
            Message::Result(WorkResult {
                request_type: t,
                request_id: id,
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

    fn expect_dispatch_to(&mut self, worker: &[u8]) -> Dispatch {
        match self.next_out("DISPATCH") {
            (Side::Backend, p, Message::Dispatch(d)) if p == worker => d,
            other => panic!(
                "expected DISPATCH to {}, got {}",
                name(worker),
                show(&other)
            ),
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
        match self.next_out("RESPONSE") {
            (Side::Frontend, p, Message::Response(r)) if p == client => r,
            other => panic!(
                "expected RESPONSE to {}, got {}",
                name(client),
                show(&other)
            ),
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

    fn expect_receipt_sent(&mut self, client: &[u8], t: u32, id: u64) -> RequestRef {
        match self.next_out("RECEIPT_SENT") {
            (Side::Frontend, p, Message::ReceiptSent(r)) if p == client => {
                assert_eq!((r.request_type, r.request_id), (t, id));
                r
            }
            other => panic!(
                "expected RECEIPT_SENT to {}, got {}",
                name(client),
                show(&other)
            ),
        }
    }

    fn expect_receipt_received(&mut self, client: &[u8], t: u32, id: u64) -> RequestRef {
        match self.next_out("RECEIPT_RECEIVED") {
            (Side::Frontend, p, Message::ReceiptReceived(r)) if p == client => {
                assert_eq!((r.request_type, r.request_id), (t, id));
                r
            }
            other => panic!(
                "expected RECEIPT_RECEIVED to {}, got {}",
                name(client),
                show(&other)
            ),
        }
    }

    fn expect_welcome(&mut self, side: Side, peer: &[u8]) {
        match self.next_out("WELCOME") {
            (s, p, Message::Welcome { heartbeat_ms }) if s == side && p == peer => {
                assert_eq!(heartbeat_ms, 1000, "the broker announces its own interval");
            }
            other => panic!("expected WELCOME to {}, got {}", name(peer), show(&other)),
        }
    }

    fn expect_reregister(&mut self, side: Side, peer: &[u8]) {
        match self.next_out("REREGISTER") {
            (s, p, Message::Reregister) if s == side && p == peer => {}
            other => panic!(
                "expected REREGISTER to {}, got {}",
                name(peer),
                show(&other)
            ),
        }
    }

    fn expect_heartbeat(&mut self, side: Side, peer: &[u8]) {
        match self.next_out("HEARTBEAT") {
            (s, p, Message::Heartbeat { heartbeat_ms }) if s == side && p == peer => {
                assert_eq!(heartbeat_ms, 1000, "the broker announces its own interval");
            }
            other => panic!("expected HEARTBEAT to {}, got {}", name(peer), show(&other)),
        }
    }

    fn expect_error(&mut self, side: Side, peer: &[u8]) -> ErrorReply {
        match self.next_out("ERROR") {
            (s, p, Message::Error(e)) if s == side && p == peer => e,
            other => panic!("expected ERROR to {}, got {}", name(peer), show(&other)),
        }
    }

    fn stats(&self) -> BrokerStats {
        self.core.stats()
    }

    fn type_stats(&self, t: u32) -> TypeStats {
        self.stats()
            .types
            .get(&t)
            .cloned()
            .unwrap_or_else(|| panic!("type {t} is not in the stats"))
    }
}

// ----- request / response ------------------------------------------------

#[test]
fn request_to_a_free_worker_is_dispatched_and_its_result_answered() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    // Unknown flag bits are preserved into DISPATCH.
    let flags = Flags::from_bits_retain(1 << 40);
    h.request(CA, 7, 1, flags, &[b"hello", b"", b"world"]);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.flags, flags);
    assert_eq!(frames(&d.payload), owned(&[b"hello", b"", b"world"]));
    h.expect_nothing();

    let s = h.stats();
    assert_eq!(
        (
            s.requests_received,
            s.requests_dispatched,
            s.requests_completed
        ),
        (1, 1, 0)
    );
    assert_eq!((s.pending, s.in_flight, s.workers, s.clients), (0, 1, 1, 1));
    assert_eq!(h.type_stats(7), ts(1, 1, 0, 0, 1, 1));

    h.result(W1, 7, 1, Status::Ok, &[b"answer", b"2"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"answer", b"2"]));
    assert!(r.route.is_empty());
    assert_eq!(r.error, None);
    h.expect_nothing();

    let s = h.stats();
    assert_eq!(
        (
            s.requests_received,
            s.requests_dispatched,
            s.requests_completed
        ),
        (1, 1, 1)
    );
    assert_eq!((s.pending, s.in_flight), (0, 0));
    assert_eq!(h.type_stats(7), ts(1, 1, 1, 0, 0, 1));
}

#[test]
fn failed_and_bad_request_results_keep_status_and_error() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[b"x"]);
    h.request(CA, 7, 2, Flags::empty(), &[b"y"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_dispatch(W1, 7, 2, 1);
    for (id, status) in [(1, Status::Failed), (2, Status::BadRequest)] {
        h.worker_sends(
            W1,
            Message::Result(WorkResult {
                request_type: 7,
                request_id: id,
                status,
                error: Some(format!("boom {id}")),
                payload: payload(&[b"partial"]),
            }),
        );
        let r = h.expect_status(CA, 7, id, status);
        assert_eq!(r.error.as_deref(), Some(format!("boom {id}").as_str()));
        assert_eq!(frames(&r.payload), owned(&[b"partial"]));
    }
    h.expect_nothing();
    assert_eq!(h.stats().requests_completed, 2);
}

#[test]
fn payload_frames_are_moved_not_copied() {
    // Large frames live on the heap inside the zmq message: moving the frame
    // keeps the data pointer, copying it would not.
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let body = Frame::from(&[0xAB_u8; 4096][..]);
    let body_ptr = body.as_ptr();
    h.client_sends(
        CA,
        Message::Request(Request {
            payload: vec![body],
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(
        d.payload[0].as_ptr(),
        body_ptr,
        "DISPATCH payload was copied"
    );

    let answer = Frame::from(&[0xCD_u8; 4096][..]);
    let answer_ptr = answer.as_ptr();
    h.worker_sends(
        W1,
        Message::Result(WorkResult {
            request_type: 7,
            request_id: 1,
            status: Status::Ok,
            error: None,
            payload: vec![answer],
        }),
    );
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(
        r.payload[0].as_ptr(),
        answer_ptr,
        "RESPONSE payload was copied"
    );
}

#[test]
fn request_id_zero_is_a_valid_id() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 0, Flags::empty(), &[b"zero"]);
    h.expect_dispatch(W1, 7, 0, 1);
    h.result(W1, 7, 0, Status::Ok, &[]);
    h.expect_status(CA, 7, 0, Status::Ok);
    h.expect_nothing();
}

// ----- queueing, LRU, round-robin, capacity ------------------------------

#[test]
fn requests_queue_without_worker_and_are_dispatched_fifo_on_ready() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    // Ids in non-sorted order: the queue is FIFO, not by id.
    h.request(CA, 7, 30, Flags::empty(), &[b"first"]);
    h.request(CB, 7, 10, Flags::empty(), &[b"second"]);
    h.request(CA, 7, 20, Flags::empty(), &[b"third"]);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight, s.requests_dispatched), (3, 0, 0));
    assert_eq!(h.type_stats(7), ts(3, 0, 0, 3, 0, 0));

    h.ready(W1, &[7], 3);
    h.expect_welcome(Side::Backend, W1);
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 30, 1).payload),
        owned(&[b"first"])
    );
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 10, 1).payload),
        owned(&[b"second"])
    );
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 20, 1).payload),
        owned(&[b"third"])
    );
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (0, 3));
    assert_eq!(h.type_stats(7), ts(3, 3, 0, 0, 3, 1));

    h.result(W1, 7, 10, Status::Ok, &[b"r10"]);
    h.expect_status(CB, 7, 10, Status::Ok);
    h.result(W1, 7, 30, Status::Ok, &[b"r30"]);
    h.expect_status(CA, 7, 30, Status::Ok);
    h.result(W1, 7, 20, Status::Ok, &[b"r20"]);
    h.expect_status(CA, 7, 20, Status::Ok);
    h.expect_nothing();
}

#[test]
fn queued_requests_of_other_types_are_not_given_to_a_worker() {
    let mut h = Harness::new();
    h.connect(CA);
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.connect_worker(W1, &[7], 1);
    h.expect_nothing();
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    assert_eq!(h.type_stats(8).pending, 1);
}

#[test]
fn capacity_one_worker_gets_queued_work_one_result_at_a_time() {
    let mut h = Harness::new();
    h.connect(CA);
    for id in 1..=3 {
        h.request(CA, 7, id, Flags::empty(), &[]);
    }
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
    h.result(W1, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    h.expect_dispatch(W1, 7, 3, 1);
    h.expect_nothing();
}

#[test]
fn least_recently_used_worker_gets_the_next_request() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.connect_worker(W2, &[7], 1);
    h.connect_worker(W3, &[7], 1);
    // Registration order first.
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_dispatch(W3, 7, 3, 1);
    // Complete in the order 2, 3, 1: that is the new LRU order.
    h.result(W2, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    h.result(W3, 7, 3, Status::Ok, &[]);
    h.expect_status(CA, 7, 3, Status::Ok);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
    h.request(CA, 7, 4, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 4, 1);
    h.request(CA, 7, 5, Flags::empty(), &[]);
    h.expect_dispatch(W3, 7, 5, 1);
    h.request(CA, 7, 6, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 6, 1);
    h.expect_nothing();
}

#[test]
fn lru_skips_workers_that_do_not_serve_the_type() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[8], 1);
    h.connect_worker(W2, &[7], 1);
    h.connect_worker(W3, &[7, 8], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W3, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn capacity_two_worker_spreads_between_lru_workers() {
    // A worker with free credits goes to the back of the LRU order after
    // each dispatch, so two capacity-2 workers alternate.
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.connect_worker(W2, &[7], 2);
    for (id, w) in [(1, W1), (2, W2), (3, W1), (4, W2)] {
        h.request(CA, 7, id, Flags::empty(), &[]);
        h.expect_dispatch(w, 7, id, 1);
    }
    h.request(CA, 7, 5, Flags::empty(), &[]);
    h.expect_nothing();
}

#[test]
fn a_worker_serving_several_types_is_served_round_robin() {
    let mut h = Harness::new();
    h.connect(CA);
    for t in [1, 2, 3] {
        for i in 0..3 {
            h.request(CA, t, u64::from(t) * 100 + i, Flags::empty(), &[]);
        }
    }
    h.expect_nothing();
    assert_eq!(h.stats().pending, 9);
    h.connect_worker(W1, &[3, 1, 2], 1);
    let mut served = Vec::new();
    for _ in 0..9 {
        let d = h.expect_dispatch_to(W1);
        h.expect_nothing();
        served.push((d.request_type, d.request_id));
        h.result(W1, d.request_type, d.request_id, Status::Ok, &[]);
        h.expect_status(CA, d.request_type, d.request_id, Status::Ok);
    }
    assert_eq!(
        served,
        vec![
            (1, 100),
            (2, 200),
            (3, 300),
            (1, 101),
            (2, 201),
            (3, 301),
            (1, 102),
            (2, 202),
            (3, 302)
        ]
    );
    h.expect_nothing();
    assert_eq!(h.stats().pending, 0);
}

#[test]
fn round_robin_continues_after_the_type_taken_last() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[1, 2, 3], 1);
    // Direct dispatch of a type 2 request moves the cursor to 2.
    h.request(CA, 2, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 2, 1, 1);
    h.request(CA, 1, 1, Flags::empty(), &[]);
    h.request(CA, 3, 1, Flags::empty(), &[]);
    h.request(CA, 2, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.result(W1, 2, 1, Status::Ok, &[]);
    h.expect_status(CA, 2, 1, Status::Ok);
    h.expect_dispatch(W1, 3, 1, 1);
    h.result(W1, 3, 1, Status::Ok, &[]);
    h.expect_status(CA, 3, 1, Status::Ok);
    h.expect_dispatch(W1, 1, 1, 1);
    h.result(W1, 1, 1, Status::Ok, &[]);
    h.expect_status(CA, 1, 1, Status::Ok);
    h.expect_dispatch(W1, 2, 2, 1);
    h.expect_nothing();
}

#[test]
fn a_worker_never_has_more_than_its_capacity_in_flight() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[b"third"]);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (1, 2));
    assert_eq!(h.type_stats(7), ts(3, 2, 0, 1, 2, 1));

    h.result(W1, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    let d = h.expect_dispatch(W1, 7, 3, 1);
    assert_eq!(frames(&d.payload), owned(&[b"third"]));
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (0, 2));
}

#[test]
fn results_not_assigned_to_the_worker_give_no_credit() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.connect_worker(W2, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 3, 1);
    // Everyone is full now.
    h.request(CA, 7, 4, Flags::empty(), &[]);
    h.request(CA, 7, 5, Flags::empty(), &[]);
    h.expect_nothing();

    // Unknown (type, id).
    h.result(W1, 7, 999, Status::Ok, &[]);
    h.expect_nothing();
    // Assigned to another worker.
    h.result(W1, 7, 2, Status::Ok, &[b"forged"]);
    h.expect_nothing();
    // A type the worker does not even serve.
    h.result(W1, 9, 1, Status::Ok, &[]);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(s.unknown_results, 3);
    assert_eq!(s.requests_completed, 0);
    assert_eq!((s.pending, s.in_flight), (2, 3));

    // W2's request is still in flight on W2 and completes normally.
    h.result(W2, 7, 2, Status::Ok, &[b"real"]);
    let r = h.expect_status(CA, 7, 2, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"real"]));
    h.expect_dispatch(W2, 7, 4, 1);
    h.expect_nothing();

    // A duplicate result is not a second completion either.
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_dispatch(W1, 7, 5, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
    h.request(CA, 7, 6, Flags::empty(), &[]);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(s.unknown_results, 4);
    assert_eq!((s.pending, s.in_flight, s.requests_completed), (1, 3, 2));
}

// ----- dedupe -------------------------------------------------------------

#[test]
fn duplicate_from_another_client_while_pending_is_rejected() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.request(CA, 7, 1, Flags::empty(), &[b"from-a"]);
    h.request(CB, 7, 1, Flags::empty(), &[b"from-b"]);
    let r = h.expect_status(CB, 7, 1, Status::Rejected);
    assert!(r.payload.is_empty());
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_rejected, s.pending), (1, 1));

    h.connect_worker(W1, &[7], 2);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(frames(&d.payload), owned(&[b"from-a"]));
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn duplicate_from_another_client_while_in_flight_is_rejected() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    // Even a one-way duplicate gets its refusal.
    h.request(CB, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_status(CB, 7, 1, Status::Rejected);
    h.expect_nothing();
    assert_eq!(h.stats().requests_dispatched, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn same_client_resend_while_pending_is_idempotent() {
    let mut h = Harness::new();
    h.connect(CA);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[b"original"]);
    // Not handed to a worker yet: no RECEIPT_SENT for the re-send either.
    h.request(
        CA,
        7,
        1,
        Flags::RECEIPT_ON_SEND | Flags::ONE_WAY,
        &[b"changed"],
    );
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.requests_resent, s.requests_rejected, s.pending),
        (1, 0, 1)
    );

    h.connect_worker(W1, &[7], 2);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    // Payload and flags are not replaced by a re-send.
    assert_eq!(frames(&d.payload), owned(&[b"original"]));
    assert_eq!(d.flags, Flags::RECEIPT_ON_SEND);
    h.expect_receipt_sent(CA, 7, 1);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    // Still two-way: the original flags won.
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn same_client_resend_while_in_flight_repeats_receipt_sent_only_when_asked() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_nothing();
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[]);
    h.expect_receipt_sent(CA, 7, 1);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (
            s.requests_resent,
            s.requests_dispatched,
            s.requests_rejected
        ),
        (2, 1, 0)
    );
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn a_completed_key_is_released_and_runs_again() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[b"one"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.request(CA, 7, 1, Flags::empty(), &[b"two"]);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(frames(&d.payload), owned(&[b"two"]));
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    // Another client may now use the key too.
    h.request(CB, 7, 1, Flags::empty(), &[b"three"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_nothing();
    assert_eq!(h.stats().requests_resent, 0);
}

#[test]
fn same_id_with_another_type_is_another_request() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7, 8], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CB, 8, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 8, 1, 1);
    h.expect_nothing();
}

// ----- one-way ------------------------------------------------------------

#[test]
fn one_way_result_frees_capacity_and_sends_nothing_to_the_client() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::ONE_WAY, &[b"fire"]);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.flags, Flags::ONE_WAY);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Failed, &[b"ignored"]);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_completed, s.pending, s.in_flight), (1, 0, 1));
    // The key is released.
    h.result(W1, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    h.request(CA, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_nothing();
}

// ----- bounds and FAIL_FAST -----------------------------------------------

#[test]
fn per_type_queue_bound_answers_overloaded() {
    let mut h = Harness::with_config(|c| c.max_pending_per_type = 2);
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.request(CA, 7, 3, Flags::empty(), &[]);
    let r = h.expect_status(CA, 7, 3, Status::Overloaded);
    assert!(r.error.is_some());
    // One-way requests get the refusal too.
    h.request(CA, 7, 4, Flags::ONE_WAY, &[]);
    h.expect_status(CA, 7, 4, Status::Overloaded);
    // Another type has its own bound.
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_overloaded, s.pending), (2, 3));
    assert_eq!(h.type_stats(7).pending, 2);

    // The refused key was not stored: once there is room it is accepted.
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.type_stats(7).pending, 2);
}

#[test]
fn total_queue_bound_answers_overloaded() {
    let mut h = Harness::with_config(|c| c.max_pending_total = 3);
    h.connect(CA);
    h.request(CA, 1, 1, Flags::empty(), &[]);
    h.request(CA, 2, 1, Flags::empty(), &[]);
    h.request(CA, 3, 1, Flags::empty(), &[]);
    h.expect_nothing();
    h.request(CA, 4, 1, Flags::empty(), &[]);
    h.expect_status(CA, 4, 1, Status::Overloaded);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_overloaded, s.pending), (1, 3));
    // The refused request left no type behind.
    assert!(!s.types.contains_key(&4));
}

#[test]
fn zero_bounds_still_dispatch_to_a_free_worker() {
    let mut h = Harness::with_config(|c| {
        c.max_pending_per_type = 0;
        c.max_pending_total = 0;
    });
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    // The worker is busy now: nothing may be queued.
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_status(CA, 7, 2, Status::Overloaded);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight, s.requests_overloaded), (0, 1, 1));
}

#[test]
fn fail_fast_without_worker_answers_no_workers() {
    let mut h = Harness::new();
    h.connect(CA);
    h.request(CA, 7, 1, Flags::FAIL_FAST, &[]);
    let r = h.expect_status(CA, 7, 1, Status::NoWorkers);
    assert!(r.payload.is_empty());
    h.request(CA, 7, 2, Flags::FAIL_FAST | Flags::ONE_WAY, &[]);
    h.expect_status(CA, 7, 2, Status::NoWorkers);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.requests_no_workers, s.pending, s.requests_received),
        (2, 0, 2)
    );
    assert!(s.types.is_empty(), "no type left behind: {:?}", s.types);

    // Without FAIL_FAST it queues.
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn fail_fast_queues_when_a_busy_worker_serves_the_type() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::FAIL_FAST, &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
}

#[test]
fn idle_types_are_dropped_from_stats() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[5], 1);
    h.request(CA, 5, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 5, 1, 1);
    h.result(W1, 5, 1, Status::Ok, &[]);
    h.expect_status(CA, 5, 1, Status::Ok);
    // Still listed while a worker serves it.
    assert_eq!(h.type_stats(5), ts(1, 1, 1, 0, 0, 1));
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    let s = h.stats();
    assert!(s.types.is_empty(), "{:?}", s.types);
    assert_eq!(s.workers, 0);

    // A type that was only refused never lingers either.
    h.request(CA, 6, 1, Flags::FAIL_FAST, &[]);
    h.expect_status(CA, 6, 1, Status::NoWorkers);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("nobody".into()),
            ..req(9, 1, Flags::empty(), &[])
        }),
    );
    h.expect_status(CA, 9, 1, Status::UnknownReplyTo);
    assert!(h.stats().types.is_empty());
}

#[test]
fn type_stays_listed_while_work_is_queued_or_in_flight() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[5], 1);
    h.request(CA, 5, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 5, 1, 1);
    h.request(CA, 5, 2, Flags::empty(), &[]);
    // The worker re-registers without type 5: its request stays in flight.
    h.ready(W1, &[6], 1);
    h.expect_welcome(Side::Backend, W1);
    h.expect_nothing();
    assert_eq!(h.type_stats(5), ts(2, 1, 0, 1, 1, 0));
    h.result(W1, 5, 1, Status::Ok, &[]);
    h.expect_status(CA, 5, 1, Status::Ok);
    // Type 5 is not served any more: the queued one stays queued.
    h.expect_nothing();
    assert_eq!(h.type_stats(5), ts(2, 1, 1, 1, 0, 0));
}

// ----- heartbeats and liveness --------------------------------------------

#[test]
fn broker_heartbeats_a_silent_worker_after_its_own_interval() {
    let mut h = Harness::new();
    h.connect_worker(W1, &[7], 1);
    h.tick_at(999);
    h.expect_nothing();
    h.tick_at(1000);
    h.expect_heartbeat(Side::Backend, W1);
    h.expect_nothing();
    h.worker_heartbeat(W1);
    h.tick_at(1999);
    h.expect_nothing();
    h.tick_at(2000);
    h.expect_heartbeat(Side::Backend, W1);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.heartbeats_sent, s.heartbeats_received), (2, 1));
}

#[test]
fn no_heartbeat_to_a_worker_while_dispatches_flow() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 10);
    for (i, at) in [600_u64, 1400, 2200, 3000].into_iter().enumerate() {
        h.at(at);
        h.worker_heartbeat(W1);
        h.client_heartbeat(CA);
        h.request(CA, 7, i as u64, Flags::empty(), &[]);
        h.expect_dispatch(W1, 7, i as u64, 1);
        h.tick_at(at + 399);
        // Only the client (which received nothing) is heartbeated.
        for o in h.take() {
            assert!(
                o.0 == Side::Frontend && matches!(o.2, Message::Heartbeat { .. }),
                "{}",
                show(&o)
            );
        }
    }
    h.tick_at(3999);
    assert!(
        h.take().iter().all(|o| o.0 == Side::Frontend),
        "the worker got something at 3999"
    );
    h.tick_at(4000);
    h.expect_heartbeat(Side::Backend, W1);
}

#[test]
fn broker_heartbeats_a_silent_client_after_its_own_interval() {
    let mut h = Harness::new();
    h.connect(CA);
    h.tick_at(999);
    h.expect_nothing();
    h.tick_at(1000);
    h.expect_heartbeat(Side::Frontend, CA);
    h.expect_nothing();
}

#[test]
fn no_heartbeat_to_a_client_while_responses_flow() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.at(100);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.at(900);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.tick_at(1000);
    // The worker got a DISPATCH at 100, the client a RESPONSE at 900.
    h.expect_nothing();
    h.tick_at(1899);
    h.expect_heartbeat(Side::Backend, W1);
    h.expect_nothing();
    h.tick_at(1900);
    h.expect_heartbeat(Side::Frontend, CA);
}

#[test]
fn a_silent_worker_is_declared_dead_after_liveness_times_its_interval() {
    let mut h = Harness::new();
    h.connect(CA);
    h.ready_hb(W1, &[7], 1, 500);
    h.expect_welcome(Side::Backend, W1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.at(1000);
    h.client_heartbeat(CA);
    // liveness 3 x 500 ms: alive at exactly 1500, dead just after.
    h.tick_at(1500);
    assert!(
        h.take()
            .iter()
            .all(|o| matches!(o.2, Message::Heartbeat { .. })),
        "nothing but heartbeats at the bound"
    );
    assert_eq!((h.stats().workers, h.stats().worker_deaths), (1, 0));
    h.tick_at(1501);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.workers, s.worker_deaths, s.requests_worker_death),
        (0, 1, 1)
    );
    assert_eq!(s.in_flight, 0);
    assert!(s.types.is_empty());
    // It is unknown now.
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
}

#[test]
fn a_result_from_a_worker_refreshes_its_liveness() {
    let mut h = Harness::new();
    h.connect_worker(W1, &[7], 1);
    h.connect(CA);
    h.at(2000);
    h.client_heartbeat(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.at(2900);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.at(4500);
    h.client_heartbeat(CA);
    h.tick_at(5900);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1, "heard at 2900: alive until 5900");
    h.tick_at(5901);
    let _ = h.take();
    assert_eq!(h.stats().workers, 0);
}

/// What a peer sends that is not a sign of life (protocol.md §7.2): a header
/// that does not parse, a wrong major version, an ERROR, and a valid message
/// of a kind the socket does not take. `other_kind` is that last one.
fn no_sign_of_life(other_kind: Message) -> Vec<(Vec<u8>, Payload)> {
    vec![
        (vec![0xFF, 0xFF], Payload::new()),
        (
            with_major(Message::Heartbeat { heartbeat_ms: 0 }, 2),
            Payload::new(),
        ),
        encode(Message::Error(ErrorReply {
            error: "cannot read that".into(),
            request: None,
        })),
        encode(other_kind),
    ]
}

#[test]
fn only_valid_messages_the_backend_takes_keep_a_worker_alive() {
    let mut h = Harness::new();
    h.connect_worker(W1, &[7], 1);
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    // From 1000 ms on, W1 sends only what is no sign of life: it was last
    // heard at 0 (READY), so it is dead after 3 x 1000 ms all the same.
    let welcome = Message::Welcome { heartbeat_ms: HB };
    for (i, (header, body)) in no_sign_of_life(welcome).into_iter().enumerate() {
        h.at(1000 + 500 * i as u64);
        h.backend_raw(W1, &header, body);
    }
    h.client_heartbeat(CA);
    let answers = h.take();
    assert_eq!(answers.len(), 3, "the ERROR is not answered");
    assert!(answers.iter().all(|o| matches!(o.2, Message::Error(_))));
    h.tick_at(3000);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1);
    h.tick_at(3001);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    assert_eq!(h.stats().worker_deaths, 1);
}

#[test]
fn only_valid_messages_the_frontend_takes_keep_a_client_alive() {
    let mut h = Harness::new();
    h.connect(CA);
    let ready = Message::Ready(Ready {
        heartbeat_ms: HB,
        capacity: 1,
        request_types: vec![7],
        name: None,
    });
    let mut inputs = no_sign_of_life(ready);
    // STATS_QUERY is outside any session (§4), and a REQUEST whose payload
    // is both inline and in a frame is malformed.
    inputs.push(encode(Message::StatsQuery));
    let (header, _) = encode(Message::Request(req(7, 1, Flags::empty(), &[b"a"])));
    inputs.push((header, payload(&[b"b"])));
    for (i, (header, body)) in inputs.into_iter().enumerate() {
        h.at(1000 + 300 * i as u64);
        h.frontend_raw(CA, &header, body);
    }
    let _ = h.take();
    h.tick_at(3000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.tick_at(3001);
    let _ = h.take();
    let s = h.stats();
    assert_eq!((s.clients, s.client_deaths), (0, 1));
}

#[test]
fn a_worker_heartbeat_can_announce_a_new_interval() {
    let mut h = Harness::new();
    h.connect_worker(W1, &[7], 1);
    h.worker_sends(W1, Message::Heartbeat { heartbeat_ms: 100 });
    h.tick_at(300);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1);
    h.tick_at(301);
    let _ = h.take();
    assert_eq!((h.stats().workers, h.stats().worker_deaths), (0, 1));
}

#[test]
fn next_tick_follows_the_shortest_interval() {
    let mut h = Harness::new();
    assert_eq!(h.core.next_tick(), h.t0 + Duration::from_millis(500));
    h.ready_hb(W1, &[7], 1, 200);
    h.tick_at(10);
    assert_eq!(h.core.next_tick(), h.t0 + Duration::from_millis(110));
}

#[test]
fn a_silent_client_is_forgotten_after_liveness_times_its_interval() {
    let mut h = Harness::new();
    h.client_sends(
        CA,
        Message::Hello(Hello {
            heartbeat_ms: 200,
            name: Some("alice".into()),
            route: Vec::new(),
        }),
    );
    h.expect_welcome(Side::Frontend, CA);
    h.connect(CB);
    h.tick_at(600);
    h.expect_nothing();
    assert_eq!(h.stats().clients, 2);
    h.tick_at(601);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.clients, s.client_deaths), (1, 1));
    // Its name is released.
    h.client_sends(
        CB,
        Message::Request(Request {
            reply_to: Some("alice".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_status(CB, 7, 1, Status::UnknownReplyTo);
    // And it is unknown: a heartbeat asks it to greet again.
    h.client_heartbeat(CA);
    h.expect_reregister(Side::Frontend, CA);
}

#[test]
fn a_client_heartbeat_can_announce_a_new_interval() {
    let mut h = Harness::new();
    h.connect(CA);
    h.client_sends(CA, Message::Heartbeat { heartbeat_ms: 5000 });
    h.tick_at(14_000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.client_heartbeat(CA);
    h.tick_at(29_000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.tick_at(29_001);
    let _ = h.take();
    assert_eq!(h.stats().clients, 0);
}

// ----- worker death -------------------------------------------------------

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

#[test]
fn worker_death_answers_two_way_requests_with_worker_death() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 3);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::ONE_WAY, &[]);
    h.expect_dispatch(W1, 7, 2, 1);
    h.request(CA, 7, 3, Flags::ONE_WAY | Flags::NOTIFY_ON_DEATH, &[]);
    h.expect_dispatch(W1, 7, 3, 1);
    h.request(CA, 8, 1, Flags::empty(), &[]); // queued, unaffected
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    let mut got: Vec<(u64, Status)> = h
        .take()
        .into_iter()
        .map(|o| match o {
            (Side::Frontend, p, Message::Response(r)) if p == CA => {
                assert!(r.payload.is_empty());
                (r.request_id, r.status)
            }
            other => panic!("unexpected {}", show(&other)),
        })
        .collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        vec![(1, Status::WorkerDeath), (3, Status::WorkerDeath)]
    );
    let s = h.stats();
    assert_eq!(s.worker_deaths, 1);
    assert_eq!(s.requests_worker_death, 2);
    assert_eq!(s.requests_dropped_on_death, 1);
    assert_eq!((s.pending, s.in_flight), (1, 0));
    // All three keys are released.
    h.connect_worker(W2, &[7], 3);
    for id in 1..=3 {
        h.request(CA, 7, id, Flags::empty(), &[]);
        h.expect_dispatch(W2, 7, id, 1);
    }
    h.expect_nothing();
}

#[test]
fn worker_death_with_retry_redispatches_to_another_worker() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let flags = Flags::RETRY_ON_DEATH | Flags::RECEIPT_ON_SEND;
    h.request(CA, 7, 1, flags, &[b"frame-1", b"", b"frame-3"]);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.flags, flags);
    h.expect_receipt_sent(CA, 7, 1);
    h.connect_worker(W2, &[7], 1);
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    let d = h.expect_dispatch(W2, 7, 1, 2);
    assert_eq!(d.flags, flags);
    assert_eq!(frames(&d.payload), owned(&[b"frame-1", b"", b"frame-3"]));
    // No second RECEIPT_SENT, no response.
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.requests_retried, s.requests_dispatched, s.worker_deaths),
        (1, 2, 1)
    );
    assert_eq!(h.type_stats(7), ts(1, 2, 0, 0, 1, 1));

    // The dead worker's late result (after re-registering) is not a completion.
    h.connect_worker(W1, &[8], 1);
    h.result(W1, 7, 1, Status::Ok, &[b"late"]);
    h.expect_nothing();
    assert_eq!(h.stats().unknown_results, 1);

    h.result(W2, 7, 1, Status::Ok, &[b"done"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"done"]));
    h.expect_nothing();
}

#[test]
fn a_second_death_exhausts_max_tries() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RETRY_ON_DEATH, &[b"p"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_dispatch(W2, 7, 1, 2);
    h.expect_nothing();
    h.connect_worker(W3, &[7], 1);
    kill_by_silence(&mut h, W2, &[W3], &[CA]);
    // max_tries = 2: no third dispatch.
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.requests_retried, s.requests_worker_death, s.worker_deaths),
        (1, 1, 2)
    );
    assert_eq!((s.pending, s.in_flight), (0, 0));
}

#[test]
fn max_tries_is_configurable() {
    let mut h = Harness::with_config(|c| c.max_tries = 3);
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RETRY_ON_DEATH | Flags::ONE_WAY, &[b"p"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_dispatch(W2, 7, 1, 2);
    h.connect_worker(W3, &[7], 1);
    kill_by_silence(&mut h, W2, &[W3], &[CA]);
    let d = h.expect_dispatch(W3, 7, 1, 3);
    assert_eq!(frames(&d.payload), owned(&[b"p"]));
    h.connect_worker(W1, &[7], 1);
    kill_by_silence(&mut h, W3, &[W1], &[CA]);
    // One-way without NOTIFY_ON_DEATH: dropped silently.
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_retried, s.requests_dropped_on_death), (2, 1));
}

#[test]
fn retry_with_max_tries_one_is_a_plain_death() {
    let mut h = Harness::with_config(|c| c.max_tries = 1);
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RETRY_ON_DEATH, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    assert_eq!(h.stats().requests_retried, 0);
}

#[test]
fn a_retried_request_goes_to_the_head_of_its_queue() {
    let mut h = Harness::with_config(|c| c.max_pending_per_type = 2);
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RETRY_ON_DEATH, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_nothing();
    // Queue bounds do not apply to a retry.
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (3, 0));
    h.connect_worker(W2, &[7], 3);
    h.expect_dispatch(W2, 7, 1, 2);
    h.expect_dispatch(W2, 7, 2, 1);
    h.expect_dispatch(W2, 7, 3, 1);
    h.expect_nothing();
}

#[test]
fn worker_death_goes_to_the_reply_to_destination() {
    let mut h = Harness::new();
    h.connect(CA);
    h.hello(CB, Some("bob"));
    h.expect_welcome(Side::Frontend, CB);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    kill_by_silence(&mut h, W1, &[], &[CA, CB]);
    h.expect_status(CB, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
}

// ----- unknown peers ------------------------------------------------------

#[test]
fn messages_from_an_unknown_worker_ask_it_to_reregister() {
    let mut h = Harness::new();
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
    h.result(W1, 7, 1, Status::Ok, &[b"x"]);
    h.expect_reregister(Side::Backend, W1);
    h.receipt_received(W1, 7, 1);
    h.expect_reregister(Side::Backend, W1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.unknown_workers, s.workers), (3, 0));
    assert_eq!(s.malformed_backend, 0);
    h.connect_worker(W1, &[7], 1);
    assert_eq!(h.stats().workers, 1);
}

#[test]
fn a_request_from_an_unknown_client_is_processed_and_reregister_sent() {
    let mut h = Harness::new();
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[b"x"]);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    h.expect_nothing();
    // Known from now on: no second REREGISTER.
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
}

#[test]
fn a_heartbeat_from_an_unknown_client_asks_it_to_reregister() {
    let mut h = Harness::new();
    h.client_heartbeat(CA);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_nothing();
    // core.rs also registers it (with the broker's interval), where
    // protocol.md §13.2 keeps it Unknown: reported as a mismatch.
    assert_eq!(h.stats().clients, 1);
    h.client_heartbeat(CA);
    h.expect_nothing();
    // A DISCONNECT from an unknown client is ignored.
    h.client_sends(CB, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
}

// ----- re-registration and DISCONNECT ------------------------------------

#[test]
fn ready_again_keeps_in_flight_requests_and_updates_the_registration() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.request(CA, 7, 4, Flags::empty(), &[]);
    h.expect_nothing();

    // Capacity 3 and one more type: exactly one free credit (3 - 2).
    h.ready(W1, &[7, 8, 8], 3);
    h.expect_welcome(Side::Backend, W1);
    let d = h.expect_dispatch_to(W1);
    assert_eq!((d.request_type, d.request_id, d.attempt), (8, 1, 1));
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.workers, s.workers_registered, s.in_flight, s.pending),
        (1, 1, 3, 2)
    );
    assert_eq!(h.type_stats(8), ts(1, 1, 0, 0, 1, 1));
    assert_eq!(h.type_stats(7).workers, 1);

    // The old in-flight requests complete normally.
    h.result(W1, 7, 1, Status::Ok, &[b"one"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"one"]));
    h.expect_dispatch(W1, 7, 3, 1);
    h.expect_nothing();
    assert_eq!(h.stats().unknown_results, 0);

    // Capacity down to 1 with 3 in flight: no work until below 1.
    h.ready(W1, &[7, 8], 1);
    h.expect_welcome(Side::Backend, W1);
    h.expect_nothing();
    h.result(W1, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    h.result(W1, 8, 1, Status::Ok, &[]);
    h.expect_status(CA, 8, 1, Status::Ok);
    h.expect_nothing();
    h.result(W1, 7, 3, Status::Ok, &[]);
    h.expect_status(CA, 7, 3, Status::Ok);
    h.expect_dispatch(W1, 7, 4, 1);
    h.expect_nothing();
}

#[test]
fn disconnect_with_work_in_flight_drains_the_worker() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::RETRY_ON_DEATH, &[]);
    h.expect_dispatch(W1, 7, 2, 1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().workers, 1);
    // No new work for it, even once it has a free credit again.
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[b"r1"]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
    assert_eq!(h.stats().workers, 1);
    h.result(W1, 7, 2, Status::Failed, &[]);
    h.expect_status(CA, 7, 2, Status::Failed);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.workers, s.worker_deaths, s.requests_worker_death),
        (0, 0, 0)
    );
    assert_eq!((s.pending, s.in_flight), (1, 0));
    // Gone: a heartbeat gets REREGISTER.
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
    // Another worker picks up the queued request.
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch(W2, 7, 3, 1);
    h.expect_nothing();
}

#[test]
fn a_draining_worker_with_free_credit_gets_no_new_work() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 3);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    // The draining worker still counts as serving the type for FAIL_FAST:
    // the request queues instead of getting NO_WORKERS.
    h.request(CA, 7, 3, Flags::FAIL_FAST, &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 2);
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch(W2, 7, 2, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
    // W1 is gone; W2 carries on with the queue.
    assert_eq!(h.stats().workers, 1);
    h.result(W2, 7, 2, Status::Ok, &[]);
    h.expect_status(CA, 7, 2, Status::Ok);
    h.expect_dispatch(W2, 7, 3, 1);
    h.expect_nothing();
}

#[test]
fn a_draining_worker_that_goes_silent_dies() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    assert_eq!(h.stats().workers, 0);
}

#[test]
fn ready_after_disconnect_cancels_draining() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.ready(W1, &[7], 2);
    h.expect_welcome(Side::Backend, W1);
    h.expect_dispatch(W1, 7, 2, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
    assert_eq!(h.stats().workers, 1);
}

#[test]
fn disconnect_from_an_idle_worker_removes_it_at_once() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.connect_worker(W2, &[7], 1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.workers, s.worker_deaths), (1, 0));
    assert_eq!(h.type_stats(7).workers, 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 1, 1);
    h.expect_nothing();
}

#[test]
fn client_disconnect_forgets_it_and_its_name() {
    let mut h = Harness::new();
    h.hello(CA, Some("alice"));
    h.expect_welcome(Side::Frontend, CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.client_sends(CA, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    h.client_sends(
        CB,
        Message::Request(Request {
            reply_to: Some("alice".into()),
            ..req(7, 2, Flags::empty(), &[])
        }),
    );
    h.expect_status(CB, 7, 2, Status::UnknownReplyTo);
    // The admitted request is not cancelled; its response is still
    // addressed to the routing id (the ROUTER delivers it if the client
    // comes back, or refuses it and the driver counts it undeliverable).
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
}

#[test]
fn response_reaches_a_client_that_reconnected_with_the_same_routing_id() {
    let mut h = Harness::new();
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.client_sends(CA, Message::Disconnect { route: Vec::new() });
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.result(W1, 7, 1, Status::Ok, &[b"late"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"late"]));
    assert_eq!(h.stats().undeliverable, 0);
}

#[test]
fn resend_after_the_client_was_forgotten_is_still_the_same_origin() {
    let mut h = Harness::new();
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.tick_at(3001);
    let _ = h.take();
    assert_eq!(h.stats().clients, 0);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_nothing();
    assert_eq!(h.stats().requests_rejected, 0);
}

// ----- receipts -----------------------------------------------------------

#[test]
fn receipt_sent_follows_the_dispatch() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    let r = h.expect_receipt_sent(CA, 7, 1);
    assert!(r.route.is_empty());
    h.expect_nothing();
    // Queued: the receipt comes when it is dispatched, not before.
    h.request(CA, 7, 2, Flags::RECEIPT_ON_SEND | Flags::ONE_WAY, &[]);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_receipt_sent(CA, 7, 2);
    h.expect_nothing();
}

#[test]
fn receipt_received_is_forwarded_only_when_asked_and_from_the_assigned_worker() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 2);
    h.connect_worker(W2, &[7], 1);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_RECEIVE, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 2, 1);
    h.expect_nothing();
    // From another worker: dropped.
    h.receipt_received(W2, 7, 1);
    h.expect_nothing();
    // From the assigned worker: forwarded to the origin.
    h.receipt_received(W1, 7, 1);
    let r = h.expect_receipt_received(CA, 7, 1);
    assert!(r.route.is_empty());
    h.expect_nothing();
    // Not asked for: dropped.
    h.receipt_received(W2, 7, 2);
    h.expect_nothing();
    // Unknown request: dropped.
    h.receipt_received(W1, 7, 42);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(s.requests_completed, 1);
    assert_eq!(s.malformed_backend, 0);
}

#[test]
fn resend_repeats_receipt_received_only_once_the_worker_sent_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect_worker(W1, &[7], 1);
    let routed = |flags| {
        Message::Request(Request {
            route: b"r1".to_vec(),
            ..req(7, 1, flags, &[])
        })
    };
    h.client_sends(PROXY, routed(Flags::RECEIPT_ON_RECEIVE));
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_nothing();
    // Not received yet: a re-send earns nothing.
    h.client_sends(PROXY, routed(Flags::RECEIPT_ON_RECEIVE));
    h.expect_nothing();
    h.receipt_received(W1, 7, 1);
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"r1");
    h.expect_nothing();
    // Received: a re-send asking for it gets it again, both receipts in order.
    h.client_sends(
        PROXY,
        routed(Flags::RECEIPT_ON_RECEIVE | Flags::RECEIPT_ON_SEND),
    );
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"r1");
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"r1");
    h.expect_nothing();
    // A re-send not asking for it gets nothing.
    h.client_sends(PROXY, routed(Flags::empty()));
    h.expect_nothing();
    assert_eq!(h.stats().requests_resent, 3);
}

#[test]
fn a_retry_must_be_received_again_before_receipt_received_is_repeated() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let flags = Flags::RECEIPT_ON_RECEIVE | Flags::RETRY_ON_DEATH;
    h.request(CA, 7, 1, flags, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_dispatch(W2, 7, 1, 2);
    h.expect_nothing();
    h.request(CA, 7, 1, flags, &[]);
    h.expect_nothing();
    h.receipt_received(W2, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.request(CA, 7, 1, flags, &[]);
    h.expect_receipt_received(CA, 7, 1);
    h.expect_nothing();
}

// ----- redirect -----------------------------------------------------------

#[test]
fn takeover_of_an_in_flight_request_hands_over_the_earned_receipts() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect(CC);
    h.connect_worker(W1, &[7], 1);
    let flags = Flags::ALLOW_REDIRECT | Flags::RECEIPT_ON_RECEIVE | Flags::ONE_WAY;
    h.request(CA, 7, 1, flags, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    // Not received yet: B gets only what it asked and was earned.
    h.request(CB, 7, 1, flags | Flags::RECEIPT_ON_SEND, &[]);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CB, 7, 1);
    h.request(CC, 7, 1, Flags::RECEIPT_ON_RECEIVE, &[]);
    h.expect_receipt_received(CC, 7, 1);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CC, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn takeover_of_a_retried_pending_request_gets_receipt_sent_on_dispatch() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    let flags = Flags::ALLOW_REDIRECT | Flags::RETRY_ON_DEATH | Flags::RECEIPT_ON_SEND;
    h.request(CA, 7, 1, flags, &[b"a"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    kill_by_silence(&mut h, W1, &[], &[CA, CB]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    h.request(CB, 7, 1, Flags::RECEIPT_ON_SEND | Flags::ONE_WAY, &[b"b"]);
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_nothing();
    h.connect_worker(W2, &[7], 1);
    let d = h.expect_dispatch(W2, 7, 1, 2);
    assert_eq!(frames(&d.payload), owned(&[b"b"]));
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
}

#[test]
fn takeover_then_retry_sends_receipt_sent_once() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::ALLOW_REDIRECT, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(
        CB,
        7,
        1,
        Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH,
        &[b"b"],
    );
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA, CB]);
    h.expect_dispatch(W2, 7, 1, 2);
    h.expect_nothing();
}

#[test]
fn takeover_of_a_pending_request_replaces_origin_flags_and_payload() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.request(CA, 7, 0, Flags::empty(), &[b"before"]);
    let flags_a = Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT | Flags::RECEIPT_ON_SEND;
    h.request(CA, 7, 1, flags_a, &[b"from-a"]);
    h.request(CA, 7, 2, Flags::empty(), &[b"after"]);
    let flags_b = Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
    h.request(CB, 7, 1, flags_b, &[b"from-b"]);
    let r = h.expect_status(CA, 7, 1, Status::Redirected);
    assert!(r.payload.is_empty());
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.requests_redirected, s.requests_rejected, s.pending),
        (1, 0, 3)
    );

    // Queue position kept; payload and flags replaced.
    h.connect_worker(W1, &[7], 3);
    h.expect_dispatch(W1, 7, 0, 1);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.flags, flags_b);
    assert_eq!(frames(&d.payload), owned(&[b"from-b"]));
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CB, 7, 1);
    h.result(W1, 7, 1, Status::Ok, &[b"answer"]);
    h.expect_status(CB, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn takeover_of_an_in_flight_request_moves_the_response() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    let flags_a = Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT | Flags::RECEIPT_ON_SEND;
    h.request(CA, 7, 1, flags_a, &[b"a"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    h.request(CB, 7, 1, Flags::RECEIPT_ON_SEND, &[b"b"]);
    // Nothing goes to the worker; A is told, B gets its receipt at once.
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    assert_eq!(h.stats().requests_dispatched, 1);
    // B's flags have no ALLOW_REDIRECT: a third requester is rejected.
    h.connect(CC);
    h.request(CC, 7, 1, Flags::empty(), &[]);
    h.expect_status(CC, 7, 1, Status::Rejected);
    // A re-send from A is now "another origin" too.
    h.request(CA, 7, 1, flags_a, &[]);
    h.expect_status(CA, 7, 1, Status::Rejected);
    h.result(W1, 7, 1, Status::Ok, &[b"r"]);
    let r = h.expect_status(CB, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"r"]));
    h.expect_nothing();
}

#[test]
fn takeover_by_a_one_way_request_sends_no_outcome() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(
        CA,
        7,
        1,
        Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT,
        &[],
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CB, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
}

#[test]
fn one_way_first_requester_without_notify_on_redirect_hears_nothing() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::ALLOW_REDIRECT | Flags::ONE_WAY, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CB, 7, 1, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.stats().requests_redirected, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CB, 7, 1, Status::Ok);
    h.expect_nothing();
}

/// protocol.md §5/§6 say REDIRECTED goes to the previous requester only if
/// its flags had NOTIFY_ON_REDIRECT. core.rs deliberately sends it to every
/// two-way previous requester as well (so that it never waits forever).
/// This test pins the code's behaviour; the mismatch is reported.
#[test]
fn two_way_first_requester_without_notify_on_redirect_is_told_redirected() {
    for pending in [true, false] {
        let mut h = Harness::new();
        h.connect(CA);
        h.connect(CB);
        h.request(CA, 7, 1, Flags::ALLOW_REDIRECT, &[]);
        if !pending {
            h.connect_worker(W1, &[7], 1);
            h.expect_dispatch(W1, 7, 1, 1);
        }
        h.request(CB, 7, 1, Flags::empty(), &[]);
        h.expect_status(CA, 7, 1, Status::Redirected);
        h.expect_nothing();
    }
}

#[test]
fn takeover_with_retry_on_death_uses_the_new_payload_for_a_retry() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::ALLOW_REDIRECT | Flags::ONE_WAY, &[b"old"]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CB, 7, 1, Flags::RETRY_ON_DEATH, &[b"new"]);
    h.expect_nothing();
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA, CB]);
    let d = h.expect_dispatch(W2, 7, 1, 2);
    assert_eq!(frames(&d.payload), owned(&[b"new"]));
    h.expect_nothing();
    h.result(W2, 7, 1, Status::Ok, &[]);
    h.expect_status(CB, 7, 1, Status::Ok);
    h.expect_nothing();
}

#[test]
fn redirected_goes_to_the_previous_origin_and_the_outcome_to_the_new_destination() {
    let mut h = Harness::new();
    h.connect(CA);
    h.hello(CB, Some("bob"));
    h.expect_welcome(Side::Frontend, CB);
    h.hello(CC, Some("carol"));
    h.expect_welcome(Side::Frontend, CC);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(7, 1, Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT, &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    // CB takes over, sending the response to carol.
    h.client_sends(
        CB,
        Message::Request(Request {
            reply_to: Some("carol".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[b"c"]);
    h.expect_status(CC, 7, 1, Status::Ok);
    h.expect_nothing();
}

// ----- reply_to -----------------------------------------------------------

#[test]
fn hello_again_updates_interval_and_name_and_is_welcomed_again() {
    let mut h = Harness::new();
    h.hello(CA, Some("alice"));
    h.expect_welcome(Side::Frontend, CA);
    h.client_sends(
        CA,
        Message::Hello(Hello {
            heartbeat_ms: 100,
            name: Some("alicia".into()),
            route: Vec::new(),
        }),
    );
    h.expect_welcome(Side::Frontend, CA);
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CB,
        Message::Request(Request {
            reply_to: Some("alicia".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    // The new interval (100 ms x 3) applies.
    h.at(250);
    h.client_heartbeat(CB);
    h.worker_heartbeat(W1);
    h.tick_at(301);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1, "client-a forgotten, client-b kept");
    assert_eq!(h.stats().client_deaths, 1);
}

#[test]
fn reply_to_sends_the_response_to_the_named_client_and_receipts_to_the_sender() {
    let mut h = Harness::new();
    h.connect(CA);
    h.hello(CB, Some("bob"));
    h.expect_welcome(Side::Frontend, CB);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(
                7,
                1,
                Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
                &[b"q"],
            )
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.result(W1, 7, 1, Status::Ok, &[b"for-bob"]);
    let r = h.expect_status(CB, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"for-bob"]));
    h.expect_nothing();
}

#[test]
fn unknown_reply_to_is_refused() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("nobody".into()),
            ..req(7, 1, Flags::ONE_WAY, &[])
        }),
    );
    let r = h.expect_status(CA, 7, 1, Status::UnknownReplyTo);
    assert!(r.error.is_some());
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_unknown_reply_to, s.requests_dispatched), (1, 0));
}

#[test]
fn a_later_hello_with_the_same_name_rebinds_it() {
    let mut h = Harness::new();
    h.connect(CA);
    h.hello(CB, Some("bob"));
    h.expect_welcome(Side::Frontend, CB);
    h.hello(CC, Some("bob"));
    h.expect_welcome(Side::Frontend, CC);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CC, 7, 1, Status::Ok);
    h.expect_nothing();
    // CB leaving does not release the name CC now holds.
    h.client_sends(CB, Message::Disconnect { route: Vec::new() });
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(7, 2, Flags::empty(), &[])
        }),
    );
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
}

// ----- proxies ------------------------------------------------------------

#[test]
fn route_is_echoed_on_receipts_and_responses() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        PROXY,
        Message::Request(Request {
            route: b"route-1".to_vec(),
            ..req(
                7,
                1,
                Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
                &[b"q"],
            )
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"route-1");
    h.receipt_received(W1, 7, 1);
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"route-1");
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(h.expect_status(PROXY, 7, 1, Status::Ok).route, b"route-1");
    // Refusals echo the route too.
    h.client_sends(
        PROXY,
        Message::Request(Request {
            route: b"route-2".to_vec(),
            ..req(8, 1, Flags::FAIL_FAST, &[])
        }),
    );
    assert_eq!(
        h.expect_status(PROXY, 8, 1, Status::NoWorkers).route,
        b"route-2"
    );
    h.expect_nothing();
}

#[test]
fn different_routes_of_one_proxy_are_different_origins() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect_worker(W1, &[7], 1);
    let routed = |route: &[u8], flags| {
        Message::Request(Request {
            route: route.to_vec(),
            ..req(7, 1, flags, &[])
        })
    };
    h.client_sends(PROXY, routed(b"r1", Flags::empty()));
    h.expect_dispatch(W1, 7, 1, 1);
    h.client_sends(PROXY, routed(b"r2", Flags::empty()));
    let r = h.expect_status(PROXY, 7, 1, Status::Rejected);
    assert_eq!(r.route, b"r2");
    // The same route again is an idempotent re-send.
    h.client_sends(PROXY, routed(b"r1", Flags::RECEIPT_ON_SEND));
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"r1");
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.requests_rejected, s.requests_resent), (1, 1));
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(h.expect_status(PROXY, 7, 1, Status::Ok).route, b"r1");
    h.expect_nothing();
}

#[test]
fn routed_hello_binds_a_name_without_welcome_and_routed_disconnect_releases_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect(CA);
    h.client_sends(
        PROXY,
        Message::Hello(Hello {
            heartbeat_ms: HB,
            name: Some("dave".into()),
            route: b"dave-route".to_vec(),
        }),
    );
    h.expect_nothing();
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("dave".into()),
            ..req(7, 1, Flags::RECEIPT_ON_SEND, &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    assert!(h.expect_receipt_sent(CA, 7, 1).route.is_empty());
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(
        h.expect_status(PROXY, 7, 1, Status::Ok).route,
        b"dave-route"
    );
    h.expect_nothing();

    h.client_sends(
        PROXY,
        Message::Disconnect {
            route: b"dave-route".to_vec(),
        },
    );
    h.expect_nothing();
    assert_eq!(h.stats().clients, 2, "the proxy itself stays");
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("dave".into()),
            ..req(7, 2, Flags::empty(), &[])
        }),
    );
    h.expect_status(CA, 7, 2, Status::UnknownReplyTo);
    h.expect_nothing();
}

#[test]
fn proxy_disconnect_forgets_every_name_registered_through_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect(CA);
    for (name, route) in [("dave", b"r-dave"), ("erin", b"r-erin")] {
        h.client_sends(
            PROXY,
            Message::Hello(Hello {
                heartbeat_ms: HB,
                name: Some(name.into()),
                route: route.to_vec(),
            }),
        );
    }
    h.expect_nothing();
    h.client_sends(PROXY, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    for (id, name) in [(1, "dave"), (2, "erin")] {
        h.client_sends(
            CA,
            Message::Request(Request {
                reply_to: Some(name.into()),
                ..req(7, id, Flags::empty(), &[])
            }),
        );
        h.expect_status(CA, 7, id, Status::UnknownReplyTo);
    }
    h.expect_nothing();
}

// ----- malformed input ----------------------------------------------------

/// Header bytes of `msg` with `major` rewritten (the first field is `08 01`).
fn with_major(msg: Message, major: u8) -> Vec<u8> {
    let (mut header, _) = encode(msg);
    assert_eq!(&header[..2], &[0x08, 0x01]);
    header[1] = major;
    header
}

/// A valid request/result pair still goes through.
fn assert_traffic_flows(h: &mut Harness, client: &[u8], worker: &[u8], t: u32, id: u64) {
    h.request(client, t, id, Flags::empty(), &[b"ok?"]);
    h.expect_dispatch(worker, t, id, 1);
    h.result(worker, t, id, Status::Ok, &[b"ok!"]);
    h.expect_status(client, t, id, Status::Ok);
    h.expect_nothing();
}

#[test]
fn garbage_and_empty_headers_on_the_frontend_get_an_error() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);

    h.frontend_raw(CB, &[0xFF, 0xFF, 0xFF, 0xFF], payload(&[b"x"]));
    let e = h.expect_error(Side::Frontend, CB);
    assert!(e.error.contains("protobuf"), "{}", e.error);
    assert_eq!(e.request, None);
    h.expect_nothing();

    // No header frame at all: the driver passes an empty slice.
    h.frontend_raw(CB, &[], Payload::new());
    let e = h.expect_error(Side::Frontend, CB);
    assert_eq!(
        e.error,
        "unsupported protocol version 0.0 (this peer speaks 1.x)"
    );
    assert_eq!(e.request, None);
    h.expect_nothing();

    let s = h.stats();
    assert_eq!(s.malformed_frontend, 2);
    assert_eq!(s.requests_received, 1);
    // CA's request is unaffected, and CB's traffic works.
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    assert_traffic_flows(&mut h, CB, W1, 7, 2);
}

#[test]
fn wrong_major_version_gets_an_unsupported_version_error() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let header = with_major(Message::Heartbeat { heartbeat_ms: 0 }, 2);
    h.frontend_raw(CA, &header, Payload::new());
    let e = h.expect_error(Side::Frontend, CA);
    assert_eq!(
        e.error,
        "unsupported protocol version 2.0 (this peer speaks 1.x)"
    );
    assert_eq!(e.request, None);
    h.expect_nothing();

    let header = with_major(
        Message::Ready(Ready {
            heartbeat_ms: HB,
            capacity: 1,
            request_types: vec![7],
            name: None,
        }),
        2,
    );
    h.backend_raw(W2, &header, Payload::new());
    let e = h.expect_error(Side::Backend, W2);
    assert!(e.error.starts_with("unsupported protocol version 2.0"));
    h.expect_nothing();
    let s = h.stats();
    assert_eq!(
        (s.malformed_frontend, s.malformed_backend, s.workers),
        (1, 1, 1)
    );
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn wrong_major_request_gets_an_error_with_the_request_fields() {
    let mut h = Harness::new();
    h.connect(CA);
    let header = with_major(
        Message::Request(Request {
            route: b"r".to_vec(),
            ..req(42, 300, Flags::empty(), &[])
        }),
        2,
    );
    h.frontend_raw(CA, &header, payload(&[b"x"]));
    let e = h.expect_error(Side::Frontend, CA);
    assert_eq!(
        e.error,
        "unsupported protocol version 2.0 (this peer speaks 1.x)"
    );
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 42,
            request_id: 300,
            route: b"r".to_vec()
        })
    );
}

#[test]
fn unexpected_kinds_on_the_frontend_get_an_error() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Ready(Ready {
            heartbeat_ms: HB,
            capacity: 1,
            request_types: vec![7],
            name: None,
        }),
    );
    let e = h.expect_error(Side::Frontend, CA);
    assert_eq!(e.error, "unexpected READY on the broker frontend");
    assert_eq!(e.request, None);
    h.client_sends(CA, Message::Welcome { heartbeat_ms: HB });
    let e = h.expect_error(Side::Frontend, CA);
    assert!(e.error.contains("WELCOME"), "{}", e.error);
    h.client_sends(CA, Message::Shutdown);
    h.expect_error(Side::Frontend, CA);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.malformed_frontend, s.workers), (3, 1));
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn unexpected_kind_naming_a_request_on_the_frontend_gets_an_error() {
    let mut h = Harness::new();
    h.connect(CA);
    // A (valid) RESULT, sent on the frontend.
    let (header, body) = encode(Message::Result(WorkResult {
        request_type: 7,
        request_id: 1,
        status: Status::Ok,
        error: None,
        payload: payload(&[b"x"]),
    }));
    h.frontend_raw(CA, &header, body);
    let e = h.expect_error(Side::Frontend, CA);
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 1,
            route: Vec::new()
        })
    );
}

#[test]
fn frontend_refusals_of_request_shaped_headers() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    // A REQUEST with type 0 is missing its request_type: ERROR, no request.
    let (header, _) = encode(Message::Request(req(0, 5, Flags::empty(), &[])));
    h.frontend_raw(CA, &header, Payload::new());
    let e = h.expect_error(Side::Frontend, CA);
    assert!(e.error.contains("request_type"), "{}", e.error);
    assert_eq!(e.request, None);
    // A HELLO with a payload frame is refused.
    let (header, _) = encode(Message::Hello(Hello {
        heartbeat_ms: HB,
        name: None,
        route: Vec::new(),
    }));
    h.frontend_raw(CA, &header, payload(&[b"extra"]));
    let e = h.expect_error(Side::Frontend, CA);
    assert!(e.error.contains("payload"), "{}", e.error);
    // A HELLO with interval 0 is refused.
    let (header, _) = encode(Message::Hello(Hello {
        heartbeat_ms: 0,
        name: None,
        route: Vec::new(),
    }));
    h.frontend_raw(CA, &header, Payload::new());
    h.expect_error(Side::Frontend, CA);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.malformed_frontend, s.requests_received), (3, 0));
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn a_request_with_its_payload_both_inline_and_in_frames_gets_an_error_naming_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect_worker(W1, &[7], 1);
    // The header carries "a" inline (field 17); a frame "b" follows it.
    let (header, rest) = encode(Message::Request(Request {
        route: b"route-1".to_vec(),
        ..req(7, 1, Flags::empty(), &[b"a"])
    }));
    assert!(rest.is_empty(), "a lone small frame goes inline");
    h.frontend_raw(PROXY, &header, payload(&[b"b"]));
    // An ERROR with the request fields (route included), not a RESPONSE:
    // the request was never processed, so it has no outcome.
    let e = h.expect_error(Side::Frontend, PROXY);
    assert!(e.error.contains("inline_payload"), "{}", e.error);
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 1,
            route: b"route-1".to_vec()
        })
    );
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.malformed_frontend, s.requests_received), (1, 0));
    // Nothing was admitted: (7, 1) is free.
    assert_traffic_flows(&mut h, PROXY, W1, 7, 1);
}

#[test]
fn routing_ids_are_opaque_whatever_their_length_or_first_byte() {
    // Ids a conforming peer would not choose (16 bytes, first byte not 0):
    // one as ZeroMQ generates them (5 bytes, starting with 0) and a 1-byte
    // one. They are served like any other.
    let client: &[u8] = &[0x00, 0x80, 0x00, 0x41, 0xA7];
    let worker: &[u8] = &[0x00];
    let mut h = Harness::new();
    h.connect(client);
    h.connect_worker(worker, &[7], 1);
    assert_traffic_flows(&mut h, client, worker, 7, 1);
    let s = h.stats();
    assert_eq!((s.clients, s.workers, s.malformed_frontend), (1, 1, 0));
}

#[test]
fn an_error_from_a_peer_is_never_answered() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let err = || {
        Message::Error(ErrorReply {
            error: "something went wrong".into(),
            request: Some(RequestRef {
                request_type: 7,
                request_id: 1,
                route: Vec::new(),
            }),
        })
    };
    h.client_sends(CA, err());
    h.worker_sends(W1, err());
    // From unknown peers too.
    h.client_sends(CB, err());
    h.worker_sends(W2, err());
    h.expect_nothing();
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn a_malformed_error_is_not_answered_either() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    let (header, _) = encode(Message::Error(ErrorReply {
        error: "bad".into(),
        request: None,
    }));
    h.frontend_raw(CA, &header, payload(&[b"unexpected"]));
    h.backend_raw(W1, &header, payload(&[b"unexpected"]));
    h.expect_nothing();
}

#[test]
fn garbage_and_unexpected_kinds_on_the_backend_get_an_error() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);

    h.backend_raw(W2, &[0xFF, 0x01], Payload::new());
    let e = h.expect_error(Side::Backend, W2);
    assert_eq!(e.request, None);
    h.backend_raw(W2, &[], Payload::new());
    let e = h.expect_error(Side::Backend, W2);
    assert!(e.error.starts_with("unsupported protocol version 0.0"));
    // A registered worker sends a REQUEST: ERROR with the request fields,
    // never a RESPONSE on the backend.
    h.worker_sends(W1, Message::Request(req(7, 9, Flags::empty(), &[b"x"])));
    let e = h.expect_error(Side::Backend, W1);
    assert_eq!(e.error, "unexpected REQUEST on the broker backend");
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 9,
            route: Vec::new()
        })
    );
    // Same from an unregistered peer.
    h.worker_sends(W2, Message::Request(req(7, 9, Flags::empty(), &[])));
    h.expect_error(Side::Backend, W2);
    // A HELLO on the backend.
    h.worker_sends(
        W1,
        Message::Hello(Hello {
            heartbeat_ms: HB,
            name: None,
            route: Vec::new(),
        }),
    );
    let e = h.expect_error(Side::Backend, W1);
    assert_eq!(e.error, "unexpected HELLO on the broker backend");
    // READY with capacity 0 or type 0 is refused and registers nothing.
    h.ready(W3, &[7], 0);
    let e = h.expect_error(Side::Backend, W3);
    assert!(e.error.contains("capacity"), "{}", e.error);
    h.ready(W3, &[7, 0], 1);
    let e = h.expect_error(Side::Backend, W3);
    assert!(e.error.contains("request_types"), "{}", e.error);
    h.expect_nothing();

    let s = h.stats();
    assert_eq!((s.malformed_backend, s.malformed_frontend), (7, 0));
    assert_eq!((s.workers, s.in_flight), (1, 1));
    // The in-flight request completes normally.
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    assert_traffic_flows(&mut h, CA, W1, 7, 2);
}

/// A RESULT whose status is not a worker status (REJECTED) does not decode.
fn result_header_with_status(t: u32, id: u64, status: Status) -> Vec<u8> {
    let (header, _) = encode(Message::Response(Response {
        request_type: t,
        request_id: id,
        status,
        error: None,
        route: Vec::new(),
        payload: Payload::new(),
    }));
    // RESPONSE (kind 6) -> RESULT (kind 5): `18 06` -> `18 05`.
    assert_eq!(&header[2..4], &[0x18, 0x06]);
    let mut header = header;
    header[3] = 0x05;
    header
}

/// core.rs ends a request as FAILED when its assigned worker sends a
/// malformed RESULT for it (`fail_garbled_result`), so it does not stay in
/// flight until the worker dies. protocol.md §12 says a malformed message
/// "never changes any state": reported as a mismatch; this pins the code.
#[test]
fn a_malformed_result_from_the_assigned_worker_fails_the_request() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    let header = result_header_with_status(7, 1, Status::Rejected);
    h.backend_raw(W1, &header, Payload::new());
    let e = h.expect_error(Side::Backend, W1);
    assert!(e.error.contains("status"), "{}", e.error);
    let r = h.expect_status(CA, 7, 1, Status::Failed);
    assert!(r.error.is_some());
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
    assert_eq!(h.stats().malformed_backend, 1);
}

#[test]
fn a_malformed_result_for_a_request_not_assigned_to_the_worker_changes_nothing() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.connect_worker(W2, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    let header = result_header_with_status(7, 1, Status::Rejected);
    h.backend_raw(W2, &header, Payload::new());
    h.expect_error(Side::Backend, W2);
    h.expect_nothing();
    let s = h.stats();
    assert_eq!((s.in_flight, s.requests_completed), (1, 0));
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

/// Only a malformed RESULT fails its request: a RECEIPT_RECEIVED with a stray
/// payload frame from the assigned worker is refused and changes nothing.
#[test]
fn a_malformed_receipt_received_does_not_fail_the_request() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_RECEIVE, &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    let (header, _) = encode(Message::ReceiptReceived(RequestRef {
        request_type: 7,
        request_id: 1,
        route: Vec::new(),
    }));
    h.backend_raw(W1, &header, payload(&[b"stray"]));
    h.expect_error(Side::Backend, W1);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[b"real"]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.expect_nothing();
}

// ----- stop ---------------------------------------------------------------

#[test]
fn on_stop_sends_shutdown_to_every_worker_and_client() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect(PROXY);
    h.request(CB, 7, 1, Flags::empty(), &[]); // unknown: registered by its request
    h.expect_reregister(Side::Frontend, CB);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.connect_worker(W2, &[8], 1);
    h.core.on_stop();
    let got: BTreeSet<(bool, Vec<u8>)> = h
        .take()
        .into_iter()
        .map(|o| match o {
            (side, peer, Message::Shutdown) => (side == Side::Backend, peer),
            other => panic!("unexpected {}", show(&other)),
        })
        .collect();
    let want: BTreeSet<(bool, Vec<u8>)> = [
        (false, CA.to_vec()),
        (false, CB.to_vec()),
        (false, PROXY.to_vec()),
        (true, W1.to_vec()),
        (true, W2.to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[test]
fn on_stop_with_no_peers_sends_nothing() {
    let mut h = Harness::new();
    h.core.on_stop();
    h.expect_nothing();
}

// ----- randomized model check ---------------------------------------------

/// xorshift64*: tiny, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type Key = (u32, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Pending,
    InFlight(usize),
}

#[derive(Debug)]
struct MReq {
    origin: usize,
    flags: Flags,
    payload: Vec<Vec<u8>>,
    attempts: u32,
    /// Mirrors the broker's "RECEIPT_SENT already sent" bit: set on the
    /// dispatch that sent one; a takeover resets it for the new requester
    /// (`takeover_*_receipt_sent_*`).
    receipt_sent: bool,
    /// The assigned worker sent RECEIPT_RECEIVED for the current dispatch.
    received: bool,
    state: MState,
    /// The requester's [`Instance`] (changes on a takeover).
    instance: usize,
}

#[derive(Debug)]
struct MWorker {
    peer: Vec<u8>,
    registered: bool,
    draining: bool,
    types: Vec<u32>,
    capacity: u32,
    outstanding: HashSet<Key>,
    last_heard: u64,
}

impl MWorker {
    fn serves(&self, t: u32) -> bool {
        self.types.contains(&t)
    }

    fn has_credit(&self) -> bool {
        self.registered && !self.draining && self.outstanding.len() < self.capacity as usize
    }
}

#[derive(Debug)]
struct Instance {
    key: Key,
    origin: usize,
    two_way: bool,
    responses: u32,
}

/// An expected RESPONSE: client, key, status, payload frames when known.
type ExpectedResponse = (usize, Key, Status, Option<Vec<Vec<u8>>>);

/// What the model expects to see in the outputs of one step.
#[derive(Debug, Default)]
struct Expect {
    responses: Vec<ExpectedResponse>,
    /// RECEIPT_SENT (client, key).
    receipts: Vec<(usize, Key)>,
    /// RECEIPT_RECEIVED (client, key).
    received: Vec<(usize, Key)>,
    welcomes: Vec<usize>,
}

struct Sim {
    h: Harness,
    rng: Rng,
    max_tries: u32,
    per_type: usize,
    total: usize,
    workers: Vec<MWorker>,
    clients: Vec<(Vec<u8>, u64)>,
    reqs: HashMap<Key, MReq>,
    instances: Vec<Instance>,
    requests_sent: u64,
    unknown_results: u64,
    log: Vec<String>,
}

const TYPES: [u32; 3] = [1, 2, 3];

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let max_tries = 1 + rng.below(3) as u32;
        let per_type = 2 + rng.below(6) as usize;
        let total = 3 + rng.below(12) as usize;
        let h = Harness::with_config(|c| {
            c.max_tries = max_tries;
            c.max_pending_per_type = per_type;
            c.max_pending_total = total;
        });
        let workers = (0..3)
            .map(|i| MWorker {
                peer: format!("worker-{i}").into_bytes(),
                registered: false,
                draining: false,
                types: Vec::new(),
                capacity: 0,
                outstanding: HashSet::new(),
                last_heard: 0,
            })
            .collect();
        let clients = (0..3)
            .map(|i| (format!("client-{i}").into_bytes(), 0))
            .collect();
        let mut sim = Self {
            h,
            rng,
            max_tries,
            per_type,
            total,
            workers,
            clients,
            reqs: HashMap::new(),
            instances: Vec::new(),
            requests_sent: 0,
            unknown_results: 0,
            log: Vec::new(),
        };
        for c in 0..sim.clients.len() {
            let peer = sim.clients[c].0.clone();
            sim.h.connect(&peer);
        }
        sim
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(30).rev().collect();
        panic!(
            "{what}\nmax_tries={} per_type={} total={}\nlast steps:\n{}",
            self.max_tries,
            self.per_type,
            self.total,
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn client_index(&self, peer: &[u8]) -> usize {
        self.clients
            .iter()
            .position(|c| c.0 == peer)
            .unwrap_or_else(|| self.fail(format!("output to unknown client {}", name(peer))))
    }

    fn worker_index(&self, peer: &[u8]) -> usize {
        self.workers
            .iter()
            .position(|w| w.peer == peer)
            .unwrap_or_else(|| self.fail(format!("output to unknown worker {}", name(peer))))
    }

    fn pending_of(&self, t: u32) -> usize {
        self.reqs
            .iter()
            .filter(|(k, r)| k.0 == t && r.state == MState::Pending)
            .count()
    }

    fn total_pending(&self) -> usize {
        self.reqs
            .values()
            .filter(|r| r.state == MState::Pending)
            .count()
    }

    fn close(&mut self, key: Key) -> MReq {
        self.reqs
            .remove(&key)
            .unwrap_or_else(|| self.fail(format!("closing unknown {key:?}")))
    }

    /// Checks every output of the step against the model.
    fn check_outputs(&mut self, mut expect: Expect) {
        let outs = self.h.take();
        for o in outs {
            let desc = show(&o);
            match o {
                (Side::Backend, peer, Message::Dispatch(d)) => {
                    let w = self.worker_index(&peer);
                    let key = (d.request_type, d.request_id);
                    let worker = &self.workers[w];
                    if !worker.has_credit() {
                        self.fail(format!(
                            "{desc}: worker without credit (registered {}, draining {}, {}/{})",
                            worker.registered,
                            worker.draining,
                            worker.outstanding.len(),
                            worker.capacity
                        ));
                    }
                    if !worker.serves(key.0) {
                        self.fail(format!("{desc}: type not served by the worker"));
                    }
                    if self.workers.iter().any(|w| w.outstanding.contains(&key)) {
                        self.fail(format!("{desc}: already dispatched to a worker"));
                    }
                    let Some(r) = self.reqs.get_mut(&key) else {
                        self.fail(format!("{desc}: not an open request"));
                    };
                    if r.state != MState::Pending {
                        let state = r.state;
                        self.fail(format!("{desc}: request is {state:?}"));
                    }
                    r.attempts += 1;
                    r.received = false;
                    let (attempts, flags, body) = (r.attempts, r.flags, r.payload.clone());
                    r.state = MState::InFlight(w);
                    let receipt = flags.contains(Flags::RECEIPT_ON_SEND) && !r.receipt_sent;
                    r.receipt_sent |= receipt;
                    let origin = r.origin;
                    if d.attempt != attempts || d.flags != flags || frames(&d.payload) != body {
                        self.fail(format!(
                            "{desc}: want attempt {attempts}, flags {flags:?}, payload {body:?}"
                        ));
                    }
                    if receipt {
                        expect.receipts.push((origin, key));
                    }
                    self.workers[w].outstanding.insert(key);
                }
                (Side::Frontend, peer, Message::Response(r)) => {
                    let c = self.client_index(&peer);
                    let key = (r.request_type, r.request_id);
                    let Some(i) = expect
                        .responses
                        .iter()
                        .position(|e| e.0 == c && e.1 == key && e.2 == r.status)
                    else {
                        self.fail(format!("{desc}: unexpected; expected {expect:?}"));
                    };
                    let e = expect.responses.remove(i);
                    if let Some(body) = e.3 {
                        if frames(&r.payload) != body {
                            self.fail(format!("{desc}: payload, want {body:?}"));
                        }
                    }
                    if !r.route.is_empty() {
                        self.fail(format!("{desc}: route"));
                    }
                }
                (Side::Frontend, peer, Message::ReceiptSent(r)) => {
                    let c = self.client_index(&peer);
                    let key = (r.request_type, r.request_id);
                    let Some(i) = expect.receipts.iter().position(|e| *e == (c, key)) else {
                        self.fail(format!("{desc}: unexpected; expected {expect:?}"));
                    };
                    expect.receipts.remove(i);
                }
                (Side::Frontend, peer, Message::ReceiptReceived(r)) => {
                    let c = self.client_index(&peer);
                    let key = (r.request_type, r.request_id);
                    let Some(i) = expect.received.iter().position(|e| *e == (c, key)) else {
                        self.fail(format!("{desc}: unexpected; expected {expect:?}"));
                    };
                    expect.received.remove(i);
                }
                (Side::Backend, peer, Message::Welcome { .. }) => {
                    let w = self.worker_index(&peer);
                    let Some(i) = expect.welcomes.iter().position(|e| *e == w) else {
                        self.fail(format!("{desc}: unexpected"));
                    };
                    expect.welcomes.remove(i);
                }
                (_, _, Message::Heartbeat { .. }) => {}
                _ => self.fail(format!("{desc}: unexpected output")),
            }
        }
        if !expect.responses.is_empty()
            || !expect.receipts.is_empty()
            || !expect.received.is_empty()
            || !expect.welcomes.is_empty()
        {
            self.fail(format!("missing outputs: {expect:?}"));
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        let s = self.h.stats();
        let pending = self.total_pending() as u64;
        let in_flight = self.reqs.len() as u64 - pending;
        if (s.pending, s.in_flight) != (pending, in_flight) {
            self.fail(format!(
                "stats pending/in_flight {}/{} vs model {pending}/{in_flight}",
                s.pending, s.in_flight
            ));
        }
        let registered = self.workers.iter().filter(|w| w.registered).count() as u64;
        if s.workers != registered || s.clients != self.clients.len() as u64 {
            self.fail(format!(
                "stats workers/clients {}/{} vs model {registered}/{}",
                s.workers,
                s.clients,
                self.clients.len()
            ));
        }
        if s.requests_received != self.requests_sent || s.unknown_results != self.unknown_results {
            self.fail(format!(
                "stats received/unknown_results {}/{} vs model {}/{}",
                s.requests_received, s.unknown_results, self.requests_sent, self.unknown_results
            ));
        }
        for (t, e) in &s.types {
            let p = self.pending_of(*t) as u64;
            let f = self
                .reqs
                .iter()
                .filter(|(k, r)| k.0 == *t && matches!(r.state, MState::InFlight(_)))
                .count() as u64;
            if (e.pending, e.in_flight) != (p, f) {
                self.fail(format!(
                    "type {t} stats {e:?} vs model pending {p} in flight {f}"
                ));
            }
        }
        for (k, r) in &self.reqs {
            if !s.types.contains_key(&k.0) {
                self.fail(format!("type of open request {k:?} missing from stats"));
            }
            // Work conservation: nothing waits while a worker could take it.
            if r.state == MState::Pending {
                if let Some(w) = self
                    .workers
                    .iter()
                    .find(|w| w.has_credit() && w.serves(k.0))
                {
                    self.fail(format!("{k:?} pending while {} has credit", name(&w.peer)));
                }
            }
        }
        // A worker may hold more than its capacity only after announcing a
        // lower one; it then gets nothing (checked on every DISPATCH).
        for w in &self.workers {
            for k in &w.outstanding {
                match self.reqs.get(k) {
                    Some(r) if matches!(r.state, MState::InFlight(_)) => {}
                    _ => self.fail(format!("{} holds {k:?}, not in flight", name(&w.peer))),
                }
            }
        }
    }

    fn keep_alive(&mut self) {
        let now = self.h.now_ms;
        for i in 0..self.clients.len() {
            if self.clients[i].1 + 900 <= now {
                let peer = self.clients[i].0.clone();
                self.h.client_heartbeat(&peer);
                self.clients[i].1 = now;
            }
        }
        for i in 0..self.workers.len() {
            if self.workers[i].registered && self.workers[i].last_heard + 900 <= now {
                let peer = self.workers[i].peer.clone();
                self.h.worker_heartbeat(&peer);
                self.workers[i].last_heard = now;
            }
        }
    }

    fn op_request(&mut self) -> Expect {
        let c = self.rng.below(self.clients.len() as u64) as usize;
        let t = TYPES[self.rng.below(3) as usize];
        let id = self.rng.below(6);
        let key = (t, id);
        let mut flags = Flags::empty();
        for (flag, pct) in [
            (Flags::ONE_WAY, 30),
            (Flags::RECEIPT_ON_SEND, 30),
            (Flags::RETRY_ON_DEATH, 40),
            (Flags::NOTIFY_ON_DEATH, 30),
            (Flags::FAIL_FAST, 15),
            (Flags::RECEIPT_ON_RECEIVE, 30),
            (Flags::ALLOW_REDIRECT, 25),
            (Flags::NOTIFY_ON_REDIRECT, 25),
        ] {
            if self.rng.chance(pct) {
                flags |= flag;
            }
        }
        let body: Vec<Vec<u8>> = (0..self.rng.below(3))
            .map(|i| format!("{t}/{id}/{}/{i}", self.requests_sent).into_bytes())
            .collect();
        self.log
            .push(format!("request client-{c} {key:?} {flags:?} {body:?}"));
        let mut expect = Expect::default();
        self.requests_sent += 1;
        let new_instance = |sim: &mut Self| {
            sim.instances.push(Instance {
                key,
                origin: c,
                two_way: flags.is_two_way(),
                responses: 0,
            });
            sim.instances.len() - 1
        };
        if let Some(r) = self.reqs.get(&key) {
            let in_flight = matches!(r.state, MState::InFlight(_));
            if r.origin == c {
                // Idempotent re-send: earned receipts again, nothing else.
                if in_flight && flags.contains(Flags::RECEIPT_ON_SEND) {
                    expect.receipts.push((c, key));
                }
                if in_flight && r.received && flags.contains(Flags::RECEIPT_ON_RECEIVE) {
                    expect.received.push((c, key));
                }
            } else if r.flags.contains(Flags::ALLOW_REDIRECT) {
                // Takeover.
                let (previous, previous_flags, previous_instance) = (r.origin, r.flags, r.instance);
                if previous_flags.is_two_way() || previous_flags.contains(Flags::NOTIFY_ON_REDIRECT)
                {
                    expect
                        .responses
                        .push((previous, key, Status::Redirected, None));
                    self.instances[previous_instance].responses += 1;
                }
                let instance = new_instance(self);
                let r = self.reqs.get_mut(&key).expect("open");
                if in_flight && flags.contains(Flags::RECEIPT_ON_SEND) {
                    expect.receipts.push((c, key));
                }
                if in_flight && r.received && flags.contains(Flags::RECEIPT_ON_RECEIVE) {
                    expect.received.push((c, key));
                }
                r.origin = c;
                r.flags = flags;
                // The new requester is owed RECEIPT_SENT at the next dispatch
                // if pending; if in flight it got it just now (if asked), and
                // a retry must not send it again.
                r.receipt_sent = in_flight;
                // Pending: the payload to dispatch; in flight: the retry copy.
                r.payload = body.clone();
                r.instance = instance;
            } else {
                expect.responses.push((c, key, Status::Rejected, None));
            }
        } else if flags.contains(Flags::FAIL_FAST)
            && !self.workers.iter().any(|w| w.registered && w.serves(t))
        {
            expect.responses.push((c, key, Status::NoWorkers, None));
        } else {
            let dispatchable = self.pending_of(t) == 0
                && self.workers.iter().any(|w| w.has_credit() && w.serves(t));
            if !dispatchable
                && (self.pending_of(t) >= self.per_type || self.total_pending() >= self.total)
            {
                expect.responses.push((c, key, Status::Overloaded, None));
            } else {
                let instance = new_instance(self);
                self.reqs.insert(
                    key,
                    MReq {
                        origin: c,
                        flags,
                        payload: body.clone(),
                        attempts: 0,
                        receipt_sent: false,
                        received: false,
                        state: MState::Pending,
                        instance,
                    },
                );
            }
        }
        let peer = self.clients[c].0.clone();
        let refs: Vec<&[u8]> = body.iter().map(Vec::as_slice).collect();
        self.h.request(&peer, t, id, flags, &refs);
        self.clients[c].1 = self.h.now_ms;
        expect
    }

    /// A worker finishes one of its requests (or sends a bogus result).
    fn op_result(&mut self) -> Expect {
        let mut expect = Expect::default();
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered)
            .collect();
        if candidates.is_empty() {
            return expect;
        }
        let w = candidates[self.rng.below(candidates.len() as u64) as usize];
        let mut keys: Vec<Key> = self.workers[w].outstanding.iter().copied().collect();
        keys.sort_unstable();
        let status = [Status::Ok, Status::Failed, Status::BadRequest][self.rng.below(3) as usize];
        let body = vec![format!("result-{}", self.rng.below(1000)).into_bytes()];
        let peer = self.workers[w].peer.clone();
        if keys.is_empty() || self.rng.chance(10) {
            // Bogus: a key this worker does not hold.
            let key = (TYPES[self.rng.below(3) as usize], self.rng.below(8));
            if self.workers[w].outstanding.contains(&key) {
                return expect;
            }
            self.log
                .push(format!("bogus result {} {key:?}", name(&peer)));
            self.unknown_results += 1;
            self.h.result(&peer, key.0, key.1, status, &[]);
        } else {
            let key = keys[self.rng.below(keys.len() as u64) as usize];
            self.log
                .push(format!("result {} {key:?} {status:?}", name(&peer)));
            self.workers[w].outstanding.remove(&key);
            let r = self.close(key);
            if r.flags.is_two_way() {
                expect
                    .responses
                    .push((r.origin, key, status, Some(body.clone())));
                self.instances[r.instance].responses += 1;
            }
            if self.workers[w].draining && self.workers[w].outstanding.is_empty() {
                self.workers[w].registered = false;
                self.workers[w].draining = false;
            }
            let refs: Vec<&[u8]> = body.iter().map(Vec::as_slice).collect();
            self.h.result(&peer, key.0, key.1, status, &refs);
        }
        self.workers[w].last_heard = self.h.now_ms;
        expect
    }

    /// A worker says it received one of its requests (or a bogus one).
    fn op_receipt(&mut self) -> Expect {
        let mut expect = Expect::default();
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered)
            .collect();
        if candidates.is_empty() {
            return expect;
        }
        let w = candidates[self.rng.below(candidates.len() as u64) as usize];
        let mut keys: Vec<Key> = self.workers[w].outstanding.iter().copied().collect();
        keys.sort_unstable();
        let peer = self.workers[w].peer.clone();
        let key = if keys.is_empty() || self.rng.chance(10) {
            let key = (TYPES[self.rng.below(3) as usize], self.rng.below(8));
            if self.workers[w].outstanding.contains(&key) {
                return expect;
            }
            self.log
                .push(format!("bogus receipt {} {key:?}", name(&peer)));
            self.unknown_results += 1;
            key
        } else {
            let key = keys[self.rng.below(keys.len() as u64) as usize];
            self.log.push(format!("receipt {} {key:?}", name(&peer)));
            let r = self.reqs.get_mut(&key).expect("outstanding is open");
            r.received = true;
            if r.flags.contains(Flags::RECEIPT_ON_RECEIVE) {
                expect.received.push((r.origin, key));
            }
            key
        };
        self.h.receipt_received(&peer, key.0, key.1);
        self.workers[w].last_heard = self.h.now_ms;
        expect
    }

    /// A worker's in-flight requests when it dies or is removed.
    fn on_death(&mut self, w: usize, expect: &mut Expect) {
        let mut keys: Vec<Key> = self.workers[w].outstanding.drain().collect();
        keys.sort_unstable();
        self.workers[w].registered = false;
        self.workers[w].draining = false;
        for key in keys {
            let max_tries = self.max_tries;
            let r = self.reqs.get_mut(&key).expect("outstanding is open");
            if r.flags.contains(Flags::RETRY_ON_DEATH) && r.attempts < max_tries {
                r.state = MState::Pending;
                continue;
            }
            let r = self.close(key);
            if r.flags.is_two_way() || r.flags.contains(Flags::NOTIFY_ON_DEATH) {
                expect
                    .responses
                    .push((r.origin, key, Status::WorkerDeath, None));
                self.instances[r.instance].responses += 1;
            }
        }
    }

    fn op_kill(&mut self) -> Expect {
        let mut expect = Expect::default();
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered)
            .collect();
        if candidates.is_empty() {
            return expect;
        }
        let w = candidates[self.rng.below(candidates.len() as u64) as usize];
        self.log
            .push(format!("kill {}", name(&self.workers[w].peer)));
        let from = self.h.now_ms;
        self.h.at(from + 2000);
        for i in 0..self.clients.len() {
            let peer = self.clients[i].0.clone();
            self.h.client_heartbeat(&peer);
            self.clients[i].1 = from + 2000;
        }
        for i in 0..self.workers.len() {
            if i != w && self.workers[i].registered {
                let peer = self.workers[i].peer.clone();
                self.h.worker_heartbeat(&peer);
                self.workers[i].last_heard = from + 2000;
            }
        }
        self.on_death(w, &mut expect);
        self.h.tick_at(from + 3001);
        expect
    }

    fn op_disconnect(&mut self) -> Expect {
        let mut expect = Expect::default();
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered)
            .collect();
        if candidates.is_empty() {
            return expect;
        }
        let w = candidates[self.rng.below(candidates.len() as u64) as usize];
        let peer = self.workers[w].peer.clone();
        self.log.push(format!("disconnect {}", name(&peer)));
        if self.workers[w].outstanding.is_empty() {
            self.on_death(w, &mut expect);
        } else {
            self.workers[w].draining = true;
        }
        self.h
            .worker_sends(&peer, Message::Disconnect { route: Vec::new() });
        self.workers[w].last_heard = self.h.now_ms;
        expect
    }

    fn op_ready(&mut self) -> Expect {
        let mut expect = Expect::default();
        let w = self.rng.below(self.workers.len() as u64) as usize;
        let mut types: Vec<u32> = TYPES
            .iter()
            .copied()
            .filter(|_| self.rng.chance(50))
            .collect();
        if types.is_empty() {
            types.push(TYPES[self.rng.below(3) as usize]);
        }
        let capacity = 1 + self.rng.below(3) as u32;
        let peer = self.workers[w].peer.clone();
        self.log.push(format!(
            "ready {} {types:?} capacity {capacity}",
            name(&peer)
        ));
        let worker = &mut self.workers[w];
        worker.registered = true;
        worker.draining = false;
        worker.types = types.clone();
        worker.capacity = capacity;
        worker.last_heard = self.h.now_ms;
        expect.welcomes.push(w);
        self.h.ready(&peer, &types, capacity);
        expect
    }

    fn op_tick(&mut self) -> Expect {
        let ms = 1 + self.rng.below(400);
        self.log.push(format!("tick +{ms}"));
        self.h.at(self.h.now_ms + ms);
        self.keep_alive();
        self.h.tick(0);
        Expect::default()
    }

    fn step(&mut self) {
        let expect = match self.rng.below(100) {
            0..=39 => self.op_request(),
            40..=62 => self.op_result(),
            63..=69 => self.op_receipt(),
            70..=74 => self.op_kill(),
            75..=79 => self.op_disconnect(),
            80..=87 => self.op_ready(),
            _ => self.op_tick(),
        };
        self.check_outputs(expect);
    }

    /// Gives every open request a way to finish, then finishes them.
    fn drain(&mut self) {
        let w = 0;
        let expect = {
            let peer = self.workers[w].peer.clone();
            self.log.push("drain: ready worker-0 for all types".into());
            let worker = &mut self.workers[w];
            worker.registered = true;
            worker.draining = false;
            worker.types = TYPES.to_vec();
            worker.capacity = 1000;
            self.h.ready(&peer, &TYPES, 1000);
            Expect {
                welcomes: vec![w],
                ..Expect::default()
            }
        };
        self.check_outputs(expect);
        for _ in 0..10_000 {
            if self.reqs.is_empty() {
                break;
            }
            let Some(w) =
                (0..self.workers.len()).find(|&w| !self.workers[w].outstanding.is_empty())
            else {
                self.fail(format!("open requests but none in flight: {:?}", self.reqs));
            };
            let mut expect = Expect::default();
            let key = *self.workers[w].outstanding.iter().min().expect("non-empty");
            self.workers[w].outstanding.remove(&key);
            let r = self.close(key);
            if r.flags.is_two_way() {
                expect
                    .responses
                    .push((r.origin, key, Status::Ok, Some(vec![b"final".to_vec()])));
                self.instances[r.instance].responses += 1;
            }
            if self.workers[w].draining && self.workers[w].outstanding.is_empty() {
                self.workers[w].registered = false;
                self.workers[w].draining = false;
            }
            let peer = self.workers[w].peer.clone();
            self.h.result(&peer, key.0, key.1, Status::Ok, &[b"final"]);
            self.check_outputs(expect);
        }
        assert!(self.reqs.is_empty());
        for i in &self.instances {
            if i.two_way && i.responses != 1 {
                self.fail(format!(
                    "two-way {:?} from client-{} got {} responses",
                    i.key, i.origin, i.responses
                ));
            }
            if !i.two_way && i.responses > 1 {
                self.fail(format!("one-way {:?} got {} responses", i.key, i.responses));
            }
        }
        let s = self.h.stats();
        assert_eq!((s.pending, s.in_flight), (0, 0));
    }
}

#[test]
fn randomized_interleavings_keep_the_invariants() {
    let mut total = BrokerStats::default();
    for seed in 1..=300 {
        let mut sim = Sim::new(seed);
        for _ in 0..250 {
            sim.step();
        }
        sim.drain();
        let s = sim.h.stats();
        total.requests_dispatched += s.requests_dispatched;
        total.requests_completed += s.requests_completed;
        total.requests_rejected += s.requests_rejected;
        total.requests_overloaded += s.requests_overloaded;
        total.requests_no_workers += s.requests_no_workers;
        total.requests_resent += s.requests_resent;
        total.requests_redirected += s.requests_redirected;
        total.requests_retried += s.requests_retried;
        total.requests_worker_death += s.requests_worker_death;
        total.requests_dropped_on_death += s.requests_dropped_on_death;
        total.unknown_results += s.unknown_results;
        total.worker_deaths += s.worker_deaths;
    }
    // The walk reaches every path it is meant to check.
    let reached = [
        ("dispatched", total.requests_dispatched),
        ("completed", total.requests_completed),
        ("rejected", total.requests_rejected),
        ("overloaded", total.requests_overloaded),
        ("no_workers", total.requests_no_workers),
        ("resent", total.requests_resent),
        ("redirected", total.requests_redirected),
        ("retried", total.requests_retried),
        ("worker_death", total.requests_worker_death),
        ("dropped_on_death", total.requests_dropped_on_death),
        ("unknown_results", total.unknown_results),
        ("worker_deaths", total.worker_deaths),
    ];
    for (what, n) in reached {
        assert!(n >= 20, "the random walk reached {what} only {n} times");
    }
}

// ----- scale: long queues, many types, many workers ------------------------

#[test]
fn a_long_queue_keeps_every_payload_intact() {
    // Past about a thousand queued requests, small payloads are stored
    // compactly (copied out of the receive buffers): what is dispatched
    // must still be exactly what was sent, single or multi-frame, small or
    // large, empty or not.
    let mut h = Harness::new();
    h.connect(CA);
    let big = vec![0x5A_u8; 16 * 1024];
    let body = |id: u64| -> Vec<Vec<u8>> {
        match id % 4 {
            0 => vec![id.to_le_bytes().repeat(8)],
            1 => vec![b"head".to_vec(), id.to_le_bytes().to_vec(), Vec::new()],
            2 => vec![big.clone(), id.to_le_bytes().to_vec()],
            _ => Vec::new(),
        }
    };
    let count = 1500;
    for id in 0..count {
        let frames = body(id);
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        h.request(CA, 7, id, Flags::empty(), &refs);
    }
    h.expect_nothing();
    assert_eq!(h.stats().pending, count);
    h.connect_worker(W1, &[7], u32::try_from(count).unwrap());
    for id in 0..count {
        let d = h.expect_dispatch(W1, 7, id, 1);
        assert_eq!(frames(&d.payload), body(id), "payload of request {id}");
    }
    h.expect_nothing();
}

#[test]
fn a_retried_request_from_a_long_queue_keeps_its_payload() {
    let mut h = Harness::new();
    h.connect(CA);
    for id in 0..1200 {
        h.request(CA, 7, id, Flags::RETRY_ON_DEATH, &[&id.to_le_bytes(), b"x"]);
    }
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 0, 1);
    // W1 dies: request 0 goes back to the head of the queue, then to W2.
    h.tick(3 * u64::from(HB) + 10);
    h.take();
    h.connect_worker(W2, &[7], 1);
    let d = h.expect_dispatch(W2, 7, 0, 2);
    assert_eq!(frames(&d.payload), owned(&[&0_u64.to_le_bytes(), b"x"]));
}

#[test]
fn lru_order_spans_workers_with_few_and_many_types() {
    // W2 serves many types (it is kept in one list, not under each type);
    // the least recently used free worker still gets the next request.
    let many: Vec<u32> = (1..=40).collect();
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.connect_worker(W2, &many, 1);
    h.connect_worker(W3, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_dispatch(W2, 7, 2, 1);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_dispatch(W3, 7, 3, 1);
    for (w, id) in [(W3, 3), (W1, 1), (W2, 2)] {
        h.result(w, 7, id, Status::Ok, &[]);
        h.expect_status(CA, 7, id, Status::Ok);
    }
    for (id, w) in [(4, W3), (5, W1), (6, W2)] {
        h.request(CA, 7, id, Flags::empty(), &[]);
        h.expect_dispatch(w, 7, id, 1);
    }
    // Only W2 serves type 30.
    h.result(W2, 7, 6, Status::Ok, &[]);
    h.expect_status(CA, 7, 6, Status::Ok);
    h.request(CA, 30, 1, Flags::empty(), &[]);
    h.expect_dispatch(W2, 30, 1, 1);
    h.expect_nothing();
}

#[test]
fn many_idle_workers_of_other_types_are_skipped() {
    let mut h = Harness::new();
    h.connect(CA);
    let ids: Vec<Vec<u8>> = (0..200).map(|i| format!("idle-{i}").into_bytes()).collect();
    for (i, id) in ids.iter().enumerate() {
        h.connect_worker(id, &[100 + u32::try_from(i).unwrap()], 1);
    }
    let wide: Vec<u32> = (1000..1100).collect();
    h.connect_worker(W2, &wide, 1);
    h.connect_worker(W1, &[7], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn a_worker_re_registering_with_other_types_moves_between_lists() {
    let many: Vec<u32> = (1..=40).collect();
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    // Now many types (one list), then a single other one (per type).
    h.connect_worker(W1, &many, 1);
    h.request(CA, 30, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 30, 1, 1);
    h.result(W1, 30, 1, Status::Ok, &[]);
    h.expect_status(CA, 30, 1, Status::Ok);
    h.connect_worker(W1, &[8], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.request(CA, 30, 2, Flags::empty(), &[]);
    h.expect_nothing();
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.expect_dispatch(W1, 8, 1, 1);
    h.expect_nothing();
}

//! Several broker cores joined into a cluster by a fake network (no
//! sockets, a fake clock): routes, membership, ownership, forwarding,
//! remote workers, and what happens when a member leaves
//! (docs/clustering.md). The randomized model check of a cluster is at the
//! end.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{HB, encode, payload, req};
use crate::broker::config::BrokerConfig;
use crate::broker::core::{BrokerCore, ClusterFrom, Side, dial_routing_id};
use crate::protocol::{
    self, Dispatch, Flags, Hello, Message, Ready, RequestRef, Response, Status, WorkResult,
};

/// What a broker sent to one of its clients or workers.
#[derive(Debug)]
struct Local {
    side: Side,
    peer: Vec<u8>,
    msg: Message,
}

/// A cluster message in flight: to broker `to`, from `from`.
struct Wire {
    to: usize,
    from_router: Option<Vec<u8>>,
    from_dial: Option<u32>,
    from: usize,
    header: Vec<u8>,
    payload: protocol::Payload,
}

/// (broker, worker, type, id).
type DispatchKey = (usize, Vec<u8>, u32, u64);

struct Net {
    cores: Vec<BrokerCore>,
    ids: Vec<u64>,
    /// dials[b][i]: the broker that broker b's dial i reaches.
    dials: Vec<Vec<usize>>,
    /// Brokers that are down (stopped taking input, sending nothing).
    down: HashSet<usize>,
    /// Pairs that cannot reach each other.
    cut: HashSet<(usize, usize)>,
    wire: VecDeque<Wire>,
    local: Vec<VecDeque<Local>>,
    t0: Instant,
    now_ms: u64,
    /// The attempt and tag of the last DISPATCH per (broker, worker, key).
    dispatches: HashMap<DispatchKey, (u32, u64)>,
    /// Clients and workers that heartbeat their broker on every tick.
    alive: Vec<(usize, Side, Vec<u8>)>,
    /// Brokers whose cluster messages say minor 4 (a member older than
    /// CANCEL).
    old: HashSet<usize>,
}

impl Net {
    /// `n` brokers, each dialling every other (a full mesh).
    fn new(n: usize) -> Self {
        Self::with(n, |_, _| {})
    }

    fn with(n: usize, f: impl Fn(usize, &mut BrokerConfig)) -> Self {
        Self::build(n, f, HashSet::new())
    }

    /// `n` brokers, those in `old` speaking minor 4 to the others.
    fn with_old(n: usize, old: &[usize]) -> Self {
        Self::build(n, |_, _| {}, old.iter().copied().collect())
    }

    fn build(n: usize, f: impl Fn(usize, &mut BrokerConfig), old: HashSet<usize>) -> Self {
        let t0 = Instant::now();
        let mut cores = Vec::new();
        let mut dials = Vec::new();
        for b in 0..n {
            let mut config = BrokerConfig::new("inproc://f", "inproc://b");
            config.cluster_bind = Some(format!("inproc://cluster-{b}"));
            config.cluster_peers = (0..n)
                .filter(|&o| o != b)
                .map(|o| format!("inproc://cluster-{o}"))
                .collect();
            f(b, &mut config);
            let core = BrokerCore::new(&config, t0);
            let targets = core
                .dial_endpoints()
                .iter()
                .map(|e| {
                    e.trim_start_matches("inproc://cluster-")
                        .parse::<usize>()
                        .expect("test endpoints name a broker")
                })
                .collect();
            dials.push(targets);
            cores.push(core);
        }
        let ids = cores
            .iter()
            .map(|c| c.cluster_id().expect("clustered"))
            .collect();
        let mut net = Self {
            cores,
            ids,
            dials,
            down: HashSet::new(),
            cut: HashSet::new(),
            wire: VecDeque::new(),
            local: (0..n).map(|_| VecDeque::new()).collect(),
            t0,
            now_ms: 0,
            dispatches: HashMap::new(),
            alive: Vec::new(),
            old,
        };
        for b in 0..n {
            net.collect(b);
        }
        net.settle();
        net
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.down.contains(&a)
            && !self.down.contains(&b)
            && !self.cut.contains(&(a, b))
            && !self.cut.contains(&(b, a))
    }

    /// Moves broker `b`'s outbox onto the wire or into its local queue.
    fn collect(&mut self, b: usize) {
        let out = std::mem::take(self.cores[b].outbox());
        for o in out {
            match o.side {
                Side::Dial(i) => {
                    let to = self.dials[b][i as usize];
                    let (header, payload) = self.encode_from(b, o.msg);
                    self.wire.push_back(Wire {
                        to,
                        from_router: Some(dial_routing_id(self.ids[b], i)),
                        from_dial: None,
                        from: b,
                        header,
                        payload,
                    });
                }
                Side::Cluster => {
                    // Back to the broker whose dial has that routing id.
                    let rid = o.peer.to_vec();
                    let Some((to, index)) = self.dial_of(&rid) else {
                        continue;
                    };
                    let (header, payload) = self.encode_from(b, o.msg);
                    self.wire.push_back(Wire {
                        to,
                        from_router: None,
                        from_dial: Some(index),
                        from: b,
                        header,
                        payload,
                    });
                }
                side => self.local[b].push_back(Local {
                    side,
                    peer: o.peer.to_vec(),
                    msg: o.msg,
                }),
            }
        }
    }

    /// Encodes what broker `b` sends a member, as a 1.4 broker if `b` is
    /// old.
    fn encode_from(&self, b: usize, msg: Message) -> (Vec<u8>, protocol::Payload) {
        let (mut header, payload) = encode(msg);
        if self.old.contains(&b) {
            assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
            header[3] = 4;
        }
        (header, payload)
    }

    fn dial_of(&self, rid: &[u8]) -> Option<(usize, u32)> {
        (0..self.cores.len()).find_map(|b| {
            (0..self.dials[b].len() as u32)
                .find(|&i| dial_routing_id(self.ids[b], i) == rid)
                .map(|i| (b, i))
        })
    }

    /// Delivers cluster messages until none is left.
    fn settle(&mut self) {
        let mut steps = 0;
        while let Some(w) = self.wire.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "the cluster does not settle");
            if !self.reachable(w.from, w.to) {
                continue;
            }
            let now = self.now();
            let from = match (&w.from_router, w.from_dial) {
                (Some(rid), _) => ClusterFrom::Router(rid),
                (None, Some(i)) => ClusterFrom::Dial(i),
                (None, None) => continue,
            };
            self.cores[w.to].on_cluster(now, from, &w.header, w.payload);
            self.collect(w.to);
        }
    }

    /// Moves the clock forward by `ms` and ticks every live broker, after
    /// a heartbeat from each client and worker (as theirs would).
    fn tick(&mut self, ms: u64) {
        self.now_ms += ms;
        let now = self.now();
        let (header, _) = encode(Message::Heartbeat { heartbeat_ms: 0 });
        for (b, side, peer) in self.alive.clone() {
            if self.down.contains(&b) {
                continue;
            }
            self.deliver(b, side, &peer, &header, Vec::new());
        }
        for b in 0..self.cores.len() {
            if !self.down.contains(&b) {
                self.cores[b].on_tick(now);
                self.collect(b);
            }
        }
        self.settle();
    }

    /// Lets `total` ms pass in steps of `step`, with heartbeats flowing.
    fn run_for(&mut self, total: u64, step: u64) {
        let mut t = 0;
        while t < total {
            self.tick(step);
            t += step;
        }
    }

    // --- clients and workers ---

    /// Broker `b` takes a message from `peer`, a worker on the backend
    /// (`side` `Backend`) or else a client on the frontend, now.
    fn deliver(
        &mut self,
        b: usize,
        side: Side,
        peer: &[u8],
        header: &[u8],
        payload: protocol::Payload,
    ) {
        let now = self.now();
        match side {
            Side::Backend => self.cores[b].on_backend(now, peer, header, payload, || None),
            _ => self.cores[b].on_frontend(now, peer, header, payload, || None),
        }
    }

    /// `peer` on `side` of broker `b` sends `msg`, and the cluster settles.
    fn peer_sends(&mut self, b: usize, side: Side, peer: &[u8], msg: Message) {
        let (header, payload) = encode(msg);
        self.deliver(b, side, peer, &header, payload);
        self.collect(b);
        self.settle();
    }

    fn client_sends(&mut self, b: usize, client: &[u8], msg: Message) {
        self.peer_sends(b, Side::Frontend, client, msg);
    }

    fn worker_sends(&mut self, b: usize, worker: &[u8], msg: Message) {
        self.peer_sends(b, Side::Backend, worker, msg);
    }

    /// `client` connected to broker `b` too.
    fn and_client(mut self, b: usize, client: &[u8]) -> Self {
        self.connect(b, client);
        self
    }

    /// `worker` connected to broker `b` too, serving `T` with `capacity`
    /// credits.
    fn and_worker(mut self, b: usize, worker: &[u8], capacity: u32) -> Self {
        self.connect_worker(b, worker, &[T], capacity);
        self
    }

    fn connect(&mut self, b: usize, client: &[u8]) {
        let hello = Hello {
            heartbeat_ms: HB,
            name: None,
            route: Vec::new(),
        };
        self.client_sends(b, client, Message::Hello(hello));
        self.drain_local(b);
        self.alive
            .retain(|(_, side, p)| !(*side == Side::Frontend && p == client));
        self.alive.push((b, Side::Frontend, client.to_vec()));
    }

    fn connect_worker(&mut self, b: usize, worker: &[u8], types: &[u32], capacity: u32) {
        let ready = Ready {
            heartbeat_ms: HB,
            capacity,
            request_types: types.to_vec(),
            type_names: Vec::new(),
            name: None,
        };
        self.worker_sends(b, worker, Message::Ready(ready));
        self.alive
            .retain(|(_, side, p)| !(*side == Side::Backend && p == worker));
        self.alive.push((b, Side::Backend, worker.to_vec()));
    }

    fn request(&mut self, b: usize, client: &[u8], t: u32, id: u64, flags: Flags) {
        let msg = Message::Request(req(t, id, flags, &[b"body"]));
        self.client_sends(b, client, msg);
    }

    fn result(&mut self, b: usize, worker: &[u8], t: u32, id: u64, body: &[u8]) {
        let (attempt, dispatch_tag) = self.dispatches[&(b, worker.to_vec(), t, id)];
        let msg = Message::Result(WorkResult {
            request_type: t,
            request_id: id,
            attempt,
            dispatch_tag,
            status: Status::Ok,
            error: None,
            payload: payload(&[body]),
        });
        self.worker_sends(b, worker, msg);
    }

    fn receipt_received(&mut self, b: usize, worker: &[u8], t: u32, id: u64) {
        let msg = Message::ReceiptReceived(RequestRef {
            request_type: t,
            request_id: id,
            route: Vec::new(),
        });
        self.worker_sends(b, worker, msg);
    }

    /// Everything broker `b` sent its clients and workers, WELCOMEs and
    /// heartbeats left out.
    fn drain_local(&mut self, b: usize) -> Vec<Local> {
        let mut out = Vec::new();
        while let Some(l) = self.local[b].pop_front() {
            if matches!(l.msg, Message::Welcome { .. } | Message::Heartbeat { .. }) {
                continue;
            }
            if let Message::Dispatch(d) = &l.msg {
                self.dispatches.insert(
                    (b, l.peer.clone(), d.request_type, d.request_id),
                    (d.attempt, d.dispatch_tag),
                );
            }
            out.push(l);
        }
        out
    }

    fn expect_dispatch(&mut self, b: usize, worker: &[u8], t: u32, id: u64) -> Dispatch {
        let out = self.drain_local(b);
        match out.as_slice() {
            [
                Local {
                    side: Side::Backend,
                    peer,
                    msg: Message::Dispatch(_),
                },
            ] if peer == worker => {}
            other => panic!("broker {b}: expected one DISPATCH to {worker:?}, got {other:?}"),
        }
        let Some(Local {
            msg: Message::Dispatch(d),
            ..
        }) = out.into_iter().next()
        else {
            unreachable!()
        };
        assert_eq!((d.request_type, d.request_id), (t, id));
        d
    }

    fn expect_response(
        &mut self,
        b: usize,
        client: &[u8],
        t: u32,
        id: u64,
        status: Status,
    ) -> Response {
        let out = self.drain_local(b);
        let mut responses: Vec<Response> = out
            .into_iter()
            .filter_map(|l| match l.msg {
                Message::Response(r) if l.peer == client => Some(r),
                Message::Response(r) => panic!("response to another client: {r:?}"),
                _ => None,
            })
            .collect();
        assert_eq!(responses.len(), 1, "broker {b}: one RESPONSE to {client:?}");
        let r = responses.remove(0);
        assert_eq!(
            (r.request_type, r.request_id, r.status),
            (t, id, status),
            "{r:?}"
        );
        r
    }

    /// `worker` on broker `b` sends an `OK` result carrying `body` for
    /// `(T, id)`, which `b"client"` on broker 0 gets as an `OK` response.
    fn result_answered(&mut self, b: usize, worker: &[u8], id: u64, body: &[u8]) -> Response {
        self.result_answered_at(b, worker, (0, b"client"), id, body)
    }

    /// [`Net::result_answered`], to `client` on broker `cb`.
    fn result_answered_at(
        &mut self,
        b: usize,
        worker: &[u8],
        (cb, client): (usize, &[u8]),
        id: u64,
        body: &[u8],
    ) -> Response {
        self.result(b, worker, T, id, body);
        self.expect_response(cb, client, T, id, Status::Ok)
    }

    /// `b"client"` on broker 0 sends two requests whose ids broker `owner`
    /// owns, the first `RETRY_ON_DEATH`, the second plain: their ids.
    fn request_retried_and_plain(&mut self, owner: usize) -> (u64, u64) {
        let retried = self.id_owned_by(owner, T);
        let plain = self.id_owned_by_after(owner, T, retried);
        self.request(0, b"client", T, retried, Flags::RETRY_ON_DEATH);
        self.request(0, b"client", T, plain, Flags::empty());
        (retried, plain)
    }

    /// `(T, id)` goes to `worker` on broker `b`, and its result to
    /// `b"client"` on broker 0 ([`Net::result_answered`]).
    fn dispatch_answered(&mut self, b: usize, worker: &[u8], id: u64, body: &[u8]) {
        self.expect_dispatch(b, worker, T, id);
        self.result_answered(b, worker, id, body);
    }

    fn expect_nothing(&mut self, b: usize) {
        let out = self.drain_local(b);
        assert!(out.is_empty(), "broker {b} sent {out:?}");
    }

    /// A request id of type `t` that broker `owner` owns.
    fn id_owned_by(&self, owner: usize, t: u32) -> u64 {
        self.id_owned_by_after(owner, t, 0)
    }

    /// The next request id after `after` of type `t` that broker `owner`
    /// owns.
    fn id_owned_by_after(&self, owner: usize, t: u32, after: u64) -> u64 {
        (after + 1..)
            .find(|&id| self.cores[0].owner_of(t, id) == Some(self.ids[owner]))
            .expect("some id is owned by every member")
    }

    /// `b"client"` on broker 0 sends a request of type `T` with `flags`,
    /// whose id broker `owner` owns: that id.
    fn request_owned_by(&mut self, owner: usize, flags: Flags) -> u64 {
        let id = self.id_owned_by(owner, T);
        self.request(0, b"client", T, id, flags);
        id
    }

    fn stats(&self, b: usize) -> crate::broker::BrokerStats {
        self.cores[b].stats()
    }
}

const T: u32 = 7;

#[test]
fn three_brokers_form_a_full_mesh_and_agree_on_owners() {
    let net = Net::new(3);
    for b in 0..3 {
        let c = net.stats(b).cluster.expect("clustered");
        let up: Vec<_> = c.peers.iter().filter(|p| p.state == "up").collect();
        assert_eq!(up.len(), 2, "broker {b}: {:?}", c.peers);
        assert_eq!(c.malformed, 0);
    }
    for id in 0..200 {
        let owners: HashSet<_> = (0..3).map(|b| net.cores[b].owner_of(T, id)).collect();
        assert_eq!(owners.len(), 1, "every member picks the same owner");
    }
}

/// A client on A, a worker on C only: served, whichever broker owns the
/// key, receipts included.
#[test]
fn a_request_reaches_a_worker_on_another_broker_whoever_owns_it() {
    let mut net = Net::new(3)
        .and_client(0, b"client")
        .and_worker(2, b"worker", 4);
    net.expect_nothing(2);
    for owner in 0..3 {
        let id = net.id_owned_by(owner, T);
        let flags = Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
        net.request(0, b"client", T, id, flags);
        let d = net.expect_dispatch(2, b"worker", T, id);
        assert_eq!(d.payload.len(), 1);
        let sent = net.drain_local(0);
        assert!(
            matches!(sent.as_slice(), [Local { msg: Message::ReceiptSent(r), .. }] if r.request_id == id && r.route.is_empty()),
            "owner {owner}: {sent:?}"
        );
        net.receipt_received(2, b"worker", T, id);
        let received = net.drain_local(0);
        assert!(
            matches!(received.as_slice(), [Local { msg: Message::ReceiptReceived(r), .. }] if r.request_id == id),
            "owner {owner}: {received:?}"
        );
        let r = net.result_answered(2, b"worker", id, b"done");
        assert_eq!(r.payload.len(), 1);
        assert_eq!(&r.payload[0][..], b"done");
        assert!(r.route.is_empty());
    }
    let a = net.stats(0).cluster.expect("clustered");
    assert_eq!(a.relayed, 0, "every relay record answered");
    assert!(a.forwarded_out >= 2 && a.executed_out >= 1, "{a:?}");
}

/// The same (type, id) through two brokers while the first is pending is
/// rejected, as on one broker.
#[test]
fn dedupe_is_exact_across_brokers() {
    let mut net = Net::new(3);
    net.connect(0, b"ca");
    net.connect(1, b"cb");
    for owner in 0..3 {
        let id = net.id_owned_by(owner, T);
        net.request(0, b"ca", T, id, Flags::empty());
        net.expect_nothing(0);
        net.request(1, b"cb", T, id, Flags::empty());
        net.expect_response(1, b"cb", T, id, Status::Rejected);
        net.expect_nothing(0);
    }
    // A worker anywhere then serves the three queued requests, once each.
    net.connect_worker(2, b"w", &[T], 8);
    let out = net.drain_local(2);
    assert_eq!(out.len(), 3, "{out:?}");
}

/// A client that moves to another entry broker and re-sends is the same
/// requester: no second run, and the response comes through the new one.
#[test]
fn a_resend_through_another_entry_broker_is_idempotent() {
    let mut net = Net::new(3);
    net.connect_worker(2, b"w", &[T], 1);
    net.connect(0, b"client");
    let id = net.request_owned_by(1, Flags::empty());
    net.expect_dispatch(2, b"w", T, id);
    // The client moves to broker 2 (same routing id) and re-sends.
    net.connect(2, b"client");
    net.request(2, b"client", T, id, Flags::empty());
    net.expect_nothing(2);
    assert_eq!(net.stats(1).requests_resent, 1);
    net.result_answered_at(2, b"w", (2, b"client"), id, b"once");
    net.expect_nothing(0);
}

/// Local workers first: a request owned by a broker with a free worker of
/// its own never crosses to another.
#[test]
fn an_owner_serves_with_its_own_workers_first() {
    let mut net = Net::new(2).and_client(0, b"client").and_worker(0, b"w0", 1);
    net.connect_worker(1, b"w1", &[T], 1);
    let id = net.request_owned_by(0, Flags::empty());
    net.expect_dispatch(0, b"w0", T, id);
    net.expect_nothing(1);
    // Its worker busy, the next goes to the other broker's.
    let id2 = net.id_owned_by_after(0, T, id);
    net.request(0, b"client", T, id2, Flags::empty());
    net.expect_dispatch(1, b"w1", T, id2);
}

/// The worker's broker dies: its owners treat it as a worker death.
#[test]
fn an_executor_that_dies_is_a_worker_death_to_the_owner() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w2", 4);
    let (retried, plain) = net.request_retried_and_plain(0);
    net.drain_local(2);
    net.down.insert(2);
    // Missed heartbeats: 3 intervals of 1 s.
    net.run_for(3500, 250);
    net.expect_response(0, b"client", T, plain, Status::WorkerDeath);
    // The retried one waits at its owner; a worker on broker 1 gets it.
    net.connect_worker(1, b"w1", &[T], 4);
    net.dispatch_answered(1, b"w1", retried, b"second");
}

/// The owner dies: the entry broker sends `RETRY_ON_DEATH` requests to the
/// new owner and answers the others.
#[test]
fn an_owner_that_dies_leaves_no_request_without_an_outcome() {
    let mut net = Net::new(3).and_client(0, b"client");
    let (retried, plain) = net.request_retried_and_plain(1);
    net.expect_nothing(0);
    net.down.insert(1);
    net.run_for(3500, 250);
    net.expect_response(0, b"client", T, plain, Status::WorkerDeath);
    assert_eq!(net.stats(0).cluster.map(|c| c.owner_lost), Some(2));
    // The retried one is held by a live owner now, and served.
    net.connect_worker(2, b"w", &[T], 1);
    net.dispatch_answered(2, b"w", retried, b"ok");
}

/// Requests an executor queued for an owner go back when its last worker
/// of the type leaves, and are served elsewhere.
#[test]
fn an_executor_returns_what_it_queued_when_its_workers_leave() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w2", 1);
    // Two owners each fill broker 2's capacity of 1: the second request
    // waits in broker 2's queue.
    let first = net.id_owned_by(0, T);
    let second = net.id_owned_by(1, T);
    net.request(0, b"client", T, first, Flags::empty());
    net.expect_dispatch(2, b"w2", T, first);
    net.request(0, b"client", T, second, Flags::empty());
    net.expect_nothing(2);
    assert_eq!(net.stats(2).pending, 1);
    // Its worker leaves: the queued one goes back to its owner unrun.
    net.worker_sends(2, b"w2", Message::Disconnect { route: Vec::new() });
    net.result_answered(2, b"w2", first, b"first");
    assert_eq!(net.stats(2).pending, 0);
    assert_eq!(net.stats(1).cluster.map(|c| c.executions_returned), Some(1));
    assert_eq!(net.stats(1).pending, 1, "back in its owner's queue");
    // It runs on the next worker of the cluster, as its first attempt.
    net.connect_worker(0, b"w0", &[T], 1);
    let d = net.expect_dispatch(0, b"w0", T, second);
    assert_eq!(d.attempt, 1);
    net.result_answered(0, b"w0", second, b"second");
}

#[test]
fn a_broker_listed_as_its_own_peer_ignores_itself() {
    let net = Net::with(2, |b, c| {
        if b == 0 {
            c.cluster_peers.push("inproc://cluster-0".to_owned());
        }
    });
    let c = net.stats(0).cluster.expect("clustered");
    assert!(c.peers.iter().any(|p| p.state == "self"), "{:?}", c.peers);
    assert_eq!(c.peers.iter().filter(|p| p.state == "up").count(), 1);
}

#[test]
fn a_peer_speaking_another_major_version_is_refused_and_counted() {
    let mut net = Net::new(2);
    let now = net.now();
    let mut header = Vec::new();
    let hello = Message::PeerHello(protocol::PeerHello {
        broker_id: 99,
        heartbeat_ms: HB,
        name: None,
    });
    let _ = hello.encode(&mut header);
    header[1] = 2; // major 2
    net.cores[0].on_cluster(now, ClusterFrom::Router(b"stranger"), &header, Vec::new());
    let out = std::mem::take(net.cores[0].outbox());
    assert!(
        matches!(out.as_slice(), [o] if matches!(&o.msg, Message::Error(e) if e.error.contains("unsupported protocol version"))),
        "{out:?}"
    );
    // Garbage too, and a hop limit beyond 2: counted, never a member.
    net.cores[0].on_cluster(
        now,
        ClusterFrom::Router(b"stranger"),
        &[0xFF, 0x01],
        Vec::new(),
    );
    let c = net.stats(0).cluster.expect("clustered");
    assert_eq!(c.malformed, 2);
    assert_eq!(c.peers.iter().filter(|p| p.state == "up").count(), 1);
}

/// A partition: each side goes on alone; after the heal the routes come
/// back and requests cross again.
#[test]
fn a_partition_heals() {
    let mut net = Net::new(2).and_client(0, b"client").and_worker(1, b"w", 1);
    net.cut.insert((0, 1));
    net.run_for(4000, 250);
    assert_eq!(net.stats(0).cluster.map(|c| c.peer_losses), Some(1));
    // The client was silent all along: it greets again. Alone, broker 0
    // owns every key and queues the request (no worker on its side).
    net.connect(0, b"client");
    let id = 5;
    net.request(0, b"client", T, id, Flags::empty());
    net.expect_nothing(0);
    assert_eq!(net.stats(0).pending, 1);
    net.cut.clear();
    net.run_for(2000, 250);
    assert_eq!(
        net.stats(0)
            .cluster
            .map(|c| c.peers.iter().filter(|p| p.state == "up").count()),
        Some(1)
    );
    // The worker was silent too, and registers again.
    net.connect_worker(1, b"w", &[T], 1);
    net.dispatch_answered(1, b"w", id, b"healed");
}

// ----- the randomized model check --------------------------------------

/// Seeded random traffic on a stable three-broker cluster: clients and
/// workers on random brokers, keys shared between clients, results in any
/// order. Invariants: no request runs twice at once, no worker runs more
/// than its capacity, and once everything is done every two-way request
/// sent has exactly one RESPONSE.
#[test]
fn model_check_no_request_is_lost_or_run_twice_while_membership_is_stable() {
    for seed in 1..=40u64 {
        run_model(seed);
    }
}

/// What the cluster model check has seen of the brokers' outputs.
#[derive(Default)]
struct Seen {
    seed: u64,
    /// The requests running on each (broker, worker).
    running: HashMap<(usize, Vec<u8>), Vec<u64>>,
    /// The statuses each (client, id) was answered.
    responses: HashMap<(Vec<u8>, u64), Vec<Status>>,
    /// How many times each id was dispatched.
    executed: HashMap<u64, u32>,
    /// The runs a CANCEL reached (their result answers nobody).
    told: HashSet<(usize, Vec<u8>, u64)>,
    /// How many of those runs have answered.
    cancelled_runs: u32,
}

impl Seen {
    /// Reads what every broker sent its clients and workers, checking
    /// that no request runs twice at once and that a CANCEL reaches only a
    /// run, once.
    fn collect(&mut self, net: &mut Net) {
        let seed = self.seed;
        for b in 0..3 {
            for l in net.drain_local(b) {
                match l.msg {
                    Message::Cancel(c) => {
                        let runs = self
                            .running
                            .get(&(b, l.peer.clone()))
                            .is_some_and(|list| list.contains(&c.request_id));
                        assert!(runs, "seed {seed}: CANCEL for a request not running there");
                        assert!(
                            self.told.insert((b, l.peer, c.request_id)),
                            "seed {seed}: told twice"
                        );
                    }
                    Message::Dispatch(d) => {
                        *self.executed.entry(d.request_id).or_default() += 1;
                        let list = self.running.entry((b, l.peer.clone())).or_default();
                        assert!(
                            !list.contains(&d.request_id),
                            "seed {seed}: run twice at once"
                        );
                        list.push(d.request_id);
                    }
                    Message::Response(r) => {
                        self.responses
                            .entry((l.peer, r.request_id))
                            .or_default()
                            .push(r.status);
                    }
                    _ => {}
                }
            }
        }
    }

    /// `worker` on broker `b` sends the result of its run of `id` (taken
    /// out of `running` already).
    fn answer(&mut self, net: &mut Net, b: usize, worker: &[u8], id: u64) {
        if self.told.remove(&(b, worker.to_vec(), id)) {
            self.cancelled_runs += 1;
        }
        net.result(b, worker, T, id, b"r");
    }
}

fn run_model(seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut net = Net::new(3);
    let clients: Vec<(usize, Vec<u8>)> = (0..4)
        .map(|i| ((i % 3) as usize, format!("c{i}").into_bytes()))
        .collect();
    for (b, c) in &clients {
        net.connect(*b, c);
    }
    let workers: Vec<(usize, Vec<u8>, u32)> = (0..3)
        .map(|i| {
            (
                next(3) as usize,
                format!("w{i}").into_bytes(),
                1 + next(3) as u32,
            )
        })
        .collect();
    for (b, w, cap) in &workers {
        net.connect_worker(*b, w, &[T], *cap);
    }
    // key -> the client that got it admitted (None: rejected).
    let mut sent: Vec<(usize, u64)> = Vec::new();
    // Requests their client cancelled (owed no RESPONSE).
    let mut cancelled: Vec<(usize, u64)> = Vec::new();
    let mut seen = Seen {
        seed,
        ..Seen::default()
    };
    // How many of `c`'s requests with `id` still wait for an outcome.
    let waiting = |sent: &[(usize, u64)],
                   cancelled: &[(usize, u64)],
                   responses: &HashMap<(Vec<u8>, u64), Vec<Status>>,
                   c: usize,
                   id: u64| {
        let client = clients[c].1.clone();
        let sent = sent.iter().filter(|&&s| s == (c, id)).count();
        let ended = cancelled.iter().filter(|&&s| s == (c, id)).count()
            + responses.get(&(client, id)).map_or(0, Vec::len);
        sent - ended
    };
    for _ in 0..300 {
        let dice = next(100);
        if dice < 55 {
            let c = next(clients.len() as u64) as usize;
            let id = 1 + next(40);
            let (b, client) = clients[c].clone();
            // A client does not reuse a key it still waits on (that would
            // be an idempotent re-send, answered once).
            if waiting(&sent, &cancelled, &seen.responses, c, id) > 0 {
                continue;
            }
            net.request(b, &client, T, id, Flags::empty());
            sent.push((c, id));
        } else if dice < 63 {
            // A client cancels one of the requests it waits on.
            let c = next(clients.len() as u64) as usize;
            let mut ids: Vec<u64> = sent
                .iter()
                .filter(|s| s.0 == c)
                .map(|s| s.1)
                .filter(|&id| waiting(&sent, &cancelled, &seen.responses, c, id) > 0)
                .collect();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            let id = ids[next(ids.len() as u64) as usize];
            let (b, client) = clients[c].clone();
            cancel(&mut net, b, &client, T, id);
            cancelled.push((c, id));
        } else {
            let w = next(workers.len() as u64) as usize;
            let (b, worker, _) = workers[w].clone();
            let list = seen.running.entry((b, worker.clone())).or_default();
            if !list.is_empty() {
                let id = list.remove(next(list.len() as u64) as usize);
                seen.answer(&mut net, b, &worker, id);
            }
        }
        seen.collect(&mut net);
        for (b, w, cap) in &workers {
            let n = seen.running.get(&(*b, w.clone())).map_or(0, Vec::len);
            assert!(n <= *cap as usize, "seed {seed}: worker over capacity");
        }
    }
    // Finish everything.
    for _ in 0..10_000 {
        let busy: Vec<_> = seen
            .running
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        let Some((b, worker)) = busy.first().cloned() else {
            break;
        };
        let id = seen
            .running
            .get_mut(&(b, worker.clone()))
            .map(|l| l.remove(0))
            .unwrap_or(0);
        seen.answer(&mut net, b, &worker, id);
        seen.collect(&mut net);
    }
    for &(c, id) in &sent {
        assert_eq!(
            waiting(&sent, &cancelled, &seen.responses, c, id),
            0,
            "seed {seed}: request {id} of client {c} has no outcome"
        );
    }
    let total: usize = seen.responses.values().map(Vec::len).sum();
    assert_eq!(
        total,
        sent.len() - cancelled.len(),
        "seed {seed}: one RESPONSE per request sent and not cancelled"
    );
    let ok: usize = seen
        .responses
        .values()
        .flatten()
        .filter(|s| **s == Status::Ok)
        .count();
    let runs: u32 = seen.executed.values().sum();
    assert_eq!(
        ok as u32 + seen.cancelled_runs,
        runs,
        "seed {seed}: each run answers exactly one request, but a cancelled one"
    );
    for b in 0..3 {
        assert_eq!(net.stats(b).cluster.map(|c| c.relayed), Some(0));
    }
}

/// An executor that refuses an EXECUTE with an ERROR naming it: the owner
/// ends that execution FAILED instead of waiting for an answer.
#[test]
fn an_error_for_an_execute_ends_it_failed() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w", 1);
    let id = net.request_owned_by(0, Flags::empty());
    net.drain_local(2);
    let dial_to_2 = net.dials[0].iter().position(|&b| b == 2).unwrap_or(0) as u32;
    let (header, body) = encode(Message::Error(protocol::ErrorReply {
        error: "refused".to_owned(),
        request: Some(RequestRef {
            request_type: T,
            request_id: id,
            route: Vec::new(),
        }),
        status: None,
    }));
    let now = net.now();
    net.cores[0].on_cluster(now, ClusterFrom::Dial(dial_to_2), &header, body);
    net.collect(0);
    let r = net.expect_response(0, b"client", T, id, Status::Failed);
    assert!(r.error.unwrap_or_default().contains("refused"));
    assert_eq!(net.stats(0).cluster.map(|c| c.errors), Some(1));
}

/// The owner dies while an executor runs its request: the entry broker
/// sends it to the new owner, whose request for it the executor takes as
/// the same one (no REJECTED, no second run), and the result reaches the
/// client.
#[test]
fn a_new_owner_takes_over_a_request_running_for_a_dead_one() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w", 1);
    let id = net.request_owned_by(1, Flags::RETRY_ON_DEATH);
    net.expect_dispatch(2, b"w", T, id);
    net.down.insert(1);
    net.run_for(3500, 250);
    // Re-sent to the new owner; the executor keeps the one run it has.
    net.expect_nothing(2);
    assert_eq!(net.stats(2).requests_resent, 1);
    net.result_answered(2, b"w", id, b"once");
}

/// A message the driver could not send on a route is lost: the route goes
/// down at once (what it held is sent again elsewhere), and comes back
/// with the next greeting.
#[test]
fn a_route_that_refuses_a_message_goes_down_and_comes_back() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w", 1);
    net.request_owned_by(1, Flags::RETRY_ON_DEATH);
    net.drain_local(2);
    // Say that FORWARD to broker 1 was refused by the socket.
    // (On whichever connection the route sends: broker 0's DEALER to 1,
    // or broker 1's DEALER to 0 seen from 0's ROUTER.)
    let dial_to_1 = net.dials[0].iter().position(|&b| b == 1).unwrap_or(0) as u32;
    let dial_1_to_0 = net.dials[1].iter().position(|&b| b == 0).unwrap_or(0) as u32;
    let rid = dial_routing_id(net.ids[1], dial_1_to_0);
    net.cores[0].cluster_send_failed(Side::Dial(dial_to_1), &[]);
    net.cores[0].cluster_send_failed(Side::Cluster, &rid);
    net.collect(0);
    net.settle();
    let c = net.stats(0).cluster.expect("clustered");
    assert_eq!((c.peer_losses, c.owner_lost), (1, 1));
    // The route greets again and comes back.
    net.run_for(1500, 250);
    let c = net.stats(0).cluster.expect("clustered");
    assert_eq!(c.peers.iter().filter(|p| p.state == "up").count(), 2);
}

/// A deadline travels with a forwarded request: its owner ends it
/// `EXPIRED` when it passes, and the client hears it through its broker.
#[test]
fn a_forwarded_request_expires_at_its_owner() {
    let mut net = Net::new(2).and_client(0, b"client");
    let id = net.id_owned_by(1, T);
    let mut r = req(T, id, Flags::empty(), &[b"late"]);
    r.deadline_ms = 400;
    net.client_sends(0, b"client", Message::Request(r));
    assert_eq!(net.stats(1).pending, 1);
    net.run_for(500, 100);
    net.expect_response(0, b"client", T, id, Status::Expired);
    assert_eq!(net.stats(1).requests_expired, 1);
    assert_eq!(net.stats(0).cluster.map(|c| c.relayed), Some(0));
}

/// The retry copy an entry broker keeps for a forwarded `RETRY_ON_DEATH`
/// request counts as held bytes until its answer comes.
#[test]
fn a_relay_retry_copy_counts_as_held_bytes() {
    let mut net = Net::new(2).and_client(0, b"client").and_worker(1, b"w", 1);
    let id = net.request_owned_by(1, Flags::RETRY_ON_DEATH);
    assert_eq!(net.stats(0).pending_bytes, 4, "the 4-byte body is kept");
    net.dispatch_answered(1, b"w", id, b"ok");
    assert_eq!(net.stats(0).pending_bytes, 0);
}

/// A one-way request run by another broker still gives its owner the
/// member's slot back: the executor answers every EXECUTE, one-way ones
/// included (found by a review: the owner's slot was never freed).
#[test]
fn a_one_way_execute_gives_the_owners_slot_back() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w", 1);
    let id = net.request_owned_by(1, Flags::ONE_WAY);
    net.expect_dispatch(2, b"w", T, id);
    assert_eq!(net.stats(1).in_flight, 1);
    net.result(2, b"w", T, id, b"done");
    assert_eq!(net.stats(1).in_flight, 0, "the owner's remote slot is free");
    net.expect_nothing(0);
    // And one that expires queued at the executor, too.
    let busy = net.id_owned_by(2, T);
    net.request(2, b"client2", T, busy, Flags::empty());
    net.drain_local(2);
    let late = net.id_owned_by_after(1, T, id);
    let mut r = req(T, late, Flags::ONE_WAY, &[b"late"]);
    r.deadline_ms = 300;
    net.client_sends(0, b"client", Message::Request(r));
    assert_eq!(net.stats(2).pending, 1, "queued at the executor");
    net.run_for(400, 100);
    assert_eq!(net.stats(2).requests_expired, 1);
    assert_eq!(net.stats(1).in_flight, 0);
}

/// Names travel with SERVES (protocol 1.6): a broker names the types of
/// another member's workers too.
#[test]
fn members_learn_the_names_of_the_types_others_serve() {
    let mut net = Net::new(2).and_client(0, b"client");
    let ready = Ready {
        heartbeat_ms: HB,
        capacity: 1,
        request_types: vec![T],
        type_names: vec!["orders.create".to_owned()],
        name: None,
    };
    net.worker_sends(1, b"worker", Message::Ready(ready));
    net.alive.push((1, Side::Backend, b"worker".to_vec()));
    net.settle();
    assert_eq!(
        net.stats(0).types[&T].name.as_deref(),
        Some("orders.create"),
        "learned from the member's SERVES"
    );
    assert_eq!(
        net.stats(1).types[&T].name.as_deref(),
        Some("orders.create")
    );
}

/// A client on broker `b` cancels `(t, id)`.
fn cancel(net: &mut Net, b: usize, client: &[u8], t: u32, id: u64) {
    let msg = Message::Cancel(protocol::Cancel {
        request_type: t,
        request_id: id,
        route: Vec::new(),
        dispatch_tag: 0,
    });
    net.client_sends(b, client, msg);
}

/// The next local output of broker `b` must be a CANCEL to `worker` for
/// `(t, id)`, naming the dispatch that broker gave it.
fn expect_cancel(net: &mut Net, b: usize, worker: &[u8], t: u32, id: u64) {
    let out = net.drain_local(b);
    let tag = net.dispatches[&(b, worker.to_vec(), t, id)].1;
    assert!(
        matches!(out.as_slice(), [Local { side: Side::Backend, peer, msg: Message::Cancel(c) }]
            if peer == worker && (c.request_type, c.request_id, c.dispatch_tag) == (t, id, tag)),
        "broker {b}: expected a CANCEL to {worker:?}, got {out:?}"
    );
}

/// Entry → owner → executor: the client's CANCEL follows its request's
/// path, and reaches the worker running it with its executor's tag
/// (docs/deadlines.md §2). Nothing answers the client; the worker's
/// result gives every slot back and goes nowhere.
#[test]
fn a_request_run_on_another_broker_is_cancelled_through_its_owner() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w", 1);
    let id = net.request_owned_by(1, Flags::RETRY_ON_DEATH);
    net.expect_dispatch(2, b"w", T, id);
    assert_eq!(net.stats(0).cluster.map(|c| c.relayed), Some(1));
    cancel(&mut net, 0, b"client", T, id);
    expect_cancel(&mut net, 2, b"w", T, id);
    net.expect_nothing(0);
    assert_eq!(net.stats(0).cluster.map(|c| c.relayed), Some(0));
    assert_eq!(net.stats(0).pending_bytes, 0, "the relay's retry copy goes");
    assert_eq!(net.stats(1).requests_cancelled, 1);
    assert_eq!(net.stats(2).requests_cancelled, 1);
    net.result(2, b"w", T, id, b"late");
    net.expect_nothing(0);
    assert_eq!((net.stats(1).in_flight, net.stats(2).in_flight), (0, 0));
    // Every slot is free: the next request runs.
    let next = net.id_owned_by_after(1, T, id);
    net.request(0, b"client", T, next, Flags::empty());
    net.dispatch_answered(2, b"w", next, b"ok");
}

/// A forwarded request still queued at its owner: cancelled there, it
/// never runs. Another client's CANCEL, through the same entry broker,
/// cancels nothing.
#[test]
fn a_forwarded_request_queued_at_its_owner_is_cancelled_there() {
    let mut net = Net::new(2).and_client(0, b"client");
    net.connect(0, b"other");
    let id = net.request_owned_by(1, Flags::empty());
    assert_eq!(net.stats(1).pending, 1);
    cancel(&mut net, 0, b"other", T, id);
    assert_eq!(net.stats(1).pending, 1);
    assert_eq!(net.stats(1).cancels_ignored, 1);
    cancel(&mut net, 0, b"client", T, id);
    assert_eq!(
        (net.stats(1).pending, net.stats(1).requests_cancelled),
        (0, 1)
    );
    net.connect_worker(1, b"w", &[T], 1);
    net.expect_nothing(1);
    net.expect_nothing(0);
}

/// An EXECUTE queued at its executor (its worker busy) is cancelled out of
/// that queue; the executor still answers the owner (EXECUTED, which gives
/// the owner's slot back and is dropped there).
#[test]
fn an_execute_queued_at_its_executor_is_cancelled_there() {
    let mut net = Net::new(3).and_client(0, b"client");
    net.connect(2, b"local");
    net.connect_worker(2, b"w", &[T], 1);
    // Broker 2's own client keeps its worker busy.
    let busy = net.id_owned_by(2, T);
    net.request(2, b"local", T, busy, Flags::empty());
    net.expect_dispatch(2, b"w", T, busy);
    let id = net.request_owned_by(1, Flags::empty());
    assert_eq!(net.stats(2).pending, 1, "queued at the executor");
    assert_eq!(net.stats(1).in_flight, 1, "in flight at the owner");
    cancel(&mut net, 0, b"client", T, id);
    assert_eq!(net.stats(2).pending, 0);
    assert_eq!(net.stats(1).in_flight, 0, "the owner's slot is back");
    net.expect_nothing(0);
    // The busy worker's next job is not the cancelled one.
    net.result_answered_at(2, b"w", (2, b"local"), busy, b"ok");
    net.expect_nothing(2);
}

/// The entry broker may also be the executor: its client's request goes to
/// the owner and comes back as an EXECUTE for the entry's own worker. The
/// client's CANCEL, meeting the key held there for the owner, still goes to
/// the owner, which cancels it back at the entry's worker (found by the
/// cluster model check: the entry took the CANCEL as a stranger's).
#[test]
fn a_request_run_by_its_entry_broker_for_another_owner_is_cancelled() {
    let mut net = Net::new(2).and_client(0, b"client").and_worker(0, b"w", 1);
    // Broker 1 learns that broker 0 serves the type.
    let id = net.request_owned_by(1, Flags::empty());
    net.expect_dispatch(0, b"w", T, id);
    cancel(&mut net, 0, b"client", T, id);
    expect_cancel(&mut net, 0, b"w", T, id);
    assert_eq!(net.stats(0).cancels_ignored, 0);
    net.result(0, b"w", T, id, b"late");
    net.expect_nothing(0);
    assert_eq!((net.stats(0).in_flight, net.stats(1).in_flight), (0, 0));
}

/// An executor older than 1.5 (its greetings say minor 4) is never sent
/// CANCEL (it would refuse kind 25): the request runs to its end there, and
/// the owner drops its EXECUTED; the client got `Cancelled` all the same.
#[test]
fn a_member_older_than_1_5_is_not_sent_cancel() {
    let mut net = Net::with_old(3, &[2])
        .and_client(0, b"client")
        .and_worker(2, b"w", 1);
    let id = net.request_owned_by(1, Flags::empty());
    net.expect_dispatch(2, b"w", T, id);
    cancel(&mut net, 0, b"client", T, id);
    assert_eq!(net.stats(1).requests_cancelled, 1);
    net.expect_nothing(2);
    assert_eq!(net.stats(2).requests_cancelled, 0);
    assert_eq!(net.stats(2).cluster.map(|c| c.malformed), Some(0));
    net.result(2, b"w", T, id, b"late");
    net.expect_nothing(0);
    assert_eq!((net.stats(1).in_flight, net.stats(2).in_flight), (0, 0));
}

/// A worker of an executor gives back (RETURNED, protocol 1.8) a request
/// an owner gave that executor: the executor queues it again itself and
/// another of its workers runs it; nothing about it crosses brokers but
/// the one EXECUTED. Once the executor has no worker of the type left,
/// what it still holds goes back to the owner as any queued execution
/// does.
#[test]
fn an_executor_requeues_a_request_its_worker_gives_back() {
    let mut net = Net::new(3).and_client(0, b"client").and_worker(2, b"w2", 1);
    let id = net.request_owned_by(1, Flags::empty());
    let d = net.expect_dispatch(2, b"w2", T, id);
    net.worker_sends(2, b"w2", Message::Disconnect { route: Vec::new() });
    net.connect_worker(2, b"w2b", &[T], 1);
    let returned = |d: &Dispatch| {
        Message::Result(WorkResult {
            request_type: d.request_type,
            request_id: d.request_id,
            attempt: d.attempt,
            dispatch_tag: d.dispatch_tag,
            status: Status::Returned,
            error: None,
            payload: payload(&[b"body"]),
        })
    };
    net.worker_sends(2, b"w2", returned(&d));
    // Broker 2's other worker gets it, same attempt, same payload.
    let again = net.expect_dispatch(2, b"w2b", T, id);
    assert_eq!(again.attempt, d.attempt);
    assert_eq!(again.payload.len(), 1);
    assert_eq!(&again.payload[0][..], b"body");
    assert_eq!(net.stats(2).requests_returned, 1);
    assert_eq!(net.stats(1).cluster.map(|c| c.executions_returned), Some(0));
    net.result_answered(2, b"w2b", id, b"done");
    // w2b leaves too, giving back a new one: broker 2 has no worker of
    // the type left, so the request goes back to its owner, unrun.
    let next = net.id_owned_by_after(1, T, id);
    net.request(0, b"client", T, next, Flags::empty());
    let d = net.expect_dispatch(2, b"w2b", T, next);
    net.worker_sends(2, b"w2b", Message::Disconnect { route: Vec::new() });
    net.worker_sends(2, b"w2b", returned(&d));
    assert_eq!(net.stats(2).pending, 0);
    assert_eq!(net.stats(1).cluster.map(|c| c.executions_returned), Some(1));
    net.connect_worker(1, b"w1", &[T], 1);
    let d = net.expect_dispatch(1, b"w1", T, next);
    assert_eq!(d.attempt, 1);
}

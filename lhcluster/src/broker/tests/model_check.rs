//! The randomized model check: seeded random interleavings of every input
//! against a simple model of the broker, checking its invariants after
//! each step.

use std::collections::{HashMap, HashSet};

use super::*;

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
    /// Which admission of its key this is (a takeover keeps it): a worker's
    /// ghost of an earlier one is another request.
    serial: u64,
    /// Its requester cancelled it while a worker ran it: its end goes to
    /// nobody, and its key is refused until then.
    cancelled: bool,
}

/// A dispatch a worker was running when it was declared dead: the worker
/// finishes it anyway and, once registered again, sends its result late.
#[derive(Debug)]
struct Ghost {
    key: Key,
    attempt: u32,
    dispatch_tag: u64,
    serial: u64,
}

#[derive(Debug)]
struct MWorker {
    peer: Vec<u8>,
    registered: bool,
    draining: bool,
    types: Vec<u32>,
    capacity: u32,
    /// What the broker has dispatched to it and not seen answered, with the
    /// tag of each DISPATCH.
    outstanding: HashMap<Key, u64>,
    last_heard: u64,
    ghosts: Vec<Ghost>,
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
    /// Its requester cancelled it: it ended at the client, and the broker
    /// owes it nothing.
    cancelled: bool,
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
    /// CANCEL (worker, key, tag of the dispatch it names).
    cancels: Vec<(usize, Key, u64)>,
}

impl Expect {
    /// The receipts `c`'s request for `key`, sent with `flags`, earns at
    /// once when it joins one in flight (`received`: its worker said so).
    fn earned_receipts(&mut self, c: usize, key: Key, flags: Flags, received: bool) {
        if flags.contains(Flags::RECEIPT_ON_SEND) {
            self.receipts.push((c, key));
        }
        if received && flags.contains(Flags::RECEIPT_ON_RECEIVE) {
            self.received.push((c, key));
        }
    }
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
    stale_results: u64,
    cancels_ignored: u64,
    /// RETURNED results that answered the current dispatch.
    returned: u64,
    /// Ghost results of an ended request whose key a new request on the
    /// same worker has, at the same attempt: only the tag tells them apart.
    reused_key_ghosts: u64,
    /// Every tag the broker has put on a DISPATCH.
    tags: HashSet<u64>,
    serials: u64,
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
                outstanding: HashMap::new(),
                last_heard: 0,
                ghosts: Vec::new(),
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
            stale_results: 0,
            cancels_ignored: 0,
            returned: 0,
            reused_key_ghosts: 0,
            tags: HashSet::new(),
            serials: 0,
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

    /// A receipt `r` (`desc`) went to `peer`: it must be in the list of
    /// `expect` that `list` picks, and is taken off it.
    fn take_receipt(
        &self,
        expect: &mut Expect,
        list: fn(&mut Expect) -> &mut Vec<(usize, Key)>,
        peer: &[u8],
        r: &RequestRef,
        desc: &str,
    ) {
        let c = self.client_index(peer);
        let key = (r.request_type, r.request_id);
        self.take_expected(expect, list, |e| *e == (c, key), desc);
    }

    /// An output (`desc`) must be one of the list of `expect` that `list`
    /// picks (the first that `is_it`): that entry, taken off.
    fn take_expected<T>(
        &self,
        expect: &mut Expect,
        list: fn(&mut Expect) -> &mut Vec<T>,
        is_it: impl Fn(&T) -> bool,
        desc: &str,
    ) -> T {
        let Some(i) = list(expect).iter().position(is_it) else {
            self.fail(format!("{desc}: unexpected; expected {expect:?}"));
        };
        list(expect).remove(i)
    }

    /// A random key that worker `w` does not hold, to answer as if it did;
    /// `None` if the draw gave one it holds.
    fn bogus_key(&mut self, w: usize) -> Option<Key> {
        let key = (TYPES[self.rng.below(3) as usize], self.rng.below(8));
        (!self.workers[w].outstanding.contains_key(&key)).then_some(key)
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
                    if self
                        .workers
                        .iter()
                        .any(|w| w.outstanding.contains_key(&key))
                    {
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
                    // Each dispatch has its own tag (protocol.md §8.3).
                    if d.dispatch_tag == 0 || !self.tags.insert(d.dispatch_tag) {
                        self.fail(format!("{desc}: tag missing or used before"));
                    }
                    if receipt {
                        expect.receipts.push((origin, key));
                    }
                    self.workers[w].outstanding.insert(key, d.dispatch_tag);
                }
                (Side::Frontend, peer, Message::Response(r)) => {
                    let c = self.client_index(&peer);
                    let key = (r.request_type, r.request_id);
                    let e = self.take_expected(
                        &mut expect,
                        |e| &mut e.responses,
                        |e| e.0 == c && e.1 == key && e.2 == r.status,
                        &desc,
                    );
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
                    self.take_receipt(&mut expect, |e| &mut e.receipts, &peer, &r, &desc);
                }
                (Side::Frontend, peer, Message::ReceiptReceived(r)) => {
                    self.take_receipt(&mut expect, |e| &mut e.received, &peer, &r, &desc);
                }
                (Side::Backend, peer, Message::Welcome { .. }) => {
                    let w = self.worker_index(&peer);
                    let Some(i) = expect.welcomes.iter().position(|e| *e == w) else {
                        self.fail(format!("{desc}: unexpected"));
                    };
                    expect.welcomes.remove(i);
                }
                (Side::Backend, peer, Message::Cancel(c)) => {
                    let w = self.worker_index(&peer);
                    let key = (c.request_type, c.request_id);
                    let tag = c.dispatch_tag;
                    self.take_expected(
                        &mut expect,
                        |e| &mut e.cancels,
                        |e| *e == (w, key, tag),
                        &desc,
                    );
                }
                (_, _, Message::Heartbeat { .. }) => {}
                _ => self.fail(format!("{desc}: unexpected output")),
            }
        }
        if !expect.responses.is_empty()
            || !expect.receipts.is_empty()
            || !expect.received.is_empty()
            || !expect.welcomes.is_empty()
            || !expect.cancels.is_empty()
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
        if s.requests_returned != self.returned {
            self.fail(format!(
                "stats requests_returned {} vs model {}",
                s.requests_returned, self.returned
            ));
        }
        if s.cancels_ignored != self.cancels_ignored {
            self.fail(format!(
                "stats cancels_ignored {} vs model {}",
                s.cancels_ignored, self.cancels_ignored
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
        if (s.requests_received, s.unknown_results, s.stale_results)
            != (self.requests_sent, self.unknown_results, self.stale_results)
        {
            self.fail(format!(
                "stats received/unknown_results/stale_results {}/{}/{} vs model {}/{}/{}",
                s.requests_received,
                s.unknown_results,
                s.stale_results,
                self.requests_sent,
                self.unknown_results,
                self.stale_results
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
            for k in w.outstanding.keys() {
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
                cancelled: false,
            });
            sim.instances.len() - 1
        };
        if let Some(r) = self.reqs.get(&key) {
            let in_flight = matches!(r.state, MState::InFlight(_));
            if r.cancelled {
                // Its worker still runs it: the key is held, from anyone.
                expect.responses.push((c, key, Status::Rejected, None));
            } else if r.origin == c {
                // Idempotent re-send: earned receipts again, nothing else.
                if in_flight {
                    expect.earned_receipts(c, key, flags, r.received);
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
                if in_flight {
                    expect.earned_receipts(c, key, flags, r.received);
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
                self.serials += 1;
                let serial = self.serials;
                self.reqs.insert(
                    key,
                    MReq {
                        serial,
                        origin: c,
                        flags,
                        payload: body.clone(),
                        attempts: 0,
                        receipt_sent: false,
                        received: false,
                        state: MState::Pending,
                        instance,
                        cancelled: false,
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

    /// A registered worker drawn at random, if there is one.
    fn pick_registered_worker(&mut self) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    /// The requests worker `w` holds, in a fixed order (the set's is not).
    fn outstanding_sorted(&self, w: usize) -> Vec<Key> {
        let mut keys: Vec<Key> = self.workers[w].outstanding.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Worker `w` sends the RESULT of its dispatch `key`: as a 1.1 worker
    /// does, echoing attempt and tag, or now and then as a worker that
    /// predates tags (the attempt only) or a 1.0 worker (neither); the
    /// broker takes all three as the answer to the current dispatch.
    fn send_result(&mut self, w: usize, key: Key, status: Status, body: &[Vec<u8>]) {
        let tag = self.workers[w].outstanding[&key];
        let attempt = self.reqs[&key].attempts;
        let peer = self.workers[w].peer.clone();
        let refs: Vec<&[u8]> = body.iter().map(Vec::as_slice).collect();
        let (attempt, tag) = match self.rng.below(10) {
            0 => (0, 0),
            1 | 2 => (attempt, 0),
            _ => (attempt, tag),
        };
        self.h
            .result_tagged(&peer, key.0, key.1, (attempt, tag), status, &refs);
    }

    /// A worker finishes one of its requests (or sends a bogus result).
    fn op_result(&mut self) -> Expect {
        let mut expect = Expect::default();
        let Some(w) = self.pick_registered_worker() else {
            return expect;
        };
        let keys = self.outstanding_sorted(w);
        let status = [Status::Ok, Status::Failed, Status::BadRequest][self.rng.below(3) as usize];
        let body = vec![format!("result-{}", self.rng.below(1000)).into_bytes()];
        let peer = self.workers[w].peer.clone();
        if keys.is_empty() || self.rng.chance(10) {
            // Bogus: a key this worker does not hold.
            let Some(key) = self.bogus_key(w) else {
                return expect;
            };
            self.log
                .push(format!("bogus result {} {key:?}", name(&peer)));
            self.unknown_results += 1;
            self.h.result(&peer, key.0, key.1, status, &[]);
        } else {
            let key = keys[self.rng.below(keys.len() as u64) as usize];
            // A draining worker gives back what it has not started
            // (protocol 1.8); now and then one that is not draining.
            let give_back = if self.workers[w].draining { 50 } else { 5 };
            if self.rng.chance(give_back) {
                self.returned(w, key);
                self.workers[w].last_heard = self.h.now_ms;
                return expect;
            }
            self.log
                .push(format!("result {} {key:?} {status:?}", name(&peer)));
            self.send_result(w, key, status, &body);
            self.workers[w].outstanding.remove(&key);
            let r = self.close(key);
            if r.flags.is_two_way() && !r.cancelled {
                expect
                    .responses
                    .push((r.origin, key, status, Some(body.clone())));
                self.instances[r.instance].responses += 1;
            }
            if self.workers[w].draining && self.workers[w].outstanding.is_empty() {
                self.workers[w].registered = false;
                self.workers[w].draining = false;
            }
        }
        self.workers[w].last_heard = self.h.now_ms;
        expect
    }

    /// Worker `w` gives back `key` unstarted (RETURNED, with the payload
    /// it was dispatched with): queued again, the attempt not used, nothing
    /// to the requester; a cancelled one ends there.
    fn returned(&mut self, w: usize, key: Key) {
        let peer = self.workers[w].peer.clone();
        self.log.push(format!("returned {} {key:?}", name(&peer)));
        let body = self.reqs[&key].payload.clone();
        self.send_result(w, key, Status::Returned, &body);
        self.returned += 1;
        self.workers[w].outstanding.remove(&key);
        let r = self.reqs.get_mut(&key).expect("outstanding is open");
        if r.cancelled {
            self.close(key);
        } else {
            r.state = MState::Pending;
            r.attempts -= 1;
            r.received = false;
        }
        if self.workers[w].draining && self.workers[w].outstanding.is_empty() {
            self.workers[w].registered = false;
            self.workers[w].draining = false;
        }
    }

    /// A worker says it received one of its requests (or a bogus one).
    fn op_receipt(&mut self) -> Expect {
        let mut expect = Expect::default();
        let Some(w) = self.pick_registered_worker() else {
            return expect;
        };
        let keys = self.outstanding_sorted(w);
        let peer = self.workers[w].peer.clone();
        let key = if keys.is_empty() || self.rng.chance(10) {
            let Some(key) = self.bogus_key(w) else {
                return expect;
            };
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
        let mut keys: Vec<Key> = self.workers[w]
            .outstanding
            .drain()
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable();
        self.workers[w].registered = false;
        self.workers[w].draining = false;
        for key in keys {
            let max_tries = self.max_tries;
            let r = self.reqs.get_mut(&key).expect("outstanding is open");
            if !r.cancelled && r.flags.contains(Flags::RETRY_ON_DEATH) && r.attempts < max_tries {
                r.state = MState::Pending;
                continue;
            }
            let r = self.close(key);
            if r.cancelled {
                continue;
            }
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
        let Some(w) = self.pick_registered_worker() else {
            return expect;
        };
        self.log
            .push(format!("kill {}", name(&self.workers[w].peer)));
        // Only partitioned, not gone: what it runs, it finishes.
        for key in self.outstanding_sorted(w) {
            let r = &self.reqs[&key];
            let ghost = Ghost {
                key,
                attempt: r.attempts,
                dispatch_tag: self.workers[w].outstanding[&key],
                serial: r.serial,
            };
            self.workers[w].ghosts.push(ghost);
        }
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

    /// A worker declared dead, registered again, sends the result of a
    /// dispatch it was running then: never an answer, never a credit. It
    /// echoes the dispatch's tag, or now and then (a worker that predates
    /// tags) only its attempt.
    fn op_ghost_result(&mut self) -> Expect {
        let expect = Expect::default();
        let candidates: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].registered && !self.workers[w].ghosts.is_empty())
            .collect();
        if candidates.is_empty() {
            return expect;
        }
        let w = candidates[self.rng.below(candidates.len() as u64) as usize];
        let n = self.workers[w].ghosts.len() as u64;
        let ghost = self.workers[w].ghosts.remove(self.rng.below(n) as usize);
        let peer = self.workers[w].peer.clone();
        let key = ghost.key;
        let mut tag = ghost.dispatch_tag;
        match (self.reqs.get(&key), self.workers[w].outstanding.get(&key)) {
            (Some(r), Some(&current)) => {
                if current == ghost.dispatch_tag {
                    self.fail(format!("{key:?}: one dispatch both lost and current"));
                }
                if r.attempts == ghost.attempt {
                    // Another request under the same key, at the same
                    // attempt, on the same worker: only the tag tells the
                    // ghost from the current run (protocol.md §8.3).
                    if r.serial == ghost.serial {
                        self.fail(format!(
                            "{key:?} dispatched twice as attempt {}",
                            r.attempts
                        ));
                    }
                    self.reused_key_ghosts += 1;
                } else if self.rng.chance(20) {
                    // Another attempt: the attempt alone tells it.
                    tag = 0;
                }
                self.stale_results += 1;
            }
            _ => self.unknown_results += 1,
        }
        self.log.push(format!(
            "ghost result {} {key:?} attempt {} tag {tag}",
            name(&peer),
            ghost.attempt
        ));
        let status = [Status::Ok, Status::Failed, Status::BadRequest][self.rng.below(3) as usize];
        self.h.result_tagged(
            &peer,
            key.0,
            key.1,
            (ghost.attempt, tag),
            status,
            &[b"ghost"],
        );
        self.workers[w].last_heard = self.h.now_ms;
        expect
    }

    fn op_disconnect(&mut self) -> Expect {
        let mut expect = Expect::default();
        let Some(w) = self.pick_registered_worker() else {
            return expect;
        };
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

    /// A client cancels a request: its own (ended at once if queued, its
    /// worker told if running), or another's, or one no longer held
    /// (ignored, counted).
    fn op_cancel(&mut self) -> Expect {
        let mut expect = Expect::default();
        let c = self.rng.below(self.clients.len() as u64) as usize;
        let mut open: Vec<Key> = self.reqs.keys().copied().collect();
        open.sort_unstable();
        let key = if !open.is_empty() && self.rng.chance(80) {
            open[self.rng.below(open.len() as u64) as usize]
        } else {
            (TYPES[self.rng.below(3) as usize], self.rng.below(8))
        };
        self.log.push(format!("cancel client-{c} {key:?}"));
        match self.reqs.get_mut(&key) {
            Some(r) if r.origin == c => {
                if !r.cancelled {
                    self.instances[r.instance].cancelled = true;
                    match r.state {
                        MState::Pending => {
                            self.close(key);
                        }
                        MState::InFlight(w) => {
                            r.cancelled = true;
                            let tag = self.workers[w].outstanding[&key];
                            expect.cancels.push((w, key, tag));
                        }
                    }
                }
            }
            _ => self.cancels_ignored += 1,
        }
        let peer = self.clients[c].0.clone();
        let cancel = Message::Cancel(crate::protocol::Cancel {
            request_type: key.0,
            request_id: key.1,
            route: Vec::new(),
            dispatch_tag: 0,
        });
        self.h.client_sends(&peer, cancel);
        self.clients[c].1 = self.h.now_ms;
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
            88..=92 => self.op_ghost_result(),
            93..=95 => self.op_cancel(),
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
            let key = *self.workers[w].outstanding.keys().min().expect("non-empty");
            self.send_result(w, key, Status::Ok, &[b"final".to_vec()]);
            self.workers[w].outstanding.remove(&key);
            let r = self.close(key);
            if r.flags.is_two_way() && !r.cancelled {
                expect
                    .responses
                    .push((r.origin, key, Status::Ok, Some(vec![b"final".to_vec()])));
                self.instances[r.instance].responses += 1;
            }
            if self.workers[w].draining && self.workers[w].outstanding.is_empty() {
                self.workers[w].registered = false;
                self.workers[w].draining = false;
            }
            self.check_outputs(expect);
        }
        assert!(self.reqs.is_empty());
        for i in &self.instances {
            if i.cancelled && i.responses != 0 {
                self.fail(format!(
                    "cancelled {:?} from client-{} got {} responses",
                    i.key, i.origin, i.responses
                ));
            }
            if i.two_way && !i.cancelled && i.responses != 1 {
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
        // Every queued payload and retry copy was released exactly once.
        assert_eq!(s.pending_bytes, 0, "payload bytes still counted");
    }
}

/// A counter of the broker's stats.
type Counter = fn(&BrokerStats) -> u64;

#[test]
fn randomized_interleavings_keep_the_invariants() {
    // The paths the walk is meant to check, each by the counter that
    // counts it.
    let paths: [(&str, Counter); 16] = [
        ("dispatched", |s| s.requests_dispatched),
        ("completed", |s| s.requests_completed),
        ("rejected", |s| s.requests_rejected),
        ("overloaded", |s| s.requests_overloaded),
        ("no_workers", |s| s.requests_no_workers),
        ("resent", |s| s.requests_resent),
        ("redirected", |s| s.requests_redirected),
        ("retried", |s| s.requests_retried),
        ("worker_death", |s| s.requests_worker_death),
        ("dropped_on_death", |s| s.requests_dropped_on_death),
        ("unknown_results", |s| s.unknown_results),
        ("stale_results", |s| s.stale_results),
        ("worker_deaths", |s| s.worker_deaths),
        ("cancelled", |s| s.requests_cancelled),
        ("cancels_ignored", |s| s.cancels_ignored),
        ("returned", |s| s.requests_returned),
    ];
    let mut totals = [0u64; 16];
    let mut reused_key_ghosts = 0;
    for seed in 1..=300 {
        let mut sim = Sim::new(seed);
        for _ in 0..250 {
            sim.step();
        }
        sim.drain();
        reused_key_ghosts += sim.reused_key_ghosts;
        let s = sim.h.stats();
        for (total, (_, count)) in totals.iter_mut().zip(paths) {
            *total += count(&s);
        }
    }
    // The walk reaches every path it is meant to check.
    let reached = (paths.iter().map(|(what, _)| *what).zip(totals))
        .chain([("reused-key ghost results", reused_key_ghosts)]);
    for (what, n) in reached {
        assert!(n >= 20, "the random walk reached {what} only {n} times");
    }
}

//! Messages from workers: `READY` (registration and re-registration),
//! results (a garbled one included) and `RECEIPT_RECEIVED`.

use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};
use tracing::{debug, info};

use super::names::Learned;
use super::stored::Stored;
use super::watch;
use super::{BrokerCore, Req, ReqKey, Side, WorkerEntry, peer_id};
use crate::curve::PublicKey;
use crate::peer::{Liveness, interval_from_ms};
use crate::protocol::{self, Flags, Payload, Ready, RequestRef, RequestType, Status, WorkResult};
use crate::slab::Key;

impl BrokerCore {
    pub(super) fn on_ready(
        &mut self,
        now: Instant,
        peer: &[u8],
        mut ready: Ready,
        key: Option<PublicKey>,
        minor: u32,
    ) {
        // Names (1.6) pair with the types as sent, before sorting.
        let names: Vec<(RequestType, String)> = (ready.request_types.iter().copied())
            .zip(std::mem::take(&mut ready.type_names))
            .collect();
        let mut types = ready.request_types;
        types.sort_unstable();
        types.dedup();
        if !self.authorize_ready(now, peer, key, &types) {
            return;
        }
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
                w.key = key;
                w.minor = minor;
                w.live.peer_interval = interval;
                w.live.last_heard = now;
                for t in old_types.iter().filter(|t| types.binary_search(t).is_err()) {
                    if let Some(e) = self.types.get_mut(t) {
                        e.workers -= 1;
                    }
                    self.return_executions(*t);
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
                    assigned: HashMap::new(),
                    last_type: 0,
                    lru_seq: None,
                    draining: false,
                    live: Liveness::new(now, interval),
                    remote: None,
                    key,
                    minor,
                });
                self.worker_ids.insert(peer_id(peer), wk);
                self.stats.workers_registered += 1;
                self.learn_type_names(wk, names);
                info!(
                    worker = ?self.worker_label(wk),
                    capacity = ready.capacity,
                    types = %self.type_list(wk),
                    "worker registered"
                );
                return self.welcome_worker(now, peer, wk);
            }
        };
        self.learn_type_names(wk, names);
        self.welcome_worker(now, peer, wk);
    }

    /// Answers a (re-)registration and gives the worker what waits.
    fn welcome_worker(&mut self, now: Instant, peer: &[u8], wk: Key) {
        let welcome = self.welcome();
        self.send_tracked(now, Side::Backend, peer_id(peer), welcome);
        self.serve_worker(now, wk);
        self.send_serves_if_changed(true);
    }

    /// A worker's types as `name (id), …`, for the registration log.
    fn type_list(&self, wk: Key) -> String {
        let Some(w) = self.workers.get(wk) else {
            return String::new();
        };
        let labels: Vec<String> = (w.types.iter())
            .map(|&t| self.type_names.label(t).to_string())
            .collect();
        labels.join(", ")
    }

    /// Keeps the names a registered worker gave its types (the first
    /// name known for an id stays: another is counted and logged once).
    fn learn_type_names(&mut self, wk: Key, names: Vec<(RequestType, String)>) {
        if names.is_empty() {
            return;
        }
        let who = self.worker_label(wk);
        for (t, name) in names {
            let types = &self.types;
            let learned = self
                .type_names
                .learn(t, &name, &who, |t| types.contains_key(&t));
            match learned {
                Learned::Kept => {}
                Learned::Conflict => self.stats.type_name_conflicts += 1,
                Learned::Full => debug!(request_type = t, "too many type names: not kept"),
            }
        }
    }

    /// Keeps the names a cluster member gave the types it serves (protocol
    /// 1.6), as a worker's (the first name of an id stays).
    pub(super) fn learn_member_names(&mut self, member: u64, table: &[protocol::TypeServed]) {
        let who = format!("cluster member {member:016x}");
        for t in table {
            let Some(name) = &t.name else {
                continue;
            };
            let types = &self.types;
            let learned =
                (self.type_names).learn(t.request_type, name, &who, |t| types.contains_key(&t));
            if learned == Learned::Conflict {
                self.stats.type_name_conflicts += 1;
            }
        }
    }

    pub(super) fn on_result(&mut self, now: Instant, wk: Key, result: WorkResult) {
        if result.status == Status::Returned {
            return self.on_returned(now, wk, result);
        }
        let key = (result.request_type, result.request_id);
        // Exact credits: only the completion of the dispatch we assigned
        // gives one back.
        let req = match self.take_current(wk, key, result.attempt, result.dispatch_tag) {
            Ok(req) => req,
            Err(dropped) => return self.count_dropped(dropped, &result),
        };
        self.stats.requests_completed += 1;
        // A cancelled request's result goes to nobody: it is no outcome
        // (the cancel was tapped as its outcome), and no latency sample.
        let cancelled = req.as_ref().is_some_and(|r| r.cancelled);
        // (end to end, queued): one clock subtraction per result.
        let times = req.as_ref().filter(|_| !cancelled).map(|r| {
            let queued = Duration::from_micros(u64::from(r.dispatched_us));
            (now.saturating_duration_since(r.arrived), queued)
        });
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight -= 1;
            e.completed += 1;
            if let Some((end_to_end, queued)) = times {
                e.latency().completed(end_to_end, queued);
            }
        }
        if let Some(tap) = self.tap.as_deref_mut().filter(|_| !cancelled) {
            tap.push(watch::Event::Outcome {
                key,
                status: result.status,
                bytes: watch::payload_bytes(&result.payload),
                timings: times.map(|(end_to_end, queued)| watch::Timings {
                    queue_wait: queued,
                    service: end_to_end.saturating_sub(queued),
                    end_to_end,
                }),
            });
        }
        if let Some(req) = req {
            if req.answered() {
                let dest = req.response_dest().clone();
                self.send_response(&dest, key, result.status, result.error, result.payload);
            }
        }
        self.drop_type_if_idle(key.0);
        if !self.remove_if_drained(now, wk) {
            self.serve_worker(now, wk);
        }
    }

    /// Removes a draining worker whose last request has just been
    /// answered (§7.4); `true` if it was.
    fn remove_if_drained(&mut self, now: Instant, wk: Key) -> bool {
        let drained = self
            .workers
            .get(wk)
            .is_some_and(|w| w.draining && w.assigned.is_empty());
        if drained {
            self.remove_worker(now, wk);
        }
        drained
    }

    /// Counts and logs a RESULT that does not answer the current dispatch
    /// of its request: it changes nothing else (protocol.md §8.3).
    fn count_dropped(&mut self, dropped: Dropped, result: &WorkResult) {
        let label = self.type_names.label(result.request_type);
        match dropped {
            Dropped::Unassigned => {
                self.stats.unknown_results += 1;
                debug!(
                    request_type = %label,
                    request_id = result.request_id,
                    status = %result.status,
                    "result for a request not assigned to this worker: dropped"
                );
            }
            Dropped::Stale => {
                self.stats.stale_results += 1;
                debug!(
                    request_type = %label,
                    request_id = result.request_id,
                    attempt = result.attempt,
                    dispatch_tag = result.dispatch_tag,
                    status = %result.status,
                    "result of a dispatch that is no longer current: dropped"
                );
            }
        }
    }

    /// A RESULT `RETURNED` (protocol 1.8): the worker, draining, gives back
    /// a dispatch it has not started and never will (a prefetched one).
    /// Judged as any RESULT (§8.3); the current one gives the credit back
    /// and puts the request back at the head of its type's queue, with the
    /// payload it carries (the broker keeps no copy of what it dispatched,
    /// but a retry copy) and its attempt not used up: it was not run, so
    /// it is no retry, needs no `RETRY_ON_DEATH`, and the requester is told
    /// nothing. A cancelled one ends there, as cancelling a queued request
    /// does. At an executor the request goes back to its own queue, as any
    /// (it came from an owner as an EXECUTE): nothing crosses brokers.
    fn on_returned(&mut self, now: Instant, wk: Key, result: WorkResult) {
        let key = (result.request_type, result.request_id);
        if let Err(dropped) = self.judge(wk, key, result.attempt, result.dispatch_tag) {
            return self.count_dropped(dropped, &result);
        }
        if let Some(w) = self.workers.get_mut(wk) {
            w.assigned.remove(&key);
        }
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight -= 1;
        }
        self.stats.requests_returned += 1;
        debug!(
            request_type = %self.type_names.label(key.0),
            request_id = key.1,
            worker = ?self.worker_label(wk),
            "request returned unrun by its worker: queued again at the head"
        );
        let requeued = match self.req_mut(&key) {
            None => false,
            Some(req) if req.cancelled => {
                if let Some(req) = self.remove_req(&key) {
                    // An owner still needs the EXECUTED that gives its slot
                    // back (it drops the outcome: it cancelled), as for a
                    // queued request cancelled (cancel.rs).
                    if matches!(req.origin.via, super::Via::Owner { .. }) {
                        let error = Some("cancelled by its requester before it ran".to_owned());
                        self.respond(&req.origin, key, Status::Failed, error);
                    }
                }
                false
            }
            Some(req) => {
                req.in_flight = false;
                req.received = false;
                // Not run: the next DISPATCH carries the same attempt (its
                // new tag tells the two apart), so RETRY_ON_DEATH keeps
                // every try it had.
                req.attempts = req.attempts.saturating_sub(1);
                let held_before = req.payload.len();
                req.payload = Stored::new(result.payload, false);
                let held_after = req.payload.len();
                self.bounds.release(held_before);
                self.bounds.hold(held_after);
                self.push_returned(key);
                true
            }
        };
        let drained = self.remove_if_drained(now, wk);
        if requeued {
            // Another free worker first: the one that gave it back is
            // leaving (a worker that returns without a DISCONNECT is
            // served as any, and may get it again).
            self.drain_type(now, key.0);
        } else {
            self.drop_type_if_idle(key.0);
        }
        if !drained {
            self.serve_worker(now, wk);
        }
    }

    /// A malformed message from a worker that names a request assigned to
    /// it (say a RESULT with an invalid status) ends that request as
    /// `FAILED`, instead of leaving it in flight until the worker dies.
    pub(super) fn fail_garbled_result(
        &mut self,
        now: Instant,
        peer: &[u8],
        header: &[u8],
        error: String,
    ) {
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
            .is_some_and(|w| w.assigned.contains_key(&key))
        {
            // A garbled result of an earlier dispatch is stale, and fails
            // nothing.
            let (attempt, dispatch_tag) = protocol::peek_answered(header);
            let result = WorkResult {
                request_type: key.0,
                request_id: key.1,
                attempt,
                dispatch_tag,
                status: Status::Failed,
                error: Some(format!("the worker sent a malformed result: {error}")),
                payload: Payload::new(),
            };
            self.on_result(now, wk, result);
        }
    }

    /// Whether a RESULT from worker `wk` about `key`, naming `attempt` and
    /// `dispatch_tag`, answers the request's current dispatch (protocol.md
    /// §8.3), as [`Self::take_current`] judges, without taking anything.
    fn judge(&self, wk: Key, key: ReqKey, attempt: u32, dispatch_tag: u64) -> Result<(), Dropped> {
        let Some(&tag) = self.workers.get(wk).and_then(|w| w.assigned.get(&key)) else {
            return Err(Dropped::Unassigned);
        };
        if dispatch_tag != 0 {
            return if dispatch_tag == tag {
                Ok(())
            } else {
                Err(Dropped::Stale)
            };
        }
        if attempt == 0 {
            return Ok(());
        }
        let attempts = (self.requests.get(&key))
            .and_then(|&slot| self.reqs.get(slot))
            .map(|r| r.attempts);
        if attempts == Some(attempt) {
            Ok(())
        } else {
            Err(Dropped::Stale)
        }
    }

    /// Judges a RESULT from worker `wk` about `key`, naming `attempt` and
    /// `dispatch_tag`: whether it answers the request's current dispatch
    /// (protocol.md §8.3). If it does, takes the assignment off the worker
    /// and the request out (`None` if it is gone already). The verdict is
    /// reached on the map entries it then removes: one lookup of the
    /// assignment, and of the request, per result on this hot path.
    fn take_current(
        &mut self,
        wk: Key,
        key: ReqKey,
        attempt: u32,
        dispatch_tag: u64,
    ) -> Result<Option<Req>, Dropped> {
        let Some(w) = self.workers.get_mut(wk) else {
            return Err(Dropped::Unassigned);
        };
        let Entry::Occupied(assigned) = w.assigned.entry(key) else {
            return Err(Dropped::Unassigned);
        };
        // The tag names one dispatch of this broker's lifetime: exact, even
        // for a new request under the key of one this worker still answers.
        // Without one (a worker that predates it), judged by the attempt;
        // 0: a 1.0 worker, which does not say; the request is assigned to
        // it, so its result is taken as the current attempt's (1.0 rules).
        if dispatch_tag != 0 || attempt == 0 {
            if dispatch_tag != 0 && dispatch_tag != *assigned.get() {
                return Err(Dropped::Stale);
            }
            assigned.remove();
            return Ok(self.remove_req(&key));
        }
        let Entry::Occupied(request) = self.requests.entry(key) else {
            return Err(Dropped::Stale);
        };
        if self.reqs.get(*request.get()).map(|r| r.attempts) != Some(attempt) {
            return Err(Dropped::Stale);
        }
        assigned.remove();
        let req = self.reqs.remove(request.remove());
        if let Some(req) = &req {
            self.bounds.release(req.payload.len());
        }
        Ok(req)
    }

    pub(super) fn on_receipt_received(&mut self, wk: Key, r: RequestRef) {
        let key = (r.request_type, r.request_id);
        let assigned = self
            .workers
            .get(wk)
            .is_some_and(|w| w.assigned.contains_key(&key));
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
}

/// Why a RESULT is dropped: it does not answer the request's current
/// dispatch, assigned to its sender.
enum Dropped {
    /// About a request not assigned to its sender (unknown, done, or
    /// retried on another worker).
    Unassigned,
    /// About a request assigned to its sender, but of another dispatch
    /// (another tag, or without a tag another attempt): a late result of a
    /// dispatch the broker gave up when it declared the worker dead, which
    /// the worker finished meanwhile.
    Stale,
}

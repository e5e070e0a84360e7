//! The owner's and the executor's side of a cluster (docs/clustering.md
//! §2, §5): requests forwarded to this broker as their owner, remote
//! workers built from the members' SERVES, EXECUTE to run a request on a
//! member's workers, and EXECUTED back.

use std::time::Instant;

use foldhash::{HashMap, HashMapExt};
use tracing::debug;

use super::stored::Stored;
use super::{BrokerCore, Dest, Via, WorkerEntry};
use crate::peer::{Liveness, PeerId};
use crate::protocol::{
    Execute, Executed, Forward, MAX_HOPS, Message, Payload, RequestRef, Response, Status,
    TypeServed, WorkResult,
};

impl BrokerCore {
    /// A client's request forwarded by the entry broker `member`: this
    /// broker owns it, whatever its own view says (no second forward).
    pub(super) fn on_forward(&mut self, now: Instant, member: u64, f: Forward) {
        self.count_forwarded_from(member);
        let req = f.request;
        let key = (req.request_type, req.request_id);
        self.stats.requests_received += 1;
        self.types.entry(key.0).or_default().received += 1;
        let origin = Dest {
            peer: PeerId::new(),
            route: req.route,
            via: Via::Member(member),
        };
        let reply_to = f.reply_route.map(|route| Dest {
            peer: PeerId::new(),
            route,
            via: Via::Member(member),
        });
        let hops = u8::try_from(f.hops).unwrap_or(u8::MAX);
        let deadline = crate::deadline::from_wire_ms(now, req.deadline_ms);
        self.admit(
            now,
            key,
            origin,
            reply_to,
            req.flags,
            req.payload,
            (hops, deadline),
        );
    }

    /// Whether `origin` is an owner that is no longer in this broker's view.
    pub(super) fn owner_left(&self, origin: &Dest) -> bool {
        match (origin.via, &self.cluster) {
            (Via::Owner { member, .. }, Some(c)) => !c.members.contains_key(&member),
            _ => false,
        }
    }

    /// A member's table of what it serves: its remote workers follow it.
    pub(super) fn on_serves(&mut self, now: Instant, member: u64, table: Vec<TypeServed>) {
        self.remember_serves(member, &table);
        self.learn_member_names(member, &table);
        let served: HashMap<_, _> = table.iter().map(|t| (t.request_type, t.capacity)).collect();
        // Types it no longer serves: their remote workers drain (what they
        // run still gets its EXECUTED) and go.
        let gone: Vec<_> = self
            .remote_ids
            .iter()
            .filter(|&(&(m, t), _)| m == member && !served.contains_key(&t))
            .map(|(&id, &wk)| (id, wk))
            .collect();
        for (id, wk) in gone {
            let idle = self.workers.get_mut(wk).is_some_and(|w| {
                w.draining = true;
                w.assigned.is_empty()
            });
            if idle {
                self.remote_ids.remove(&id);
                self.remove_worker(now, wk);
            } else {
                self.refresh_lru(wk);
            }
        }
        for t in table {
            let wk = match self.remote_ids.get(&(member, t.request_type)) {
                Some(&wk) => {
                    if let Some(w) = self.workers.get_mut(wk) {
                        w.capacity = t.capacity;
                        w.draining = false;
                    }
                    wk
                }
                None => {
                    let wk = self.workers.insert(WorkerEntry {
                        id: PeerId::new(),
                        name: None,
                        capacity: t.capacity,
                        types: vec![t.request_type],
                        assigned: HashMap::new(),
                        last_type: 0,
                        lru_seq: None,
                        draining: false,
                        live: Liveness::new(now, self.heartbeat),
                        remote: Some(member),
                        key: None,
                        // Its member's, read when a CANCEL is due.
                        minor: 0,
                    });
                    self.types.entry(t.request_type).or_default().remote_workers += 1;
                    self.remote_ids.insert((member, t.request_type), wk);
                    wk
                }
            };
            self.serve_worker(now, wk);
        }
    }

    /// The owner `member` gives this broker a request to run on one of its
    /// own workers. It is never given to another member.
    pub(super) fn on_execute(&mut self, now: Instant, member: u64, e: Execute) {
        self.count_executed_from(member);
        let d = e.dispatch;
        let key = (d.request_type, d.request_id);
        self.stats.requests_received += 1;
        self.types.entry(key.0).or_default().received += 1;
        let origin = Dest {
            peer: PeerId::new(),
            route: Vec::new(),
            via: Via::Owner {
                member,
                attempt: d.attempt,
                tag: d.dispatch_tag,
            },
        };
        let serves = self.types.get(&key.0).is_some_and(|e| e.workers > 0);
        if !serves {
            // Not run: the payload goes back, and the owner queues it again.
            let error = format!(
                "no worker serves request type {} here",
                self.type_names.label(key.0)
            );
            self.send_response(&origin, key, Status::NoWorkers, Some(error), d.payload);
            return self.drop_type_if_idle(key.0);
        }
        let deadline = crate::deadline::from_wire_ms(now, d.deadline_ms);
        self.admit(
            now,
            key,
            origin,
            None,
            d.flags,
            d.payload,
            (MAX_HOPS as u8, deadline),
        );
    }

    /// The last local worker of `t` left: the requests queued here for
    /// owners go back to them unrun (docs/clustering.md §5), so that they
    /// do not wait for a worker this broker no longer has.
    pub(super) fn return_executions(&mut self, t: crate::protocol::RequestType) {
        if self.cluster.is_none() || self.types.get(&t).is_none_or(|e| e.workers > 0) {
            return;
        }
        let queued: Vec<_> = self
            .types
            .get(&t)
            .map(|e| e.pending.iter().copied().collect())
            .unwrap_or_default();
        let mut kept = std::collections::VecDeque::new();
        for id in queued {
            let key = (t, id);
            let for_owner = self
                .requests
                .get(&key)
                .and_then(|&slot| self.reqs.get(slot))
                .is_some_and(|r| matches!(r.origin.via, Via::Owner { .. }));
            if !for_owner {
                kept.push_back(id);
                continue;
            }
            let Some(mut req) = self.remove_req(&key) else {
                continue;
            };
            self.total_pending -= 1;
            let payload = req.payload.take();
            let error = format!(
                "no worker serves request type {} here any more",
                self.type_names.label(t)
            );
            self.send_response(&req.origin, key, Status::NoWorkers, Some(error), payload);
        }
        if let Some(e) = self.types.get_mut(&t) {
            e.pending = kept;
            e.last_returned = None;
            if e.pending.is_empty() {
                self.nonempty_types.remove(&t);
            }
        }
        self.drop_type_if_idle(t);
    }

    /// An executor's outcome for a request this broker gave it.
    pub(super) fn on_executed(&mut self, now: Instant, member: u64, e: Executed) {
        let r = e.response;
        let key = (r.request_type, r.request_id);
        let Some(&wk) = self.remote_ids.get(&(member, key.0)) else {
            self.stats.unknown_results += 1;
            return;
        };
        if r.status == Status::NoWorkers {
            return self.execution_returned(now, wk, key, e.dispatch_tag, r.payload);
        }
        let result = WorkResult {
            request_type: key.0,
            request_id: key.1,
            attempt: e.attempt,
            dispatch_tag: e.dispatch_tag,
            status: r.status,
            error: r.error,
            payload: r.payload,
        };
        self.on_result(now, wk, result);
    }

    /// An executor gave a request back unrun: it goes to the head of this
    /// broker's queue, with its attempt not used up, and the member gets no
    /// more of the type until its next SERVES.
    fn execution_returned(
        &mut self,
        now: Instant,
        wk: super::Key,
        key: super::ReqKey,
        tag: u64,
        payload: Payload,
    ) {
        let current = self
            .workers
            .get(wk)
            .and_then(|w| w.assigned.get(&key))
            .is_some_and(|&t| t == tag);
        if !current {
            self.stats.stale_results += 1;
            return;
        }
        if let Some(w) = self.workers.get_mut(wk) {
            w.assigned.remove(&key);
            w.draining = true;
        }
        self.unlist(wk);
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight -= 1;
        }
        if let Some(k) = self.cluster_counters() {
            k.executions_returned += 1;
        }
        let Some(req) = self.req_mut(&key) else {
            return;
        };
        if req.cancelled {
            // Not run, and nobody waits for it any more: it ends here.
            self.remove_req(&key);
            return self.drop_type_if_idle(key.0);
        }
        req.in_flight = false;
        req.attempts = req.attempts.saturating_sub(1);
        let held_before = req.payload.len();
        req.payload = Stored::new(payload, false);
        let held_after = req.payload.len();
        self.bounds.release(held_before);
        self.bounds.hold(held_after);
        self.push_pending(key, true);
        self.drain_type(now, key.0);
    }

    /// An ERROR from a member naming a request: for one of this broker's
    /// clients (a route), passed on to it; for an EXECUTE this broker sent
    /// (no route), that execution ends as a malformed result would
    /// (FAILED), so the request does not wait for an answer that will not
    /// come.
    pub(super) fn on_request_error(
        &mut self,
        now: Instant,
        member: u64,
        r: RequestRef,
        error: String,
    ) {
        if !r.route.is_empty() {
            return self.relay_error(r, error);
        }
        let key = (r.request_type, r.request_id);
        let Some(&wk) = self.remote_ids.get(&(member, key.0)) else {
            return;
        };
        let Some(&tag) = self.workers.get(wk).and_then(|w| w.assigned.get(&key)) else {
            return;
        };
        let result = WorkResult {
            request_type: key.0,
            request_id: key.1,
            attempt: 0,
            dispatch_tag: tag,
            status: Status::Failed,
            error: Some(format!("the executing broker refused the request: {error}")),
            payload: Payload::new(),
        };
        self.on_result(now, wk, result);
    }

    /// RECEIPT_SENT from an executor: the request reached one of its
    /// workers; the requester learns it once.
    pub(super) fn on_remote_receipt_sent(&mut self, member: u64, r: RequestRef) {
        let key = (r.request_type, r.request_id);
        if !self.assigned_to_member(member, key) {
            return;
        }
        let origin = match self.req_mut(&key) {
            Some(req)
                if req.flags.contains(crate::protocol::Flags::RECEIPT_ON_SEND)
                    && !req.receipt_sent =>
            {
                req.receipt_sent = true;
                req.origin.clone()
            }
            _ => return,
        };
        self.send_receipt_sent(&origin, key);
    }

    /// RECEIPT_RECEIVED from an executor: as from a worker.
    pub(super) fn on_remote_receipt_received(&mut self, member: u64, r: RequestRef) {
        match self.remote_ids.get(&(member, r.request_type)) {
            Some(&wk) => self.on_receipt_received(wk, r),
            None => self.stats.unknown_results += 1,
        }
    }

    fn assigned_to_member(&self, member: u64, key: super::ReqKey) -> bool {
        self.remote_ids
            .get(&(member, key.0))
            .and_then(|&wk| self.workers.get(wk))
            .is_some_and(|w| w.assigned.contains_key(&key))
    }

    /// The message that gives a request to a remote worker.
    pub(super) fn execute_message(
        key: super::ReqKey,
        flags: crate::protocol::Flags,
        (attempt, dispatch_tag): (u32, u64),
        hops: u8,
        deadline_ms: u32,
        payload: Payload,
    ) -> Message {
        Message::Execute(Execute {
            dispatch: crate::protocol::Dispatch {
                request_type: key.0,
                request_id: key.1,
                flags,
                attempt,
                dispatch_tag,
                deadline_ms,
                payload,
            },
            hops: u32::from(hops) + 1,
        })
    }

    /// The EXECUTED that answers an owner.
    pub(super) fn executed_message(
        key: super::ReqKey,
        attempt: u32,
        tag: u64,
        status: Status,
        error: Option<String>,
        payload: Payload,
    ) -> Message {
        debug!(request_type = key.0, request_id = key.1, %status, "answering the owner");
        Message::Executed(Executed {
            response: Response {
                request_type: key.0,
                request_id: key.1,
                status,
                error,
                route: Vec::new(),
                payload,
            },
            attempt,
            dispatch_tag: tag,
        })
    }
}

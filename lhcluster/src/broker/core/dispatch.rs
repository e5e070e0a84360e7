//! Matching queued work with free workers: the least-recently-used free
//! lists, round-robin over a worker's types, and the per-type queues.

use std::ops::Bound;
use std::time::Instant;

use super::stored::Stored;
use super::{BrokerCore, ReqKey, Side, TypeEntry, WorkerEntry, peer_id};
use crate::protocol::{self, Flags, MAX_HOPS, Message, Payload, RequestId, RequestType};
use crate::slab::Key;

impl BrokerCore {
    /// The least recently used worker with free credits that serves `t`.
    pub(super) fn find_free_worker(&self, t: RequestType) -> Option<Key> {
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

    /// The least recently used remote worker of `t` with room: used only
    /// when no local worker is free.
    pub(super) fn find_free_remote(&self, t: RequestType) -> Option<Key> {
        let e = self.types.get(&t)?;
        e.free_remote.first_key_value().map(|(_, &wk)| wk)
    }

    /// Whether the request at the head of `t`'s queue may still cross to
    /// another broker.
    fn head_may_hop(&self, t: RequestType) -> bool {
        let Some(&id) = self.types.get(&t).and_then(|e| e.pending.front()) else {
            return false;
        };
        self.requests
            .get(&(t, id))
            .and_then(|&slot| self.reqs.get(slot))
            .is_some_and(|r| u32::from(r.hops) < MAX_HOPS)
    }

    /// Moves a worker to the back of the LRU order (or out of it when it has
    /// no free credit).
    pub(super) fn refresh_lru(&mut self, wk: Key) {
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
    pub(super) fn unlist(&mut self, wk: Key) {
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
        if !w.is_local() {
            if let Some(e) = self.types.get_mut(&w.types[0]) {
                if let Some(old) = old {
                    e.free_remote.remove(&old);
                }
                if let Some(seq) = seq {
                    e.free_remote.insert(seq, wk);
                }
            }
        } else if w.indexed() {
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

    pub(super) fn dispatch(&mut self, now: Instant, wk: Key, key: ReqKey, payload: Payload) {
        let max_tries = self.max_tries;
        let dispatch_tag = self.new_dispatch_tag();
        let remote = self.workers.get(wk).and_then(|w| w.remote);
        let Some(req) = self.req_mut(&key) else {
            return;
        };
        // The queue wait is the first dispatch's (a retry waited for a
        // worker's death, not in the queue; a request given back unstarted
        // keeps its attempt, so the count of attempts cannot tell).
        let since = now.saturating_duration_since(req.arrived);
        let waited = (!req.wait_counted).then_some(since);
        req.wait_counted = true;
        req.dispatched_us = super::latency::offset_us(since);
        req.attempts += 1;
        req.received = false;
        req.in_flight = true;
        req.payload = if req.flags.contains(Flags::RETRY_ON_DEATH) && req.attempts < max_tries {
            Stored::copy_of(&payload)
        } else {
            Stored::Nothing
        };
        let retry_copy = req.payload.len();
        // Through a remote worker, RECEIPT_SENT comes from the executor
        // when one of its workers gets the request.
        let receipt =
            remote.is_none() && req.flags.contains(Flags::RECEIPT_ON_SEND) && !req.receipt_sent;
        req.receipt_sent |= receipt;
        let origin = receipt.then(|| req.origin.clone());
        let deadline_ms = crate::deadline::wire_ms_until(now, req.deadline);
        let msg = match remote {
            None => Message::Dispatch(protocol::Dispatch {
                request_type: key.0,
                request_id: key.1,
                flags: req.flags,
                attempt: req.attempts,
                dispatch_tag,
                deadline_ms,
                payload,
            }),
            Some(_) => Self::execute_message(
                key,
                req.flags,
                (req.attempts, dispatch_tag),
                req.hops,
                deadline_ms,
                payload,
            ),
        };
        self.bounds.hold(retry_copy);
        let Some(w) = self.workers.get_mut(wk) else {
            return;
        };
        w.assigned.insert(key, dispatch_tag);
        w.last_type = key.0;
        let peer = peer_id(&w.id);
        if let Some(e) = self.types.get_mut(&key.0) {
            e.in_flight += 1;
            e.dispatched += 1;
            if let Some(waited) = waited {
                e.latency().dispatched(waited);
            }
        }
        self.stats.requests_dispatched += 1;
        match remote {
            None => self.send_tracked(now, Side::Backend, peer, msg),
            Some(member) => {
                self.count_executed_to(member);
                self.send_to_member(member, msg);
            }
        }
        if let Some(origin) = origin {
            self.send_receipt_sent(&origin, key);
        }
        self.refresh_lru(wk);
    }

    /// A tag no earlier DISPATCH of this broker had (never 0, which on the
    /// wire means "no tag").
    fn new_dispatch_tag(&mut self) -> u64 {
        self.last_dispatch_tag = self.last_dispatch_tag.wrapping_add(1).max(1);
        self.last_dispatch_tag
    }

    /// Gives a worker queued work from its types, round-robin, while it has
    /// free credits.
    pub(super) fn serve_worker(&mut self, now: Instant, wk: Key) {
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
            // A request that has taken its last hop waits for a local
            // worker (it is at the head: the local workers are busy).
            if !w.is_local() && !self.head_may_hop(t) {
                break;
            }
            let Some(id) = self.pop_pending(t) else {
                break;
            };
            if self.expire_if_due(now, (t, id)) {
                continue;
            }
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
    pub(super) fn drain_type(&mut self, now: Instant, t: RequestType) {
        while self.types.get(&t).is_some_and(|e| !e.pending.is_empty()) {
            let local = self.find_free_worker(t);
            let worker = local.or_else(|| {
                self.head_may_hop(t)
                    .then(|| self.find_free_remote(t))
                    .flatten()
            });
            let Some(wk) = worker else {
                return;
            };
            let Some(id) = self.pop_pending(t) else {
                return;
            };
            if self.expire_if_due(now, (t, id)) {
                continue;
            }
            let payload = self.take_payload(&(t, id));
            self.dispatch(now, wk, (t, id), payload);
        }
    }

    pub(super) fn push_pending(&mut self, key: ReqKey, front: bool) {
        // Queued (again): its deadline is watched (again; the entry of an
        // earlier wait may be gone).
        let deadline = self
            .requests
            .get(&key)
            .and_then(|&slot| self.reqs.get(slot))
            .and_then(|r| r.deadline);
        if let Some(at) = deadline {
            self.expiries.insert((at, key));
        }
        let e = self.types.entry(key.0).or_default();
        if front {
            e.pending.push_front(key.1);
        } else {
            e.pending.push_back(key.1);
        }
        self.total_pending += 1;
        self.nonempty_types.insert(key.0);
    }

    /// Queues a request a worker gave back unstarted (RETURNED) at the
    /// head of its type's queue (it was ahead of everything queued),
    /// behind the one given back last if that still waits there: a
    /// worker gives back its prefetched requests in the order they came,
    /// and they keep it.
    pub(super) fn push_returned(&mut self, key: ReqKey) {
        self.push_pending(key, true);
        let Some(e) = self.types.get_mut(&key.0) else {
            return;
        };
        // The scan ends at the run of requests given back, at the head
        // (only retries on death may have gone in front of it).
        let behind = e
            .last_returned
            .and_then(|last| e.pending.iter().position(|&id| id == last))
            .filter(|&i| i > 0);
        if let Some(i) = behind {
            // `last` is at `i` with this one in front: move this one
            // behind it.
            e.pending.pop_front();
            e.pending.insert(i, key.1);
        }
        e.last_returned = Some(key.1);
    }

    pub(super) fn pop_pending(&mut self, t: RequestType) -> Option<RequestId> {
        let e = self.types.get_mut(&t)?;
        let id = e.pending.pop_front()?;
        if e.last_returned == Some(id) {
            e.last_returned = None;
        }
        self.total_pending -= 1;
        if e.pending.is_empty() {
            self.nonempty_types.remove(&t);
        }
        Some(id)
    }

    pub(super) fn drop_type_if_idle(&mut self, t: RequestType) {
        if self.types.get(&t).is_some_and(TypeEntry::is_idle) {
            self.types.remove(&t);
        }
    }
}

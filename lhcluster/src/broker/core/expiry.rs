//! Deadlines (docs/deadlines.md): a queued request whose deadline passes
//! is ended `EXPIRED` (two-way) or dropped (one-way) and never dispatched.
//! The tick sweeps the queue; taking a request from the queue checks it
//! too, so a request never leaves late whatever the tick interval.

use std::time::Instant;

use foldhash::{HashMap, HashSet};

use super::{BrokerCore, ReqKey};
use crate::protocol::{RequestId, RequestType, Status};

impl BrokerCore {
    /// Ends every queued request whose deadline has passed.
    pub(super) fn expire_due(&mut self, now: Instant) {
        let mut due: HashMap<RequestType, HashSet<RequestId>> = HashMap::default();
        while let Some(&(at, key)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            // Only the request it was made for, still queued (an entry
            // outlives a request that left, or got a new deadline).
            let queued = self
                .requests
                .get(&key)
                .and_then(|&slot| self.reqs.get(slot))
                .is_some_and(|r| !r.in_flight && r.deadline == Some(at));
            if queued {
                due.entry(key.0).or_default().insert(key.1);
            }
        }
        for (t, ids) in due {
            let Some(e) = self.types.get_mut(&t) else {
                continue;
            };
            let before = e.pending.len();
            e.pending.retain(|id| !ids.contains(id));
            e.last_returned = None;
            self.total_pending -= before - e.pending.len();
            if e.pending.is_empty() {
                self.nonempty_types.remove(&t);
            }
            for id in ids {
                self.end_expired((t, id));
            }
            self.drop_type_if_idle(t);
        }
    }

    /// A request just taken from the queue: if its deadline has passed it
    /// is ended here (`true`) instead of dispatched.
    pub(super) fn expire_if_due(&mut self, now: Instant, key: ReqKey) -> bool {
        let due = self
            .requests
            .get(&key)
            .and_then(|&slot| self.reqs.get(slot))
            .and_then(|r| r.deadline)
            .is_some_and(|at| at <= now);
        if due {
            self.end_expired(key);
        }
        due
    }

    /// Ends a request taken off the queue: `EXPIRED` to a two-way
    /// requester, nothing to a one-way one.
    fn end_expired(&mut self, key: ReqKey) {
        let Some(req) = self.remove_req(&key) else {
            return;
        };
        self.stats.requests_expired += 1;
        if req.answered() {
            let error = "the request's deadline passed before a worker took it".to_owned();
            self.respond(req.response_dest(), key, Status::Expired, Some(error));
        }
    }
}

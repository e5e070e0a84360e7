//! Peers coming and going: removing a worker (its in-flight requests
//! retried or answered) or a client (its names released), and noticing
//! clients.

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::debug;

use super::{BrokerCore, ClientInfo, Side, hex, peer_id};
use crate::protocol::{Flags, Message, Status};
use crate::slab::Key;

impl BrokerCore {
    /// Removes a worker; its in-flight requests are retried or reported.
    pub(super) fn remove_worker(&mut self, now: Instant, wk: Key) {
        self.unlist(wk);
        let Some(w) = self.workers.remove(wk) else {
            return;
        };
        match w.remote {
            None => {
                self.worker_ids.remove(&w.id);
            }
            Some(member) => {
                self.remote_ids.remove(&(member, w.types[0]));
            }
        }
        for t in &w.types {
            if let Some(e) = self.types.get_mut(t) {
                match w.remote {
                    None => e.workers -= 1,
                    Some(_) => e.remote_workers -= 1,
                }
            }
        }
        let mut retried_types = BTreeSet::new();
        for key in w.assigned.into_keys() {
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
            // A cancelled request's requester has ended it: only an owner
            // still needs its EXECUTED (`answered`).
            let notify = !req.cancelled && req.flags.contains(Flags::NOTIFY_ON_DEATH);
            if req.answered() || notify {
                self.stats.requests_worker_death += 1;
                let error = "the worker running the request died".to_owned();
                self.respond(req.response_dest(), key, Status::WorkerDeath, Some(error));
            } else if !req.cancelled {
                self.stats.requests_dropped_on_death += 1;
            }
        }
        for t in retried_types {
            self.drain_type(now, t);
        }
        for t in &w.types {
            if w.remote.is_none() {
                self.return_executions(*t);
            }
            self.drop_type_if_idle(*t);
        }
    }

    pub(super) fn remove_client(&mut self, ck: Key) {
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
    pub(super) fn touch_client_quiet(&mut self, now: Instant, peer: &[u8]) -> Key {
        self.clients.touch(now, peer, ClientInfo::default).0
    }

    /// Like [`Self::touch_client_quiet`], and asks an unknown client to greet
    /// again (it may have a name to register, and its interval is unknown).
    pub(super) fn touch_client(&mut self, now: Instant, peer: &[u8]) -> Key {
        let (ck, known) = self.clients.touch(now, peer, ClientInfo::default);
        if !known {
            debug!("message from an unknown client: asking it to greet again");
            self.send(Side::Frontend, peer_id(peer), Message::Reregister);
        }
        ck
    }

    pub(super) fn worker_label(&self, wk: Key) -> String {
        match self.workers.get(wk) {
            Some(w) => w.name.clone().unwrap_or_else(|| hex(&w.id)),
            None => "?".to_owned(),
        }
    }
}

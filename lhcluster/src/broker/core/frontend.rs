//! Messages from clients and proxies: greetings (names), goodbyes, and
//! requests, with the dedupe of a request the broker already holds
//! (an idempotent re-send, a rejection, or a takeover by a newer requester).

use std::time::Instant;

use tracing::debug;

use super::stored::{COMPACT_AFTER, Stored};
use super::{BrokerCore, Dest, Req, ReqKey, Side, peer_id, watch};
use crate::curve::PublicKey;
use crate::protocol::MAX_HOPS;

/// The protocol minor version from which a client takes VIEW.
pub(super) const VIEW_MINOR: u32 = 3;
use crate::protocol::{Flags, Hello, Payload, Request, Route, Status};

impl BrokerCore {
    pub(super) fn on_hello(&mut self, now: Instant, peer: &[u8], hello: Hello, minor: u32) {
        let client = self.touch_client_quiet(now, peer);
        if hello.route.is_empty() {
            self.clients.set_interval(client, hello.heartbeat_ms);
            if let Some(c) = self.clients.get_mut(client) {
                c.data.minor = minor;
            }
            let welcome = self.welcome();
            self.send_tracked(now, Side::Frontend, peer_id(peer), welcome);
            if minor >= VIEW_MINOR {
                if let Some(view) = self.view_message() {
                    self.send(Side::Frontend, peer_id(peer), view);
                }
            }
        }
        if let Some(name) = hello.name {
            debug!(%name, "client registered its name");
            // One name per client (per route behind a proxy): a new name
            // replaces the old one.
            let previous: Vec<String> = self
                .names
                .iter()
                .filter(|(n, d)| d.peer.as_slice() == peer && d.route == hello.route && **n != name)
                .map(|(n, _)| n.clone())
                .collect();
            for old in previous {
                self.names.remove(&old);
                if let Some(c) = self.clients.get_mut(client) {
                    c.data.names.retain(|n| *n != old);
                }
            }
            let dest = Dest::local(peer, hello.route);
            if let Some(old) = self.names.insert(name.clone(), dest) {
                if old.peer.as_slice() != peer {
                    if let Some(c) = self.clients.find_mut(&old.peer) {
                        c.data.names.retain(|n| *n != name);
                    }
                }
            }
            if let Some(c) = self.clients.get_mut(client) {
                if !c.data.names.contains(&name) {
                    c.data.names.push(name);
                }
            }
        }
    }

    pub(super) fn on_client_disconnect(&mut self, peer: &[u8], route: Route) {
        let Some(ck) = self.clients.key(peer) else {
            return;
        };
        if route.is_empty() {
            debug!("client disconnected");
            self.remove_client(ck);
            return;
        }
        // A proxy says goodbye for one of its clients: forget its names.
        let names = &mut self.names;
        if let Some(c) = self.clients.get_mut(ck) {
            c.data.names.retain(|n| {
                let behind_route = names.get(n).is_some_and(|d| d.route == route);
                if behind_route {
                    names.remove(n);
                }
                !behind_route
            });
        }
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        peer: &[u8],
        req: Request,
        header: &[u8],
        peer_key: impl FnOnce() -> Option<PublicKey>,
    ) {
        self.touch_client(now, peer);
        self.stats.requests_received += 1;
        let key = (req.request_type, req.request_id);
        if let Some(tap) = self.tap.as_deref_mut() {
            tap.push(watch::Event::Request {
                key,
                bytes: watch::payload_bytes(&req.payload),
                flags: req.flags,
            });
        }
        let origin = Dest::local(peer, req.route);
        if self.authz.checks_requests() && !self.authorize_request(header, peer_key(), &origin, key)
        {
            return;
        }
        self.types.entry(key.0).or_default().received += 1;
        if self.refuse_if_slow(&origin, key) {
            return;
        }
        let reply_to = match &req.reply_to {
            None => None,
            Some(name) => match self.names.get(name) {
                Some(dest) => Some(dest.clone()),
                None => {
                    self.stats.requests_unknown_reply_to += 1;
                    let error = format!("no client named {name:?} is connected");
                    self.respond(&origin, key, Status::UnknownReplyTo, Some(error));
                    return self.drop_type_if_idle(key.0);
                }
            },
        };
        let deadline = crate::deadline::from_wire_ms(now, req.deadline_ms);
        if let Some(owner) = self.remote_owner(key) {
            let (flags, payload) = (req.flags, req.payload);
            return self.forward_to_owner(owner, key, origin, reply_to, flags, deadline, payload);
        }
        self.admit(
            now,
            key,
            origin,
            reply_to,
            req.flags,
            req.payload,
            (0, deadline),
        );
    }

    /// Admits a request this broker owns (protocol.md §8.2 from step 3):
    /// dedupe, fail-fast, then dispatch or queue. `hops` is how many
    /// brokers it crossed to get here ([`MAX_HOPS`]: run it here only);
    /// `deadline`, when it must be dispatched by (docs/deadlines.md).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &mut self,
        now: Instant,
        key: ReqKey,
        origin: Dest,
        reply_to: Option<Dest>,
        flags: Flags,
        payload: Payload,
        (hops, deadline): (u8, Option<Instant>),
    ) {
        if self.requests.contains_key(&key) {
            return self.on_duplicate(key, origin, reply_to, (flags, deadline), payload);
        }
        let entry = self.types.entry(key.0).or_default();
        let (type_workers, type_pending) =
            (entry.workers + entry.remote_workers, entry.pending.len());
        if flags.contains(Flags::FAIL_FAST) && type_workers == 0 {
            self.stats.requests_no_workers += 1;
            let error = format!(
                "no worker serves request type {}",
                self.type_names.label(key.0)
            );
            self.respond(&origin, key, Status::NoWorkers, Some(error));
            return self.drop_type_if_idle(key.0);
        }
        // Invariant: a type with queued work has no free worker, so only
        // look for one when its queue is empty.
        let may_hop = u32::from(hops) < MAX_HOPS;
        let worker = if type_pending == 0 {
            self.find_free_worker(key.0)
                .or_else(|| may_hop.then(|| self.find_free_remote(key.0)).flatten())
        } else {
            None
        };
        let bytes_full = || {
            let bytes: usize = payload.iter().map(|f| f.len()).sum();
            self.bounds.pending_full(bytes)
        };
        if worker.is_none()
            && (type_pending >= self.max_pending_per_type
                || self.total_pending >= self.max_pending_total
                || bytes_full())
        {
            self.stats.requests_overloaded += 1;
            let error = format!(
                "queue bound reached for request type {} ({} queued, {} in total, \
                 or the pending bytes bound)",
                key.0, type_pending, self.total_pending
            );
            self.respond(&origin, key, Status::Overloaded, Some(error));
            return self.drop_type_if_idle(key.0);
        }
        let (payload, stored) = match worker {
            Some(_) => (payload, Stored::Nothing),
            None => (Payload::new(), self.store(payload)),
        };
        let slot = self.reqs.insert(Req {
            origin,
            reply_to: reply_to.map(Box::new),
            flags,
            attempts: 0,
            wait_counted: false,
            receipt_sent: false,
            received: false,
            in_flight: false,
            cancelled: false,
            hops,
            deadline,
            arrived: now,
            dispatched_us: 0,
            payload: stored,
        });
        self.requests.insert(key, slot);
        match worker {
            Some(wk) => self.dispatch(now, wk, key, payload),
            None => self.push_pending(key, false),
        }
    }

    /// Holds a queued payload, compactly once the queue is long.
    fn store(&mut self, payload: Payload) -> Stored {
        let stored = Stored::new(payload, self.total_pending >= COMPACT_AFTER);
        self.bounds.hold(stored.len());
        stored
    }

    pub(super) fn req_mut(&mut self, key: &ReqKey) -> Option<&mut Req> {
        let slot = *self.requests.get(key)?;
        self.reqs.get_mut(slot)
    }

    pub(super) fn remove_req(&mut self, key: &ReqKey) -> Option<Req> {
        let slot = self.requests.remove(key)?;
        let req = self.reqs.remove(slot)?;
        self.bounds.release(req.payload.len());
        Some(req)
    }

    /// A queued request's payload, to dispatch it.
    pub(super) fn take_payload(&mut self, key: &ReqKey) -> Payload {
        let Some(req) = self.req_mut(key) else {
            return Payload::new();
        };
        let bytes = req.payload.len();
        let payload = req.payload.take();
        self.bounds.release(bytes);
        payload
    }

    fn on_duplicate(
        &mut self,
        key: ReqKey,
        origin: Dest,
        reply_to: Option<Dest>,
        (flags, deadline): (Flags, Option<Instant>),
        payload: Payload,
    ) {
        let compact = self.total_pending >= COMPACT_AFTER;
        let max_tries = self.max_tries;
        // Borrow the slab only: the counters are updated meanwhile.
        let slot = self.requests.get(&key).copied();
        let orphan = slot
            .and_then(|slot| self.reqs.get(slot))
            .is_some_and(|r| self.owner_left(&r.origin));
        let Some(existing) = slot.and_then(|slot| self.reqs.get_mut(slot)) else {
            return;
        };
        if existing.cancelled {
            // Its requester took it back, but its worker still runs it
            // (the CANCEL is cooperative): the key is held until the
            // worker's RESULT frees it, so that one worker never runs two
            // requests under one key. Whoever asks meanwhile, the same
            // requester included, is refused, and may ask again.
            self.stats.requests_rejected += 1;
            let error = format!(
                "request {}/{} was cancelled and its worker has not finished it yet",
                key.0, key.1
            );
            return self.respond(&origin, key, Status::Rejected, Some(error));
        }
        // A takeover below replaces the held payload.
        let held_before = existing.payload.len();
        // A request run here for an owner that left the cluster belongs to
        // whoever holds its key now: the entry broker sent it to the new
        // owner (docs/clustering.md §7), which asks for it again.
        if existing.origin.same_requester(&origin) || orphan {
            // An idempotent re-send (a proxy does this until confirmed),
            // maybe through another entry broker, or a new EXECUTE from
            // the owner: what is sent about it now goes that way.
            existing.origin = origin;
            self.stats.requests_resent += 1;
            // Confirm again what was already confirmed: the earlier receipt
            // may be what the re-sender missed.
            let in_flight = existing.in_flight;
            let (origin, received) = (existing.origin.clone(), existing.received);
            if in_flight && flags.contains(Flags::RECEIPT_ON_SEND) {
                self.send_receipt_sent(&origin, key);
            }
            if in_flight && received && flags.contains(Flags::RECEIPT_ON_RECEIVE) {
                self.send_receipt_received(&origin, key);
            }
            return;
        }
        if !existing.flags.contains(Flags::ALLOW_REDIRECT) {
            self.stats.requests_rejected += 1;
            let error = format!(
                "request {}/{} is already pending or in progress",
                key.0, key.1
            );
            return self.respond(&origin, key, Status::Rejected, Some(error));
        }
        // Takeover: the newer requester gets the response.
        self.stats.requests_redirected += 1;
        let previous = std::mem::replace(&mut existing.origin, origin);
        let previous_flags = std::mem::replace(&mut existing.flags, flags);
        // The new requester's deadline (or none) is the request's now.
        existing.deadline = deadline;
        let new_deadline = deadline;
        existing.reply_to = reply_to.map(Box::new);
        let mut receipt_for_new = None;
        match existing.in_flight {
            false => {
                existing.payload = Stored::new(payload, compact);
                // The new requester gets RECEIPT_SENT when it is dispatched.
                existing.receipt_sent = false;
            }
            true => {
                let tries_left = existing.attempts < max_tries;
                existing.payload = if flags.contains(Flags::RETRY_ON_DEATH) && tries_left {
                    Stored::new(payload, compact)
                } else {
                    Stored::Nothing
                };
                let received = existing.received && flags.contains(Flags::RECEIPT_ON_RECEIVE);
                // Sent below if asked; a retry must not send it again.
                existing.receipt_sent = true;
                receipt_for_new = Some((
                    existing.origin.clone(),
                    flags.contains(Flags::RECEIPT_ON_SEND),
                    received,
                ));
            }
        }
        if let Some(at) = new_deadline {
            self.expiries.insert((at, key));
        }
        debug!(
            request_type = %self.type_names.label(key.0),
            request_id = key.1,
            "response taken over by a newer requester"
        );
        // A two-way requester always learns that its response went elsewhere
        // (it must not wait forever); a one-way one only if it asked.
        if previous_flags.is_two_way() || previous_flags.contains(Flags::NOTIFY_ON_REDIRECT) {
            let error = "another requester took over the response".to_owned();
            self.respond(&previous, key, Status::Redirected, Some(error));
        }
        if let Some(req) = slot.and_then(|slot| self.reqs.get(slot)) {
            let held_after = req.payload.len();
            self.bounds.release(held_before);
            self.bounds.hold(held_after);
        }
        // The new requester gets the receipts the request already earned.
        if let Some((dest, sent, received)) = receipt_for_new {
            if sent {
                self.send_receipt_sent(&dest, key);
            }
            if received {
                self.send_receipt_received(&dest, key);
            }
        }
    }
}

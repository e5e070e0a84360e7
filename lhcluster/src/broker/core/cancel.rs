//! Cancel (protocol 1.5; docs/deadlines.md §2, protocol.md §8.6): the
//! requester of a request takes it back. A queued request is taken out of
//! its queue and ends unrun; one in flight is marked cancelled and its
//! worker (or the member running it) is told with a CANCEL naming the
//! dispatch; its RESULT then only gives the credit back. Nothing is sent to
//! the requester, which ended the request itself when it cancelled.
//!
//! Only the request's origin may cancel it (same routing id and route, or
//! the same encoded client through a cluster): from anyone else a CANCEL
//! is ignored and counted, so that a client cannot cancel another's request.

use std::time::Instant;

use tracing::{debug, warn};

use super::stored::Stored;
use super::{BrokerCore, Dest, ReqKey, Side, Via, hex, peer_id};
use crate::peer::PeerId;
use crate::protocol::{CANCEL_MINOR, Cancel, Message, Status};

/// Why a CANCEL cancelled nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ignored {
    /// No such request here: it has ended (its outcome and the CANCEL
    /// crossed), or never came.
    Unknown,
    /// The request is another requester's (or, from an owner, another
    /// dispatch's).
    Stranger,
}

impl BrokerCore {
    /// A CANCEL from a client or proxy on the frontend: cancels the request
    /// here, or passes the CANCEL to the owner this broker forwarded the
    /// request to (docs/clustering.md §6).
    pub(super) fn on_client_cancel(&mut self, now: Instant, peer: &[u8], c: Cancel) {
        self.touch_client(now, peer);
        let key = (c.request_type, c.request_id);
        let origin = Dest::local(peer, c.route);
        let here = self.cancel_here(key, &origin, 0);
        if here.is_ok() {
            return;
        }
        // Not this client's here (this broker may hold the key as the
        // executor of another member's EXECUTE, even of this very
        // request): forwarded to its owner (the relay record says which),
        // or, one-way, to the member that owns the key now.
        let owner = self
            .drop_relay(key, &origin)
            .or_else(|| self.remote_owner(key));
        match owner {
            Some(owner) => self.forward_cancel(owner, key, &origin),
            None => self.count_ignored(peer, key, here),
        }
    }

    /// A CANCEL from another member: from an entry broker for one of its
    /// clients (a `route`), or from the owner of an EXECUTE this broker
    /// runs (no route, the EXECUTE's tag).
    pub(super) fn on_member_cancel(&mut self, member: u64, c: Cancel) {
        let key = (c.request_type, c.request_id);
        let from = if c.route.is_empty() {
            Dest {
                peer: PeerId::new(),
                route: Vec::new(),
                via: Via::Owner {
                    member,
                    attempt: 0,
                    tag: c.dispatch_tag,
                },
            }
        } else {
            Dest {
                peer: PeerId::new(),
                route: c.route,
                via: Via::Member(member),
            }
        };
        let outcome = self.cancel_here(key, &from, c.dispatch_tag);
        self.count_ignored(&member.to_be_bytes(), key, outcome);
    }

    /// Cancels `key` if `from` is its requester: ends it if queued, tells
    /// its worker if running. `tag`: from an owner, the EXECUTE it cancels.
    fn cancel_here(&mut self, key: ReqKey, from: &Dest, tag: u64) -> Result<(), Ignored> {
        // The slab alone is borrowed: the counters change meanwhile.
        let slot = self.requests.get(&key).copied();
        let Some(req) = slot.and_then(|slot| self.reqs.get_mut(slot)) else {
            return Err(Ignored::Unknown);
        };
        let same_dispatch = match req.origin.via {
            Via::Owner { tag: t, .. } => tag == 0 || t == tag,
            _ => true,
        };
        if !req.origin.same_requester(from) || !same_dispatch {
            return Err(Ignored::Stranger);
        }
        if req.cancelled {
            // Cancelled already (a CANCEL sent twice): nothing more to do.
            return Ok(());
        }
        self.stats.requests_cancelled += 1;
        debug!(
            request_type = key.0,
            request_id = key.1,
            in_flight = req.in_flight,
            "request cancelled by its requester"
        );
        if let Some(tap) = self.tap.as_deref_mut() {
            tap.push(super::watch::Event::Cancelled {
                key,
                running: req.in_flight,
            });
        }
        if req.in_flight {
            req.cancelled = true;
            // No retry for a request nobody waits for.
            let held = std::mem::replace(&mut req.payload, Stored::Nothing).len();
            self.bounds.release(held);
            self.tell_runner(key);
            return Ok(());
        }
        self.unqueue(key);
        if let Some(req) = self.remove_req(&key) {
            // An owner still needs the EXECUTED that gives its slot back
            // (it drops the outcome: it cancelled).
            if matches!(req.origin.via, Via::Owner { .. }) {
                let error = Some("cancelled by its requester before it ran".to_owned());
                self.respond(&req.origin, key, Status::Failed, error);
            }
        }
        self.drop_type_if_idle(key.0);
        Ok(())
    }

    /// Takes a queued request's id out of its type's queue.
    fn unqueue(&mut self, key: ReqKey) {
        let Some(e) = self.types.get_mut(&key.0) else {
            return;
        };
        // A linear search: cancels are rare, and the queue keeps its order.
        if let Some(i) = e.pending.iter().position(|&id| id == key.1) {
            e.pending.remove(i);
            e.last_returned = None;
            self.total_pending -= 1;
        }
        if e.pending.is_empty() {
            self.nonempty_types.remove(&key.0);
        }
    }

    /// Sends CANCEL to the worker (or member) running `key`, naming its
    /// dispatch, if it speaks 1.5: an older one runs the request to its end
    /// and its result is dropped.
    fn tell_runner(&mut self, key: ReqKey) {
        // A search of the workers' assignments: a cancel is rare, and an
        // index from request to worker would cost every dispatch.
        let runner = self.workers.iter().find_map(|(_, w)| {
            w.assigned
                .get(&key)
                .map(|&tag| (peer_id(&w.id), w.remote, w.minor, tag))
        });
        let Some((peer, remote, minor, tag)) = runner else {
            return;
        };
        let msg = Message::Cancel(Cancel {
            request_type: key.0,
            request_id: key.1,
            route: Vec::new(),
            dispatch_tag: tag,
        });
        match remote {
            None if minor >= CANCEL_MINOR => {
                let now = self.now;
                self.send_tracked(now, Side::Backend, peer, msg);
            }
            Some(member) if self.member_minor(member) >= CANCEL_MINOR => {
                self.send_to_member(member, msg);
            }
            _ => debug!(
                request_type = key.0,
                request_id = key.1,
                "its worker predates CANCEL: it runs to its end, its result is dropped"
            ),
        }
    }

    /// The protocol minor version of a member's greeting (0 if unknown).
    fn member_minor(&self, member: u64) -> u32 {
        self.cluster
            .as_ref()
            .and_then(|c| c.members.get(&member))
            .map_or(0, |m| m.minor)
    }

    /// Passes a client's CANCEL on to the owner of its request, with the
    /// client's encoded route (as its FORWARD had).
    fn forward_cancel(&mut self, owner: u64, key: ReqKey, origin: &Dest) {
        if self.member_minor(owner) < CANCEL_MINOR {
            debug!(
                request_type = key.0,
                request_id = key.1,
                "the owner predates CANCEL: the request runs to its end"
            );
            return;
        }
        let msg = Message::Cancel(Cancel {
            request_type: key.0,
            request_id: key.1,
            route: super::relay::encode_route(&origin.peer, &origin.route),
            dispatch_tag: 0,
        });
        self.send_to_member(owner, msg);
    }

    fn count_ignored(&mut self, peer: &[u8], key: ReqKey, outcome: Result<(), Ignored>) {
        match outcome {
            Ok(()) => {}
            Err(Ignored::Unknown) => {
                self.stats.cancels_ignored += 1;
                debug!(
                    request_type = key.0,
                    request_id = key.1,
                    "CANCEL for a request that has ended: ignored"
                );
            }
            Err(Ignored::Stranger) => {
                self.stats.cancels_ignored += 1;
                let text = "CANCEL for another requester's request";
                if self.bad_input.admit(self.now, peer, &text) {
                    warn!(
                        peer = %hex(peer),
                        request_type = key.0,
                        request_id = key.1,
                        "{text}: ignored"
                    );
                }
            }
        }
    }
}

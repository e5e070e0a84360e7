//! The entry broker's side of a cluster (docs/clustering.md §2, §6, §7):
//! a client's request whose key another member owns is forwarded to it,
//! and what the owner sends back about it is passed on to the client. For
//! a two-way request the entry broker keeps a relay record, so that the
//! request still ends in one outcome if its owner leaves the cluster.

use std::time::Instant;

use foldhash::HashMap;
use smallvec::SmallVec;
use tracing::debug;

use super::stored::Stored;
use super::{BrokerCore, Dest, ReqKey, Side, peer_id};
use crate::protocol::{Flags, Forward, Message, Payload, Request, Response, Route, Status};

/// The route an entry broker gives the owner for one of its clients:
/// `[n][client routing id: n bytes][client's own route]`.
pub(super) fn encode_route(client: &[u8], route: &[u8]) -> Route {
    let n = u8::try_from(client.len()).unwrap_or(u8::MAX);
    let mut r = Vec::with_capacity(1 + usize::from(n) + route.len());
    r.push(n);
    r.extend_from_slice(&client[..usize::from(n)]);
    r.extend_from_slice(route);
    r
}

/// The client routing id and client route of an encoded route.
pub(super) fn decode_route(r: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = r.split_first()?;
    let n = usize::from(n);
    if n == 0 || rest.len() < n {
        return None;
    }
    Some(rest.split_at(n))
}

/// Whether `encoded` is the encoded route of (`client`, `route`).
pub(super) fn is_encoded(encoded: &[u8], client: &[u8], route: &[u8]) -> bool {
    decode_route(encoded) == Some((client, route))
}

/// A two-way request this broker forwarded to its owner.
#[derive(Debug)]
struct Relay {
    origin: Dest,
    reply_to: Option<Dest>,
    owner: u64,
    flags: Flags,
    deadline: Option<Instant>,
    /// A `RETRY_ON_DEATH` request's payload, to send it to the next owner
    /// should this one leave.
    payload: Stored,
}

impl Relay {
    fn response_dest(&self) -> &Dest {
        self.reply_to.as_ref().unwrap_or(&self.origin)
    }
}

/// The relay records, by request key (several requesters may have sent the
/// same key through this broker; the owner rejects all but one).
#[derive(Debug, Default)]
pub(super) struct Relays {
    by_key: HashMap<ReqKey, SmallVec<[Relay; 1]>>,
}

impl Relays {
    pub(super) fn len(&self) -> usize {
        self.by_key.values().map(SmallVec::len).sum()
    }
}

impl BrokerCore {
    /// The member that owns `key`, when it is not this broker.
    pub(super) fn remote_owner(&self, key: ReqKey) -> Option<u64> {
        let c = self.cluster.as_ref()?;
        if c.members.is_empty() {
            return None;
        }
        let owner = c.owner(key.0, key.1);
        (owner != c.id).then_some(owner)
    }

    /// Forwards a client's request to its owner.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_to_owner(
        &mut self,
        owner: u64,
        key: ReqKey,
        origin: Dest,
        reply_to: Option<Dest>,
        flags: Flags,
        deadline: Option<Instant>,
        payload: Payload,
    ) {
        let keeps_copy = flags.is_two_way() && flags.contains(Flags::RETRY_ON_DEATH);
        let bytes: usize = payload.iter().map(|f| f.len()).sum();
        if keeps_copy && self.bounds.pending_full(bytes) {
            self.stats.requests_overloaded += 1;
            let error = "the broker holds max_pending_bytes already".to_owned();
            self.respond(
                &origin,
                key,
                crate::protocol::Status::Overloaded,
                Some(error),
            );
            return self.drop_type_if_idle(key.0);
        }
        let route = encode_route(&origin.peer, &origin.route);
        let reply_route = reply_to.as_ref().map(|d| encode_route(&d.peer, &d.route));
        if flags.is_two_way() {
            let kept = if flags.contains(Flags::RETRY_ON_DEATH) {
                Stored::copy_of(&payload)
            } else {
                Stored::Nothing
            };
            // A retry copy is held for the requester: it counts against
            // `max_pending_bytes` like a queued payload.
            self.bounds.hold(kept.len());
            self.relays.by_key.entry(key).or_default().push(Relay {
                origin,
                reply_to,
                owner,
                flags,
                deadline,
                payload: kept,
            });
        }
        let msg = Message::Forward(Forward {
            request: Request {
                request_type: key.0,
                request_id: key.1,
                flags,
                route,
                reply_to: None,
                deadline_ms: crate::deadline::wire_ms_until(self.now, deadline),
                payload,
            },
            hops: 1,
            reply_route,
        });
        self.count_forwarded_to(owner);
        self.send_to_member(owner, msg);
        self.drop_type_if_idle(key.0);
    }

    /// A RESPONSE from an owner for one of this broker's clients.
    pub(super) fn relay_response(&mut self, mut r: Response) {
        let key = (r.request_type, r.request_id);
        let Some((client, route)) = decode_route(&r.route) else {
            return self.count_unroutable();
        };
        let (client, route) = (peer_id(client), route.to_vec());
        if let Some(list) = self.relays.by_key.get_mut(&key) {
            let answered = |d: &Dest| d.peer == client && d.route == route;
            if let Some(i) = list
                .iter()
                .position(|rel| answered(rel.response_dest()) || answered(&rel.origin))
            {
                let done = list.remove(i);
                self.bounds.release(done.payload.len());
            }
            if list.is_empty() {
                self.relays.by_key.remove(&key);
            }
        }
        r.route = route;
        let now = self.now;
        self.send_tracked(now, Side::Frontend, client, Message::Response(r));
    }

    /// A receipt from an owner for one of this broker's clients.
    pub(super) fn relay_receipt(&mut self, mut msg: Message) {
        let (Message::ReceiptSent(r) | Message::ReceiptReceived(r)) = &mut msg else {
            return;
        };
        let Some((client, route)) = decode_route(&r.route) else {
            return self.count_unroutable();
        };
        let (client, route) = (peer_id(client), route.to_vec());
        r.route = route;
        let now = self.now;
        self.send_tracked(now, Side::Frontend, client, msg);
    }

    /// An ERROR from an owner about a request of one of this broker's
    /// clients: it ends the request there (the relay record goes too).
    pub(super) fn relay_error(&mut self, mut r: crate::protocol::RequestRef, error: String) {
        let key = (r.request_type, r.request_id);
        let Some((client, route)) = decode_route(&r.route) else {
            return self.count_unroutable();
        };
        let (client, route) = (peer_id(client), route.to_vec());
        if let Some(list) = self.relays.by_key.get_mut(&key) {
            let bounds = &mut self.bounds;
            list.retain(|rel| {
                let ended = rel.origin.peer == client && rel.origin.route == route;
                if ended {
                    bounds.release(rel.payload.len());
                }
                !ended
            });
            if list.is_empty() {
                self.relays.by_key.remove(&key);
            }
        }
        r.route = route;
        let msg = Message::Error(crate::protocol::ErrorReply {
            error,
            request: Some(r),
            status: None,
        });
        let now = self.now;
        self.send_tracked(now, Side::Frontend, client, msg);
    }

    /// The requester `origin` cancelled a request this broker forwarded:
    /// its relay record goes (nothing more will be relayed to it), and the
    /// owner it went to is returned, for the CANCEL.
    pub(super) fn drop_relay(&mut self, key: ReqKey, origin: &Dest) -> Option<u64> {
        let list = self.relays.by_key.get_mut(&key)?;
        let i = list.iter().position(|rel| rel.origin == *origin)?;
        let relay = list.remove(i);
        if list.is_empty() {
            self.relays.by_key.remove(&key);
        }
        self.bounds.release(relay.payload.len());
        Some(relay.owner)
    }

    fn count_unroutable(&mut self) {
        debug!("answer from a cluster peer with a route this broker cannot read: dropped");
        if let Some(k) = self.cluster_counters() {
            k.unroutable += 1;
        }
    }

    /// The owner of requests this broker forwarded left the cluster: each
    /// `RETRY_ON_DEATH` one goes to its new owner, the others end
    /// `WORKER_DEATH` (docs/clustering.md §7).
    pub(super) fn owner_lost(&mut self, now: Instant, member: u64) {
        let mut lost = Vec::new();
        self.relays.by_key.retain(|&key, list| {
            let mut i = 0;
            while i < list.len() {
                if list[i].owner == member {
                    lost.push((key, list.remove(i)));
                } else {
                    i += 1;
                }
            }
            !list.is_empty()
        });
        for (key, mut relay) in lost {
            self.bounds.release(relay.payload.len());
            if let Some(k) = self.cluster_counters() {
                k.owner_lost += 1;
            }
            if relay.flags.contains(Flags::RETRY_ON_DEATH) && relay.payload.is_held() {
                self.stats.requests_retried += 1;
                let payload = relay.payload.take();
                let (origin, reply_to, flags, deadline) =
                    (relay.origin, relay.reply_to, relay.flags, relay.deadline);
                match self.remote_owner(key) {
                    Some(owner) => self
                        .forward_to_owner(owner, key, origin, reply_to, flags, deadline, payload),
                    None => self.admit(now, key, origin, reply_to, flags, payload, (0, deadline)),
                }
                continue;
            }
            self.stats.requests_worker_death += 1;
            let error = "the broker that held the request left the cluster".to_owned();
            let dest = relay.response_dest().clone();
            self.respond(&dest, key, Status::WorkerDeath, Some(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_encode_the_client_and_its_own_route() {
        let r = encode_route(b"client", b"px");
        assert_eq!(r, b"\x06clientpx");
        assert_eq!(decode_route(&r), Some((&b"client"[..], &b"px"[..])));
        assert!(is_encoded(&r, b"client", b"px"));
        assert!(!is_encoded(&r, b"client", b""));
        assert_eq!(decode_route(b""), None);
        assert_eq!(decode_route(b"\x00x"), None);
        assert_eq!(decode_route(b"\x05abc"), None);
    }
}

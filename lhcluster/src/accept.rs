//! The accepting side, shared by the broker and the client proxy (towards
//! their clients): who is connected, and their liveness (sans-IO,
//! [`Peers`]); reading a ROUTER in batches ([`read`]); and sending to its
//! peers through their byte-bounded outboxes ([`deliver`], [`retry`]).
//!
//! A peer is registered by its first message. One that speaks before it
//! greets (it was forgotten, or we restarted) is registered with our own
//! interval as its own, and the caller asks it to greet again.

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use crate::curve::PublicKey;
use crate::io;
use crate::outbox::{Outbox, Pushed, Refused};
use crate::peer::{Liveness, PeerId, interval_from_ms};
use crate::protocol::{Message, Payload};
use crate::slab::{Key, Slab};

/// A connected peer.
#[derive(Debug)]
pub(crate) struct Accepted<T> {
    pub(crate) id: PeerId,
    pub(crate) live: Liveness,
    /// What the role keeps about it.
    pub(crate) data: T,
}

/// The connected peers, by stable key and by routing id.
#[derive(Debug)]
pub(crate) struct Peers<T> {
    slab: Slab<Accepted<T>>,
    ids: HashMap<PeerId, Key>,
    /// Our own heartbeat interval.
    heartbeat: Duration,
    liveness: u32,
}

impl<T> Peers<T> {
    /// `heartbeat`: our own interval; `liveness`: how many of its own
    /// intervals a peer may miss.
    pub(crate) fn new(heartbeat: Duration, liveness: u32) -> Self {
        Self {
            slab: Slab::default(),
            ids: HashMap::new(),
            heartbeat,
            liveness,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn key(&self, peer: &[u8]) -> Option<Key> {
        self.ids.get(peer).copied()
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut Accepted<T>> {
        self.slab.get_mut(key)
    }

    /// By routing id.
    pub(crate) fn find_mut(&mut self, peer: &[u8]) -> Option<&mut Accepted<T>> {
        let key = self.key(peer)?;
        self.slab.get_mut(key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &Accepted<T>)> {
        self.slab.iter()
    }

    /// Marks a peer as heard from, registering it with `data()` if new;
    /// returns its key, and whether it was known.
    pub(crate) fn touch(
        &mut self,
        now: Instant,
        peer: &[u8],
        data: impl FnOnce() -> T,
    ) -> (Key, bool) {
        if let Some(key) = self.key(peer) {
            if let Some(p) = self.slab.get_mut(key) {
                p.live.last_heard = now;
            }
            return (key, true);
        }
        let key = self.slab.insert(Accepted {
            id: PeerId::from_slice(peer),
            live: Liveness::new(now, self.heartbeat),
            data: data(),
        });
        // In one go: `SmallVec`'s `From<&[u8]>` copies byte by byte.
        self.ids.insert(PeerId::from_slice(peer), key);
        (key, false)
    }

    /// A peer announced its interval (in a greeting or a heartbeat; 0
    /// leaves it unchanged).
    pub(crate) fn set_interval(&mut self, key: Key, heartbeat_ms: u32) {
        if heartbeat_ms != 0 {
            if let Some(p) = self.slab.get_mut(key) {
                p.live.peer_interval = interval_from_ms(heartbeat_ms);
            }
        }
    }

    /// We sent the peer something at `now`: no heartbeat due for a while.
    /// `false` for an unknown peer.
    pub(crate) fn sent(&mut self, peer: &[u8], now: Instant) -> bool {
        match self.find_mut(peer) {
            Some(p) => {
                p.live.last_sent = now;
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<Accepted<T>> {
        let p = self.slab.remove(key)?;
        self.ids.remove(&p.id);
        Some(p)
    }

    /// The peers that missed `liveness` of their own intervals.
    pub(crate) fn dead(&self, now: Instant) -> Vec<Key> {
        self.slab
            .iter()
            .filter(|(_, p)| p.live.is_dead(now, self.liveness))
            .map(|(k, _)| k)
            .collect()
    }

    /// Adds to `due` the peers we owe a heartbeat (silent towards them for
    /// one of our intervals); returns the shortest interval among ours and
    /// the peers', for when to look again.
    pub(crate) fn heartbeats_due(&self, now: Instant, due: &mut Vec<PeerId>) -> Duration {
        let mut shortest = self.heartbeat;
        for (_, p) in self.slab.iter() {
            shortest = shortest.min(p.live.peer_interval);
            if p.live.heartbeat_due(now, self.heartbeat) {
                due.push(PeerId::from_slice(&p.id));
            }
        }
        shortest
    }
}

/// Gives the CURVE key a message came with, when asked (see [`read`]).
pub(crate) type KeyOf<'a> = &'a mut dyn FnMut() -> Option<PublicKey>;

/// How [`read`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOpts {
    /// Whether the core may ask for a message's CURVE key.
    pub(crate) keys: bool,
    /// The most frames and bytes a message may have (after the routing id).
    pub(crate) limits: io::Limits,
}

/// Reads a batch of messages from a ROUTER, handing each to `each` as
/// (routing id, header, payload, its CURVE key on demand); returns the
/// messages dropped for being over `opts.limits`, each with its routing id,
/// size and header (a copy), for the caller to count. Without
/// `opts.keys` the key is always `None`; with it, the header is first
/// copied (a few dozen bytes), as reading the key needs the frame itself
/// (libzmq's `zmq_msg_gets`).
pub(crate) fn read(
    socket: &zmq::Socket,
    opts: ReadOpts,
    mut each: impl FnMut(&[u8], &[u8], Payload, KeyOf<'_>),
) -> Vec<(PeerId, io::Oversized, Vec<u8>)> {
    let mut oversized = Vec::new();
    let mut copy = Vec::new();
    for _ in 0..io::READ_BATCH {
        let Some(mut m) = io::recv_next_limited(socket, true, opts.limits) else {
            break;
        };
        let peer = m.identity.as_deref().unwrap_or(&[]);
        if let Some(size) = m.oversized {
            // Kept to name the request in the answer, unless the header is
            // itself huge: ours are a few hundred bytes, and a batch must
            // not hold READ_BATCH oversized headers.
            let header = m
                .header
                .as_deref()
                .filter(|h| h.len() <= OVERSIZED_HEADER_KEPT)
                .unwrap_or(&[])
                .to_vec();
            oversized.push((PeerId::from_slice(peer), size, header));
            continue;
        }
        let keys = opts.keys;
        if keys {
            copy.clear();
            copy.extend_from_slice(m.header.as_deref().unwrap_or(&[]));
            let mut frame = m.header.take();
            each(peer, &copy, m.payload, &mut || peer_key(frame.as_mut()));
        } else {
            let header = m.header.as_deref().unwrap_or(&[]);
            each(peer, header, m.payload, &mut || None);
        }
    }
    oversized
}

/// The largest header of an oversized message kept to answer it.
const OVERSIZED_HEADER_KEPT: usize = 64 * 1024;

/// The CURVE public key a message came with: the user id our ZAP handler
/// gave its connection (the key in Z85), which libzmq attaches to every
/// message of the connection as its `User-Id` property. `None` on a socket
/// without a key list, and over `inproc://` (no handshake).
fn peer_key(frame: Option<&mut zmq::Message>) -> Option<PublicKey> {
    let user = frame?.gets("User-Id")?;
    PublicKey::from_z85(user).ok()
}

/// What became of a message [`deliver`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the peer's pipe.
    Sent,
    /// Kept in the peer's outbox, to be sent in order.
    Queued,
    /// Dropped: the peer's outbox is at its bound (counted there).
    Dropped,
    /// The peer is gone, for the caller to count.
    Gone,
}

/// The outbox of one bound ROUTER.
pub(crate) type RouterOutbox = Outbox<io::Parts>;

/// Sends to a peer by routing id, through its outbox: straight to its pipe
/// when it has no backlog and its pipe has room (the common case, which
/// costs one branch more than a plain send), else behind its backlog.
pub(crate) fn deliver(
    socket: &zmq::Socket,
    outbox: &mut RouterOutbox,
    peer: &[u8],
    msg: Message,
    header_buf: &mut Vec<u8>,
) -> Delivery {
    if outbox.holds(peer) {
        let parts = io::encode_parts(msg, header_buf);
        return pushed(outbox.push(Instant::now(), peer, parts));
    }
    match io::send_routed(socket, peer, msg, header_buf) {
        Ok(()) => Delivery::Sent,
        Err(Refused::Full(parts)) => pushed(outbox.push(Instant::now(), peer, parts)),
        Err(Refused::Gone) => Delivery::Gone,
    }
}

fn pushed(p: Pushed) -> Delivery {
    match p {
        Pushed::Queued => Delivery::Queued,
        Pushed::Dropped => Delivery::Dropped,
    }
}

/// Retries the backlogs due at `now` (and cuts the peers over their limit
/// for too long: see [`Outbox::run`]).
pub(crate) fn retry(socket: &zmq::Socket, outbox: &mut RouterOutbox, now: Instant) {
    outbox.run(now, |peer, parts| io::send_parts(socket, peer, parts));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn registers_on_first_word_and_sweeps_the_silent() {
        let t0 = Instant::now();
        let mut peers = Peers::new(ms(100), 3);
        let (a, known) = peers.touch(t0, b"a", || "a");
        assert!(!known);
        assert_eq!(peers.touch(t0 + ms(50), b"a", || "again"), (a, true));
        assert_eq!(peers.get_mut(a).map(|p| p.data), Some("a"));
        let (b, _) = peers.touch(t0, b"b", || "b");
        peers.set_interval(b, 1000);
        peers.set_interval(b, 0);
        assert!(peers.dead(t0 + ms(350)).is_empty());
        assert_eq!(peers.dead(t0 + ms(351)), [a], "3 × 100 ms after 50");
        assert_eq!(peers.dead(t0 + ms(3000)), [a], "b announced 1000 ms");
        assert_eq!(peers.dead(t0 + ms(3001)), [a, b]);
        let mut due = Vec::new();
        assert!(peers.sent(b"a", t0 + ms(60)));
        assert!(!peers.sent(b"z", t0));
        assert_eq!(peers.heartbeats_due(t0 + ms(100), &mut due), ms(100));
        assert_eq!(due, [PeerId::from_slice(b"b")]);
        assert!(peers.remove(a).is_some());
        assert_eq!((peers.len(), peers.key(b"a")), (1, None));
    }
}

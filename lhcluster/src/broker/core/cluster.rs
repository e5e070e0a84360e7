//! Routes to the other brokers of a cluster, and membership
//! (docs/clustering.md §3, §4).
//!
//! A broker dials each configured peer with a DEALER and greets on it with
//! PEER_HELLO until PEER_WELCOME answers; it answers the greetings that
//! reach its bound ROUTER. A route to a member is up from its greeting until
//! the member misses its heartbeats or says SHUTDOWN. The members with a
//! route up, and this broker, are the view over which every request key has
//! one owner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};
use tracing::{debug, info, warn};

use super::super::config::BrokerConfig;
use super::super::stats::{ClusterStats, PeerStats, ServedStats};
use super::{BrokerCore, Outgoing, Side, hex, peer_id};
use crate::peer::{Liveness, PeerId, interval_from_ms, interval_to_ms};
use crate::protocol::{self, Message, Payload, PeerHello, RequestId, RequestType, TypeServed};

/// Where a cluster message came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ClusterFrom<'a> {
    /// The bound ROUTER, from the DEALER with this routing id.
    Router(&'a [u8]),
    /// The DEALER this broker dialled, by index in `cluster_peers`.
    Dial(u32),
}

/// One configured peer endpoint, dialled with a DEALER.
#[derive(Debug)]
struct Dial {
    endpoint: String,
    state: DialState,
    last_sent: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialState {
    /// Sending PEER_HELLO every heartbeat interval.
    Greeting,
    /// Welcomed by the member with this id.
    Up(u64),
    /// The endpoint reaches this broker itself: not greeted again.
    Myself,
}

/// How this broker sends to a member: on the connection its route came up
/// on, for the route's whole life, so that what it sends stays in order.
#[derive(Clone, Debug)]
enum Path {
    Dial(u32),
    Router(PeerId),
}

#[derive(Debug)]
pub(super) struct Member {
    name: Option<String>,
    /// The protocol minor version of its last greeting: CANCEL goes only
    /// to members of minor 5 and up.
    pub(super) minor: u32,
    path: Path,
    live: Liveness,
    /// The member's last SERVES.
    serves: Vec<TypeServed>,
    forwarded_to: u64,
    forwarded_from: u64,
    executed_to: u64,
    executed_from: u64,
}

/// Cluster counters, in [`ClusterStats`].
#[derive(Clone, Debug, Default)]
pub(super) struct Counters {
    pub(super) forwarded_out: u64,
    pub(super) forwarded_in: u64,
    pub(super) executed_out: u64,
    pub(super) executed_in: u64,
    pub(super) executions_returned: u64,
    pub(super) owner_lost: u64,
    pub(super) unroutable: u64,
    pub(super) malformed: u64,
    pub(super) errors: u64,
    pub(super) peer_losses: u64,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    pub(super) id: u64,
    name: Option<String>,
    dials: Vec<Dial>,
    pub(super) members: BTreeMap<u64, Member>,
    /// Routing ids on the bound ROUTER → member.
    inbound: HashMap<PeerId, u64>,
    /// The capacity table last sent in SERVES, and the informative numbers.
    serves_sent: Vec<TypeServed>,
    pub(super) counters: Counters,
}

/// The routing id of this broker's DEALER number `index`: `B`, the broker
/// id, the index. Unique per (broker, dial), so that a broker that dials
/// itself recognises its own greeting.
pub(crate) fn dial_routing_id(broker_id: u64, index: u32) -> Vec<u8> {
    let mut id = Vec::with_capacity(13);
    id.push(b'B');
    id.extend_from_slice(&broker_id.to_be_bytes());
    id.extend_from_slice(&index.to_be_bytes());
    id
}

#[cfg(test)]
use crate::ownership::mix;
pub(crate) use crate::ownership::score;

impl Cluster {
    /// The cluster part of a broker configured for one; `None` otherwise.
    pub(super) fn new(config: &BrokerConfig, now: Instant) -> Option<Self> {
        if config.cluster_bind.is_none() && config.cluster_peers.is_empty() {
            return None;
        }
        let _ = now;
        let mut endpoints: Vec<String> = Vec::new();
        for e in &config.cluster_peers {
            if endpoints.contains(e) {
                warn!(endpoint = %e, "cluster peer listed twice: dialled once");
            } else {
                endpoints.push(e.clone());
            }
        }
        let id = loop {
            let id = crate::peer::random_u64();
            if id != 0 {
                break id;
            }
        };
        Some(Self {
            id,
            name: config.name.clone(),
            dials: endpoints
                .into_iter()
                .map(|endpoint| Dial {
                    endpoint,
                    state: DialState::Greeting,
                    last_sent: None,
                })
                .collect(),
            members: BTreeMap::new(),
            inbound: HashMap::new(),
            serves_sent: Vec::new(),
            counters: Counters::default(),
        })
    }

    /// The endpoints to dial, in index order (for the driver).
    pub(crate) fn dial_endpoints(&self) -> Vec<String> {
        self.dials.iter().map(|d| d.endpoint.clone()).collect()
    }

    /// The owner of a request key among this broker and the members with a
    /// route up.
    pub(super) fn owner(&self, request_type: RequestType, request_id: RequestId) -> u64 {
        let mut best = (score(self.id, request_type, request_id), self.id);
        for &m in self.members.keys() {
            best = best.max((score(m, request_type, request_id), m));
        }
        best.1
    }

    fn member_of(&self, from: ClusterFrom<'_>) -> Option<u64> {
        match from {
            ClusterFrom::Router(rid) => self.inbound.get(rid).copied(),
            ClusterFrom::Dial(i) => match self.dials.get(i as usize)?.state {
                DialState::Up(m) => Some(m),
                _ => None,
            },
        }
    }
}

/// Where to answer a message on the connection it came from.
fn reply_side(from: ClusterFrom<'_>) -> (Side, PeerId) {
    match from {
        ClusterFrom::Router(rid) => (Side::Cluster, peer_id(rid)),
        ClusterFrom::Dial(i) => (Side::Dial(i), PeerId::new()),
    }
}

impl BrokerCore {
    /// Queues the first greetings of a broker that dials peers.
    pub(super) fn greeting_peers(mut self, now: Instant) -> Self {
        self.greet_dials(now);
        self
    }

    /// The owner of a request key in this broker's view.
    #[cfg(test)]
    pub(crate) fn owner_of(&self, request_type: RequestType, request_id: RequestId) -> Option<u64> {
        self.cluster
            .as_ref()
            .map(|c| c.owner(request_type, request_id))
    }

    pub(crate) fn cluster_id(&self) -> Option<u64> {
        self.cluster.as_ref().map(|c| c.id)
    }

    /// The endpoints the driver dials, in index order.
    pub(crate) fn dial_endpoints(&self) -> Vec<String> {
        self.cluster
            .as_ref()
            .map(Cluster::dial_endpoints)
            .unwrap_or_default()
    }

    /// Sends PEER_HELLO on every dial still greeting whose last greeting is
    /// one heartbeat interval old.
    fn greet_dials(&mut self, now: Instant) {
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let hello = PeerHello {
            broker_id: c.id,
            heartbeat_ms,
            name: c.name.clone(),
        };
        for (i, d) in c.dials.iter_mut().enumerate() {
            let due = d
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= self.heartbeat);
            if d.state == DialState::Greeting && due {
                d.last_sent = Some(now);
                self.out.push(Outgoing {
                    side: Side::Dial(i as u32),
                    peer: PeerId::new(),
                    msg: Message::PeerHello(hello.clone()),
                });
            }
        }
    }

    /// Sends a message to a member on its route; `false` if it has none.
    pub(super) fn send_to_member(&mut self, member: u64, msg: Message) -> bool {
        let now = self.now;
        let Some(m) = self
            .cluster
            .as_mut()
            .and_then(|c| c.members.get_mut(&member))
        else {
            self.stats.undeliverable += 1;
            return false;
        };
        m.live.last_sent = now;
        let (side, peer) = match &m.path {
            Path::Dial(i) => (Side::Dial(*i), PeerId::new()),
            Path::Router(rid) => (Side::Cluster, peer_id(rid)),
        };
        self.out.push(Outgoing { side, peer, msg });
        true
    }

    /// The driver could not send a message on a route's connection (the
    /// member's DEALER is gone, or its queue is full): the message is lost,
    /// so the route is declared down, as if the member had missed its
    /// heartbeats; what it held is retried or answered
    /// (docs/clustering.md §8), and the route comes back with a greeting.
    pub(crate) fn cluster_send_failed(&mut self, side: Side, peer: &[u8]) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let member = match side {
            Side::Dial(i) => match c.dials.get(i as usize).map(|d| d.state) {
                Some(DialState::Up(m)) => Some(m),
                _ => None,
            },
            Side::Cluster => c.inbound.get(peer).copied(),
            _ => None,
        };
        // Only the connection the route sends on: a WELCOME lost on the
        // idle one loses nothing.
        let on_path =
            member
                .and_then(|m| c.members.get(&m))
                .is_some_and(|m| match (&m.path, side) {
                    (Path::Dial(a), Side::Dial(b)) => *a == b,
                    (Path::Router(rid), Side::Cluster) => rid.as_slice() == peer,
                    _ => false,
                });
        if let (Some(member), true) = (member, on_path) {
            warn!(member = %hex(&member.to_be_bytes()), "a message to a cluster peer could not be sent: route down");
            let now = self.now;
            self.member_down(now, member);
        }
    }

    /// A message on a cluster socket.
    pub(crate) fn on_cluster(
        &mut self,
        now: Instant,
        from: ClusterFrom<'_>,
        header: &[u8],
        payload: Payload,
    ) {
        self.now = now;
        if self.cluster.is_none() {
            return;
        }
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => {
                let (side, peer) = reply_side(from);
                return self.malformed(side, &peer, header, &e);
            }
        };
        match msg {
            Message::PeerHello(hello) => match from {
                ClusterFrom::Router(rid) => {
                    let minor = protocol::peek_minor(header);
                    return self.on_peer_hello(now, rid, hello, minor);
                }
                ClusterFrom::Dial(_) => {}
            },
            Message::PeerWelcome {
                broker_id,
                heartbeat_ms,
            } => match from {
                ClusterFrom::Dial(i) => {
                    let minor = protocol::peek_minor(header);
                    return self.on_peer_welcome(now, i, broker_id, (heartbeat_ms, minor));
                }
                ClusterFrom::Router(_) => {}
            },
            Message::Error(e) => {
                // Never answered: an error for an error could loop.
                if let Some(k) = self.cluster_counters() {
                    k.errors += 1;
                }
                let member = self.cluster.as_ref().and_then(|c| c.member_of(from));
                match (e.request, member) {
                    (Some(r), Some(member)) => {
                        return self.on_request_error(now, member, r, e.error);
                    }
                    (_, _) => {
                        let peer = match from {
                            ClusterFrom::Router(rid) => peer_id(rid),
                            ClusterFrom::Dial(i) => PeerId::from_slice(&i.to_be_bytes()),
                        };
                        if self.bad_input.admit(now, &peer, &e.error) {
                            warn!(error = %e.error, "a cluster peer refused a message");
                        }
                    }
                }
                return;
            }
            msg => {
                let member = self.cluster.as_ref().and_then(|c| c.member_of(from));
                let Some(member) = member else {
                    if let ClusterFrom::Dial(_) = from {
                        // Our DEALER is greeting: the member on the other
                        // end still sends on this connection from a route
                        // we have ended. Our PEER_HELLO is on its way, and
                        // its WELCOME brings the route back: a REREGISTER
                        // would only make that member end its side and
                        // greet again too, and the two could flap for ever.
                        debug!("cluster message on a connection still greeting: dropped");
                        return;
                    }
                    if !matches!(msg, Message::Shutdown | Message::Reregister) {
                        // A member that declared us dead, or that we did:
                        // it greets again and gets a fresh route.
                        debug!("cluster message from a broker without a route: asking it to greet");
                        let (side, peer) = reply_side(from);
                        self.send(side, peer, Message::Reregister);
                    }
                    return;
                };
                if let Some(m) = self
                    .cluster
                    .as_mut()
                    .and_then(|c| c.members.get_mut(&member))
                {
                    m.live.last_heard = now;
                }
                return self.on_member_message(now, member, from, header, msg);
            }
        }
        let (side, peer) = reply_side(from);
        self.unexpected(side, &peer, header, "greeting on the wrong side of a route");
    }

    fn on_member_message(
        &mut self,
        now: Instant,
        member: u64,
        from: ClusterFrom<'_>,
        header: &[u8],
        msg: Message,
    ) {
        match msg {
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                if heartbeat_ms != 0 {
                    if let Some(m) = self
                        .cluster
                        .as_mut()
                        .and_then(|c| c.members.get_mut(&member))
                    {
                        m.live.peer_interval = interval_from_ms(heartbeat_ms);
                    }
                }
            }
            Message::Shutdown => {
                info!(member = %hex(&member.to_be_bytes()), "cluster peer is stopping");
                self.member_down(now, member);
            }
            Message::Reregister => {
                // It no longer knows us: end the route, greet again.
                self.member_down(now, member);
            }
            Message::Serves(table) => self.on_serves(now, member, table),
            Message::Forward(f) => self.on_forward(now, member, f),
            Message::Execute(e) => self.on_execute(now, member, e),
            Message::Executed(e) => self.on_executed(now, member, e),
            Message::Cancel(c) => self.on_member_cancel(member, c),
            Message::Response(r) if !r.route.is_empty() => self.relay_response(r),
            Message::ReceiptSent(r) if r.route.is_empty() => {
                self.on_remote_receipt_sent(member, r);
            }
            Message::ReceiptReceived(r) if r.route.is_empty() => {
                self.on_remote_receipt_received(member, r);
            }
            Message::ReceiptSent(r) => self.relay_receipt(Message::ReceiptSent(r)),
            Message::ReceiptReceived(r) => self.relay_receipt(Message::ReceiptReceived(r)),
            other => {
                let text = format!("unexpected {} on a cluster route", other.kind_name());
                let (side, peer) = reply_side(from);
                self.unexpected(side, &peer, header, &text);
            }
        }
    }

    fn on_peer_hello(&mut self, now: Instant, rid: &[u8], hello: PeerHello, minor: u32) {
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if hello.broker_id == c.id {
            // Our own greeting: one of our dials reaches us.
            for (i, d) in c.dials.iter_mut().enumerate() {
                if rid == dial_routing_id(c.id, i as u32).as_slice() && d.state != DialState::Myself
                {
                    warn!(endpoint = %d.endpoint, "cluster peer endpoint reaches this broker itself: ignored");
                    d.state = DialState::Myself;
                }
            }
            return;
        }
        let welcome = Message::PeerWelcome {
            broker_id: c.id,
            heartbeat_ms,
        };
        let restarted = c
            .inbound
            .insert(peer_id(rid), hello.broker_id)
            .filter(|&old| old != hello.broker_id);
        let interval = interval_from_ms(hello.heartbeat_ms);
        let new = match c.members.get_mut(&hello.broker_id) {
            Some(m) => {
                m.live.peer_interval = interval;
                m.live.last_heard = now;
                m.minor = minor;
                // A route that came up on our DEALER learns the name here
                // (PEER_WELCOME carries none).
                if hello.name.is_some() {
                    m.name.clone_from(&hello.name);
                }
                false
            }
            None => {
                c.members.insert(
                    hello.broker_id,
                    Member::new(
                        hello.name.clone(),
                        Path::Router(peer_id(rid)),
                        now,
                        (interval, minor),
                    ),
                );
                true
            }
        };
        if let Some(old) = restarted {
            // Another broker id on the same connection: that member restarted.
            info!(member = %hex(&old.to_be_bytes()), "cluster peer restarted");
            self.member_down(now, old);
        }
        // The WELCOME goes back on the connection the greeting came on.
        self.send(Side::Cluster, peer_id(rid), welcome);
        if new {
            self.member_up(now, hello.broker_id, hello.name.as_deref());
        }
    }

    fn on_peer_welcome(
        &mut self,
        now: Instant,
        dial: u32,
        broker_id: u64,
        (heartbeat_ms, minor): (u32, u32),
    ) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(d) = c.dials.get_mut(dial as usize) else {
            return;
        };
        let previous = std::mem::replace(&mut d.state, DialState::Up(broker_id));
        let endpoint = d.endpoint.clone();
        let interval = interval_from_ms(heartbeat_ms);
        if let DialState::Up(old) = previous {
            if old != broker_id {
                // The broker at that endpoint restarted: a new member.
                info!(%endpoint, "cluster peer restarted");
                self.member_down(now, old);
            }
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if let Some(m) = c.members.get_mut(&broker_id) {
            m.live.peer_interval = interval;
            m.live.last_heard = now;
            m.minor = minor;
            if !matches!(m.path, Path::Dial(i) if i == dial) {
                debug!(%endpoint, "second connection to a cluster member: kept idle");
            }
            return;
        }
        c.members.insert(
            broker_id,
            Member::new(None, Path::Dial(dial), now, (interval, minor)),
        );
        self.member_up(now, broker_id, None);
    }

    fn member_up(&mut self, _now: Instant, member: u64, name: Option<&str>) {
        info!(member = %hex(&member.to_be_bytes()), name = name.unwrap_or(""), "cluster route up");
        let table = self.named(self.serves_table());
        self.send_to_member(member, Message::Serves(table));
        self.broadcast_view();
    }

    /// This broker's view as a VIEW message (`None` outside a cluster).
    pub(super) fn view_message(&self) -> Option<Message> {
        let c = self.cluster.as_ref()?;
        Some(Message::View {
            broker_id: c.id,
            members: c.members.keys().copied().collect(),
        })
    }

    /// The view changed: every client that takes VIEW gets the new one.
    fn broadcast_view(&mut self) {
        let Some(view) = self.view_message() else {
            return;
        };
        let takers: Vec<PeerId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.data.minor >= super::frontend::VIEW_MINOR)
            .map(|(_, c)| peer_id(&c.id))
            .collect();
        let Message::View { broker_id, members } = view else {
            return;
        };
        for peer in takers {
            let msg = Message::View {
                broker_id,
                members: members.clone(),
            };
            self.send(Side::Frontend, peer, msg);
        }
    }

    /// Ends the route to a member: its remote workers die (their requests
    /// are retried or answered), the requests this broker forwarded to it
    /// as their owner are sent again or answered, and its dials greet again.
    pub(super) fn member_down(&mut self, now: Instant, member: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(m) = c.members.remove(&member) else {
            return;
        };
        c.counters.peer_losses += 1;
        c.inbound.retain(|_, m| *m != member);
        for d in &mut c.dials {
            if d.state == DialState::Up(member) {
                d.state = DialState::Greeting;
                d.last_sent = None;
            }
        }
        warn!(member = %hex(&member.to_be_bytes()), "cluster route down");
        self.broadcast_view();
        for t in m.serves.iter().map(|t| t.request_type) {
            if let Some(wk) = self.remote_ids.remove(&(member, t)) {
                self.remove_worker(now, wk);
            }
        }
        self.owner_lost(now, member);
        self.greet_dials(now);
    }

    /// Heartbeats, liveness and greetings of the routes; the time until
    /// the next is due.
    pub(super) fn cluster_tick(&mut self, now: Instant) -> Duration {
        let Some(c) = self.cluster.as_ref() else {
            return self.heartbeat;
        };
        let dead: Vec<u64> = c
            .members
            .iter()
            .filter(|(_, m)| m.live.is_dead(now, self.liveness))
            .map(|(&id, _)| id)
            .collect();
        for member in dead {
            warn!(member = %hex(&member.to_be_bytes()), "cluster peer missed its heartbeats");
            self.member_down(now, member);
        }
        self.greet_dials(now);
        self.send_serves_if_changed(false);
        let heartbeat_ms = interval_to_ms(self.heartbeat);
        let mut shortest = self.heartbeat;
        let mut due = Vec::new();
        if let Some(c) = self.cluster.as_ref() {
            for (&id, m) in &c.members {
                shortest = shortest.min(m.live.peer_interval);
                if m.live.heartbeat_due(now, self.heartbeat) {
                    due.push(id);
                }
            }
        }
        for member in due {
            self.stats.heartbeats_sent += 1;
            self.send_to_member(member, Message::Heartbeat { heartbeat_ms });
        }
        shortest
    }

    /// Stopping: SHUTDOWN on every route.
    pub(super) fn cluster_stop(&mut self) {
        let members: Vec<u64> = self
            .cluster
            .as_ref()
            .map(|c| c.members.keys().copied().collect())
            .unwrap_or_default();
        for m in members {
            self.send_to_member(m, Message::Shutdown);
        }
    }

    /// What this broker serves: per type with live local workers, their
    /// total capacity, free slots and queued requests.
    fn serves_table(&self) -> Vec<TypeServed> {
        let mut table: BTreeMap<RequestType, TypeServed> = BTreeMap::new();
        for (_, w) in self.workers.iter() {
            if !w.is_local() || w.draining {
                continue;
            }
            for &t in &w.types {
                let e = table.entry(t).or_insert_with(|| TypeServed {
                    request_type: t,
                    capacity: 0,
                    free: 0,
                    pending: 0,
                    name: None,
                });
                e.capacity = e.capacity.saturating_add(w.capacity);
                e.free = e.free.saturating_add(w.free());
            }
        }
        for (t, e) in &mut table {
            let pending = self.types.get(t).map_or(0, |e| e.pending.len());
            e.pending = u32::try_from(pending).unwrap_or(u32::MAX);
        }
        table.into_values().collect()
    }

    /// `table` with the names this broker knows of its types (protocol
    /// 1.6): read here, for a SERVES, never per request.
    fn named(&self, mut table: Vec<TypeServed>) -> Vec<TypeServed> {
        for t in &mut table {
            t.name = self.type_names.get(t.request_type).map(str::to_owned);
        }
        table
    }

    /// Sends SERVES to every member when the capacity table changed, or
    /// (`informative`: on a tick) when only free slots or queues did.
    pub(super) fn send_serves_if_changed(&mut self, capacities_only: bool) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        if c.members.is_empty() {
            return;
        }
        let table = self.serves_table();
        let same_capacities = table.len() == c.serves_sent.len()
            && table
                .iter()
                .zip(&c.serves_sent)
                .all(|(a, b)| a.request_type == b.request_type && a.capacity == b.capacity);
        if same_capacities && (capacities_only || table == c.serves_sent) {
            return;
        }
        let members: Vec<u64> = c.members.keys().copied().collect();
        if let Some(c) = self.cluster.as_mut() {
            c.serves_sent = table.clone();
        }
        // Names (1.6) go with a new table (types or capacities changed),
        // not with the informative updates of a tick: a member keeps the
        // names it learned, and a tick's SERVES stays as short as before.
        let table = if same_capacities {
            table
        } else {
            self.named(table)
        };
        for m in members {
            self.send_to_member(m, Message::Serves(table.clone()));
        }
    }

    pub(super) fn count_forwarded_to(&mut self, member: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.counters.forwarded_out += 1;
            if let Some(m) = c.members.get_mut(&member) {
                m.forwarded_to += 1;
            }
        }
    }

    pub(super) fn count_forwarded_from(&mut self, member: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.counters.forwarded_in += 1;
            if let Some(m) = c.members.get_mut(&member) {
                m.forwarded_from += 1;
            }
        }
    }

    pub(super) fn count_executed_to(&mut self, member: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.counters.executed_out += 1;
            if let Some(m) = c.members.get_mut(&member) {
                m.executed_to += 1;
            }
        }
    }

    pub(super) fn count_executed_from(&mut self, member: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.counters.executed_in += 1;
            if let Some(m) = c.members.get_mut(&member) {
                m.executed_from += 1;
            }
        }
    }

    pub(super) fn cluster_counters(&mut self) -> Option<&mut Counters> {
        self.cluster.as_mut().map(|c| &mut c.counters)
    }

    pub(super) fn remember_serves(&mut self, member: u64, table: &[TypeServed]) {
        if let Some(m) = self
            .cluster
            .as_mut()
            .and_then(|c| c.members.get_mut(&member))
        {
            m.serves = table.to_vec();
        }
    }

    pub(super) fn cluster_stats(&self) -> Option<ClusterStats> {
        let c = self.cluster.as_ref()?;
        let id_hex = |id: u64| format!("{id:016x}");
        let member_stats = |id: u64, m: &Member, endpoint: Option<String>| PeerStats {
            endpoint,
            state: "up".to_owned(),
            id: Some(id_hex(id)),
            name: m.name.clone(),
            serves: m
                .serves
                .iter()
                .map(|t| {
                    let s = ServedStats {
                        capacity: t.capacity,
                        free: t.free,
                        pending: t.pending,
                    };
                    (t.request_type, s)
                })
                .collect(),
            forwarded_to: m.forwarded_to,
            forwarded_from: m.forwarded_from,
            executed_to: m.executed_to,
            executed_from: m.executed_from,
        };
        let mut peers = Vec::new();
        let mut listed = Vec::new();
        for d in &c.dials {
            let state = match d.state {
                DialState::Up(id) => match c.members.get(&id) {
                    Some(m) if !listed.contains(&id) => {
                        listed.push(id);
                        peers.push(member_stats(id, m, Some(d.endpoint.clone())));
                        continue;
                    }
                    _ => "up",
                },
                DialState::Greeting => "greeting",
                DialState::Myself => "self",
            };
            peers.push(PeerStats {
                endpoint: Some(d.endpoint.clone()),
                state: state.to_owned(),
                ..PeerStats::default()
            });
        }
        for (&id, m) in &c.members {
            if !listed.contains(&id) {
                peers.push(member_stats(id, m, None));
            }
        }
        let k = &c.counters;
        Some(ClusterStats {
            id: id_hex(c.id),
            name: c.name.clone(),
            forwarded_out: k.forwarded_out,
            forwarded_in: k.forwarded_in,
            executed_out: k.executed_out,
            executed_in: k.executed_in,
            executions_returned: k.executions_returned,
            owner_lost: k.owner_lost,
            unroutable: k.unroutable,
            malformed: k.malformed,
            errors: k.errors,
            peer_losses: k.peer_losses,
            relayed: self.relays.len() as u64,
            peers,
        })
    }
}

impl Member {
    fn new(
        name: Option<String>,
        path: Path,
        now: Instant,
        (interval, minor): (Duration, u32),
    ) -> Self {
        Self {
            name,
            minor,
            path,
            live: Liveness::new(now, interval),
            serves: Vec::new(),
            forwarded_to: 0,
            forwarded_from: 0,
            executed_to: 0,
            executed_from: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_function_matches_splitmix64() {
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn ownership_spreads_keys_and_moves_only_a_leaving_members_keys() {
        let members = [11u64, 22, 33];
        let owner = |view: &[u64], id: u64| {
            view.iter()
                .map(|&m| (score(m, 7, id), m))
                .max()
                .map(|(_, m)| m)
                .unwrap_or(0)
        };
        let mut counts = [0usize; 3];
        for id in 0..3000u64 {
            let o = owner(&members, id);
            let i = members.iter().position(|&m| m == o).unwrap_or(0);
            counts[i] += 1;
            // Without member 33, only its keys move.
            let without = owner(&members[..2], id);
            if o != 33 {
                assert_eq!(without, o);
            }
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {counts:?}");
        }
    }
}

//! The broker's driver thread: owns the two ROUTER sockets (and, in a
//! cluster, the cluster ROUTER and one DEALER per peer), moves frames
//! between them and the state machine, and runs its ticks.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tracing::{error, info};

use super::config::BrokerConfig;
use super::core::{BrokerCore, ClusterFrom, Side};
use super::stats::BrokerStats;
use crate::accept::{self, Delivery, RouterOutbox};
use crate::curve::{KeyList, SocketCurve, ZapDomain};
use crate::error::Error;
use crate::io::{self, READ_BATCH};
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

/// The driver's commands: the frontend's keys are the clients', the
/// backend's the workers'.
pub(crate) type Command = crate::role::BrokerCommand<BrokerStats>;

/// The endpoints a started broker bound: frontend, backend and cluster.
pub(super) struct Bound {
    pub(super) frontend: String,
    pub(super) backend: String,
    pub(super) cluster: Option<String>,
    pub(super) watch: Option<String>,
}

pub(super) fn spawn(config: BrokerConfig) -> Result<(RoleHandle<Command>, Bound), Error> {
    let curve = SocketCurve::server(config.curve_secret_key.as_ref());
    let zap = Zap::register(&config)?;
    let hwms = (config.hwm, config.peer_sndhwm);
    let size = config.max_message_size;
    let frontend = io::router(&config.frontend, hwms, zap.side(&curve, 0).as_ref(), size)?;
    let backend = io::router(&config.backend, hwms, zap.side(&curve, 1).as_ref(), size)?;
    // The tap is the frontend's kind of peer: with CURVE, the same key
    // and the same client key list (docs/security.md).
    let watch = match &config.watch {
        Some(ep) => {
            let socket = io::publisher(ep, WATCH_HWM, zap.side(&curve, 0).as_ref())?;
            let (connect, bound) = io::bound_endpoints(&socket, ep);
            Some((socket, connect, bound))
        }
        None => None,
    };
    let (frontend_ep, frontend_bound) = io::bound_endpoints(&frontend, &config.frontend);
    let (backend_ep, backend_bound) = io::bound_endpoints(&backend, &config.backend);
    let mut core = BrokerCore::new(&config, Instant::now());
    core.set_auth_failures(zap.failures.clone());
    let cluster = ClusterSockets::open(&config, &core, &zap)?;
    let cluster_ep = cluster.as_ref().and_then(|c| c.router_ep.clone());
    // The configured endpoints: a bound wildcard is shown as 127.0.0.1.
    let mut bound_eps = vec![config.frontend.as_str(), config.backend.as_str()];
    bound_eps.extend(config.cluster_bind.as_deref());
    crate::curve::warn_if_clear("broker", curve.is_some(), &bound_eps);
    let (tx, bell, inbox) = crate::role::channel()?;
    let (watch_socket, watch_ep) = match watch {
        Some((socket, connect, bound)) => (Some((socket, bound)), Some(connect)),
        None => (None, None),
    };
    info!(frontend = %frontend_ep, backend = %backend_ep, cluster = cluster_ep.as_deref().unwrap_or("-"), watch = watch_ep.as_deref().unwrap_or("-"), "broker started");
    let handle = RoleHandle::spawn(
        "lhcluster-broker",
        tx,
        bell,
        || Command::Stop,
        config.shutdown_timeout,
        move || {
            let now = Instant::now();
            let mut driver = Driver {
                core,
                frontend,
                backend,
                cluster,
                frontend_ep: frontend_bound,
                backend_ep: backend_bound,
                watch: watch_socket,
                inbox,
                header_buf: Vec::with_capacity(64),
                outboxes: [
                    RouterOutbox::new(config.outbox_limits()),
                    RouterOutbox::new(config.outbox_limits()),
                ],
                zap,
                limits: io::Limits {
                    frames: config.max_message_frames,
                    bytes: config.max_message_size,
                },
                stats_log: StatsLog::new(config.stats_log_interval, now),
            };
            driver.run();
        },
    )?;
    let bound = Bound {
        frontend: frontend_ep,
        backend: backend_ep,
        cluster: cluster_ep,
        watch: watch_ep,
    };
    Ok((handle, bound))
}

/// The sockets of a broker in a cluster: the bound ROUTER other brokers
/// dial, and one DEALER per configured peer.
struct ClusterSockets {
    router: Option<zmq::Socket>,
    router_ep: Option<String>,
    router_bound: Option<String>,
    dials: Vec<zmq::Socket>,
}

impl ClusterSockets {
    fn open(config: &BrokerConfig, core: &BrokerCore, zap: &Zap) -> Result<Option<Self>, Error> {
        let Some(id) = core.cluster_id() else {
            return Ok(None);
        };
        let (router, router_ep, router_bound) = match &config.cluster_bind {
            Some(bind) => {
                let curve = SocketCurve::server(config.curve_secret_key.as_ref());
                // Only members dial in: they hold the cluster's key pair.
                let curve = match (&curve, &zap.members) {
                    (Some(curve), Some(domain)) => Some(curve.clone().with_zap(domain)),
                    _ => curve,
                };
                // Brokers read what they are sent: the usual per-peer pipe.
                let hwms = (config.hwm, config.hwm);
                let router = io::router(bind, hwms, curve.as_ref(), config.max_message_size)?;
                let (ep, bound) = io::bound_endpoints(&router, bind);
                (Some(router), Some(ep), Some(bound))
            }
            None => (None, None, None),
        };
        // The members of a CURVE cluster share one key pair: each dials
        // the others' public key, which is its own.
        let own = config.curve_secret_key.as_ref();
        let dial_curve = SocketCurve::client(own.map(|k| k.public_key()).as_ref(), own)?;
        let dials = core
            .dial_endpoints()
            .iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let rid = super::core::dial_routing_id(id, i as u32);
                io::dealer(endpoint, &rid, config.hwm, dial_curve.as_ref())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(Self {
            router,
            router_ep,
            router_bound,
            dials,
        }))
    }

    /// Polls every socket of the broker; which are readable.
    fn wait(
        &self,
        doorbell: &crate::wake::Listener,
        frontend: &zmq::Socket,
        backend: &zmq::Socket,
        until: Instant,
    ) -> zmq::Result<(bool, Vec<bool>)> {
        let timeout = io::poll_timeout_ms(until.saturating_duration_since(Instant::now()));
        let mut items = vec![
            zmq::PollItem::from_fd(doorbell.fd(), zmq::POLLIN),
            frontend.as_poll_item(zmq::POLLIN),
            backend.as_poll_item(zmq::POLLIN),
        ];
        items.extend(self.router.iter().map(|s| s.as_poll_item(zmq::POLLIN)));
        items.extend(self.dials.iter().map(|s| s.as_poll_item(zmq::POLLIN)));
        match zmq::poll(&mut items, timeout) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => return Ok((false, vec![false; items.len() - 1])),
            Err(e) => return Err(e),
        }
        let ready = items
            .iter()
            .map(zmq::PollItem::is_readable)
            .collect::<Vec<_>>();
        Ok((ready[0], ready[1..].to_vec()))
    }
}

struct Driver {
    core: BrokerCore,
    frontend: zmq::Socket,
    backend: zmq::Socket,
    cluster: Option<ClusterSockets>,
    frontend_ep: String,
    backend_ep: String,
    /// The watch tap's PUB socket and the endpoint to unbind, if on.
    watch: Option<(zmq::Socket, String)>,
    inbox: DriverInbox<Command>,
    header_buf: Vec<u8>,
    /// What waits for peers whose pipe is full, frontend and backend.
    outboxes: [RouterOutbox; 2],
    /// The allow lists of the frontend and backend, while the broker runs.
    zap: Zap,
    /// The most frames and bytes a message read may have.
    limits: io::Limits,
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        // The first greetings of a broker that dials peers.
        self.flush();
        loop {
            let mut wake_at = self.stats_log.wake_at(self.core.next_tick());
            for outbox in &self.outboxes {
                if let Some(due) = outbox.next_due() {
                    wake_at = wake_at.min(due);
                }
            }
            let (front_ready, back_ready, commands_ready, cluster_ready) = match &self.cluster {
                None => {
                    let sockets = [Some(&self.frontend), Some(&self.backend)];
                    match io::wait(Some(&self.inbox.listener), sockets, Some(wake_at)) {
                        Ok(ready) => (
                            ready.sockets[0],
                            ready.sockets[1],
                            ready.doorbell,
                            Vec::new(),
                        ),
                        Err(e) => {
                            error!(error = %e, "broker poll failed: stopping");
                            return;
                        }
                    }
                }
                Some(c) => {
                    match c.wait(&self.inbox.listener, &self.frontend, &self.backend, wake_at) {
                        Ok((bell, ready)) => (ready[0], ready[1], bell, ready[2..].to_vec()),
                        Err(e) => {
                            error!(error = %e, "broker poll failed: stopping");
                            return;
                        }
                    }
                }
            };
            if front_ready {
                self.read(Side::Frontend);
            }
            if back_ready {
                self.read(Side::Backend);
            }
            if cluster_ready.iter().any(|&r| r) {
                self.read_cluster(&cluster_ready);
            }
            if self.handle_commands(commands_ready) {
                self.core.on_stop();
                self.flush();
                // Release the endpoints now, so a new broker can bind them.
                for (socket, endpoint) in [
                    (&self.frontend, &self.frontend_ep),
                    (&self.backend, &self.backend_ep),
                ] {
                    let _ = socket.unbind(endpoint);
                }
                if let Some(c) = &self.cluster {
                    if let (Some(router), Some(bound)) = (&c.router, &c.router_bound) {
                        let _ = router.unbind(bound);
                    }
                }
                if let Some((socket, bound)) = &self.watch {
                    let _ = socket.unbind(bound);
                }
                info!("broker stopped");
                return;
            }
            let now = Instant::now();
            if now >= self.core.next_tick() {
                self.core.on_tick(now);
            }
            if self.stats_log.due(now) {
                info!(stats = %self.core.stats(), "broker stats");
            }
            self.flush();
        }
    }

    /// Reads a batch of messages from one socket into the state machine.
    fn read(&mut self, side: Side) {
        // One clock read per batch: a batch takes microseconds, far below
        // any liveness interval, and reading the clock is not free.
        let now = Instant::now();
        let socket = match side {
            Side::Backend => &self.backend,
            _ => &self.frontend,
        };
        let opts = accept::ReadOpts {
            keys: self.core.wants_keys(side),
            limits: self.limits,
        };
        let oversized = accept::read(socket, opts, |peer, header, payload, key| {
            match side {
                Side::Backend => self.core.on_backend(now, peer, header, payload, key),
                _ => self.core.on_frontend(now, peer, header, payload, key),
            }
            // Keep the outbox short so responses leave while we read.
            if self.core.outbox().len() >= READ_BATCH {
                send_queued(
                    &mut self.core,
                    [&self.frontend, &self.backend],
                    self.cluster.as_ref(),
                    &mut self.outboxes,
                    &mut self.header_buf,
                );
            }
        });
        for (peer, size, header) in oversized {
            self.core.on_oversized(now, side, &peer, size, &header);
        }
    }

    /// Reads a batch from each readable cluster socket: `ready` is the
    /// cluster ROUTER's readiness (if bound), then each DEALER's.
    fn read_cluster(&mut self, ready: &[bool]) {
        let now = Instant::now();
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let mut ready = ready.iter().copied();
        if let Some(router) = &c.router {
            if ready.next().unwrap_or(false) {
                // Members are trusted with the bytes: what they forward was
                // a client's message within the limits, plus their header.
                let opts = accept::ReadOpts {
                    keys: false,
                    limits: io::Limits {
                        bytes: usize::MAX,
                        ..self.limits
                    },
                };
                let oversized = accept::read(router, opts, |peer, header, payload, _| {
                    self.core
                        .on_cluster(now, ClusterFrom::Router(peer), header, payload);
                });
                for (peer, size, header) in oversized {
                    self.core
                        .on_oversized(now, Side::Cluster, &peer, size, &header);
                }
            }
        }
        for (i, dial) in c.dials.iter().enumerate() {
            if !ready.next().unwrap_or(false) {
                continue;
            }
            for _ in 0..READ_BATCH {
                let Some(m) = io::recv_next(dial, false) else {
                    break;
                };
                let header = m.header.as_deref().unwrap_or(&[]);
                self.core
                    .on_cluster(now, ClusterFrom::Dial(i as u32), header, m.payload);
            }
        }
        self.flush();
    }

    /// Handles queued commands (on every pass: an empty channel costs an
    /// atomic load); `true` when asked to stop.
    fn handle_commands(&mut self, rung: bool) -> bool {
        for command in self.inbox.pending(rung) {
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.core.stats());
                }
                Command::ReloadKeys {
                    frontend: clients,
                    backend: workers,
                    done,
                } => {
                    let result = self.zap.replace(clients.as_ref(), workers.as_ref());
                    if result.is_ok() {
                        self.core.set_key_lists(Instant::now(), clients, workers);
                    }
                    let _ = done.send(result);
                }
                Command::Stop => return true,
            }
        }
        false
    }

    /// Sends what the core queued, then what is due in the outboxes, and
    /// tells the core about peers that do not read (which may queue more).
    fn flush(&mut self) {
        let sockets = [&self.frontend, &self.backend];
        loop {
            // The time is read before sending, and only with a backlog: a
            // backlog this flush makes is first retried on the next pass,
            // after a poll (see `outbox.rs`).
            let now = (!self.outboxes.iter().all(RouterOutbox::is_idle)).then(Instant::now);
            send_queued(
                &mut self.core,
                sockets,
                self.cluster.as_ref(),
                &mut self.outboxes,
                &mut self.header_buf,
            );
            let mut events = false;
            for (i, outbox) in self.outboxes.iter_mut().enumerate() {
                if let Some(now) = now {
                    accept::retry(sockets[i], outbox, now);
                }
                if outbox.has_events() {
                    events = true;
                    let now = Instant::now();
                    for (peer, event) in outbox.take_events() {
                        self.core.on_peer_event(now, SIDES[i], &peer, event);
                    }
                }
                if outbox.take_changed() {
                    self.core.set_outbox_stats(SIDES[i], outbox.stats());
                }
            }
            if !events {
                break;
            }
        }
        self.publish_watch();
    }

    /// Publishes the watch tap's events: a topic frame (`request`,
    /// `outcome`) and a JSON frame each, never blocking (a subscriber that
    /// does not keep up misses events, as PUB does).
    fn publish_watch(&mut self) {
        let Some((socket, _)) = &self.watch else {
            return;
        };
        self.core.drain_watch(|topic, json| {
            let _ = socket.send(topic, zmq::SNDMORE | zmq::DONTWAIT);
            let _ = socket.send(json, zmq::DONTWAIT);
        });
    }
}

/// Most events queued for one watch subscriber.
const WATCH_HWM: i32 = 10_000;

/// The sides of the outboxes, in order.
const SIDES: [Side; 2] = [Side::Frontend, Side::Backend];

/// Sends what the core queued, on the frontend and backend sockets (each
/// through its outbox) and the cluster sockets.
fn send_queued(
    core: &mut BrokerCore,
    [frontend, backend]: [&zmq::Socket; 2],
    cluster: Option<&ClusterSockets>,
    outboxes: &mut [RouterOutbox; 2],
    header_buf: &mut Vec<u8>,
) {
    let mut out = std::mem::take(core.outbox());
    let mut routes_failed = Vec::new();
    for o in out.drain(..) {
        let route =
            matches!(o.side, Side::Cluster | Side::Dial(_)).then(|| (o.side, o.peer.clone()));
        let [front_box, back_box] = &mut *outboxes;
        let sent = match o.side {
            Side::Frontend => {
                accept::deliver(frontend, front_box, &o.peer, o.msg, header_buf) != Delivery::Gone
            }
            Side::Backend => {
                accept::deliver(backend, back_box, &o.peer, o.msg, header_buf) != Delivery::Gone
            }
            // Brokers read what they are sent: no outbox (a full pipe is
            // counted undeliverable, as before the bounds).
            Side::Cluster => match cluster.and_then(|c| c.router.as_ref()) {
                Some(router) => io::send_routed(router, &o.peer, o.msg, header_buf).is_ok(),
                None => false,
            },
            Side::Dial(i) => match cluster.and_then(|c| c.dials.get(i as usize)) {
                Some(dial) => io::send(dial, None, o.msg, header_buf).is_ok(),
                None => false,
            },
        };
        if !sent {
            core.count_undeliverable();
            routes_failed.extend(route);
        }
    }
    // Give the (now empty) buffer back to reuse its allocation.
    let outbox = core.outbox();
    if outbox.is_empty() {
        *outbox = out;
    } else {
        outbox.append(&mut out);
    }
    if routes_failed.is_empty() {
        return;
    }
    // A route that refuses a message has lost it: the core ends the route
    // (its requests are retried or answered), then what that produced is
    // sent too.
    for (side, peer) in routes_failed {
        core.cluster_send_failed(side, &peer);
    }
    send_queued(core, [frontend, backend], cluster, outboxes, header_buf);
}

/// The broker's ZAP domains (docs/security.md): the allow lists of its
/// frontend (clients) and backend (workers), and their refusals.
struct Zap {
    /// Frontend, backend; `None` for a side without a list.
    domains: [Option<ZapDomain>; 2],
    /// The cluster endpoint's: only the cluster's own public key (members
    /// share the key pair), when it binds one with CURVE.
    members: Option<ZapDomain>,
    failures: Arc<AtomicU64>,
}

impl Zap {
    fn register(config: &BrokerConfig) -> Result<Self, Error> {
        let failures = Arc::new(AtomicU64::new(0));
        let mut domains = [None, None];
        let lists = [
            ("broker frontend", &config.curve_client_keys),
            ("broker backend", &config.curve_worker_keys),
        ];
        for (slot, (what, list)) in domains.iter_mut().zip(lists) {
            if let Some(list) = list {
                *slot = Some(crate::curve::register_zap(
                    what,
                    list.clone(),
                    failures.clone(),
                )?);
            }
        }
        let members = match (&config.curve_secret_key, &config.cluster_bind) {
            (Some(secret), Some(_)) => Some(crate::curve::register_zap(
                "broker cluster endpoint",
                KeyList::from_keys([secret.public_key()]),
                failures.clone(),
            )?),
            _ => None,
        };
        Ok(Self {
            domains,
            members,
            failures,
        })
    }

    /// Puts new lists in force for the handshakes to come (`None`: keep
    /// that side's). A side that started without a list cannot get one:
    /// its socket has no ZAP domain.
    fn replace(&self, clients: Option<&KeyList>, workers: Option<&KeyList>) -> Result<(), Error> {
        let lists = [
            ("curve_client_keys", clients),
            ("curve_worker_keys", workers),
        ];
        for ((field, list), domain) in lists.iter().zip(&self.domains) {
            if list.is_some() && domain.is_none() {
                return Err(Error::Config(crate::ConfigError::invalid(
                    field,
                    "cannot be reloaded into a broker started without it (restart it)",
                )));
            }
        }
        for ((_, list), domain) in lists.into_iter().zip(&self.domains) {
            if let (Some(list), Some(domain)) = (list, domain) {
                domain.replace(list.clone());
            }
        }
        Ok(())
    }

    /// The CURVE side of socket `i` (0 frontend, 1 backend).
    fn side(&self, curve: &Option<SocketCurve>, i: usize) -> Option<SocketCurve> {
        let curve = curve.clone()?;
        Some(match &self.domains[i] {
            Some(domain) => curve.with_zap(domain),
            None => curve,
        })
    }
}

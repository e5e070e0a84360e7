//! The client proxy's driver thread: owns the client-facing ROUTER and the
//! broker-facing DEALER.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info};

use super::config::ClientProxyConfig;
use super::core::{Action, ProxyCore};
use super::stats::ClientProxyStats;
use crate::accept::{self, Delivery, RouterOutbox};
use crate::curve::{KeyList, ZapDomain};
use crate::error::Error;
use crate::io;
use crate::link::{self, Link};
use crate::protocol;
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

#[derive(Debug)]
pub(crate) enum Command {
    Stats(Sender<ClientProxyStats>),
    /// New client key list (a reload), and where to say whether it is in
    /// force.
    ReloadKeys {
        clients: KeyList,
        done: Sender<Result<(), Error>>,
    },
    Stop,
}

pub(super) fn spawn(config: ClientProxyConfig) -> Result<(RoleHandle<Command>, String), Error> {
    let auth_failures = Arc::new(AtomicU64::new(0));
    let (curve, zap) = crate::curve::server_side(
        config.curve_secret_key.as_ref(),
        "proxy client side",
        config.curve_client_keys.as_ref(),
        &auth_failures,
    )?;
    let hwms = (config.hwm, config.peer_sndhwm);
    let clients = io::router(&config.bind, hwms, curve.as_ref(), config.max_message_size)?;
    let (endpoint, bound) = io::bound_endpoints(&clients, &config.bind);
    let (tx, bell, inbox) = crate::role::channel()?;
    info!(bind = %endpoint, brokers = ?config.brokers, "client proxy started");
    let now = Instant::now();
    let mut driver = Driver {
        core: ProxyCore::new(&config, now),
        link: Link::new(config.hwm).with_curve(
            config.curve_server_key.as_ref(),
            config.curve_secret_key.as_ref(),
        )?,
        clients,
        bound,
        inbox,
        header_buf: Vec::with_capacity(64),
        outbox: RouterOutbox::new(config.outbox_limits()),
        stats_log: StatsLog::new(config.stats_log_interval, now),
        limits: io::Limits {
            frames: config.max_message_frames,
            bytes: config.max_message_size,
        },
        auth_failures,
        zap,
        reloaded: None,
    };
    let stop = || Command::Stop;
    let run = move || driver.run();
    let handle = RoleHandle::spawn(
        "lhcluster-proxy",
        tx,
        bell,
        stop,
        config.shutdown_timeout,
        run,
    )?;
    Ok((handle, endpoint))
}

struct Driver {
    core: ProxyCore,
    /// To the broker.
    link: Link,
    /// The clients' ROUTER.
    clients: zmq::Socket,
    bound: String,
    inbox: DriverInbox<Command>,
    /// Reused by every send to a client.
    header_buf: Vec<u8>,
    /// What waits for clients whose pipe is full.
    outbox: RouterOutbox,
    stats_log: StatsLog,
    /// The most frames and bytes a client's message may have.
    limits: io::Limits,
    /// Refused CURVE handshakes, counted by the ZAP handler.
    auth_failures: Arc<AtomicU64>,
    /// The client side's allow list, while the proxy runs.
    zap: Option<ZapDomain>,
    /// The list of the last reload: from then on each REQUEST's key is
    /// checked against it, as connections made under an older list stay
    /// open. `None` before any reload (the ZAP handler alone decides).
    reloaded: Option<KeyList>,
}

impl Driver {
    /// Carries out the core's actions, then what is due in the outbox,
    /// and tells the core about clients that do not read (which may queue
    /// more actions).
    fn apply_actions(&mut self) {
        loop {
            // Read before sending, and only with a backlog: one this pass
            // makes is first retried on the next, after a poll.
            let now = (!self.outbox.is_idle()).then(Instant::now);
            self.apply_queued();
            if let Some(now) = now {
                accept::retry(&self.clients, &mut self.outbox, now);
            }
            if self.outbox.take_changed() {
                self.core.set_outbox_stats(self.outbox.stats());
            }
            if !self.outbox.has_events() {
                return;
            }
            let now = Instant::now();
            for (peer, event) in self.outbox.take_events() {
                self.core.on_peer_event(now, &peer, event);
            }
        }
    }

    /// [`apply`] on this driver's own parts: the actions the core has
    /// queued, once (the outbox's retries and events are
    /// [`Self::apply_actions`]'s).
    fn apply_queued(&mut self) {
        apply(
            &mut self.core,
            &mut self.link,
            &self.clients,
            &mut self.outbox,
            &mut self.header_buf,
        );
    }

    fn run(&mut self) {
        loop {
            self.apply_actions();
            let mut wake_at = self.stats_log.wake_at(self.core.next_tick(Instant::now()));
            if let Some(due) = self.outbox.next_due() {
                wake_at = wake_at.min(due);
            }
            let sockets = [Some(&self.clients), self.link.socket()];
            let Ok(ready) = io::wait(Some(&self.inbox.listener), sockets, Some(wake_at))
                .inspect_err(|e| error!(error = %e, "proxy poll failed: stopping"))
            else {
                return;
            };
            if ready.sockets[0] {
                self.read(true);
            }
            if ready.sockets[1] {
                self.read(false);
            }
            for command in self.inbox.pending(ready.doorbell) {
                match command {
                    Command::Stats(reply) => {
                        let _ = reply.send(self.stats());
                    }
                    Command::ReloadKeys { clients, done } => {
                        let _ = done.send(reload(self.zap.as_ref(), &mut self.reloaded, clients));
                    }
                    Command::Stop => {
                        self.core.on_stop(Instant::now());
                        self.apply_queued();
                        let _ = self.clients.unbind(&self.bound);
                        info!("client proxy stopped");
                        return;
                    }
                }
            }
            let now = Instant::now();
            self.core.on_tick(now);
            if self.stats_log.due(now) {
                info!(stats = ?self.stats(), "client proxy stats");
            }
        }
    }

    fn stats(&self) -> ClientProxyStats {
        let mut stats = self.core.stats();
        stats.auth_failures = self.auth_failures.load(Ordering::Relaxed);
        stats
    }

    /// Reads a batch from the clients, or from the broker.
    fn read(&mut self, from_clients: bool) {
        let Self {
            core,
            link,
            clients,
            outbox,
            header_buf,
            limits,
            reloaded,
            ..
        } = self;
        // Keep the queue short, so that messages leave while we read.
        let mut flush = |core: &mut ProxyCore, link: &mut Link| {
            if core.actions().len() >= io::READ_BATCH {
                apply(core, link, clients, outbox, header_buf);
            }
        };
        if from_clients {
            // Keys are read only after a reload: before it, every
            // connection was let in by the list in force.
            let opts = accept::ReadOpts {
                keys: reloaded.is_some(),
                limits: *limits,
            };
            let oversized = accept::read(clients, opts, |peer, header, payload, key_of| {
                let now = Instant::now();
                // A message without a key came over inproc:// (no
                // handshake): not checked, as at the broker.
                let refused = reloaded.as_ref().and_then(|list| {
                    if protocol::peek_kind(header) != Some("REQUEST") {
                        return None;
                    }
                    key_of().filter(|key| !list.contains(key))
                });
                match refused {
                    Some(key) => core.on_forbidden_request(now, peer, header, &key),
                    None => core.on_client(now, peer, header, payload),
                }
                flush(core, link);
            });
            for (peer, size, header) in oversized {
                core.on_oversized(&peer, size, &header);
            }
            flush(core, link);
        } else {
            link.read(core, |link, core| flush(core, link));
        }
    }
}

/// Puts a new client list in force: for the handshakes to come (the ZAP
/// handler's, under `zap`), and for the requests of connections already
/// made (`reloaded`).
fn reload(
    zap: Option<&ZapDomain>,
    reloaded: &mut Option<KeyList>,
    list: KeyList,
) -> Result<(), Error> {
    let Some(zap) = zap else {
        return Err(Error::Config(crate::ConfigError::invalid(
            "curve_client_keys",
            "cannot be reloaded into a proxy started without it (restart it)",
        )));
    };
    zap.replace(list.clone());
    *reloaded = Some(list);
    Ok(())
}

/// Carries out the core's actions: towards the broker on the link, towards
/// clients on their ROUTER.
fn apply(
    core: &mut ProxyCore,
    link: &mut Link,
    clients: &zmq::Socket,
    outbox: &mut RouterOutbox,
    header_buf: &mut Vec<u8>,
) {
    link::drain(core, |core, action| match action {
        Action::Link(action) => link.apply(action, core),
        Action::ToClient(peer, msg) => {
            if accept::deliver(clients, outbox, &peer, msg, header_buf) == Delivery::Gone {
                core.count_unroutable();
            }
        }
    });
}

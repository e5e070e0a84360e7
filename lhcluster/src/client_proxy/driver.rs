//! The client proxy's driver thread: owns the client-facing ROUTER and the
//! broker-facing DEALER.

use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info, warn};

use super::config::ClientProxyConfig;
use super::core::{Action, ProxyCore};
use super::stats::ClientProxyStats;
use crate::error::Error;
use crate::io;
use crate::role::{DriverInbox, RoleHandle};

const READ_BATCH: usize = 256;

#[derive(Debug)]
pub(crate) enum Command {
    Stats(Sender<ClientProxyStats>),
    Stop,
}

pub(super) fn spawn(config: ClientProxyConfig) -> Result<(RoleHandle<Command>, String), Error> {
    let clients = io::router(&config.bind, config.hwm)?;
    let (endpoint, bound) = io::bound_endpoints(&clients, &config.bind);
    let (tx, bell, inbox) = crate::role::channel()?;
    let routing_id = crate::peer::random_routing_id();
    info!(bind = %endpoint, broker = %config.brokers[0], "client proxy started");
    let handle = RoleHandle::spawn(
        "lhcluster-proxy",
        tx,
        bell,
        || Command::Stop,
        config.shutdown_timeout,
        move || {
            let mut driver = Driver {
                core: ProxyCore::new(&config, Instant::now()),
                broker_endpoint: config.brokers[0].clone(),
                hwm: config.hwm,
                routing_id,
                clients,
                bound,
                broker: None,
                inbox,
                header_buf: Vec::with_capacity(64),
                stats_log_interval: config.stats_log_interval,
            };
            driver.run();
        },
    )?;
    Ok((handle, endpoint))
}

struct Driver {
    core: ProxyCore,
    broker_endpoint: String,
    hwm: i32,
    routing_id: [u8; 16],
    clients: zmq::Socket,
    bound: String,
    broker: Option<zmq::Socket>,
    inbox: DriverInbox<Command>,
    header_buf: Vec<u8>,
    stats_log_interval: Option<std::time::Duration>,
}

impl Driver {
    fn run(&mut self) {
        let mut next_stats_log = self.stats_log_interval.map(|d| Instant::now() + d);
        loop {
            self.apply_actions();
            let now = Instant::now();
            let mut wake_at = self.core.next_tick(now);
            if let Some(at) = next_stats_log {
                wake_at = wake_at.min(at);
            }
            let sockets = [Some(&self.clients), self.broker.as_ref()];
            let (clients_ready, broker_ready, commands_ready) =
                match io::wait(Some(&self.inbox.listener), sockets, Some(wake_at)) {
                    Ok(ready) => (ready.sockets[0], ready.sockets[1], ready.doorbell),
                    Err(e) => {
                        error!(error = %e, "proxy poll failed: stopping");
                        return;
                    }
                };
            if clients_ready {
                self.read_clients();
            }
            if broker_ready {
                self.read_broker();
            }
            // Commands are drained on every pass (an empty channel costs an
            // atomic load), the doorbell only cuts the wait short.
            {
                if commands_ready {
                    self.inbox.listener.reset();
                }
                while let Ok(command) = self.inbox.commands.try_recv() {
                    match command {
                        Command::Stats(reply) => {
                            let _ = reply.send(self.core.stats());
                        }
                        Command::Stop => {
                            self.core.on_stop(Instant::now());
                            self.apply_actions();
                            let _ = self.clients.unbind(&self.bound);
                            info!("client proxy stopped");
                            return;
                        }
                    }
                }
            }
            let now = Instant::now();
            self.core.on_tick(now);
            if let Some(at) = next_stats_log {
                if now >= at {
                    info!(stats = ?self.core.stats(), "client proxy stats");
                    next_stats_log = self.stats_log_interval.map(|d| now + d);
                }
            }
        }
    }

    fn read_clients(&mut self) {
        for _ in 0..READ_BATCH {
            match io::try_recv(&self.clients, true) {
                Ok(Some(m)) => {
                    let peer = m.identity.as_deref().unwrap_or(&[]);
                    let header = m.header.as_deref().unwrap_or(&[]);
                    self.core.on_client(Instant::now(), peer, header, m.payload);
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "receive from clients failed");
                    return;
                }
            }
            if self.core.actions().len() >= READ_BATCH {
                self.apply_actions();
            }
        }
    }

    fn read_broker(&mut self) {
        for _ in 0..READ_BATCH {
            let Some(broker) = &self.broker else { return };
            match io::try_recv(broker, false) {
                Ok(Some(m)) => {
                    let header = m.header.as_deref().unwrap_or(&[]);
                    self.core.on_broker(Instant::now(), header, m.payload);
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "receive from the broker failed");
                    return;
                }
            }
            if self.core.actions().len() >= READ_BATCH {
                self.apply_actions();
            }
        }
    }

    fn apply_actions(&mut self) {
        // Handling an action can queue more (a connect queues the
        // greeting): loop until none is left.
        loop {
            let mut actions = std::mem::take(self.core.actions());
            if actions.is_empty() {
                *self.core.actions() = actions;
                return;
            }
            for action in actions.drain(..) {
                match action {
                    Action::ToClient(peer, msg) => {
                        if let Err(e) =
                            io::send(&self.clients, Some(&peer), msg, &mut self.header_buf)
                        {
                            tracing::debug!(error = %e, "message to a client undeliverable");
                            self.core.count_unroutable();
                        }
                    }
                    Action::ToBroker(msg) => {
                        if let Some(broker) = &self.broker {
                            if let Err(e) = io::send(broker, None, msg, &mut self.header_buf) {
                                warn!(error = %e, "cannot send to the broker (the buffer re-sends)");
                            }
                        }
                    }
                    Action::Close => {
                        if let Some(socket) = self.broker.take() {
                            let _ = socket.set_linger(0);
                        }
                    }
                    Action::Connect => {
                        match io::dealer(&self.broker_endpoint, &self.routing_id, self.hwm) {
                            Ok(socket) => {
                                self.broker = Some(socket);
                                self.core.on_connected(Instant::now());
                            }
                            Err(e) => {
                                error!(error = %e, "cannot connect to the broker");
                                self.core.on_connect_failed(Instant::now());
                            }
                        }
                    }
                }
            }
            if self.core.actions().is_empty() {
                // Keep the allocation for next time.
                *self.core.actions() = actions;
            }
        }
    }
}

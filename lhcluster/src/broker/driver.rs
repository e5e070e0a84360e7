//! The broker's driver thread: owns the two ROUTER sockets, moves frames
//! between them and the state machine, and runs its ticks.

use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info, warn};

use super::config::BrokerConfig;
use super::core::{BrokerCore, Side};
use super::stats::BrokerStats;
use crate::error::Error;
use crate::io;
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

/// Most messages read from one socket before looking at the other, so that
/// a flood on one side cannot starve the other.
const READ_BATCH: usize = 256;

#[derive(Debug)]
pub(crate) enum Command {
    Stats(Sender<BrokerStats>),
    Stop,
}

pub(super) fn spawn(config: BrokerConfig) -> Result<(RoleHandle<Command>, String, String), Error> {
    let frontend = io::router(&config.frontend, config.hwm)?;
    let backend = io::router(&config.backend, config.hwm)?;
    let (frontend_ep, frontend_bound) = io::bound_endpoints(&frontend, &config.frontend);
    let (backend_ep, backend_bound) = io::bound_endpoints(&backend, &config.backend);
    let (tx, bell, inbox) = crate::role::channel()?;
    info!(frontend = %frontend_ep, backend = %backend_ep, "broker started");
    let handle = RoleHandle::spawn(
        "lhcluster-broker",
        tx,
        bell,
        || Command::Stop,
        config.shutdown_timeout,
        move || {
            let mut driver = Driver {
                core: BrokerCore::new(&config, Instant::now()),
                frontend,
                backend,
                frontend_ep: frontend_bound,
                backend_ep: backend_bound,
                inbox,
                header_buf: Vec::with_capacity(64),
                stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
            };
            driver.run();
        },
    )?;
    Ok((handle, frontend_ep, backend_ep))
}

struct Driver {
    core: BrokerCore,
    frontend: zmq::Socket,
    backend: zmq::Socket,
    frontend_ep: String,
    backend_ep: String,
    inbox: DriverInbox<Command>,
    header_buf: Vec<u8>,
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        loop {
            let wake_at = self.stats_log.wake_at(self.core.next_tick());
            let sockets = [Some(&self.frontend), Some(&self.backend)];
            let (front_ready, back_ready, commands_ready) =
                match io::wait(Some(&self.inbox.listener), sockets, Some(wake_at)) {
                    Ok(ready) => (ready.sockets[0], ready.sockets[1], ready.doorbell),
                    Err(e) => {
                        error!(error = %e, "broker poll failed: stopping");
                        return;
                    }
                };
            if front_ready {
                self.read(Side::Frontend);
            }
            if back_ready {
                self.read(Side::Backend);
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
        for _ in 0..READ_BATCH {
            let socket = match side {
                Side::Frontend => &self.frontend,
                Side::Backend => &self.backend,
            };
            let incoming = match io::try_recv(socket, true) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    warn!(?side, error = %e, "receive failed");
                    break;
                }
            };
            let io::Incoming {
                identity,
                header,
                payload,
            } = incoming;
            let peer = identity.as_deref().unwrap_or(&[]);
            let header = header.as_deref().unwrap_or(&[]);
            match side {
                Side::Frontend => self.core.on_frontend(now, peer, header, payload),
                Side::Backend => self.core.on_backend(now, peer, header, payload),
            }
            // Keep the outbox short so responses leave while we read.
            if self.core.outbox().len() >= READ_BATCH {
                self.flush();
            }
        }
    }

    /// Handles queued commands (on every pass: an empty channel costs an
    /// atomic load); `true` when asked to stop.
    fn handle_commands(&mut self, rung: bool) -> bool {
        if rung {
            self.inbox.listener.reset();
        }
        while let Ok(command) = self.inbox.commands.try_recv() {
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.core.stats());
                }
                Command::Stop => return true,
            }
        }
        false
    }

    fn flush(&mut self) {
        let mut out = std::mem::take(self.core.outbox());
        for o in out.drain(..) {
            let socket = match o.side {
                Side::Frontend => &self.frontend,
                Side::Backend => &self.backend,
            };
            if let Err(e) = io::send(socket, Some(&o.peer), o.msg, &mut self.header_buf) {
                tracing::debug!(side = ?o.side, error = %e, "message undeliverable");
                self.core.count_undeliverable();
            }
        }
        // Give the (now empty) buffer back to reuse its allocation.
        let outbox = self.core.outbox();
        if outbox.is_empty() {
            *outbox = out;
        } else {
            outbox.append(&mut out);
        }
    }
}

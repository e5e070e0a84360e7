//! The broker's driver thread: owns the two ROUTER sockets, moves frames
//! between them and the state machine, and runs its ticks.

use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info};

use super::config::BrokerConfig;
use super::core::{BrokerCore, Side};
use super::stats::BrokerStats;
use crate::accept;
use crate::error::Error;
use crate::io::{self, READ_BATCH};
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

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
            let now = Instant::now();
            let mut driver = Driver {
                core: BrokerCore::new(&config, now),
                frontend,
                backend,
                frontend_ep: frontend_bound,
                backend_ep: backend_bound,
                inbox,
                header_buf: Vec::with_capacity(64),
                stats_log: StatsLog::new(config.stats_log_interval, now),
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
        let socket = match side {
            Side::Frontend => &self.frontend,
            Side::Backend => &self.backend,
        };
        accept::read(socket, |peer, header, payload| {
            match side {
                Side::Frontend => self.core.on_frontend(now, peer, header, payload),
                Side::Backend => self.core.on_backend(now, peer, header, payload),
            }
            // Keep the outbox short so responses leave while we read.
            if self.core.outbox().len() >= READ_BATCH {
                flush(
                    &mut self.core,
                    [&self.frontend, &self.backend],
                    &mut self.header_buf,
                );
            }
        });
    }

    /// Handles queued commands (on every pass: an empty channel costs an
    /// atomic load); `true` when asked to stop.
    fn handle_commands(&mut self, rung: bool) -> bool {
        for command in self.inbox.pending(rung) {
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
        flush(
            &mut self.core,
            [&self.frontend, &self.backend],
            &mut self.header_buf,
        );
    }
}

/// Sends what the core queued, on the frontend and backend sockets.
fn flush(core: &mut BrokerCore, [frontend, backend]: [&zmq::Socket; 2], header_buf: &mut Vec<u8>) {
    let mut out = std::mem::take(core.outbox());
    for o in out.drain(..) {
        let socket = match o.side {
            Side::Frontend => frontend,
            Side::Backend => backend,
        };
        if !accept::send(socket, &o.peer, o.msg, header_buf) {
            core.count_undeliverable();
        }
    }
    // Give the (now empty) buffer back to reuse its allocation.
    let outbox = core.outbox();
    if outbox.is_empty() {
        *outbox = out;
    } else {
        outbox.append(&mut out);
    }
}

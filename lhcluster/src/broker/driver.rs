//! The broker's driver thread: owns the two ROUTER sockets, moves frames
//! between them and the state machine, and runs its ticks.

use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info};

use super::config::BrokerConfig;
use super::core::{BrokerCore, Side};
use super::stats::BrokerStats;
use crate::accept::{self, Delivery, RouterOutbox};
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
    let frontend = io::router(&config.frontend, config.hwm, config.peer_sndhwm)?;
    let backend = io::router(&config.backend, config.hwm, config.peer_sndhwm)?;
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
                outboxes: [
                    RouterOutbox::new(config.outbox_limits()),
                    RouterOutbox::new(config.outbox_limits()),
                ],
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
    /// What waits for peers whose pipe is full, frontend and backend.
    outboxes: [RouterOutbox; 2],
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        loop {
            let mut wake_at = self.stats_log.wake_at(self.core.next_tick());
            for outbox in &self.outboxes {
                if let Some(due) = outbox.next_due() {
                    wake_at = wake_at.min(due);
                }
            }
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
                send_queued(
                    &mut self.core,
                    [&self.frontend, &self.backend],
                    &mut self.outboxes,
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
                return;
            }
        }
    }
}

/// The sides of the outboxes, in order.
const SIDES: [Side; 2] = [Side::Frontend, Side::Backend];

/// Sends what the core queued, on the frontend and backend sockets, each
/// through its outbox.
fn send_queued(
    core: &mut BrokerCore,
    sockets: [&zmq::Socket; 2],
    outboxes: &mut [RouterOutbox; 2],
    header_buf: &mut Vec<u8>,
) {
    let mut out = std::mem::take(core.outbox());
    for o in out.drain(..) {
        let i = match o.side {
            Side::Frontend => 0,
            Side::Backend => 1,
        };
        let sent = accept::deliver(sockets[i], &mut outboxes[i], &o.peer, o.msg, header_buf);
        if sent == Delivery::Gone {
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

//! The client's driver thread: owns the DEALER socket and feeds the state
//! machine with broker messages, caller requests and ticks.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::{error, info, warn};

use super::config::ClientConfig;
use super::core::{Action, ClientCore, Submit};
use super::stats::ClientStats;
use super::{ClientEvent, Readiness};
use crate::error::Error;
use crate::io;
use crate::protocol::Message;
use crate::role::{DriverInbox, RoleHandle};

#[derive(Debug)]
pub(crate) enum Command {
    Submit(Submit),
    Stats(Sender<ClientStats>),
    Stop,
}

pub(super) fn spawn(
    config: ClientConfig,
    events: Sender<ClientEvent>,
    readiness: Arc<Readiness>,
) -> Result<RoleHandle<Command>, Error> {
    let (tx, bell, inbox) = crate::role::channel()?;
    let routing_id = crate::peer::random_routing_id();
    let shutdown_timeout = config.shutdown_timeout;
    RoleHandle::spawn(
        "lhcluster-client",
        tx,
        bell,
        || Command::Stop,
        shutdown_timeout,
        move || {
            let mut driver = Driver {
                core: ClientCore::new(&config, Some(events), Instant::now()),
                endpoint: config.brokers[0].clone(),
                routing_id,
                socket: None,
                inbox,
                readiness,
                header_buf: Vec::with_capacity(64),
            };
            driver.run();
        },
    )
}

struct Driver {
    core: ClientCore,
    endpoint: String,
    routing_id: [u8; 16],
    socket: Option<zmq::Socket>,
    inbox: DriverInbox<Command>,
    readiness: Arc<Readiness>,
    header_buf: Vec<u8>,
}

impl Driver {
    fn run(&mut self) {
        // Whether the last pass found work. While work flows, the socket is
        // read again at once instead of polled: a poll costs several
        // syscalls in libzmq, and a read that finds nothing costs one.
        let mut busy = false;
        loop {
            self.apply_actions();
            self.readiness.set(self.core.is_ready());
            let until = self.core.next_tick(Instant::now());
            let (socket_ready, commands_ready) = if busy {
                (true, false)
            } else {
                match io::wait(&self.inbox.listener, [self.socket.as_ref(), None], until) {
                    Ok(ready) => (ready.sockets[0], ready.doorbell),
                    Err(e) => {
                        error!(error = %e, "client poll failed: stopping");
                        return;
                    }
                }
            };
            let mut work = 0;
            if socket_ready {
                work += self.read();
            }
            // Commands are drained on every pass (an empty channel costs an
            // atomic load), the doorbell only cuts the wait short.
            {
                if commands_ready {
                    self.inbox.listener.reset();
                }
                while let Ok(command) = self.inbox.commands.try_recv() {
                    work += 1;
                    match command {
                        Command::Submit(submit) => {
                            self.core.on_submit(Instant::now(), submit);
                            // Send in batches while the caller keeps submitting.
                            if self.core.actions().len() >= 256 {
                                self.apply_actions();
                            }
                        }
                        Command::Stats(reply) => {
                            let _ = reply.send(self.core.stats());
                        }
                        Command::Stop => {
                            self.core.on_stop(Instant::now());
                            self.apply_actions();
                            self.readiness.set(false);
                            info!("client stopped");
                            return;
                        }
                    }
                }
            }
            self.core.on_tick(Instant::now());
            busy = work > 0;
        }
    }

    /// Reads a batch of messages; returns how many.
    fn read(&mut self) -> usize {
        let mut read = 0;
        for _ in 0..256 {
            let Some(socket) = &self.socket else { break };
            match io::try_recv(socket, false) {
                Ok(Some(m)) => {
                    read += 1;
                    let header = m.header.as_deref().unwrap_or(&[]);
                    self.core.on_message(Instant::now(), header, m.payload);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "receive failed");
                    break;
                }
            }
        }
        read
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
                    Action::Send(msg) => {
                        let key = match &msg {
                            Message::Request(r) => Some((r.request_type, r.request_id)),
                            _ => None,
                        };
                        let result = match &self.socket {
                            Some(socket) => io::send(socket, None, msg, &mut self.header_buf)
                                .map_err(|e| e.to_string()),
                            None => Err("no connection".to_owned()),
                        };
                        if let Err(e) = result {
                            warn!(error = %e, "cannot send to the broker");
                            self.core.on_send_failed(key, &format!("cannot send: {e}"));
                        }
                    }
                    Action::Close => {
                        if let Some(socket) = self.socket.take() {
                            let _ = socket.set_linger(0);
                        }
                    }
                    Action::Connect => match io::dealer(&self.endpoint, &self.routing_id) {
                        Ok(socket) => {
                            self.socket = Some(socket);
                            self.core.on_connected(Instant::now());
                        }
                        Err(e) => {
                            error!(error = %e, "cannot connect to the broker");
                            self.core.on_connect_failed(Instant::now());
                        }
                    },
                }
            }
            if self.core.actions().is_empty() {
                // Keep the allocation for next time.
                *self.core.actions() = actions;
            }
        }
    }
}

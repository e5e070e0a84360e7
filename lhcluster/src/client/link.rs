//! The client's connection: its DEALER socket and the moves between that
//! socket and the state machine. Shared by the driver thread of a
//! [`Client`](super::Client) and by a [`LocalClient`](super::LocalClient),
//! which runs it on the caller's thread.

use std::time::Instant;

use tracing::{error, warn};

use super::core::{Action, ClientCore};
use super::response::DisconnectReason;
use crate::io;
use crate::protocol::Message;

pub(super) struct Link {
    endpoint: String,
    routing_id: [u8; 16],
    socket: Option<zmq::Socket>,
    header_buf: Vec<u8>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.socket.is_some())
            .finish()
    }
}

impl Link {
    pub(super) fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            routing_id: crate::peer::random_routing_id(),
            socket: None,
            header_buf: Vec::with_capacity(64),
        }
    }

    pub(super) fn socket(&self) -> Option<&zmq::Socket> {
        self.socket.as_ref()
    }

    /// Reads a batch of messages into the state machine; returns how many.
    pub(super) fn read(&mut self, core: &mut ClientCore) -> usize {
        let mut read = 0;
        for _ in 0..256 {
            let Some(socket) = &self.socket else { break };
            match io::try_recv(socket, false) {
                Ok(Some(m)) => {
                    read += 1;
                    let header = m.header.as_deref().unwrap_or(&[]);
                    core.on_message(Instant::now(), header, m.payload);
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

    /// Carries out what the state machine asked for.
    pub(super) fn apply_actions(&mut self, core: &mut ClientCore) {
        // Handling an action can queue more (a connect queues the
        // greeting): loop until none is left.
        loop {
            let mut actions = std::mem::take(core.actions());
            if actions.is_empty() {
                *core.actions() = actions;
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
                                .map_err(DisconnectReason::Send),
                            None => Err(DisconnectReason::NotConnected),
                        };
                        if let Err(e) = result {
                            warn!(error = %e, "cannot send to the broker");
                            core.on_send_failed(key, e);
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
                            core.on_connected(Instant::now());
                        }
                        Err(e) => {
                            error!(error = %e, "cannot connect to the broker");
                            core.on_connect_failed(Instant::now());
                        }
                    },
                }
            }
            if core.actions().is_empty() {
                // Keep the allocation for next time.
                *core.actions() = actions;
            }
        }
    }
}

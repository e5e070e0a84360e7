//! The connecting side's socket half, one for every role that connects to a
//! broker: the worker, the client (a `Client`'s, shared by its driver thread
//! and the callers that send, under one lock, see `client/driver.rs`; a
//! [`LocalClient`](crate::client::LocalClient)'s, on the caller's thread)
//! and the client proxy's upstream. It owns the DEALER, carries out the
//! session's [`LinkAction`]s and feeds what the broker sends to the role's
//! state machine, through [`Connecting`] (generic: no dynamic dispatch on
//! the hot path).

use std::time::Instant;

use tracing::{debug, error, warn};

use crate::curve::{PublicKey, SecretKey, SocketCurve};
use crate::io;
use crate::protocol::{Message, Payload, RequestId, RequestType};
use crate::session::{BrokerSession, Inbound, LinkAction};

/// A role's state machine, as its link sees it.
pub(crate) trait Connecting {
    /// The role's actions: the link's, and the role's own.
    type Action: From<LinkAction>;

    /// What of a broker message the session passes on, for the role to
    /// react to (never [`Inbound::Handled`]).
    fn on_inbound(&mut self, now: Instant, inbound: Inbound);

    /// The session with the broker and the queue of actions.
    fn parts(&mut self) -> (&mut BrokerSession, &mut Vec<Self::Action>);

    /// A message from the broker: the session takes its part, the role
    /// reacts to the rest.
    fn on_broker(&mut self, now: Instant, header: &[u8], payload: Payload) {
        let (session, actions) = self.parts();
        match session.on_message(now, header, payload, actions) {
            Inbound::Handled => {}
            inbound => self.on_inbound(now, inbound),
        }
    }

    /// A fresh socket is connected: greet.
    fn on_connected(&mut self, now: Instant) {
        let (session, actions) = self.parts();
        session.connected(now, actions);
    }

    /// The socket could not be created or connected: try again later.
    fn on_connect_failed(&mut self, now: Instant) {
        self.parts().0.connect_failed(now);
    }

    /// A message could not be handed to the socket (`request`: the request
    /// it carried; `error`: libzmq's refusal, `None` with no socket); it is
    /// gone.
    fn on_send_failed(
        &mut self,
        request: Option<(RequestType, RequestId)>,
        error: Option<zmq::Error>,
    ) {
        let _ = (request, error);
    }
}

/// Hands every queued action of `core` to `each`, also those queued while
/// it runs (a connect queues the greeting), in order; the queue keeps its
/// allocation.
pub(crate) fn drain<C: Connecting>(core: &mut C, mut each: impl FnMut(&mut C, C::Action)) {
    loop {
        let mut actions = std::mem::take(core.parts().1);
        if actions.is_empty() {
            *core.parts().1 = actions;
            return;
        }
        for action in actions.drain(..) {
            each(core, action);
        }
        let queue = core.parts().1;
        if queue.is_empty() {
            // Keep the allocation for next time.
            *queue = actions;
        }
    }
}

/// The connection to one broker at a time: which one is the session's
/// choice ([`BrokerSession::endpoint`]), asked at each connect.
pub(crate) struct Link {
    /// The broker connected to (or last connected to).
    endpoint: String,
    /// Kept across reconnects, so the broker recognises us.
    routing_id: [u8; 16],
    /// The socket's high-water mark (the role's `hwm`).
    hwm: i32,
    /// The CURVE client side, if the role has the broker's key.
    curve: Option<SocketCurve>,
    socket: Option<zmq::Socket>,
    /// Reused by every send (no allocation per message).
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
    /// Not connected yet: the session's first action connects.
    pub(crate) fn new(hwm: i32) -> Self {
        Self {
            endpoint: String::new(),
            hwm,
            curve: None,
            routing_id: crate::peer::random_routing_id(),
            socket: None,
            header_buf: Vec::with_capacity(64),
        }
    }

    /// With CURVE towards the broker: `server` its public key, `own` the
    /// role's secret key (a new one when `None`). Without `server`, in
    /// clear.
    pub(crate) fn with_curve(
        mut self,
        server: Option<&PublicKey>,
        own: Option<&SecretKey>,
    ) -> Result<Self, crate::Error> {
        self.curve = SocketCurve::client(server, own)?;
        Ok(self)
    }

    /// The socket, to poll (none while reconnecting).
    pub(crate) fn socket(&self) -> Option<&zmq::Socket> {
        self.socket.as_ref()
    }

    /// The file descriptor that signals the socket's input, for a thread
    /// that sleeps in `poll` without touching the socket (which another
    /// thread may be using). It signals edge-wise: only once the socket has
    /// been seen without input ([`Self::input_waiting`]) after its last use.
    pub(crate) fn input_fd(&self) -> zmq::Result<Option<std::os::fd::RawFd>> {
        self.socket.as_ref().map(zmq::Socket::get_fd).transpose()
    }

    /// Whether a message is waiting to be read. Asking also makes
    /// [`Self::input_fd`] signal the next one: call it after the last use
    /// of the socket before sleeping on the descriptor.
    pub(crate) fn input_waiting(&self) -> bool {
        self.socket.as_ref().is_some_and(|s| {
            s.get_events()
                .is_ok_and(|events| events.contains(zmq::POLLIN))
        })
    }

    /// Sleeps until the socket or the doorbell is readable, or `until`. A
    /// `busy` driver (its last pass found work) does not sleep: it reads
    /// again at once, as a poll costs several syscalls in libzmq and a read
    /// that finds nothing one. `None`: the poll failed (logged), and the
    /// `role`'s driver stops.
    pub(crate) fn wait(
        &self,
        doorbell: &crate::wake::Listener,
        busy: bool,
        until: Instant,
        role: &str,
    ) -> Option<io::Ready> {
        if busy {
            return Some(io::Ready {
                doorbell: false,
                sockets: [true, false],
            });
        }
        io::wait(Some(doorbell), [self.socket(), None], Some(until))
            .inspect_err(|e| error!(error = %e, "{role} poll failed: stopping"))
            .ok()
    }

    /// Drops the socket at once, queued messages and all.
    pub(crate) fn close(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.set_linger(0);
        }
    }

    /// Carries out one action of the session.
    pub(crate) fn apply<C: Connecting>(&mut self, action: LinkAction, core: &mut C) {
        match action {
            LinkAction::Send(msg) => self.send(msg, core),
            LinkAction::Close => self.close(),
            LinkAction::Connect => {
                // The same routing id at every broker: each sees one peer.
                core.parts().0.endpoint().clone_into(&mut self.endpoint);
                match io::dealer(
                    &self.endpoint,
                    &self.routing_id,
                    self.hwm,
                    self.curve.as_ref(),
                ) {
                    Ok(socket) => {
                        debug!(broker = %self.endpoint, "connecting to the broker");
                        self.socket = Some(socket);
                        core.on_connected(Instant::now());
                    }
                    Err(e) => {
                        error!(error = %e.with_causes(), broker = %self.endpoint, "cannot connect to the broker");
                        core.on_connect_failed(Instant::now());
                    }
                }
            }
        }
    }

    fn send<C: Connecting>(&mut self, msg: Message, core: &mut C) {
        let request = match &msg {
            Message::Request(r) => Some((r.request_type, r.request_id)),
            _ => None,
        };
        let error = match &self.socket {
            Some(socket) => match io::send(socket, None, msg, &mut self.header_buf) {
                Ok(()) => return,
                Err(e) => Some(e),
            },
            None => None,
        };
        match error {
            Some(e) => warn!(error = %e, "cannot send to the broker"),
            None => warn!("cannot send to the broker: no connection"),
        }
        core.on_send_failed(request, error);
    }

    /// Carries out every queued action of a role that has no others.
    pub(crate) fn flush<C: Connecting<Action = LinkAction>>(&mut self, core: &mut C) {
        drain(core, |core, action| self.apply(action, core));
    }

    /// Reads a batch of messages into the state machine, calling `after`
    /// after each (it may carry out the actions queued meanwhile, and close
    /// the socket); returns how many were read.
    pub(crate) fn read<C: Connecting>(
        &mut self,
        core: &mut C,
        mut after: impl FnMut(&mut Self, &mut C),
    ) -> usize {
        let mut read = 0;
        while read < io::READ_BATCH {
            let Some(socket) = &self.socket else { break };
            let Some(m) = io::recv_next(socket, false) else {
                break;
            };
            read += 1;
            let header = m.header.as_deref().unwrap_or(&[]);
            core.on_broker(Instant::now(), header, m.payload);
            after(self, core);
        }
        read
    }
}

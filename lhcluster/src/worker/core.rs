//! The worker's sans-IO state machine: the session with the broker
//! (register, heartbeats, broker death, reconnect with backoff) and the set
//! of requests running on the pool.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use tracing::{debug, info, warn};

use super::config::WorkerConfig;
use super::stats::WorkerStats;
use crate::peer::interval_to_ms;
use crate::protocol::{
    self, Dispatch, ErrorReply, Flags, Message, Payload, Ready, RequestId, RequestRef, RequestType,
    Status, WorkResult,
};
use crate::session::{BrokerSession, Due};

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send a message to the broker.
    Send(Message),
    /// Run a request on the handler pool.
    Run(Dispatch),
    /// Drop the socket (the broker is gone).
    Close,
    /// Create a socket, connect it, then call [`WorkerCore::on_connected`].
    Connect,
}

type ReqKey = (RequestType, RequestId);

#[derive(Debug)]
pub(crate) struct WorkerCore {
    types: Vec<RequestType>,
    capacity: u32,
    heartbeat: Duration,
    name: Option<String>,
    /// Registered = the session is ready (WELCOME after READY).
    session: BrokerSession,
    running: HashMap<ReqKey, u32>,
    /// Results waiting for a session with the broker.
    unsent: VecDeque<Message>,
    stopping: bool,
    stats: WorkerStats,
    actions: Vec<Action>,
}

impl WorkerCore {
    pub(crate) fn new(config: &WorkerConfig, types: Vec<RequestType>, now: Instant) -> Self {
        let mut core = Self {
            types,
            capacity: config.capacity,
            heartbeat: config.heartbeat,
            name: config.name.clone(),
            session: BrokerSession::new(
                now,
                config.heartbeat,
                config.liveness,
                config.reconnect_min,
                config.reconnect_max,
            ),
            running: HashMap::new(),
            unsent: VecDeque::new(),
            stopping: false,
            stats: WorkerStats::default(),
            actions: Vec::new(),
        };
        core.types.sort_unstable();
        core.actions.push(Action::Connect);
        core
    }

    pub(crate) fn actions(&mut self) -> &mut Vec<Action> {
        &mut self.actions
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        let mut stats = self.stats.clone();
        stats.running = self.running.len() as u64;
        stats.registered = self.session.is_ready();
        stats
    }

    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// When [`WorkerCore::on_tick`] should run next.
    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        self.session.next_tick(now)
    }

    /// The driver has a fresh socket connected to the broker.
    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.session.connected(now);
        self.send_ready(now);
    }

    /// A message from the broker.
    pub(crate) fn on_message(&mut self, now: Instant, header: &[u8], payload: Payload) {
        if !self.session.is_connected() {
            return;
        }
        self.session.heard(now);
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => return self.malformed(now, header, e.to_string()),
        };
        match msg {
            Message::Welcome { heartbeat_ms } => {
                if self.session.welcome(heartbeat_ms) {
                    info!("registered with the broker");
                }
                while let Some(msg) = self.unsent.pop_front() {
                    self.send(now, msg);
                }
                if self.stopping {
                    // Stopped while re-registering: say goodbye now.
                    self.send(now, Message::Disconnect { route: Vec::new() });
                }
            }
            Message::Dispatch(d) => self.on_dispatch(now, d),
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                self.session.broker_interval(heartbeat_ms);
            }
            Message::Reregister => {
                debug!("the broker does not know this worker: registering again");
                self.session.regreet();
                self.send_ready(now);
            }
            Message::Shutdown => {
                info!("the broker is shutting down: reconnecting later");
                self.lose_broker(now);
            }
            Message::Error(e) => warn!(error = %e.error, "the broker reported an error"),
            other => self.malformed(
                now,
                &[],
                format!("unexpected {} from the broker", other.kind_name()),
            ),
        }
    }

    fn on_dispatch(&mut self, now: Instant, d: Dispatch) {
        self.stats.requests_received += 1;
        let key = (d.request_type, d.request_id);
        if self.types.binary_search(&d.request_type).is_err() {
            self.stats.requests_failed += 1;
            let error = format!(
                "request type {} is not served by this worker",
                d.request_type
            );
            let msg = result_message(key, Status::BadRequest, Some(error), Payload::new());
            return self.send_or_keep(now, msg);
        }
        if self.running.contains_key(&key) {
            // Re-sent after a reconnect: it is already running here.
            self.stats.duplicates_ignored += 1;
            return;
        }
        self.running.insert(key, d.attempt);
        if d.flags.contains(Flags::RECEIPT_ON_RECEIVE) {
            let receipt = Message::ReceiptReceived(RequestRef {
                request_type: key.0,
                request_id: key.1,
                route: Vec::new(),
            });
            self.send_or_keep(now, receipt);
        }
        self.actions.push(Action::Run(d));
    }

    /// A handler finished.
    pub(crate) fn on_done(
        &mut self,
        now: Instant,
        key: (RequestType, RequestId),
        outcome: Result<Payload, super::HandlerError>,
        panicked: bool,
    ) {
        if self.running.remove(&key).is_none() {
            return;
        }
        if panicked {
            self.stats.handler_panics += 1;
        }
        let msg = match outcome {
            Ok(payload) => {
                self.stats.requests_succeeded += 1;
                result_message(key, Status::Ok, None, payload)
            }
            Err(e) => {
                self.stats.requests_failed += 1;
                result_message(
                    key,
                    e.status(),
                    Some(e.message().to_owned()),
                    Payload::new(),
                )
            }
        };
        self.send_or_keep(now, msg);
    }

    pub(crate) fn on_tick(&mut self, now: Instant) {
        match self.session.due(now, self.stopping) {
            Due::Nothing => {}
            Due::Connect => {
                self.stats.reconnects += 1;
                self.actions.push(Action::Connect);
            }
            Due::Lost => {
                warn!("the broker missed its heartbeats: reconnecting");
                self.stats.broker_deaths += 1;
                self.lose_broker(now);
            }
            // A stopping worker does not ask for work again.
            Due::Greet if self.stopping => {}
            Due::Greet => self.send_ready(now),
            Due::Heartbeat => {
                self.stats.heartbeats_sent += 1;
                let heartbeat_ms = interval_to_ms(self.heartbeat);
                self.send(now, Message::Heartbeat { heartbeat_ms });
            }
        }
    }

    /// Graceful stop: tell the broker to send nothing more. The driver then
    /// waits for running handlers (bounded) before closing.
    pub(crate) fn on_stop(&mut self, now: Instant) {
        self.stopping = true;
        // Also while registering: the broker reads our READY first, so the
        // DISCONNECT that follows it is understood.
        if self.session.is_connected() {
            self.send(now, Message::Disconnect { route: Vec::new() });
        }
    }

    /// The socket could not be created or connected: try again later.
    pub(crate) fn on_connect_failed(&mut self, now: Instant) {
        self.session.connect_failed(now);
    }

    fn lose_broker(&mut self, now: Instant) {
        self.actions.push(Action::Close);
        self.session.lose(now);
    }

    fn send_ready(&mut self, now: Instant) {
        let ready = Message::Ready(Ready {
            heartbeat_ms: interval_to_ms(self.heartbeat),
            capacity: self.capacity,
            request_types: self.types.clone(),
            name: self.name.clone(),
        });
        self.send(now, ready);
    }

    fn malformed(&mut self, now: Instant, header: &[u8], error: String) {
        self.stats.malformed += 1;
        warn!(%error, "malformed message from the broker");
        if protocol::peek_kind(header) == Some("ERROR") {
            return; // never answer an error with an error
        }
        self.send(
            now,
            Message::Error(ErrorReply {
                error,
                request: None,
            }),
        );
    }

    /// Sends now if registered, else keeps it for the next session.
    fn send_or_keep(&mut self, now: Instant, msg: Message) {
        if self.session.is_ready() {
            self.send(now, msg);
        } else {
            self.unsent.push_back(msg);
        }
    }

    fn send(&mut self, now: Instant, msg: Message) {
        self.session.sent(now);
        self.actions.push(Action::Send(msg));
    }
}

fn result_message(key: ReqKey, status: Status, error: Option<String>, payload: Payload) -> Message {
    Message::Result(WorkResult {
        request_type: key.0,
        request_id: key.1,
        status,
        error,
        payload,
    })
}

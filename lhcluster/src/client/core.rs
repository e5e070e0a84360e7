//! The client's sans-IO state machine: the session with the broker (greet,
//! heartbeats, broker death, reconnect with backoff) and the outstanding
//! requests, each of which ends in exactly one outcome.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use crossbeam_channel::Sender;
use tracing::{debug, info, warn};

use super::ClientEvent;
use super::config::ClientConfig;
use super::response::{DisconnectReason, Reply, RequestError, Shared};
use super::stats::ClientStats;
use crate::peer::interval_to_ms;
use crate::protocol::{
    self, ErrorReply, Flags, Hello, Message, Payload, ReceiptKind, Request, RequestId, RequestRef,
    RequestType, Response, Status,
};
use crate::session::{BrokerSession, Due};

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Message),
    Close,
    Connect,
}

type ReqKey = (RequestType, RequestId);

/// A request the caller asked to send.
#[derive(Debug)]
pub(crate) struct Submit {
    pub(crate) request_type: RequestType,
    pub(crate) request_id: RequestId,
    pub(crate) flags: Flags,
    pub(crate) payload: Payload,
    pub(crate) reply_to: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
struct Outstanding {
    shared: Arc<Shared>,
    deadline: Option<Instant>,
    timeout: Duration,
    /// For a one-way request: the receipt that completes it.
    one_way_until: Option<ReceiptKind>,
}

#[derive(Debug)]
pub(crate) struct ClientCore {
    name: Option<String>,
    heartbeat: Duration,
    default_timeout: Option<Duration>,
    session: BrokerSession,
    outstanding: HashMap<ReqKey, Outstanding>,
    deadlines: BinaryHeap<Reverse<(Instant, ReqKey)>>,
    events: Option<Sender<ClientEvent>>,
    stopped: bool,
    stats: ClientStats,
    actions: Vec<Action>,
}

impl ClientCore {
    pub(crate) fn new(
        config: &ClientConfig,
        events: Option<Sender<ClientEvent>>,
        now: Instant,
    ) -> Self {
        Self {
            name: config.name.clone(),
            heartbeat: config.heartbeat,
            default_timeout: config.request_timeout,
            session: BrokerSession::new(
                now,
                config.heartbeat,
                config.liveness,
                config.reconnect_min,
                config.reconnect_max,
            ),
            outstanding: HashMap::new(),
            deadlines: BinaryHeap::new(),
            events,
            stopped: false,
            stats: ClientStats::default(),
            actions: vec![Action::Connect],
        }
    }

    pub(crate) fn actions(&mut self) -> &mut Vec<Action> {
        &mut self.actions
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.session.is_ready()
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let mut stats = self.stats.clone();
        stats.outstanding = self.outstanding.len() as u64;
        stats.connected = self.is_ready();
        stats
    }

    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        let session = self.session.next_tick(now);
        match self.deadlines.peek() {
            Some(Reverse((at, _))) => session.min(*at),
            None => session,
        }
    }

    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.session.connected(now);
        self.send_hello(now);
    }

    pub(crate) fn on_connect_failed(&mut self, now: Instant) {
        self.session.connect_failed(now);
    }

    /// The caller sends a request.
    pub(crate) fn on_submit(&mut self, now: Instant, s: Submit) {
        let key = (s.request_type, s.request_id);
        if self.stopped {
            s.shared.complete(Err(RequestError::Stopped));
            return;
        }
        if !self.session.is_connected() {
            self.stats.requests_failed_disconnected += 1;
            s.shared.complete(Err(RequestError::Disconnected(
                DisconnectReason::NotConnected,
            )));
            return;
        }
        if self.outstanding.contains_key(&key) {
            self.stats.requests_rejected_locally += 1;
            s.shared.complete(Err(RequestError::Status {
                status: Status::Rejected,
                message: format!(
                    "request {}/{} is already outstanding on this client",
                    key.0, key.1
                ),
            }));
            return;
        }
        self.stats.requests_sent += 1;
        // With reply-to, the response goes to another client: here, as for a
        // one-way request, the outcome is the delivery (see `one_way_until`).
        let one_way = s.flags.contains(Flags::ONE_WAY) || s.reply_to.is_some();
        let one_way_until = if s.flags.contains(Flags::RECEIPT_ON_RECEIVE) {
            Some(ReceiptKind::Received)
        } else if s.flags.contains(Flags::RECEIPT_ON_SEND) {
            Some(ReceiptKind::Sent)
        } else {
            None
        };
        self.send(
            now,
            Message::Request(Request {
                request_type: s.request_type,
                request_id: s.request_id,
                flags: s.flags,
                route: Vec::new(),
                reply_to: s.reply_to,
                payload: s.payload,
            }),
        );
        if one_way && one_way_until.is_none() {
            // Nothing more will come back unless the broker refuses it; a
            // refusal then arrives as a `ClientEvent`.
            s.shared.complete(Ok(Reply {
                request_type: key.0,
                request_id: key.1,
                payload: Payload::new(),
            }));
            return;
        }
        let timeout = s.timeout.or(self.default_timeout);
        let deadline = timeout.map(|t| now + t);
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, key)));
        }
        self.outstanding.insert(
            key,
            Outstanding {
                shared: s.shared,
                deadline,
                timeout: timeout.unwrap_or_default(),
                one_way_until: if one_way { one_way_until } else { None },
            },
        );
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
                    info!("connected to the broker");
                    self.emit(ClientEvent::Connected);
                }
            }
            Message::Response(r) => self.on_response(r),
            Message::ReceiptSent(r) => self.on_receipt(r, ReceiptKind::Sent),
            Message::ReceiptReceived(r) => self.on_receipt(r, ReceiptKind::Received),
            Message::Heartbeat { heartbeat_ms } => {
                self.stats.heartbeats_received += 1;
                self.session.broker_interval(heartbeat_ms);
            }
            Message::Reregister => {
                // The broker lost our session: most likely it restarted and
                // lost what we had sent it (a proxy would re-send; a direct
                // client cannot), so nothing outstanding will be answered.
                debug!("the broker does not know this client: greeting again");
                self.fail_all(&RequestError::Disconnected(DisconnectReason::SessionLost));
                self.session.regreet();
                self.send_hello(now);
            }
            Message::Shutdown => {
                info!("the broker is shutting down");
                self.lose_broker(now, DisconnectReason::BrokerShutDown);
            }
            Message::Error(e) => self.on_error(e),
            other => {
                self.malformed(
                    now,
                    &[],
                    format!("unexpected {} from the broker", other.kind_name()),
                );
            }
        }
    }

    fn on_response(&mut self, r: Response) {
        let key = (r.request_type, r.request_id);
        let outcome = match r.status {
            Status::Ok => Ok(Reply {
                request_type: key.0,
                request_id: key.1,
                payload: r.payload,
            }),
            status => Err(RequestError::Status {
                status,
                message: r.error.unwrap_or_default(),
            }),
        };
        match self.outstanding.remove(&key) {
            Some(entry) => {
                self.stats.responses_received += 1;
                entry.shared.complete(outcome);
            }
            None => {
                // Sent here by another client's reply-to, a one-way
                // refusal, or late after a timeout: nobody waits on it.
                self.stats.responses_unmatched += 1;
                self.emit(ClientEvent::Response {
                    request_type: key.0,
                    request_id: key.1,
                    outcome,
                });
            }
        }
    }

    fn on_receipt(&mut self, r: RequestRef, kind: ReceiptKind) {
        let key = (r.request_type, r.request_id);
        self.stats.receipts_received += 1;
        self.emit(ClientEvent::Receipt {
            request_type: key.0,
            request_id: key.1,
            kind,
        });
        let Some(entry) = self.outstanding.get(&key) else {
            return;
        };
        entry.shared.add_receipt(kind);
        if entry.one_way_until == Some(kind) {
            if let Some(entry) = self.outstanding.remove(&key) {
                entry.shared.complete(Ok(Reply {
                    request_type: key.0,
                    request_id: key.1,
                    payload: Payload::new(),
                }));
            }
        }
    }

    fn on_error(&mut self, e: ErrorReply) {
        warn!(error = %e.error, "the broker reported an error");
        if let Some(r) = e.request {
            if let Some(entry) = self.outstanding.remove(&(r.request_type, r.request_id)) {
                entry.shared.complete(Err(RequestError::Protocol(e.error)));
            }
        }
    }

    pub(crate) fn on_tick(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let expired = self
                .outstanding
                .get(&key)
                .is_some_and(|e| e.deadline == Some(at));
            if expired {
                if let Some(entry) = self.outstanding.remove(&key) {
                    self.stats.requests_timed_out += 1;
                    entry
                        .shared
                        .complete(Err(RequestError::Timeout(entry.timeout)));
                }
            }
        }
        match self.session.due(now, self.stopped) {
            Due::Nothing => {}
            Due::Connect => {
                self.stats.reconnects += 1;
                self.actions.push(Action::Connect);
            }
            Due::Lost => {
                warn!("the broker missed its heartbeats: reconnecting");
                self.stats.broker_deaths += 1;
                self.lose_broker(now, DisconnectReason::HeartbeatsMissed);
            }
            Due::Greet => self.send_hello(now),
            Due::Heartbeat => {
                self.stats.heartbeats_sent += 1;
                let heartbeat_ms = interval_to_ms(self.heartbeat);
                self.send(now, Message::Heartbeat { heartbeat_ms });
            }
        }
    }

    pub(crate) fn on_stop(&mut self, now: Instant) {
        self.stopped = true;
        if self.session.is_connected() {
            self.send(now, Message::Disconnect { route: Vec::new() });
        }
        self.fail_all(&RequestError::Stopped);
    }

    fn lose_broker(&mut self, now: Instant, why: DisconnectReason) {
        self.fail_all(&RequestError::Disconnected(why));
        self.emit(ClientEvent::Disconnected);
        self.actions.push(Action::Close);
        self.session.lose(now);
    }

    fn fail_all(&mut self, error: &RequestError) {
        for (_, entry) in self.outstanding.drain() {
            entry.shared.complete(Err(error.clone()));
        }
        self.deadlines.clear();
    }

    fn send_hello(&mut self, now: Instant) {
        let hello = Message::Hello(Hello {
            heartbeat_ms: interval_to_ms(self.heartbeat),
            name: self.name.clone(),
            route: Vec::new(),
        });
        self.send(now, hello);
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

    fn emit(&mut self, event: ClientEvent) {
        if let Some(events) = &self.events {
            if events.try_send(event).is_err() {
                self.stats.events_dropped += 1;
            }
        }
    }

    fn send(&mut self, now: Instant, msg: Message) {
        self.session.sent(now);
        self.actions.push(Action::Send(msg));
    }

    /// The driver could not hand a request to the socket.
    pub(crate) fn on_send_failed(&mut self, key: Option<ReqKey>, error: DisconnectReason) {
        if let Some(entry) = key.and_then(|k| self.outstanding.remove(&k)) {
            entry
                .shared
                .complete(Err(RequestError::Disconnected(error)));
        }
    }
}

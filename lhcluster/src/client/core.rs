//! The client's sans-IO state machine: the session with the broker (greet,
//! heartbeats, broker death, reconnect with backoff) and the outstanding
//! requests, each of which ends in exactly one outcome.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use crossbeam_channel::Sender;
use tracing::info;

use super::ClientEvent;
use super::config::ClientConfig;
use super::ids::IdSource;
use super::response::{DisconnectReason, Reply, RequestError, Shared, Slot};
use super::stats::ClientStats;
use crate::protocol::{
    CANCEL_MINOR, Cancel, ErrorReply, Flags, Message, Payload, ReceiptKind, Request, RequestId,
    RequestRef, RequestType, Response, Status, checked_size,
};
use crate::session::{BrokerSession, Greeting, Inbound, LinkAction, Lost, report_counts, timing};

/// What the driver must do: a client's actions are all its link's.
pub(crate) type Action = LinkAction;

pub(crate) type ReqKey = (RequestType, RequestId);

/// A request the caller asked to send.
#[derive(Debug)]
pub(crate) struct Submit {
    pub(crate) request_type: RequestType,
    pub(crate) request_id: RequestId,
    pub(crate) flags: Flags,
    pub(crate) payload: Payload,
    pub(crate) reply_to: Option<String>,
    pub(crate) timeout: Option<Duration>,
    /// Completes the handle, also if the request is lost on the way.
    pub(crate) shared: Slot,
}

#[derive(Debug)]
struct Outstanding {
    /// Completes the handle, also if the core is dropped while unwinding.
    shared: Slot,
    deadline: Option<Instant>,
    timeout: Duration,
    /// For a one-way request: the receipt that completes it.
    one_way_until: Option<ReceiptKind>,
}

#[derive(Debug)]
pub(crate) struct ClientCore {
    default_timeout: Option<Duration>,
    session: BrokerSession,
    outstanding: HashMap<ReqKey, Outstanding>,
    deadlines: BinaryHeap<Reverse<(Instant, ReqKey)>>,
    events: Option<Sender<ClientEvent>>,
    stopped: bool,
    stats: ClientStats,
    actions: Vec<Action>,
    /// Where the client's own request ids come from: told the broker's
    /// cluster view, so they are ones the broker owns.
    ids: Option<Arc<IdSource>>,
    /// Requests cancelled while the client greeted: their CANCEL goes at
    /// the WELCOME (to a broker that takes it). At most one per request
    /// sent in that session.
    cancels_waiting: Vec<ReqKey>,
    /// Panic at the next tick: what callers see when the state machine
    /// fails half way (a bug) is tested with this.
    #[cfg(test)]
    pub(crate) panic_at_tick: bool,
    /// Panic at the next submit (see `panic_at_tick`).
    #[cfg(test)]
    pub(crate) panic_at_submit: bool,
}

impl ClientCore {
    pub(crate) fn new(
        config: &ClientConfig,
        events: Option<Sender<ClientEvent>>,
        now: Instant,
    ) -> Self {
        Self {
            default_timeout: config.request_timeout,
            session: BrokerSession::new(
                now,
                timing!(config),
                config.brokers.clone(),
                Greeting::hello(config.name.clone()),
            ),
            outstanding: HashMap::new(),
            deadlines: BinaryHeap::new(),
            events,
            stopped: false,
            stats: ClientStats::default(),
            actions: vec![Action::Connect],
            ids: None,
            cancels_waiting: Vec::new(),
            #[cfg(test)]
            panic_at_tick: false,
            #[cfg(test)]
            panic_at_submit: false,
        }
    }

    /// Tells `ids` each VIEW the broker sends.
    pub(crate) fn with_ids(mut self, ids: Arc<IdSource>) -> Self {
        self.ids = Some(ids);
        self
    }

    pub(crate) fn actions(&mut self) -> &mut Vec<Action> {
        &mut self.actions
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.session.is_ready()
    }

    /// Whether any request awaits something from the broker.
    pub(crate) fn has_outstanding(&self) -> bool {
        !self.outstanding.is_empty()
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let mut stats = self.stats.clone();
        report_counts!(stats, self.session);
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

    /// The caller sends a request.
    pub(crate) fn on_submit(&mut self, now: Instant, s: Submit) {
        #[cfg(test)]
        assert!(
            !std::mem::take(&mut self.panic_at_submit),
            "a panic injected by a test"
        );
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
        if let Some(limit) = self.session.broker_max_message_size() {
            let size = checked_size(&s.payload, s.reply_to.as_ref().map_or(0, String::len));
            if size > limit {
                self.stats.requests_too_large += 1;
                s.shared
                    .complete(Err(RequestError::TooLarge { size, limit }));
                return;
            }
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
        // The caller's timeout travels as the request's deadline, so the
        // broker gives up when the caller does (docs/deadlines.md). A
        // one-way request's caller waits for nothing: only a timeout set on
        // the request itself is a deadline for it.
        let timeout = if one_way {
            s.timeout
        } else {
            s.timeout.or(self.default_timeout)
        };
        self.send(
            now,
            Message::Request(Request {
                request_type: s.request_type,
                request_id: s.request_id,
                flags: s.flags,
                route: Vec::new(),
                reply_to: s.reply_to,
                deadline_ms: timeout.map_or(0, crate::deadline::wire_ms),
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
        // A timeout too far to add to the clock is no timeout.
        let deadline = timeout.and_then(|t| crate::deadline::deadline(now, t));
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

    /// The caller cancelled a request (its handle already says
    /// [`RequestError::Cancelled`]): it is no longer outstanding, and the
    /// broker is told, if it speaks 1.5 (an older one would refuse the
    /// kind; the request then runs for nobody, as before 1.5). While the
    /// client greets (its REQUEST may already be on its way), the CANCEL
    /// waits for the WELCOME, which says what the broker speaks. `shared`
    /// is the cancelled handle's: a newer request under the same key is
    /// not touched.
    pub(crate) fn on_cancel(&mut self, now: Instant, key: ReqKey, shared: &Arc<Shared>) {
        let ours = self
            .outstanding
            .get(&key)
            .is_some_and(|e| e.shared.is(shared));
        if !ours {
            return;
        }
        self.outstanding.remove(&key);
        self.stats.requests_cancelled += 1;
        if self.session.is_ready() {
            self.send_cancel(now, key);
        } else if self.session.is_connected() {
            self.cancels_waiting.push(key);
        }
    }

    /// Sends CANCEL for `key` to a broker that takes it.
    fn send_cancel(&mut self, now: Instant, key: ReqKey) {
        if self.session.broker_minor() >= CANCEL_MINOR {
            let cancel = Message::Cancel(Cancel {
                request_type: key.0,
                request_id: key.1,
                route: Vec::new(),
                dispatch_tag: 0,
            });
            self.send(now, cancel);
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
            // The broker noticed this request's deadline before our timer
            // did (it ran late): one cause, one outcome, the caller's
            // `Timeout`; the EXPIRED itself, saying the request never ran,
            // goes to the events as when it comes after the timer.
            Some(entry) if r.status == Status::Expired && entry.deadline.is_some() => {
                self.stats.requests_timed_out += 1;
                entry
                    .shared
                    .complete(Err(RequestError::Timeout(entry.timeout)));
                self.emit(ClientEvent::Response {
                    request_type: key.0,
                    request_id: key.1,
                    outcome,
                });
            }
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

    fn on_error(&mut self, now: Instant, e: ErrorReply) {
        self.session.broker_error(now, &e.error);
        if let Some(r) = e.request {
            if let Some(entry) = self.outstanding.remove(&(r.request_type, r.request_id)) {
                // FORBIDDEN on an ERROR: what a proxy sends a client that
                // has not greeted yet (protocol.md §10.2); the same outcome
                // as the RESPONSE a greeted client gets.
                let outcome = match e.status {
                    Some(status @ Status::Forbidden) => RequestError::Status {
                        status,
                        message: e.error,
                    },
                    _ => RequestError::Protocol(e.error),
                };
                entry.shared.complete(Err(outcome));
            }
        }
    }

    pub(crate) fn on_tick(&mut self, now: Instant) {
        #[cfg(test)]
        assert!(
            !std::mem::take(&mut self.panic_at_tick),
            "a panic injected by a test"
        );
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
        if let Some(lost) = self.session.on_tick(now, &mut self.actions) {
            self.lost_broker(lost);
        }
    }

    pub(crate) fn on_stop(&mut self, now: Instant) {
        self.stopped = true;
        self.session.stop(now, &mut self.actions);
        self.fail_all(&RequestError::Stopped);
    }

    /// The session gave the broker up: nothing outstanding will be answered.
    fn lost_broker(&mut self, lost: Lost) {
        let why = match lost {
            Lost::Silent => DisconnectReason::HeartbeatsMissed,
            Lost::Shutdown => DisconnectReason::BrokerShutDown,
        };
        self.fail_all(&RequestError::Disconnected(why));
        self.emit(ClientEvent::Disconnected);
    }

    pub(crate) fn fail_all(&mut self, error: &RequestError) {
        for (_, entry) in self.outstanding.drain() {
            entry.shared.complete(Err(error.clone()));
        }
        self.deadlines.clear();
    }

    fn emit(&mut self, event: ClientEvent) {
        if let Some(events) = &self.events {
            if events.try_send(event).is_err() {
                self.stats.events_dropped += 1;
            }
        }
    }

    fn send(&mut self, now: Instant, msg: Message) {
        self.session.send(now, msg, &mut self.actions);
    }
}

impl crate::link::Connecting for ClientCore {
    type Action = Action;

    fn on_inbound(&mut self, now: Instant, inbound: Inbound) {
        match inbound {
            Inbound::Welcome { newly } => {
                if newly {
                    info!("connected to the broker");
                    self.emit(ClientEvent::Connected);
                }
                for key in std::mem::take(&mut self.cancels_waiting) {
                    self.send_cancel(now, key);
                }
            }
            Inbound::Reregister => {
                // The broker lost our session: most likely it restarted and
                // lost what we had sent it (a proxy would re-send; a direct
                // client cannot), so nothing outstanding will be answered.
                self.fail_all(&RequestError::Disconnected(DisconnectReason::SessionLost));
            }
            Inbound::Lost(lost) => {
                // The requests they were for were that broker's.
                self.cancels_waiting.clear();
                // The view was that broker's.
                if let Some(ids) = &self.ids {
                    ids.set_view(None);
                }
                self.lost_broker(lost);
            }
            Inbound::Message(Message::View { broker_id, members }) => {
                if let Some(ids) = &self.ids {
                    ids.set_view(Some((broker_id, members)));
                }
            }
            Inbound::Message(Message::Response(r)) => self.on_response(r),
            Inbound::Message(Message::ReceiptSent(r)) => self.on_receipt(r, ReceiptKind::Sent),
            Inbound::Message(Message::ReceiptReceived(r)) => {
                self.on_receipt(r, ReceiptKind::Received);
            }
            Inbound::Message(Message::Error(e)) => self.on_error(now, e),
            Inbound::Message(other) => self.session.unexpected(now, &other, &mut self.actions),
            Inbound::Handled => {}
        }
    }

    /// A request that could not be sent fails at once.
    fn on_send_failed(&mut self, key: Option<ReqKey>, error: Option<zmq::Error>) {
        if let Some(entry) = key.and_then(|k| self.outstanding.remove(&k)) {
            let why = error.map_or(DisconnectReason::NotConnected, DisconnectReason::Send);
            entry.shared.complete(Err(RequestError::Disconnected(why)));
        }
    }

    fn parts(&mut self) -> (&mut BrokerSession, &mut Vec<Action>) {
        (&mut self.session, &mut self.actions)
    }
}

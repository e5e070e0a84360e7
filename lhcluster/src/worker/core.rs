//! The worker's sans-IO state machine: the session with the broker
//! (register, heartbeats, broker death, reconnect with backoff) and the set
//! of requests running on the pool.

use std::collections::VecDeque;
use std::time::Instant;

use foldhash::{HashMap, HashMapExt};

use tracing::{debug, info};

use super::config::WorkerConfig;
use super::handler::{Cancellation, Job};
use super::stats::WorkerStats;
use crate::protocol::{
    Cancel, Dispatch, Flags, Message, Payload, RETURNED_MINOR, RequestId, RequestRef, RequestType,
    Status, WorkResult, checked_size,
};
use crate::session::{BrokerSession, Greeting, Inbound, LinkAction, report_counts, timing};

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// What the session asks of the link.
    Link(LinkAction),
    /// Run a request on the handler pool.
    Run(Job),
}

impl From<LinkAction> for Action {
    fn from(action: LinkAction) -> Self {
        Action::Link(action)
    }
}

type ReqKey = (RequestType, RequestId);

#[derive(Debug)]
pub(crate) struct WorkerCore {
    /// Sorted, for a binary search per dispatch.
    types: Vec<RequestType>,
    /// Registered = the session is ready (WELCOME after READY).
    session: BrokerSession,
    /// Requests running on the pool, with the dispatch their RESULT
    /// answers: the latest DISPATCH of the key (see [`Self::on_dispatch`]),
    /// and the flag a CANCEL sets.
    running: HashMap<ReqKey, (Answers, Cancellation)>,
    /// Results waiting for a session with the broker, each with the
    /// session generation of the broker it is for.
    unsent: VecDeque<(u64, Message)>,
    /// Their payload bytes, at most `max_unsent_bytes`.
    unsent_bytes: usize,
    max_unsent_bytes: usize,
    stopping: bool,
    stats: WorkerStats,
    actions: Vec<Action>,
}

impl WorkerCore {
    #[cfg(test)]
    pub(crate) fn new(config: &WorkerConfig, types: Vec<RequestType>, now: Instant) -> Self {
        Self::named(config, types.into_iter().map(|t| (t, None)).collect(), now)
    }

    /// A worker core serving `types`, each with its name if it has one
    /// (sent in READY, for the broker's stats and logs).
    pub(crate) fn named(
        config: &WorkerConfig,
        mut named: Vec<(RequestType, Option<String>)>,
        now: Instant,
    ) -> Self {
        named.sort_unstable_by_key(|&(t, _)| t);
        let types = named.iter().map(|&(t, _)| t).collect();
        // The broker may hand out what runs and what waits here.
        let ready = Greeting::ready(config.credits(), named, config.name.clone());
        Self {
            types,
            session: BrokerSession::new(now, timing!(config), config.brokers.clone(), ready),
            running: HashMap::new(),
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            max_unsent_bytes: config.max_unsent_bytes,
            stopping: false,
            stats: WorkerStats::default(),
            actions: vec![LinkAction::Connect.into()],
        }
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        let mut stats = self.stats.clone();
        report_counts!(stats, self.session);
        stats.running = self.running.len() as u64;
        stats.unsent_bytes = self.unsent_bytes as u64;
        stats.registered = self.session.is_ready();
        stats
    }

    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Another thread took the socket over from a handler running long on
    /// it (see `relay.rs`).
    pub(crate) fn count_takeover(&mut self) {
        self.stats.socket_takeovers += 1;
    }

    /// When [`WorkerCore::on_tick`] should run next.
    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        self.session.next_tick(now)
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
            let answers = self.answers(&d);
            let msg = result_message(
                key,
                answers,
                Status::BadRequest,
                Some(error),
                Payload::new(),
            );
            return self.send_or_keep(now, answers.generation, msg);
        }
        if let Some((answers, _)) = self.running.get_mut(&key) {
            // Dispatched again while it runs here: the broker forgot the
            // earlier dispatch (it declared this worker dead and retried the
            // request, or ended it and took a new one with the same key),
            // and waits for an answer to this one. The running handler is
            // that answer: its RESULT carries this dispatch's attempt and
            // tag, so the broker takes it (a RESULT of the earlier dispatch
            // it would drop as stale, and wait for nothing more from this
            // worker).
            // (Also when the earlier dispatch came from a broker left
            // since: the result now answers the current one.)
            *answers = Answers::of(&d, self.session.generation());
            self.stats.duplicates_ignored += 1;
            return;
        }
        let answers = self.answers(&d);
        if self.hands_back() {
            // Sent before the broker read our DISCONNECT: given back
            // unstarted, as the prefetched ones were (no RECEIPT_RECEIVED:
            // this worker does not take it).
            return self.give_back(now, key, answers, d.payload);
        }
        let cancel = Cancellation::default();
        self.running.insert(key, (answers, cancel.clone()));
        if d.flags.contains(Flags::RECEIPT_ON_RECEIVE) {
            let receipt = Message::ReceiptReceived(RequestRef {
                request_type: key.0,
                request_id: key.1,
                route: Vec::new(),
            });
            self.send_or_keep(now, answers.generation, receipt);
        }
        self.actions.push(Action::Run(Job {
            dispatch: d,
            cancel,
        }));
    }

    /// The broker cancels a dispatch (protocol 1.5): the handler running it
    /// sees [`RequestContext::is_cancelled`](super::RequestContext::is_cancelled)
    /// turn true, and still answers it (its RESULT gives the credit back).
    /// A CANCEL for another dispatch of the key (a tag that is not the one
    /// the running handler answers), or for a request no longer running,
    /// cancels nothing.
    fn on_cancel(&mut self, c: Cancel) {
        let key = (c.request_type, c.request_id);
        match self.running.get(&key) {
            Some((answers, cancel))
                if c.dispatch_tag == 0 || c.dispatch_tag == answers.dispatch_tag =>
            {
                if !cancel.is_cancelled() {
                    self.stats.requests_cancelled += 1;
                    cancel.cancel();
                }
            }
            _ => {
                self.stats.cancels_ignored += 1;
                debug!(
                    request_type = key.0,
                    request_id = key.1,
                    "CANCEL for a request not running here: ignored"
                );
            }
        }
    }

    /// A handler finished.
    pub(crate) fn on_done(
        &mut self,
        now: Instant,
        key: (RequestType, RequestId),
        outcome: Result<Payload, super::HandlerError>,
        panicked: bool,
    ) {
        let Some((answers, _)) = self.running.remove(&key) else {
            return;
        };
        if panicked {
            self.stats.handler_panics += 1;
        }
        let generation = answers.generation;
        let (status, error, payload) = match outcome {
            Ok(payload) => (Status::Ok, None, payload),
            Err(e) => (e.status(), Some(e.message().to_owned()), Payload::new()),
        };
        let (status, error, payload) = self.within_limit(status, error, payload);
        if status == Status::Ok {
            self.stats.requests_succeeded += 1;
        } else {
            self.stats.requests_failed += 1;
        }
        let msg = result_message(key, answers, status, error, payload);
        self.send_or_keep(now, generation, msg);
    }

    /// A result larger than the broker accepts (its WELCOME's
    /// `max_message_size`) would be dropped by the broker, or cut this
    /// worker's connection with the request still assigned to it: it is
    /// sent as `FAILED` without its payload instead, so the request ends
    /// once and the credit comes back (docs/security.md, "Limits on input").
    fn within_limit(
        &mut self,
        status: Status,
        error: Option<String>,
        payload: Payload,
    ) -> (Status, Option<String>, Payload) {
        let Some(limit) = self.session.broker_max_message_size() else {
            return (status, error, payload);
        };
        let size = checked_size(&payload, error.as_ref().map_or(0, String::len));
        if size <= limit {
            return (status, error, payload);
        }
        self.stats.results_too_large += 1;
        let error = format!(
            "the result is {size} bytes, over the broker's max_message_size of {limit}: \
             not sent"
        );
        (Status::Failed, Some(error), Payload::new())
    }

    /// What a RESULT for `d` must echo, in the current session generation.
    fn answers(&self, d: &Dispatch) -> Answers {
        Answers::of(d, self.session.generation())
    }

    pub(crate) fn on_tick(&mut self, now: Instant) {
        // A lost broker asks nothing of the worker: running handlers finish,
        // and their results wait for the next session.
        self.session.on_tick(now, &mut self.actions);
    }

    /// Graceful stop: tell the broker to send nothing more (a stopping
    /// worker does not ask for work again). The driver then waits for
    /// running handlers (bounded) before closing.
    pub(crate) fn on_stop(&mut self, now: Instant) {
        self.stopping = true;
        self.session.stop(now, &mut self.actions);
    }

    /// Whether a stopping worker gives its unstarted dispatches back
    /// (protocol 1.8): it has said DISCONNECT to a broker whose WELCOME
    /// said it takes RETURNED. Otherwise (an older broker, or no session)
    /// they run within `shutdown_timeout`, as before 1.8.
    pub(crate) fn hands_back(&self) -> bool {
        self.stopping && self.session.is_ready() && self.session.broker_minor() >= RETURNED_MINOR
    }

    /// A dispatch queued here, not started, taken out of the queue for
    /// good by the driver on a graceful stop: given back to the broker
    /// (RESULT RETURNED, with its payload: the broker needs it to dispatch
    /// the request again). The driver takes only while
    /// [`Self::hands_back`].
    pub(crate) fn hand_back(&mut self, now: Instant, job: Job) {
        let d = job.dispatch;
        let key = (d.request_type, d.request_id);
        // The dispatch it answers is the latest of the key (a duplicate
        // DISPATCH updates it, `on_dispatch`).
        let Some((answers, _)) = self.running.remove(&key) else {
            return;
        };
        self.give_back(now, key, answers, d.payload);
    }

    fn give_back(&mut self, now: Instant, key: ReqKey, answers: Answers, payload: Payload) {
        if answers.generation != self.session.generation() {
            // From a broker left since, which has given the request up:
            // its result would be dropped as well, so it is not run.
            return self.drop_stale("RESULT");
        }
        self.stats.requests_returned += 1;
        let msg = result_message(key, answers, Status::Returned, None, payload);
        self.send(now, msg);
    }

    fn send(&mut self, now: Instant, msg: Message) {
        self.session.send(now, msg, &mut self.actions);
    }

    /// Sends now if registered, else keeps it for the next session, within
    /// `max_unsent_bytes`: a result whose payload does not fit is kept as a
    /// `FAILED` result without it, so the request still ends once and its
    /// credit comes back. Drops it if it answers a broker (`generation`)
    /// the worker has left since.
    fn send_or_keep(&mut self, now: Instant, generation: u64, mut msg: Message) {
        if generation != self.session.generation() {
            return self.drop_stale(msg.kind_name());
        }
        if self.session.is_ready() {
            return self.send(now, msg);
        }
        if let Message::Result(r) = &mut msg {
            let bytes: usize = r.payload.iter().map(|f| f.len()).sum();
            if self.unsent_bytes + bytes > self.max_unsent_bytes {
                self.stats.results_truncated += 1;
                r.payload = Payload::new();
                r.status = Status::Failed;
                r.error = Some(format!(
                    "result of {bytes} bytes dropped: more than max_unsent_bytes \
                     ({}) held while disconnected",
                    self.max_unsent_bytes
                ));
            } else {
                self.unsent_bytes += bytes;
            }
        }
        self.unsent.push_back((generation, msg));
    }

    /// A result or receipt for a broker left for another: that broker's
    /// session is gone (it has declared us dead, or is dead itself), and
    /// the new broker never dispatched the request (protocol.md §9).
    fn drop_stale(&mut self, kind: &'static str) {
        self.stats.stale_dropped += 1;
        debug!(kind, "dropping the answer to a broker left since");
    }
}

impl crate::link::Connecting for WorkerCore {
    type Action = Action;

    fn on_inbound(&mut self, now: Instant, inbound: Inbound) {
        match inbound {
            Inbound::Welcome { newly } => {
                if newly {
                    info!("registered with the broker");
                }
                self.unsent_bytes = 0;
                while let Some((generation, mut msg)) = self.unsent.pop_front() {
                    if generation == self.session.generation() {
                        // Finished while no WELCOME had said this broker's
                        // limit: checked now.
                        if let Message::Result(r) = &mut msg {
                            let payload = std::mem::take(&mut r.payload);
                            (r.status, r.error, r.payload) =
                                self.within_limit(r.status, r.error.take(), payload);
                        }
                        self.send(now, msg);
                    } else {
                        self.drop_stale(msg.kind_name());
                    }
                }
                if self.stopping {
                    // Stopped while re-registering: say goodbye now.
                    self.send(now, Message::Disconnect { route: Vec::new() });
                }
            }
            Inbound::Message(Message::Dispatch(d)) => self.on_dispatch(now, d),
            Inbound::Message(Message::Cancel(c)) => self.on_cancel(c),
            Inbound::Message(Message::Error(e)) => {
                if e.status == Some(Status::Forbidden) {
                    // The broker's worker key list does not let this
                    // worker's key register (some of) its types: it keeps
                    // greeting, in case the list is reloaded.
                    self.stats.registrations_forbidden += 1;
                    let error = format!("registration refused: {} (docs/security.md)", e.error);
                    self.session.broker_error(now, &error);
                } else {
                    self.session.broker_error(now, &e.error);
                }
            }
            Inbound::Message(other) => self.session.unexpected(now, &other, &mut self.actions),
            // Results wait in `unsent` for the next session with the same
            // broker (one left for another drops them: `send_or_keep`);
            // the broker re-dispatches what it had given us.
            Inbound::Reregister | Inbound::Lost(_) | Inbound::Handled => {}
        }
    }

    fn parts(&mut self) -> (&mut BrokerSession, &mut Vec<Action>) {
        (&mut self.session, &mut self.actions)
    }
}

/// Which DISPATCH a RESULT answers: its attempt and the broker's tag,
/// echoed so that the broker can tell the result from one of an earlier
/// dispatch of the same (type, id) (protocol.md §8.3).
/// Also which broker sent it, as the session generation it came in.
#[derive(Clone, Copy, Debug)]
struct Answers {
    attempt: u32,
    dispatch_tag: u64,
    generation: u64,
}

impl Answers {
    fn of(d: &Dispatch, generation: u64) -> Self {
        Self {
            attempt: d.attempt,
            dispatch_tag: d.dispatch_tag,
            generation,
        }
    }
}

/// A RESULT for `key`, answering the DISPATCH `answers` names.
fn result_message(
    key: ReqKey,
    answers: Answers,
    status: Status,
    error: Option<String>,
    payload: Payload,
) -> Message {
    Message::Result(WorkResult {
        request_type: key.0,
        request_id: key.1,
        attempt: answers.attempt,
        dispatch_tag: answers.dispatch_tag,
        status,
        error,
        payload,
    })
}

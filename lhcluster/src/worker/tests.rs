//! Unit tests of the worker state machine (fake clock, no sockets).
//!
//! Every test drives a [`WorkerCore`] by hand: broker messages are encoded
//! with the real codec and fed as header bytes + payload frames, time is
//! `t0 + n ms`, and the queued [`Action`]s are drained and matched.

use std::time::Instant;

use super::HandlerError;
use super::config::WorkerConfig;
use super::core::{Action, WorkerCore};
use crate::protocol::{
    Dispatch, ErrorReply, Flags, Message, Payload, RequestId, RequestRef, RequestType, Status,
    WorkResult,
};
use crate::session::LinkAction;
use crate::testing::{
    ActionKind, BROKER_HB, Driven, HB, LIVENESS, RECONNECT_MAX, RECONNECT_MIN, bytes, has, kinds,
    link_kind, ms, only_error, payload, sent, session_role,
};

fn config() -> WorkerConfig {
    let mut c = WorkerConfig::new("tcp://127.0.0.1:5556");
    c.name = Some("w1".to_owned());
    c.capacity = 4;
    c.heartbeat = ms(HB);
    c.liveness = LIVENESS;
    c.reconnect_min = ms(RECONNECT_MIN);
    c.reconnect_max = ms(RECONNECT_MAX);
    c
}

impl ActionKind for Action {
    /// A link action's kind, or `RUN type/id`.
    fn kind(&self) -> String {
        match self {
            Action::Link(a) => link_kind(a),
            Action::Run(j) => format!("RUN {}/{}", j.dispatch.request_type, j.dispatch.request_id),
        }
    }

    fn sent(&self) -> Option<&Message> {
        match self {
            Action::Link(a) => a.sent(),
            Action::Run(_) => None,
        }
    }
}

fn results<'a>(actions: &'a [Action]) -> Vec<&'a WorkResult> {
    let result = |m: &'a Message| match m {
        Message::Result(r) => Some(r),
        _ => None,
    };
    sent(actions).filter_map(result).collect()
}

fn only_result(actions: &[Action]) -> &WorkResult {
    let r = results(actions);
    assert_eq!(
        r.len(),
        1,
        "expected exactly one RESULT in {:?}",
        kinds(actions)
    );
    assert_eq!(
        actions.len(),
        1,
        "expected only a RESULT in {:?}",
        kinds(actions)
    );
    r[0]
}

/// The one RESULT of `actions`, which answers `key` with `status`.
fn only_result_of(
    actions: &[Action],
    key: (RequestType, RequestId),
    status: Status,
) -> &WorkResult {
    let r = only_result(actions);
    assert_eq!(
        (r.request_type, r.request_id, r.status),
        (key.0, key.1, status)
    );
    r
}

fn only_run(actions: &[Action]) -> &Dispatch {
    match actions {
        [Action::Run(j)] => &j.dispatch,
        other => panic!("expected one Run, got {:?}", kinds(other)),
    }
}

fn dispatch(request_type: RequestType, request_id: RequestId, flags: Flags) -> Message {
    dispatch_attempt(request_type, request_id, flags, 1)
}

/// A DISPATCH of `attempt`, tagged `100 + attempt` (a broker tags each
/// dispatch anew).
fn dispatch_attempt(
    request_type: RequestType,
    request_id: RequestId,
    flags: Flags,
    attempt: u32,
) -> Message {
    dispatch_tagged(
        request_type,
        request_id,
        flags,
        attempt,
        100 + u64::from(attempt),
    )
}

fn dispatch_tagged(
    request_type: RequestType,
    request_id: RequestId,
    flags: Flags,
    attempt: u32,
    dispatch_tag: u64,
) -> Message {
    Message::Dispatch(Dispatch {
        request_type,
        request_id,
        flags,
        attempt,
        dispatch_tag,
        deadline_ms: 0,
        payload: payload(&[b"req"]),
    })
}

session_role!(WorkerCore, "READY", registered);

/// A worker core driven by hand.
type Harness = Driven<WorkerCore>;

impl Harness {
    /// A fresh worker serving types 30, 10 and 20 (given unsorted), nothing
    /// drained yet.
    fn new() -> Self {
        Self::with(&config(), vec![30, 10, 20])
    }

    fn with(config: &WorkerConfig, types: Vec<RequestType>) -> Self {
        let t0 = Instant::now();
        Self::start(WorkerCore::new(config, types, t0), t0, ())
    }

    /// Connected at 0 and WELCOMEd (broker interval `BROKER_HB`) at 0, with
    /// every action drained.
    fn registered() -> Self {
        Self::new().welcomed()
    }

    /// [`Harness::registered`], and `dispatch` fed at 10 ms, which runs
    /// ([`Harness::expect_run`]).
    fn with_run(dispatch: Message) -> Self {
        let mut h = Self::registered();
        h.expect_run(10, dispatch);
        h
    }

    /// [`Harness::registered`], and plain DISPATCHes of type 10 with
    /// `ids` fed at 10 ms (their actions dropped).
    fn running(ids: &[RequestId]) -> Self {
        let mut h = Self::registered();
        for &id in ids {
            h.feed(10, dispatch(10, id, Flags::empty()));
        }
        h
    }

    /// Feeds a DISPATCH at `n` ms: it must run, and do nothing else.
    fn expect_run(&mut self, n: u64, dispatch: Message) {
        let Message::Dispatch(d) = &dispatch else {
            panic!("not a DISPATCH: {}", dispatch.kind_name());
        };
        let run = format!("RUN {}/{}", d.request_type, d.request_id);
        assert_eq!(kinds(&self.feed(n, dispatch)), [run]);
    }

    fn done(
        &mut self,
        n: u64,
        key: (RequestType, RequestId),
        outcome: Result<Payload, HandlerError>,
    ) -> Vec<Action> {
        let now = self.at(n);
        self.core.on_done(now, key, outcome, false);
        self.drain()
    }
}

// ---------------------------------------------------------------- session

#[test]
fn start_connects_sends_ready_and_registers_on_welcome() {
    let mut h = Harness::new();
    h.expect_connect_first();

    let actions = h.connect_at(0);
    let [Action::Link(LinkAction::Send(Message::Ready(ready)))] = actions.as_slice() else {
        panic!("expected READY, got {:?}", kinds(&actions));
    };
    assert_eq!(ready.capacity, 4);
    assert_eq!(ready.request_types, [10, 20, 30], "types are sorted");
    assert_eq!(ready.heartbeat_ms, 100);
    assert_eq!(ready.name.as_deref(), Some("w1"));
    assert!(!h.core.stats().registered, "not registered before WELCOME");

    assert!(h.welcome(10).is_empty());
    let s = h.core.stats();
    assert!(s.registered);
    assert_eq!((s.running, s.malformed), (0, 0));
}

#[test]
fn ready_without_a_name_carries_none() {
    let mut c = config();
    c.name = None;
    let mut h = Harness::with(&c, vec![5]);
    h.drain();
    let actions = h.connect_at(0);
    let [Action::Link(LinkAction::Send(Message::Ready(ready)))] = actions.as_slice() else {
        panic!("expected READY, got {:?}", kinds(&actions));
    };
    assert_eq!(ready.name, None);
    assert_eq!(ready.request_types, [5]);
}

/// Protocol 1.6: the names of the types go with them, sorted together;
/// a type without a name has `""`, and a worker naming none sends no list
/// (as above: `type_names` empty).
#[test]
fn ready_names_its_types_in_order() {
    let t0 = Instant::now();
    let named = vec![
        (30, Some("c".to_owned())),
        (10, None),
        (20, Some("b".to_owned())),
    ];
    let mut h = Harness::start(WorkerCore::named(&config(), named, t0), t0, ());
    h.drain();
    let actions = h.connect_at(0);
    let [Action::Link(LinkAction::Send(Message::Ready(ready)))] = actions.as_slice() else {
        panic!("expected READY, got {:?}", kinds(&actions));
    };
    assert_eq!(ready.request_types, [10, 20, 30]);
    assert_eq!(ready.type_names, ["", "b", "c"]);
    let mut plain = Harness::new();
    plain.drain();
    let plain = plain.connect_at(0);
    let [Action::Link(LinkAction::Send(Message::Ready(ready)))] = plain.as_slice() else {
        panic!("expected READY, got {:?}", kinds(&plain));
    };
    assert!(ready.type_names.is_empty());
}

#[test]
fn next_tick_follows_the_session() {
    let mut h = Harness::new();
    h.drain();
    // Disconnected: the reconnect time (now, at start).
    assert_eq!(h.next_tick(0), h.at(0));
    h.connected(0);
    // Registering: half the worker's own interval (the broker's is unknown
    // and taken as ours).
    assert_eq!(h.next_tick(10), h.at(60));
    h.feed(
        10,
        Message::Welcome {
            heartbeat_ms: 60,
            max_message_size: 0,
        },
    );
    // Half the shorter of the two intervals.
    assert_eq!(h.next_tick(10), h.at(40));
    h.feed(20, Message::Shutdown);
    // Disconnected again: the reconnect time.
    assert_eq!(h.next_tick(30), h.at(120));
}

// ---------------------------------------------------------------- requests

#[test]
fn messages_before_the_socket_connects_are_ignored() {
    let mut h = Harness::new();
    h.check_welcome_before_connecting_is_ignored();
    assert!(h.feed(1, dispatch(10, 1, Flags::empty())).is_empty());
    let s = h.core.stats();
    assert!(!s.registered);
    assert_eq!((s.requests_received, s.running), (0, 0));
}

#[test]
fn ready_is_repeated_every_heartbeat_until_welcome() {
    let mut h = Harness::new();
    h.check_greeting_repeats_until_welcome(210);
    assert_eq!(h.core.stats().heartbeats_sent, 1);
}

#[test]
fn heartbeat_only_after_own_interval_of_silence() {
    let mut h = Harness::registered();
    // Sending anything counts: a RESULT at 80 pushes the heartbeat to 180.
    h.expect_run(50, dispatch(10, 1, Flags::empty()));
    assert_eq!(kinds(&h.done(80, (10, 1), Ok(Payload::new()))), ["RESULT"]);
    assert!(h.tick(90).is_empty());
    assert!(h.tick(179).is_empty());
    assert_eq!(kinds(&h.tick(180)), ["HEARTBEAT"]);
    assert!(h.tick(200).is_empty());
    h.check_hearing_from_the_broker_does_not_delay_the_heartbeat(250, 280);
    let s = h.core.stats();
    assert_eq!((s.heartbeats_sent, s.heartbeats_received), (2, 1));
}

#[test]
fn dispatch_runs_and_ok_result_carries_the_payload() {
    let mut h = Harness::registered();
    let actions = h.feed(
        10,
        Message::Dispatch(Dispatch {
            request_type: 20,
            request_id: 7,
            flags: Flags::RETRY_ON_DEATH | Flags::from_bits_retain(1 << 40),
            attempt: 2,
            dispatch_tag: 1 << 40,
            deadline_ms: 0,
            payload: payload(&[b"a", b"", b"bc"]),
        }),
    );
    let d = only_run(&actions);
    assert_eq!((d.request_type, d.request_id, d.attempt), (20, 7, 2));
    assert_eq!(
        d.flags,
        Flags::RETRY_ON_DEATH | Flags::from_bits_retain(1 << 40)
    );
    assert_eq!(bytes(&d.payload), [b"a".to_vec(), vec![], b"bc".to_vec()]);
    let s = h.core.stats();
    assert_eq!((s.requests_received, s.running), (1, 1));

    let actions = h.done(20, (20, 7), Ok(payload(&[b"out", b"put"])));
    let r = only_result(&actions);
    // The dispatch answered is echoed (protocol.md §8.3).
    assert_eq!(
        (
            r.request_type,
            r.request_id,
            r.attempt,
            r.dispatch_tag,
            r.status
        ),
        (20, 7, 2, 1 << 40, Status::Ok)
    );
    assert_eq!(r.error, None);
    assert_eq!(bytes(&r.payload), [b"out".to_vec(), b"put".to_vec()]);
    let s = h.core.stats();
    assert_eq!(
        (s.requests_succeeded, s.requests_failed, s.running),
        (1, 0, 0)
    );
}

#[test]
fn receipt_on_receive_is_sent_before_the_run() {
    let mut h = Harness::registered();
    let actions = h.feed(10, dispatch(10, 3, Flags::RECEIPT_ON_RECEIVE));
    assert_eq!(kinds(&actions), ["RECEIPT_RECEIVED", "RUN 10/3"]);
    let Action::Link(LinkAction::Send(Message::ReceiptReceived(r))) = &actions[0] else {
        unreachable!()
    };
    assert_eq!(
        *r,
        RequestRef {
            request_type: 10,
            request_id: 3,
            route: Vec::new(),
        }
    );
    // RECEIPT_ON_SEND is the broker's business: the worker sends nothing.
    let actions = h.feed(20, dispatch(10, 4, Flags::RECEIPT_ON_SEND));
    assert_eq!(kinds(&actions), ["RUN 10/4"]);
}

#[test]
fn handler_error_gives_failed_or_bad_request_with_its_text() {
    let mut h = Harness::running(&[1, 2]);

    let actions = h.done(20, (10, 1), Err(HandlerError::failed("disk full")));
    let r = only_result_of(&actions, (10, 1), Status::Failed);
    assert_eq!(r.error.as_deref(), Some("disk full"));
    assert!(r.payload.is_empty());

    let actions = h.done(30, (10, 2), Err(HandlerError::bad_request("no such sku")));
    let r = only_result(&actions);
    assert_eq!(r.status, Status::BadRequest);
    assert_eq!(r.error.as_deref(), Some("no such sku"));

    let s = h.core.stats();
    assert_eq!(
        (s.requests_failed, s.requests_succeeded, s.handler_panics),
        (2, 0, 0)
    );
}

#[test]
fn panicked_handler_is_failed_and_counted() {
    let mut h = Harness::running(&[1]);
    h.core.on_done(
        h.at(20),
        (10, 1),
        Err(HandlerError::failed("handler panicked: boom")),
        true,
    );
    let actions = h.drain();
    let r = only_result(&actions);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("handler panicked: boom"));
    let s = h.core.stats();
    assert_eq!((s.handler_panics, s.requests_failed, s.running), (1, 1, 0));
}

#[test]
fn one_way_requests_get_a_result_too() {
    let mut h = Harness::with_run(dispatch(10, 1, Flags::ONE_WAY));
    let actions = h.done(20, (10, 1), Ok(Payload::new()));
    assert_eq!(only_result(&actions).status, Status::Ok);
}

#[test]
fn unserved_type_is_answered_bad_request_and_not_run() {
    let mut h = Harness::registered();
    let actions = h.feed(10, dispatch(99, 5, Flags::RECEIPT_ON_RECEIVE));
    let r = only_result_of(&actions, (99, 5), Status::BadRequest);
    let error = r.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("99"),
        "error should name the type: {error:?}"
    );
    assert!(r.payload.is_empty());
    let s = h.core.stats();
    assert_eq!(
        (s.requests_received, s.requests_failed, s.running),
        (1, 1, 0)
    );
}

#[test]
fn duplicate_dispatch_of_a_running_request_is_not_run_twice() {
    let mut h = Harness::with_run(dispatch(10, 1, Flags::empty()));
    // Same (type, id) again, e.g. re-sent after a reconnect, with a receipt
    // flag: nothing at all happens.
    assert!(
        h.feed(20, dispatch(10, 1, Flags::RECEIPT_ON_RECEIVE))
            .is_empty()
    );
    // Same id, another type: a different request.
    h.expect_run(20, dispatch(20, 1, Flags::empty()));
    let s = h.core.stats();
    assert_eq!(
        (s.duplicates_ignored, s.requests_received, s.running),
        (1, 3, 2)
    );

    // One RESULT answers it; a second completion of the key is ignored.
    assert_eq!(results(&h.done(30, (10, 1), Ok(Payload::new()))).len(), 1);
    assert!(h.done(31, (10, 1), Ok(Payload::new())).is_empty());
    assert!(
        h.done(31, (10, 77), Ok(Payload::new())).is_empty(),
        "unknown key"
    );
    assert_eq!(h.core.stats().requests_succeeded, 1);

    // Once done, the same key is a new request and runs again.
    h.expect_run(40, dispatch(10, 1, Flags::empty()));
}

/// Dispatched again while it runs (the broker declared this worker dead,
/// retried the request and gave it back here): the one run answers the
/// latest attempt, which is the only one the broker still waits for.
#[test]
fn a_request_dispatched_again_while_running_answers_the_latest_attempt() {
    let mut h = Harness::with_run(dispatch_attempt(10, 1, Flags::RETRY_ON_DEATH, 1));
    assert!(
        h.feed(20, dispatch_attempt(10, 1, Flags::RETRY_ON_DEATH, 2))
            .is_empty()
    );
    let actions = h.done(30, (10, 1), Ok(Payload::new()));
    let r = only_result(&actions);
    assert_eq!(
        (r.request_type, r.request_id, r.attempt, r.dispatch_tag),
        (10, 1, 2, 102)
    );
    assert_eq!(h.core.stats().running, 0);
}

/// The fault campaign's sequence, from the worker's side: attempt 1 finishes
/// while the broker is unreachable; the worker reconnects, and after the
/// WELCOME it is given attempt 2. Attempt 1's result goes out tagged
/// attempt 1 (the broker drops it as stale), and attempt 2 runs and is
/// answered as attempt 2: old work is never passed off as new work.
#[test]
fn a_result_held_across_a_reconnect_keeps_its_attempt() {
    let [held, fresh] = answers_across_a_reconnect(
        dispatch_attempt(10, 1, Flags::RETRY_ON_DEATH, 1),
        dispatch_attempt(10, 1, Flags::RETRY_ON_DEATH, 2),
    );
    assert_eq!(held, (1, 101, vec![b"first".to_vec()]));
    assert_eq!(fresh, (2, 102, vec![b"second".to_vec()]));
}

/// The same, but the broker ended the first request (WORKER_DEATH) and
/// dispatches a new one under the same key: attempt 1 again. Only the tag
/// tells the two results apart, and each keeps its own.
#[test]
fn a_result_held_across_a_reconnect_keeps_its_dispatch_tag() {
    let [held, fresh] = answers_across_a_reconnect(
        dispatch_tagged(10, 1, Flags::empty(), 1, 7),
        dispatch_tagged(10, 1, Flags::empty(), 1, 8),
    );
    assert_eq!(held, (1, 7, vec![b"first".to_vec()]));
    assert_eq!(fresh, (1, 8, vec![b"second".to_vec()]));
}

/// Runs `first` (request 10/1), which finishes ("first") while the broker
/// is unreachable; reconnects; then is given `second`, the same key again,
/// and runs it ("second"). Returns the attempt, tag and payload of the
/// RESULT sent right after the WELCOME, and of the one of `second`'s run.
fn answers_across_a_reconnect(first: Message, second: Message) -> [(u32, u64, Vec<Vec<u8>>); 2] {
    let mut h = Harness::registered();
    h.feed(10, first);
    assert_eq!(kinds(&h.tick(611)), ["CLOSE"]);
    assert!(h.done(620, (10, 1), Ok(payload(&[b"first"]))).is_empty());
    assert_eq!(kinds(&h.tick(711)), ["CONNECT"]);
    h.connected(711);
    let answer = |r: &WorkResult| {
        assert_eq!((r.request_type, r.request_id), (10, 1));
        (r.attempt, r.dispatch_tag, bytes(&r.payload))
    };
    let held = answer(only_result(&h.welcome(720)));
    only_run(&h.feed(721, second));
    let fresh = answer(only_result(&h.done(
        730,
        (10, 1),
        Ok(payload(&[b"second"])),
    )));
    [held, fresh]
}

/// A DISPATCH of a type the worker does not serve is answered for its own
/// attempt.
#[test]
fn bad_request_for_an_unserved_type_names_the_attempt() {
    let mut h = Harness::registered();
    let actions = h.feed(10, dispatch_attempt(99, 1, Flags::empty(), 3));
    let r = only_result(&actions);
    assert_eq!(
        (r.status, r.attempt, r.dispatch_tag),
        (Status::BadRequest, 3, 103)
    );
}

/// A broker that does not tag its dispatches (1.0, or 1.1 before tags) gets
/// results without a tag, which it judges by their attempt.
#[test]
fn an_untagged_dispatch_is_answered_without_a_tag() {
    let mut h = Harness::registered();
    only_run(&h.feed(10, dispatch_tagged(10, 1, Flags::empty(), 1, 0)));
    let actions = h.done(20, (10, 1), Ok(Payload::new()));
    let r = only_result(&actions);
    assert_eq!((r.attempt, r.dispatch_tag), (1, 0));
}

// ---------------------------------------------------------------- broker death and reconnect

#[test]
fn silent_broker_is_declared_dead_then_reconnected_after_backoff() {
    let mut h = Harness::registered();
    h.check_silent_broker_dies_at_701(|_| {});
    assert_eq!(h.core.stats().broker_deaths, 1);

    // While disconnected, whatever is still read is ignored.
    assert!(h.feed(720, dispatch(10, 1, Flags::empty())).is_empty());
    assert_eq!(h.core.stats().requests_received, 0);

    assert!(h.tick(750).is_empty());
    h.check_reconnects_after_the_minimum_backoff(701);
    assert_eq!(h.core.stats().reconnects, 1);
}

#[test]
fn backoff_doubles_on_failures_up_to_the_cap_and_resets_after_welcome() {
    let mut h = Harness::registered();
    h.check_backoff_doubles_up_to_the_cap();

    // WELCOME reset the backoff: the next loss waits 100 ms again.
    assert!(!has(&h.tick(2310), "CLOSE"));
    assert_eq!(kinds(&h.tick(2311)), ["CLOSE"]);
    assert!(h.tick(2410).is_empty());
    assert_eq!(kinds(&h.tick(2411)), ["CONNECT"]);
    let s = h.core.stats();
    assert_eq!((s.reconnects, s.broker_deaths), (5, 2));
}

#[test]
fn broker_heartbeat_interval_change_moves_the_death_deadline() {
    Harness::registered().check_broker_interval_change_moves_the_death_deadline();
}

#[test]
fn a_broker_that_never_welcomes_is_given_up_and_retried_with_backoff() {
    // Before WELCOME the broker's interval is unknown and taken as the
    // worker's own (100 ms): 3 × 100 ms without WELCOME and the socket is
    // recycled, with growing delays since no WELCOME resets the backoff.
    let mut h = Harness::new().greeting();
    assert_eq!(kinds(&h.tick(300)), ["READY"]);
    assert_eq!(kinds(&h.tick(301)), ["CLOSE"]);
    assert_eq!(kinds(&h.tick(401)), ["CONNECT"]);
    h.connected(401);
    assert_eq!(kinds(&h.tick(702)), ["CLOSE"]);
    assert!(h.tick(901).is_empty());
    assert_eq!(kinds(&h.tick(902)), ["CONNECT"]);
}

#[test]
fn results_finished_while_disconnected_are_sent_after_the_next_welcome_in_order() {
    let mut h = Harness::running(&[1, 2]);
    h.feed(10, dispatch(20, 3, Flags::empty()));
    assert_eq!(kinds(&h.tick(611)), ["CLOSE"]);
    assert_eq!(h.core.stats().running, 3, "handlers keep running");

    assert!(h.done(620, (10, 2), Ok(payload(&[b"two"]))).is_empty());
    assert!(
        h.done(630, (10, 1), Err(HandlerError::failed("one failed")))
            .is_empty()
    );
    assert_eq!(kinds(&h.tick(711)), ["CONNECT"]);
    // READY only: the results wait for WELCOME.
    h.connected(711);
    assert!(h.done(720, (20, 3), Ok(payload(&[b"three"]))).is_empty());
    assert!(h.tick(750).is_empty());

    let actions = h.welcome(760);
    let got: Vec<_> = results(&actions)
        .iter()
        .map(|r| (r.request_type, r.request_id, r.status))
        .collect();
    assert_eq!(
        got,
        [
            (10, 2, Status::Ok),
            (10, 1, Status::Failed),
            (20, 3, Status::Ok)
        ]
    );
    assert_eq!(actions.len(), 3);
    assert_eq!(bytes(&results(&actions)[0].payload), [b"two".to_vec()]);
    assert_eq!(results(&actions)[1].error.as_deref(), Some("one failed"));
    // Nothing is sent twice.
    assert!(h.welcome(770).is_empty());
}

#[test]
fn results_beyond_max_unsent_bytes_are_kept_as_failed_without_payload() {
    let mut cfg = config();
    cfg.max_unsent_bytes = 10;
    let mut h = Harness::with(&cfg, vec![10]).welcomed();
    for id in 1..=3 {
        h.feed(10, dispatch(10, id, Flags::empty()));
    }
    assert_eq!(kinds(&h.tick(611)), ["CLOSE"]);
    // 6 bytes fit, 6 more do not, 4 more do.
    assert!(h.done(620, (10, 1), Ok(payload(&[b"123456"]))).is_empty());
    assert!(
        h.done(621, (10, 2), Ok(payload(&[b"abc", b"def"])))
            .is_empty()
    );
    assert!(h.done(622, (10, 3), Ok(payload(&[b"wxyz"]))).is_empty());
    let s = h.core.stats();
    assert_eq!((s.results_truncated, s.unsent_bytes), (1, 10));
    assert_eq!(kinds(&h.tick(711)), ["CONNECT"]);
    h.connected(711);
    let actions = h.welcome(760);
    let got: Vec<_> = results(&actions)
        .iter()
        .map(|r| (r.request_id, r.status, bytes(&r.payload).concat()))
        .collect();
    assert_eq!(
        got,
        [
            (1, Status::Ok, b"123456".to_vec()),
            (2, Status::Failed, Vec::new()),
            (3, Status::Ok, b"wxyz".to_vec()),
        ]
    );
    let error = results(&actions)[1].error.clone().unwrap_or_default();
    assert!(error.contains("max_unsent_bytes"), "{error}");
    assert_eq!(h.core.stats().unsent_bytes, 0);
}

#[test]
fn a_result_over_the_brokers_limit_goes_as_failed_also_when_it_waited_for_a_welcome() {
    let mut h = Harness::running(&[1, 2]);
    assert_eq!(kinds(&h.tick(611)), ["CLOSE"]);
    // Finished while no WELCOME says a limit: kept as they are.
    assert!(h.done(620, (10, 1), Ok(payload(&[&[7u8; 300]]))).is_empty());
    assert!(h.done(621, (10, 2), Ok(payload(&[b"small"]))).is_empty());
    assert_eq!(kinds(&h.tick(711)), ["CONNECT"]);
    h.connected(711);
    // The next broker takes 200 bytes at most.
    let welcome = Message::Welcome {
        heartbeat_ms: BROKER_HB,
        max_message_size: 200,
    };
    let actions = h.feed(760, welcome);
    let got: Vec<_> = results(&actions)
        .iter()
        .map(|r| (r.request_id, r.status, r.payload.len()))
        .collect();
    assert_eq!(got, [(1, Status::Failed, 0), (2, Status::Ok, 1)]);
    let error = results(&actions)[0].error.clone().unwrap_or_default();
    assert!(error.contains("max_message_size of 200"), "{error}");
    // Once the limit is known, a result is checked as it finishes.
    h.feed(770, dispatch(10, 3, Flags::empty()));
    let actions = h.done(780, (10, 3), Ok(payload(&[&[7u8; 300]])));
    assert_eq!(only_result(&actions).status, Status::Failed);
    assert_eq!(h.core.stats().results_too_large, 2);
}

#[test]
fn hwm_must_hold_what_a_worker_may_owe() {
    let mut cfg = config();
    cfg.capacity = 100;
    cfg.hwm = 216;
    assert_eq!(cfg.validate().unwrap_err().field, "hwm");
    cfg.hwm = 217;
    assert!(cfg.validate().is_ok());
}

#[test]
fn receipt_for_a_dispatch_while_registering_waits_for_welcome() {
    let mut h = Harness::registered();
    h.feed(10, Message::Reregister);
    h.drain();
    // A DISPATCH still arrives (sent before the broker forgot us).
    let actions = h.feed(20, dispatch(10, 1, Flags::RECEIPT_ON_RECEIVE));
    assert_eq!(kinds(&actions), ["RUN 10/1"]);
    assert!(h.done(30, (10, 1), Ok(Payload::new())).is_empty());
    let actions = h.welcome(40);
    assert_eq!(kinds(&actions), ["RECEIPT_RECEIVED", "RESULT"]);
}

#[test]
fn reregister_sends_ready_again_and_keeps_running_handlers() {
    let mut h = Harness::running(&[1]);
    let actions = h.feed(50, Message::Reregister);
    let [Action::Link(LinkAction::Send(Message::Ready(ready)))] = actions.as_slice() else {
        panic!("expected READY, got {:?}", kinds(&actions));
    };
    assert_eq!(ready.request_types, [10, 20, 30]);
    let s = h.core.stats();
    assert!(!s.registered);
    assert_eq!(s.running, 1);

    // The broker does not know us: the result waits for WELCOME.
    assert!(h.done(60, (10, 1), Ok(Payload::new())).is_empty());
    // No WELCOME yet: READY again after one interval.
    assert_eq!(kinds(&h.tick(150)), ["READY"]);
    let actions = h.welcome(160);
    assert_eq!(kinds(&actions), ["RESULT"]);
    assert!(h.core.stats().registered);
}

#[test]
fn shutdown_closes_and_reconnects_after_backoff() {
    let mut h = Harness::running(&[1]);
    assert_eq!(kinds(&h.feed(50, Message::Shutdown)), ["CLOSE"]);
    let s = h.core.stats();
    assert!(!s.registered);
    assert_eq!(s.broker_deaths, 0, "a SHUTDOWN is not a death");
    assert_eq!(s.running, 1);
    assert!(h.tick(149).is_empty());
    assert_eq!(kinds(&h.tick(150)), ["CONNECT"]);
    h.connected(150);
    assert!(h.done(160, (10, 1), Ok(Payload::new())).is_empty());
    assert_eq!(kinds(&h.welcome(170)), ["RESULT"]);
}

// ---------------------------------------------------------------- stop

#[test]
fn stop_when_registered_sends_disconnect_and_never_reconnects() {
    let mut h = Harness::running(&[1]);
    let actions = h.stop(50);
    assert!(
        matches!(actions.as_slice(), [Action::Link(LinkAction::Send(Message::Disconnect { route }))] if route.is_empty()),
        "got {:?}",
        kinds(&actions)
    );
    // The running handler's result still goes out.
    assert_eq!(kinds(&h.done(60, (10, 1), Ok(Payload::new()))), ["RESULT"]);
    // The broker goes away: no reconnect, ever.
    assert_eq!(kinds(&h.feed(70, Message::Shutdown)), ["CLOSE"]);
    assert!(h.tick(170).is_empty());
    assert!(h.tick(10_000).is_empty());
    assert_eq!(h.core.stats().reconnects, 0);
}

#[test]
fn stop_when_disconnected_sends_nothing_and_cancels_the_reconnect() {
    let mut h = Harness::registered();
    assert_eq!(kinds(&h.tick(601)), ["CLOSE"]);
    h.check_stop_while_disconnected_never_reconnects(601, 610);
}

#[test]
fn stop_while_registering_says_goodbye_once_welcomed() {
    let mut h = Harness::running(&[1]);
    h.feed(20, Message::Reregister);
    h.drain();
    h.stop(30);
    let actions = h.welcome(40);
    assert!(
        has(&actions, "DISCONNECT"),
        "a stopping worker must not stay registered: {:?}",
        kinds(&actions)
    );
}

// ---------------------------------------------------------------- malformed input

#[test]
fn cluster_kinds_from_the_broker_are_unexpected() {
    let mut h = Harness::registered();
    // An EXECUTE is not a DISPATCH: nothing runs.
    h.check_cluster_kinds_are_unexpected(10);
    assert!(
        h.core.stats().registered,
        "malformed input changes no state"
    );
    h.expect_run(20, dispatch(10, 1, Flags::empty()));
}

#[test]
fn malformed_input_is_counted_answered_with_error_and_the_worker_keeps_working() {
    // NOTE: docs/protocol.md §9 and §12 say a worker drops malformed
    // messages and never answers them; the core (and this test) sends an
    // ERROR back.
    let mut h = Harness::registered();

    h.check_garbage_is_answered_with_an_error(10);

    // Major version 2.
    let actions = h.feed_raw(
        20,
        &[0x08, 0x02, 0x18, 0x04, 0x28, 0x0A, 0x78, 0x01],
        Payload::new(),
    );
    let e = only_error(&actions);
    assert_eq!(
        e.error,
        "unsupported protocol version 2.0 (this peer speaks 1.x)"
    );

    // Empty header frame (major absent).
    let actions = h.feed_raw(30, &[], Payload::new());
    assert_eq!(kinds(&actions), ["ERROR"]);

    // A payload frame on a kind that has none.
    let mut header = Vec::new();
    let _ = Message::Welcome {
        heartbeat_ms: 50,
        max_message_size: 0,
    }
    .encode(&mut header);
    let actions = h.feed_raw(40, &header, payload(&[b"x"]));
    assert_eq!(kinds(&actions), ["ERROR"]);

    // A valid message of a kind a worker never receives.
    let actions = h.feed(
        50,
        Message::Response(crate::protocol::Response {
            request_type: 10,
            request_id: 1,
            status: Status::Ok,
            error: None,
            route: Vec::new(),
            payload: Payload::new(),
        }),
    );
    let e = only_error(&actions);
    assert_eq!(e.error, "unexpected RESPONSE from the broker");

    let s = h.core.stats();
    assert_eq!(s.malformed, 5);
    assert!(s.registered, "malformed input changes no session state");
    // The refused WELCOME did not change the broker's interval (still 200 ms:
    // dead after 600 ms of silence, counted from the last message at 50).
    assert!(!has(&h.tick(650), "CLOSE"));

    // Still works.
    h.expect_run(660, dispatch(10, 1, Flags::empty()));
    assert_eq!(kinds(&h.done(670, (10, 1), Ok(Payload::new()))), ["RESULT"]);
}

#[test]
fn an_error_from_the_broker_is_never_answered() {
    let mut h = Harness::registered();
    let actions = h.feed(
        10,
        Message::Error(ErrorReply {
            error: "unexpected RESULT".to_owned(),
            request: Some(RequestRef {
                request_type: 10,
                request_id: 1,
                route: Vec::new(),
            }),
            status: None,
        }),
    );
    assert!(actions.is_empty());
    let s = h.core.stats();
    assert_eq!(s.malformed, 0);
    assert!(s.registered);
}

// ---------------------------------------------------------------- failover

/// A registered worker with two brokers, on the first.
fn registered_with_two_brokers() -> Harness {
    let mut c = config();
    c.brokers = vec!["tcp://b1:1".to_owned(), "tcp://b2:1".to_owned()];
    Harness::with(&c, vec![10]).welcomed()
}

#[test]
fn results_for_a_broker_left_for_another_are_dropped_not_sent_there() {
    let mut h = registered_with_two_brokers();
    h.expect_run(10, dispatch(10, 1, Flags::empty()));
    h.expect_run(10, dispatch(10, 2, Flags::empty()));
    h.expect_run(10, dispatch(10, 3, Flags::empty()));
    // b1 forgets us: 10/1 finishes while we greet again; its result waits
    // for b1's WELCOME.
    h.feed(20, Message::Reregister);
    assert!(h.done(30, (10, 1), Ok(Payload::new())).is_empty());
    // b1 goes silent (600 ms after the REREGISTER): the worker moves to b2.
    assert_eq!(kinds(&h.tick(622)), ["CLOSE"]);
    assert_eq!(
        crate::link::Connecting::parts(&mut h.core).0.endpoint(),
        "tcp://b2:1"
    );
    // 10/2 finishes on the way: it answers b1, not b2.
    assert!(h.done(650, (10, 2), Ok(Payload::new())).is_empty());
    assert_eq!(kinds(&h.tick(722)), ["CONNECT"]);
    h.connected(722);
    // b2 welcomes: neither result is sent (it never dispatched them), nor
    // is 10/3's when it finishes.
    assert!(h.welcome(730).is_empty());
    assert!(h.done(740, (10, 3), Ok(Payload::new())).is_empty());
    let s = h.core.stats();
    assert_eq!((s.stale_dropped, s.failovers, s.running), (3, 1, 0));
    // b2's own work is answered as usual.
    h.expect_run(750, dispatch(10, 4, Flags::empty()));
    only_result_of(
        &h.done(760, (10, 4), Ok(Payload::new())),
        (10, 4),
        Status::Ok,
    );
}

#[test]
fn a_request_still_running_for_the_old_broker_answers_the_new_one_if_it_dispatches_it() {
    // A proxy re-sent it to b2 after b1 died: b2 dispatches the same key,
    // and the handler already running answers b2's dispatch.
    let mut h = registered_with_two_brokers();
    h.expect_run(10, dispatch_tagged(10, 1, Flags::empty(), 1, 7));
    assert_eq!(kinds(&h.feed(20, Message::Shutdown)), ["CLOSE"]);
    assert_eq!(kinds(&h.tick(120)), ["CONNECT"]);
    h.connected(120);
    h.welcome(120);
    assert!(
        h.feed(130, dispatch_tagged(10, 1, Flags::empty(), 1, 99))
            .is_empty()
    );
    let actions = h.done(140, (10, 1), Ok(Payload::new()));
    let r = only_result_of(&actions, (10, 1), Status::Ok);
    assert_eq!(r.dispatch_tag, 99, "b2's dispatch is the one answered");
    assert_eq!(h.core.stats().stale_dropped, 0);
}

// ---------------------------------------------------------------- cancel

fn cancel_of(request_type: RequestType, request_id: RequestId, dispatch_tag: u64) -> Message {
    Message::Cancel(crate::protocol::Cancel {
        request_type,
        request_id,
        route: Vec::new(),
        dispatch_tag,
    })
}

/// A CANCEL for the running dispatch flags the handler's context; the
/// handler's result still goes to the broker (it gives the credit back).
#[test]
fn cancel_flags_the_running_dispatch_and_its_result_still_goes() {
    let mut h = Harness::registered();
    let actions = h.feed(10, dispatch(20, 7, Flags::empty()));
    let [Action::Run(job)] = actions.as_slice() else {
        panic!("expected one Run, got {:?}", kinds(&actions));
    };
    let cancel = job.cancel.clone();
    assert!(!cancel.is_cancelled());
    // A CANCEL naming another dispatch of the key (a stale one), or
    // another key: nothing.
    assert!(h.feed(11, cancel_of(20, 7, 999)).is_empty());
    assert!(h.feed(12, cancel_of(20, 8, 101)).is_empty());
    assert!(!cancel.is_cancelled());
    assert_eq!(h.core.stats().cancels_ignored, 2);
    assert!(h.feed(13, cancel_of(20, 7, 101)).is_empty());
    assert!(cancel.is_cancelled());
    assert_eq!(h.core.stats().requests_cancelled, 1);
    let actions = h.done(20, (20, 7), Err(HandlerError::failed("stopped early")));
    only_result_of(&actions, (20, 7), Status::Failed);
    // After the result, a late CANCEL finds nothing running.
    assert!(h.feed(21, cancel_of(20, 7, 101)).is_empty());
    assert_eq!(h.core.stats().cancels_ignored, 3);
}

/// What a handler sees: `is_cancelled` and the `cancelled()` future.
#[test]
fn a_context_sees_the_cancel_and_its_future_wakes() {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let cancel = super::handler::Cancellation::default();
    let ctx = crate::worker::RequestContext {
        request_type: 1,
        request_id: 2,
        flags: Flags::empty(),
        attempt: 1,
        deadline: None,
        cancel: cancel.clone(),
    };
    let woken = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut when = std::pin::pin!(ctx.cancelled());
    assert_eq!(when.as_mut().poll(&mut cx), Poll::Pending);
    assert!(!ctx.is_cancelled());
    cancel.cancel();
    assert!(woken.0.load(Ordering::SeqCst), "the waiting task is woken");
    assert!(ctx.is_cancelled());
    assert_eq!(when.as_mut().poll(&mut cx), Poll::Ready(()));
    // A clone of the context shares the flag.
    assert!(ctx.clone().is_cancelled());
}

// ---------------------------------------------------------------- hand-back (1.8)

/// Registered at a broker whose WELCOME says minor `minor`.
fn registered_at_minor(minor: u8) -> Harness {
    let mut h = Harness::new().greeting();
    let (mut header, _) = crate::testing::encode(Message::Welcome {
        heartbeat_ms: BROKER_HB,
        max_message_size: 0,
    });
    assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
    header[3] = minor;
    h.feed_raw(0, &header, Payload::new());
    h.drain();
    h
}

/// The jobs the core asked to run, as the pool would hold them.
fn jobs(actions: Vec<Action>) -> Vec<super::handler::Job> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Run(job) => Some(job),
            Action::Link(_) => None,
        })
        .collect()
}

#[test]
fn a_stopping_worker_gives_back_what_has_not_started_in_order() {
    let mut h = Harness::with_run(dispatch_tagged(10, 1, Flags::empty(), 1, 501));
    let mut queued = jobs(h.feed(11, dispatch_tagged(10, 2, Flags::empty(), 1, 502)));
    queued.extend(jobs(
        h.feed(12, dispatch_tagged(20, 3, Flags::empty(), 2, 503)),
    ));
    assert_eq!(queued.len(), 2);
    assert!(!h.core.hands_back(), "only once stopping");
    let stop = h.stop(20);
    assert_eq!(kinds(&stop), ["DISCONNECT"]);
    assert!(h.core.hands_back());
    // 10/2 and 20/3 never started: the driver takes them off the pool.
    let now = h.at(21);
    for job in queued {
        h.core.hand_back(now, job);
    }
    let actions = h.drain();
    let r = results(&actions);
    let got: Vec<_> = r
        .iter()
        .map(|r| {
            (
                r.request_type,
                r.request_id,
                r.status,
                r.attempt,
                r.dispatch_tag,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (10, 2, Status::Returned, 1, 502),
            (20, 3, Status::Returned, 2, 503)
        ]
    );
    // With the request's payload (the broker dispatches it again), and no
    // error.
    assert!(
        r.iter()
            .all(|r| bytes(&r.payload) == [b"req"] && r.error.is_none())
    );
    let s = h.core.stats();
    assert_eq!((s.requests_returned, s.running), (2, 1));
    assert_eq!((s.requests_failed, s.requests_succeeded), (0, 0));
    // The running one still answers as usual.
    only_result_of(
        &h.done(30, (10, 1), Ok(Payload::new())),
        (10, 1),
        Status::Ok,
    );
}

#[test]
fn a_dispatch_arriving_after_the_stop_is_given_back_unrun() {
    let mut h = Harness::registered();
    h.stop(20);
    // Sent before the broker read our DISCONNECT: not run, not receipted.
    let actions = h.feed(25, dispatch(10, 4, Flags::RECEIPT_ON_RECEIVE));
    let r = only_result_of(&actions, (10, 4), Status::Returned);
    assert_eq!((r.attempt, r.dispatch_tag), (1, 101));
    assert_eq!(bytes(&r.payload), [b"req"]);
    let s = h.core.stats();
    assert_eq!(
        (s.requests_returned, s.running, s.requests_received),
        (1, 0, 1)
    );
}

#[test]
fn a_worker_at_a_broker_older_than_1_8_runs_what_it_holds() {
    let mut h = registered_at_minor(7);
    h.expect_run(10, dispatch(10, 1, Flags::empty()));
    h.stop(20);
    assert!(!h.core.hands_back(), "a 1.7 broker would refuse RETURNED");
    // What comes after the stop runs too, as before 1.8.
    h.expect_run(25, dispatch(10, 2, Flags::empty()));
    assert_eq!(h.core.stats().requests_returned, 0);
}

#[test]
fn a_job_that_finished_is_not_given_back() {
    let mut h = Harness::registered();
    let queued = jobs(h.feed(10, dispatch(10, 1, Flags::empty())));
    h.done(15, (10, 1), Ok(Payload::new()));
    h.stop(20);
    // A job the core no longer holds (it ran): nothing to give back.
    let now = h.at(21);
    for job in queued {
        h.core.hand_back(now, job);
    }
    assert!(h.drain().is_empty());
    assert_eq!(h.core.stats().requests_returned, 0);
}

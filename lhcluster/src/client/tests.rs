//! Unit tests of the client state machine (fake clock, no sockets).
//!
//! Every test drives a [`ClientCore`] by hand: broker messages are encoded
//! with the real codec and fed as header bytes + payload frames, time is
//! `t0 + n ms`, requests are submitted with a fresh [`Shared`] slot and
//! observed through a [`ResponseHandle`], and events through a channel.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use super::config::ClientConfig;
use super::core::{Action, ClientCore, Submit};
use super::response::{DisconnectReason, Outcome, Reply, RequestError, ResponseHandle, Slot};
use super::{ClientEvent, ReceiptKind};
use crate::protocol::{
    ErrorReply, Flags, Message, Payload, RequestId, RequestRef, RequestType, Status,
};
use crate::testing::{
    Driven, HB, LIVENESS, NOT_OK, RECONNECT_MAX, RECONNECT_MIN, bytes, kinds, ms, only_error,
    payload, response, session_role,
};

/// The configured default request timeout (ms).
const DEFAULT_TIMEOUT: u64 = 1000;

fn config() -> ClientConfig {
    let mut c = ClientConfig::new("tcp://127.0.0.1:5555");
    c.name = Some("c1".to_owned());
    c.heartbeat = ms(HB);
    c.liveness = LIVENESS;
    c.request_timeout = Some(ms(DEFAULT_TIMEOUT));
    c.reconnect_min = ms(RECONNECT_MIN);
    c.reconnect_max = ms(RECONNECT_MAX);
    c
}

fn ok(request_type: RequestType, request_id: RequestId) -> Message {
    response(&[], request_type, request_id, Status::Ok, None, &[])
}

fn rref(request_type: RequestType, request_id: RequestId) -> RequestRef {
    RequestRef {
        request_type,
        request_id,
        route: Vec::new(),
    }
}

fn outcome(h: &mut ResponseHandle) -> Option<Outcome> {
    h.try_take()
}

fn expect_ok(h: &mut ResponseHandle) -> Reply {
    match h.try_take() {
        Some(Ok(reply)) => reply,
        other => panic!("expected Ok, got {other:?}"),
    }
}

fn expect_err(h: &mut ResponseHandle) -> RequestError {
    match h.try_take() {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The event of an untracked request refused with `status`.
fn refusal_event(request_id: RequestId, status: Status, message: &str) -> ClientEvent {
    ClientEvent::Response {
        request_type: 7,
        request_id,
        outcome: Err(RequestError::Status {
            status,
            message: message.to_owned(),
        }),
    }
}

fn receipt_event(
    request_type: RequestType,
    request_id: RequestId,
    kind: ReceiptKind,
) -> ClientEvent {
    ClientEvent::Receipt {
        request_type,
        request_id,
        kind,
    }
}

session_role!(ClientCore, "HELLO", connected);

/// A client core driven by hand, and its events.
type Harness = Driven<ClientCore, Receiver<ClientEvent>>;

impl Harness {
    fn with(config: &ClientConfig, event_capacity: usize) -> Self {
        let t0 = Instant::now();
        let (tx, events) = bounded(event_capacity);
        Self::start(ClientCore::new(config, Some(tx), t0), t0, events)
    }

    /// A fresh client, nothing drained yet.
    fn new() -> Self {
        Self::with(&config(), 64)
    }

    /// Connected at 0 and WELCOMEd (broker interval `BROKER_HB`) at 0, with
    /// every action and event drained.
    fn ready() -> Self {
        Self::ready_with(&config())
    }

    fn ready_with(config: &ClientConfig) -> Self {
        let h = Self::with(config, 64).welcomed();
        assert_eq!(h.events(), [ClientEvent::Connected]);
        h
    }

    fn events(&self) -> Vec<ClientEvent> {
        self.extra.try_iter().collect()
    }

    fn submit_full(
        &mut self,
        n: u64,
        key: (RequestType, RequestId),
        flags: Flags,
        timeout: Option<Duration>,
        reply_to: Option<&str>,
        frames: &[&[u8]],
    ) -> (ResponseHandle, Vec<Action>) {
        let (slot, shared) = Slot::new();
        let now = self.at(n);
        self.core.on_submit(
            now,
            Submit {
                request_type: key.0,
                request_id: key.1,
                flags,
                payload: payload(frames),
                reply_to: reply_to.map(str::to_owned),
                timeout,
                shared: slot,
            },
        );
        (ResponseHandle::new(shared, key.0, key.1), self.drain())
    }

    /// Submits with the default timeout, no reply_to and one payload frame;
    /// returns the handle and the actions.
    fn submit(
        &mut self,
        n: u64,
        key: (RequestType, RequestId),
        flags: Flags,
    ) -> (ResponseHandle, Vec<Action>) {
        self.submit_full(n, key, flags, None, None, &[b"req"])
    }

    /// Submits a request that must be sent as one REQUEST.
    fn send(&mut self, n: u64, key: (RequestType, RequestId), flags: Flags) -> ResponseHandle {
        let (handle, actions) = self.submit(n, key, flags);
        assert_eq!(kinds(&actions), ["REQUEST"]);
        handle
    }
}

// ---------------------------------------------------------------- session

#[test]
fn start_connects_says_hello_and_is_connected_on_welcome() {
    let mut h = Harness::new();
    h.expect_connect_first();

    let actions = h.connect_at(0);
    let [Action::Send(Message::Hello(hello))] = actions.as_slice() else {
        panic!("expected HELLO, got {:?}", kinds(&actions));
    };
    assert_eq!(hello.heartbeat_ms, 100);
    assert_eq!(hello.name.as_deref(), Some("c1"));
    assert!(hello.route.is_empty());
    assert!(!h.core.stats().connected, "not connected before WELCOME");
    assert!(h.events().is_empty());

    assert!(h.welcome(10).is_empty());
    assert!(h.core.stats().connected);
    assert_eq!(h.events(), [ClientEvent::Connected]);
    // A repeated WELCOME is not a new connection.
    assert!(h.welcome(20).is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn hello_without_a_name_carries_none() {
    let mut c = config();
    c.name = None;
    let mut h = Harness::with(&c, 4);
    h.drain();
    let actions = h.connect_at(0);
    let [Action::Send(Message::Hello(hello))] = actions.as_slice() else {
        panic!("expected HELLO, got {:?}", kinds(&actions));
    };
    assert_eq!(hello.name, None);
}

#[test]
fn messages_before_the_socket_connects_are_ignored() {
    let mut h = Harness::new();
    h.check_welcome_before_connecting_is_ignored();
    assert!(h.events().is_empty());
}

#[test]
fn hello_is_repeated_while_greeting_then_heartbeats_once_connected() {
    Harness::new().check_greeting_repeats_until_welcome(250);
}

#[test]
fn requests_may_be_sent_before_welcome() {
    let mut h = Harness::new().greeting();
    let mut handle = h.send(10, (7, 1), Flags::empty());
    h.welcome(20);
    h.feed(30, ok(7, 1));
    expect_ok(&mut handle);
}

#[test]
fn heartbeat_only_after_own_interval_of_silence() {
    let mut h = Harness::ready();
    // A REQUEST at 50 is a sign of life: the heartbeat is due at 150.
    let _handle = h.send(50, (7, 1), Flags::empty());
    assert!(h.tick(149).is_empty());
    assert_eq!(kinds(&h.tick(150)), ["HEARTBEAT"]);
    assert_eq!(h.core.stats().heartbeats_sent, 1);
    h.check_hearing_from_the_broker_does_not_delay_the_heartbeat(200, 250);
    assert_eq!(h.core.stats().heartbeats_received, 1);
}

#[test]
fn next_tick_is_the_nearest_of_session_work_and_deadlines() {
    let mut h = Harness::new();
    h.drain();
    assert_eq!(h.next_tick(0), h.at(0), "reconnect due at start");
    h.connected(0);
    h.welcome(0);
    // Half the shorter interval (100 ms, ours).
    assert_eq!(h.next_tick(0), h.at(50));
    let _handle = h.submit_full(0, (7, 1), Flags::empty(), Some(ms(20)), None, &[]);
    assert_eq!(h.next_tick(0), h.at(20), "the deadline is nearer");
}

// ---------------------------------------------------------------- requests and outcomes

#[test]
fn two_way_submit_sends_request_and_ok_response_resolves_with_payload() {
    let mut h = Harness::ready();
    let flags = Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH | Flags::from_bits_retain(1 << 40);
    let (mut handle, actions) =
        h.submit_full(10, (7, 42), flags, None, Some("audit"), &[b"hello", b""]);
    let [Action::Send(Message::Request(r))] = actions.as_slice() else {
        panic!("expected REQUEST, got {:?}", kinds(&actions));
    };
    assert_eq!((r.request_type, r.request_id, r.flags), (7, 42, flags));
    assert!(r.route.is_empty());
    assert_eq!(r.reply_to.as_deref(), Some("audit"));
    assert_eq!(bytes(&r.payload), [b"hello".to_vec(), vec![]]);
    assert_eq!((handle.request_type(), handle.request_id()), (7, 42));
    assert!(!handle.is_done());
    let s = h.core.stats();
    assert_eq!((s.requests_sent, s.outstanding), (1, 1));

    assert!(
        h.feed(20, response(&[], 7, 42, Status::Ok, None, &[b"world", b""]))
            .is_empty()
    );
    assert!(handle.is_done());
    let reply = expect_ok(&mut handle);
    assert_eq!((reply.request_type, reply.request_id), (7, 42));
    assert_eq!(bytes(&reply.payload), [b"world".to_vec(), vec![]]);
    let s = h.core.stats();
    assert_eq!((s.responses_received, s.outstanding), (1, 0));
}

#[test]
fn request_without_reply_to_sends_none() {
    let mut h = Harness::ready();
    let (_handle, actions) = h.submit(10, (7, 1), Flags::empty());
    let [Action::Send(Message::Request(r))] = actions.as_slice() else {
        panic!("expected REQUEST, got {:?}", kinds(&actions));
    };
    assert_eq!(r.reply_to, None);
    assert_eq!(r.flags, Flags::empty());
}

#[test]
fn every_non_ok_status_fails_the_request_with_its_message() {
    let mut h = Harness::ready();
    for (id, status) in (1..).zip(NOT_OK) {
        let mut handle = h.send(10, (7, id), Flags::empty());
        let text = format!("because {status}");
        h.feed(20, response(&[], 7, id, status, Some(&text), &[]));
        // EXPIRED answers the request's own deadline: its caller's timeout.
        let expected = match status {
            Status::Expired => RequestError::Timeout(ms(DEFAULT_TIMEOUT)),
            _ => RequestError::Status {
                status,
                message: text,
            },
        };
        assert_eq!(expect_err(&mut handle), expected);
    }
    // No error text: an empty message.
    let mut handle = h.send(30, (7, 100), Flags::empty());
    h.feed(40, response(&[], 7, 100, Status::Overloaded, None, &[]));
    let e = expect_err(&mut handle);
    assert_eq!(e.status(), Some(Status::Overloaded));
    assert_eq!(
        e,
        RequestError::Status {
            status: Status::Overloaded,
            message: String::new()
        }
    );
    // Every one but EXPIRED (a timeout, also told as an event) is a
    // response received; tracked refusals are not events.
    let s = h.core.stats();
    assert_eq!(
        (s.responses_received, s.requests_timed_out),
        (NOT_OK.len() as u64, 1)
    );
    assert!(
        matches!(
            h.events().as_slice(),
            [ClientEvent::Response { outcome: Err(e), .. }] if e.status() == Some(Status::Expired)
        ),
        "only the EXPIRED is an event"
    );
}

#[test]
fn a_request_has_exactly_one_outcome() {
    let mut h = Harness::ready();
    let mut handle = h.send(10, (7, 1), Flags::empty());
    h.feed(20, response(&[], 7, 1, Status::Ok, None, &[b"first"]));
    // A second RESPONSE for the same request is ignored.
    assert!(
        h.feed(30, response(&[], 7, 1, Status::Ok, None, &[b"second"]))
            .is_empty()
    );
    let reply = expect_ok(&mut handle);
    assert_eq!(bytes(&reply.payload), [b"first".to_vec()]);
    let s = h.core.stats();
    assert_eq!((s.responses_received, s.responses_unmatched), (1, 1));
}

#[test]
fn same_key_while_outstanding_is_rejected_locally() {
    let mut h = Harness::ready();
    let mut first = h.send(10, (7, 1), Flags::empty());
    let (mut second, actions) = h.submit(20, (7, 1), Flags::ONE_WAY | Flags::RECEIPT_ON_SEND);
    assert!(
        actions.is_empty(),
        "only one REQUEST goes out: {:?}",
        kinds(&actions)
    );
    match expect_err(&mut second) {
        RequestError::Status {
            status: Status::Rejected,
            message,
        } => assert!(message.contains("7/1"), "{message:?}"),
        other => panic!("expected a local REJECTED, got {other:?}"),
    }
    // Same id, another type: another request.
    let _other = h.send(20, (8, 1), Flags::empty());
    let s = h.core.stats();
    assert_eq!(
        (s.requests_rejected_locally, s.requests_sent, s.outstanding),
        (1, 2, 2)
    );

    // The first one is untouched, and once it is done the key is free.
    assert!(outcome(&mut first).is_none());
    h.feed(30, ok(7, 1));
    expect_ok(&mut first);
    let _again = h.send(40, (7, 1), Flags::empty());
}

// ---------------------------------------------------------------- timeouts

#[test]
fn per_request_timeout_fires_at_the_deadline_not_before() {
    let mut h = Harness::ready();
    let (mut handle, _) = h.submit_full(10, (7, 1), Flags::empty(), Some(ms(300)), None, &[]);
    h.tick(200);
    h.tick(309);
    assert!(outcome(&mut handle).is_none());
    h.tick(310);
    assert_eq!(expect_err(&mut handle), RequestError::Timeout(ms(300)));
    let s = h.core.stats();
    assert_eq!((s.requests_timed_out, s.outstanding), (1, 0));

    // A late RESPONSE is unmatched: it only surfaces as an event.
    assert!(h.feed(400, ok(7, 1)).is_empty());
    let s = h.core.stats();
    assert_eq!((s.responses_unmatched, s.responses_received), (1, 0));
    assert!(matches!(
        h.events().as_slice(),
        [ClientEvent::Response {
            request_type: 7,
            request_id: 1,
            outcome: Ok(_)
        }]
    ));
}

#[test]
fn default_timeout_applies_without_a_per_request_one() {
    let mut h = Harness::ready();
    let mut handle = h.send(0, (7, 1), Flags::empty());
    // Keep the broker alive meanwhile.
    h.feed(500, Message::Heartbeat { heartbeat_ms: 0 });
    h.feed(900, Message::Heartbeat { heartbeat_ms: 0 });
    h.tick(999);
    assert!(outcome(&mut handle).is_none());
    h.tick(1000);
    assert_eq!(
        expect_err(&mut handle),
        RequestError::Timeout(ms(DEFAULT_TIMEOUT))
    );
}

#[test]
fn no_timeout_at_all_when_none_is_configured() {
    let mut c = config();
    c.request_timeout = None;
    let mut h = Harness::ready_with(&c);
    let mut handle = h.send(0, (7, 1), Flags::empty());
    for n in (500..=10_000).step_by(500) {
        h.feed(n, Message::Heartbeat { heartbeat_ms: 0 });
        h.tick(n);
    }
    assert!(outcome(&mut handle).is_none());
    assert_eq!(h.core.stats().outstanding, 1);
}

#[test]
fn a_stale_deadline_does_not_expire_a_resubmitted_request() {
    let mut h = Harness::ready();
    let (mut first, _) = h.submit_full(0, (7, 1), Flags::empty(), Some(ms(300)), None, &[]);
    h.feed(100, ok(7, 1));
    expect_ok(&mut first);
    // Same key again, deadline 500; the first one's (300) is stale.
    let (mut second, _) = h.submit_full(200, (7, 1), Flags::empty(), Some(ms(300)), None, &[]);
    h.tick(300);
    assert!(outcome(&mut second).is_none());
    h.tick(499);
    assert!(outcome(&mut second).is_none());
    h.tick(500);
    assert_eq!(expect_err(&mut second), RequestError::Timeout(ms(300)));
    assert_eq!(h.core.stats().requests_timed_out, 1);
}

#[test]
fn a_late_outcome_after_a_timeout_is_an_unmatched_response_event() {
    let mut h = Harness::ready();
    let (mut handle, _) = h.submit_full(10, (7, 1), Flags::empty(), Some(ms(300)), None, &[]);
    h.tick(310);
    assert_eq!(expect_err(&mut handle), RequestError::Timeout(ms(300)));
    h.feed(400, response(&[], 7, 1, Status::Failed, Some("boom"), &[]));
    assert_eq!(h.core.stats().responses_unmatched, 1);
    assert_eq!(h.events(), [refusal_event(1, Status::Failed, "boom")]);
}

// ---------------------------------------------------------------- receipts and one-way

#[test]
fn receipts_are_recorded_in_arrival_order_and_emitted_as_events() {
    let mut h = Harness::ready();
    let flags = Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
    let mut a = h.send(10, (7, 1), flags);
    let mut b = h.send(10, (7, 2), flags);

    h.feed(20, Message::ReceiptSent(rref(7, 1)));
    h.feed(30, Message::ReceiptReceived(rref(7, 1)));
    // Arrival order, whatever it is.
    h.feed(40, Message::ReceiptReceived(rref(7, 2)));
    h.feed(50, Message::ReceiptSent(rref(7, 2)));
    // A repeated receipt is an event again but recorded once.
    h.feed(60, Message::ReceiptSent(rref(7, 1)));

    assert_eq!(a.receipts(), [ReceiptKind::Sent, ReceiptKind::Received]);
    assert_eq!(b.receipts(), [ReceiptKind::Received, ReceiptKind::Sent]);
    assert!(
        !a.is_done() && !b.is_done(),
        "receipts do not end a two-way request"
    );
    assert_eq!(
        h.events(),
        [
            receipt_event(7, 1, ReceiptKind::Sent),
            receipt_event(7, 1, ReceiptKind::Received),
            receipt_event(7, 2, ReceiptKind::Received),
            receipt_event(7, 2, ReceiptKind::Sent),
            receipt_event(7, 1, ReceiptKind::Sent),
        ]
    );
    assert_eq!(h.core.stats().receipts_received, 5);

    h.feed(70, ok(7, 1));
    h.feed(70, ok(7, 2));
    expect_ok(&mut a);
    expect_ok(&mut b);
}

#[test]
fn a_receipt_for_an_unknown_request_is_still_an_event() {
    let mut h = Harness::ready();
    assert!(h.feed(10, Message::ReceiptSent(rref(9, 9))).is_empty());
    assert_eq!(h.events(), [receipt_event(9, 9, ReceiptKind::Sent)]);
    assert_eq!(h.core.stats().receipts_received, 1);
}

#[test]
fn one_way_without_receipts_completes_ok_at_submit() {
    let mut h = Harness::ready();
    let (mut handle, actions) = h.submit_full(10, (7, 1), Flags::ONE_WAY, None, None, &[b"fire"]);
    let [Action::Send(Message::Request(r))] = actions.as_slice() else {
        panic!("expected REQUEST, got {:?}", kinds(&actions));
    };
    assert_eq!(r.flags, Flags::ONE_WAY);
    assert_eq!(bytes(&r.payload), [b"fire".to_vec()]);
    let reply = expect_ok(&mut handle);
    assert_eq!((reply.request_type, reply.request_id), (7, 1));
    assert!(reply.payload.is_empty());
    assert_eq!(h.core.stats().outstanding, 0);
    // Not tracked: the same key can go again at once.
    let _again = h.send(20, (7, 1), Flags::ONE_WAY);
}

#[test]
fn one_way_with_receipt_on_receive_completes_on_receipt_received_only() {
    let mut h = Harness::ready();
    let flags = Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE | Flags::RECEIPT_ON_SEND;
    let mut handle = h.send(10, (7, 1), flags);
    assert!(!handle.is_done());
    h.feed(20, Message::ReceiptSent(rref(7, 1)));
    assert!(!handle.is_done(), "RECEIPT_SENT alone does not complete it");
    assert_eq!(handle.receipts(), [ReceiptKind::Sent]);
    h.feed(30, Message::ReceiptReceived(rref(7, 1)));
    assert_eq!(
        handle.receipts(),
        [ReceiptKind::Sent, ReceiptKind::Received]
    );
    let reply = expect_ok(&mut handle);
    assert!(reply.payload.is_empty());
    assert_eq!(h.core.stats().outstanding, 0);
}

#[test]
fn one_way_with_receipt_on_send_completes_on_receipt_sent() {
    let mut h = Harness::ready();
    let mut handle = h.send(10, (7, 1), Flags::ONE_WAY | Flags::RECEIPT_ON_SEND);
    h.feed(20, Message::ReceiptSent(rref(7, 1)));
    expect_ok(&mut handle);
}

#[test]
fn a_tracked_one_way_request_gets_its_refusal_on_the_handle() {
    let mut h = Harness::ready();
    let mut handle = h.send(10, (7, 1), Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE);
    h.feed(
        20,
        response(&[], 7, 1, Status::Overloaded, Some("queue full"), &[]),
    );
    assert_eq!(
        expect_err(&mut handle),
        RequestError::Status {
            status: Status::Overloaded,
            message: "queue full".to_owned()
        }
    );
    assert!(h.events().is_empty());
}

#[test]
fn a_tracked_one_way_request_times_out_without_its_receipt() {
    let mut h = Harness::ready();
    let flags = Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE;
    let (mut handle, _) = h.submit_full(10, (7, 1), flags, Some(ms(100)), None, &[]);
    h.feed(20, Message::ReceiptSent(rref(7, 1)));
    h.tick(110);
    assert_eq!(expect_err(&mut handle), RequestError::Timeout(ms(100)));
}

#[test]
fn refusal_of_an_untracked_one_way_request_is_an_event() {
    let mut h = Harness::ready();
    let (mut handle, _) = h.submit(10, (7, 1), Flags::ONE_WAY);
    expect_ok(&mut handle);
    assert!(
        h.feed(
            20,
            response(&[], 7, 1, Status::NoWorkers, Some("nobody"), &[])
        )
        .is_empty()
    );
    assert_eq!(h.events(), [refusal_event(1, Status::NoWorkers, "nobody")]);
    assert_eq!(h.core.stats().responses_unmatched, 1);
}

#[test]
fn events_beyond_the_channel_capacity_are_dropped_and_counted() {
    let mut h = Harness::with(&config(), 1);
    h.drain();
    h.connected(0);
    h.welcome(0);
    // The channel now holds Connected: the receipt event does not fit.
    h.feed(10, Message::ReceiptSent(rref(7, 1)));
    assert_eq!(h.events(), [ClientEvent::Connected]);
    assert_eq!(h.core.stats().events_dropped, 1);
}

// ---------------------------------------------------------------- broker death, shutdown

#[test]
fn silent_broker_fails_outstanding_requests_then_reconnects_after_backoff() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    let mut b = h.send(20, (7, 2), Flags::RECEIPT_ON_SEND);
    h.check_silent_broker_dies_at_701(|_| assert!(!a.is_done()));
    let missed = RequestError::Disconnected(DisconnectReason::HeartbeatsMissed);
    assert_eq!(expect_err(&mut a), missed);
    assert_eq!(expect_err(&mut b), missed);
    assert_eq!(h.events(), [ClientEvent::Disconnected]);
    let s = h.core.stats();
    assert_eq!(s.broker_deaths, 1);
    assert!(!s.connected);
    assert_eq!(s.outstanding, 0);

    // Submits while disconnected fail at once, nothing is sent.
    let (mut c, actions) = h.submit(750, (7, 3), Flags::empty());
    assert!(actions.is_empty());
    assert_eq!(
        expect_err(&mut c),
        RequestError::Disconnected(DisconnectReason::NotConnected)
    );
    assert_eq!(h.core.stats().requests_failed_disconnected, 1);
    // What is still read is ignored.
    assert!(h.feed(760, ok(7, 1)).is_empty());
    assert_eq!(h.core.stats().responses_unmatched, 0);

    h.check_reconnects_after_the_minimum_backoff(701);
    assert_eq!(h.core.stats().reconnects, 1);
    assert_eq!(h.events(), [ClientEvent::Connected]);
    let _d = h.send(820, (7, 3), Flags::empty());
}

#[test]
fn broker_heartbeat_interval_change_moves_the_death_deadline() {
    let mut h = Harness::ready();
    h.check_broker_interval_change_moves_the_death_deadline();
}

#[test]
fn reconnect_backoff_doubles_up_to_the_cap_and_resets_after_welcome() {
    let mut h = Harness::ready();
    h.check_backoff_doubles_up_to_the_cap();
    // A SHUTDOWN after the WELCOME: the reconnect waits 100 ms again.
    assert_eq!(kinds(&h.feed(1720, Message::Shutdown)), ["CLOSE"]);
    assert!(h.tick(1819).is_empty());
    assert_eq!(
        kinds(&h.tick(1820)),
        ["CONNECT"],
        "back to 100 ms after WELCOME"
    );
}

#[test]
fn a_broker_that_never_welcomes_is_given_up_and_retried() {
    // Before WELCOME the broker's interval is taken as the client's own
    // (100 ms): 3 × 100 ms without an answer and the socket is recycled.
    let mut h = Harness::new().greeting();
    let mut handle = h.send(10, (7, 1), Flags::empty());
    assert_eq!(kinds(&h.tick(300)), ["HELLO"]);
    assert_eq!(kinds(&h.tick(311)), ["CLOSE"]);
    assert!(matches!(
        expect_err(&mut handle),
        RequestError::Disconnected(_)
    ));
    assert_eq!(kinds(&h.tick(411)), ["CONNECT"]);
}

#[test]
fn shutdown_fails_outstanding_requests_and_reconnects_later() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    assert_eq!(kinds(&h.feed(50, Message::Shutdown)), ["CLOSE"]);
    assert_eq!(
        expect_err(&mut a),
        RequestError::Disconnected(DisconnectReason::BrokerShutDown)
    );
    assert_eq!(h.events(), [ClientEvent::Disconnected]);
    let s = h.core.stats();
    assert!(!s.connected);
    assert_eq!(s.broker_deaths, 0, "a SHUTDOWN is not a death");
    assert!(h.tick(149).is_empty());
    assert_eq!(kinds(&h.tick(150)), ["CONNECT"]);
}

#[test]
fn reregister_sends_hello_again_and_fails_outstanding_requests() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    let actions = h.feed(50, Message::Reregister);
    let [Action::Send(Message::Hello(hello))] = actions.as_slice() else {
        panic!("expected HELLO, got {:?}", kinds(&actions));
    };
    assert_eq!(hello.name.as_deref(), Some("c1"));
    assert_eq!(hello.heartbeat_ms, 100);
    // The broker lost our session (a restart): nothing outstanding will be
    // answered, so the caller learns it now rather than at its timeout.
    assert_eq!(
        expect_err(&mut a),
        RequestError::Disconnected(DisconnectReason::SessionLost)
    );
    h.welcome(60);
    // A late answer (the broker had only forgotten us) is an event.
    h.feed(70, ok(7, 1));
    assert_eq!(h.core.stats().responses_unmatched, 1);
}

#[test]
fn reregister_goes_back_to_greeting_until_welcome() {
    let mut h = Harness::ready();
    h.feed(50, Message::Reregister);
    h.drain();
    assert!(!h.core.stats().connected, "not connected until WELCOME");
    assert_eq!(kinds(&h.tick(150)), ["HELLO"], "the greeting is repeated");
}

// ---------------------------------------------------------------- errors and malformed input

#[test]
fn error_naming_an_outstanding_request_fails_it_with_protocol() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    let mut b = h.send(10, (7, 2), Flags::empty());
    let actions = h.feed(
        20,
        Message::Error(ErrorReply {
            error: "bad header".to_owned(),
            request: Some(rref(7, 1)),
            status: None,
        }),
    );
    assert!(actions.is_empty(), "an ERROR is never answered");
    assert_eq!(
        expect_err(&mut a),
        RequestError::Protocol("bad header".to_owned())
    );
    assert!(!b.is_done());

    // An ERROR about nothing or about an unknown request affects nothing.
    h.feed(
        30,
        Message::Error(ErrorReply {
            error: "general".to_owned(),
            request: None,
            status: None,
        }),
    );
    h.feed(
        30,
        Message::Error(ErrorReply {
            error: "other".to_owned(),
            request: Some(rref(9, 9)),
            status: None,
        }),
    );
    assert!(!b.is_done());
    let s = h.core.stats();
    assert_eq!((s.malformed, s.outstanding), (0, 1));
    assert!(s.connected);
    h.feed(40, ok(7, 2));
    expect_ok(&mut b);
}

#[test]
fn cluster_kinds_from_the_broker_are_unexpected() {
    let mut h = Harness::ready();
    h.check_cluster_kinds_are_unexpected(10);
    assert!(h.core.stats().connected, "malformed input changes no state");
}

#[test]
fn malformed_input_is_counted_answered_with_error_and_the_client_keeps_working() {
    // NOTE: docs/protocol.md §10.1, §12 and §16 say a client drops malformed
    // messages and never sends ERROR; the core (and this test) answers them.
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());

    h.check_garbage_is_answered_with_an_error(20);

    // Major version 2 RESPONSE for the outstanding request: refused, and
    // the request is not completed by it.
    let actions = h.feed_raw(
        30,
        &[0x08, 0x02, 0x18, 0x06, 0x28, 0x07, 0x30, 0x01, 0x38, 0x01],
        Payload::new(),
    );
    let e = only_error(&actions);
    assert_eq!(
        e.error,
        "unsupported protocol version 2.0 (this peer speaks 1.x)"
    );
    assert!(!a.is_done());

    // A RESPONSE with status 0 (unspecified).
    let actions = h.feed_raw(
        40,
        &[0x08, 0x01, 0x18, 0x06, 0x28, 0x07, 0x30, 0x01],
        Payload::new(),
    );
    assert_eq!(kinds(&actions), ["ERROR"]);
    assert!(!a.is_done());

    // A valid message of a kind a client never receives.
    let actions = h.feed(
        50,
        Message::Dispatch(crate::protocol::Dispatch {
            request_type: 7,
            request_id: 1,
            flags: Flags::empty(),
            attempt: 1,
            dispatch_tag: 0,
            deadline_ms: 0,
            payload: Payload::new(),
        }),
    );
    let e = only_error(&actions);
    assert_eq!(e.error, "unexpected DISPATCH from the broker");

    let s = h.core.stats();
    assert_eq!(s.malformed, 4);
    assert!(s.connected);
    assert!(h.events().is_empty());

    // Still works.
    h.feed(60, response(&[], 7, 1, Status::Ok, None, &[b"fine"]));
    assert_eq!(bytes(&expect_ok(&mut a).payload), [b"fine".to_vec()]);
}

// ---------------------------------------------------------------- stop

#[test]
fn stop_says_goodbye_fails_outstanding_and_refuses_later_submits() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    let mut b = h.send(10, (7, 2), Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE);
    let actions = h.stop(20);
    assert!(
        matches!(actions.as_slice(), [Action::Send(Message::Disconnect { route })] if route.is_empty()),
        "got {:?}",
        kinds(&actions)
    );
    assert_eq!(expect_err(&mut a), RequestError::Stopped);
    assert_eq!(expect_err(&mut b), RequestError::Stopped);
    assert_eq!(h.core.stats().outstanding, 0);

    let (mut c, actions) = h.submit(30, (7, 3), Flags::empty());
    assert!(actions.is_empty());
    assert_eq!(expect_err(&mut c), RequestError::Stopped);
    // One-way requests too (they would otherwise complete Ok at submit).
    let (mut d, actions) = h.submit(30, (7, 4), Flags::ONE_WAY);
    assert!(actions.is_empty());
    assert_eq!(expect_err(&mut d), RequestError::Stopped);
    assert_eq!(h.core.stats().requests_sent, 2);
}

#[test]
fn stop_while_disconnected_sends_nothing_and_never_reconnects() {
    let mut h = Harness::ready();
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    h.check_stop_while_disconnected_never_reconnects(10, 20);
    let (mut c, _) = h.submit(10_001, (7, 1), Flags::empty());
    assert_eq!(
        expect_err(&mut c),
        RequestError::Stopped,
        "stopped wins over disconnected"
    );
}

// ------------------------------------------------------------ panics

#[test]
fn a_dropped_slot_resolves_its_handle() {
    // A request lost on its way to the state machine (still in the command
    // channel when the driver ended) ends as stopped, not in a hang.
    let (slot, shared) = Slot::new();
    let handle = ResponseHandle::new(shared, 1, 1);
    drop(slot);
    assert_eq!(handle.wait(), Err(RequestError::Stopped));
    // One dropped by a panic: its handle knows the client failed.
    let (slot, shared) = Slot::new();
    let handle = ResponseHandle::new(shared, 1, 2);
    let unwound = std::panic::catch_unwind(move || {
        let _slot = slot;
        panic!("a panic injected by a test");
    });
    assert!(unwound.is_err());
    assert_eq!(handle.wait(), Err(RequestError::Internal));
}

/// A broker on fresh inproc endpoints, and a local client of it.
fn local_client() -> (crate::Broker, super::LocalClient) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let broker = crate::Broker::start(crate::BrokerConfig::new(
        format!("inproc://local-panic-front-{n}"),
        format!("inproc://local-panic-back-{n}"),
    ))
    .unwrap();
    let client = super::LocalClient::connect(ClientConfig::new(broker.frontend())).unwrap();
    (broker, client)
}

#[test]
fn a_panic_in_a_local_clients_poll_leaves_its_handles_resolvable() {
    // The panic unwinds into the caller. A caller that catches it and keeps
    // the client still gets every outcome; dropping it then stops them.
    let (_broker, mut client) = local_client();
    // No worker serves type 9: the request waits at the broker.
    let handle = client.request(9).send().unwrap();
    client.inject_panic();
    let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.poll(Duration::from_millis(10))
    }));
    assert!(poll.is_err(), "the panic reaches the caller");
    assert!(!handle.is_done(), "still outstanding, still resolvable");
    client.poll(Duration::ZERO).unwrap();
    drop(client);
    assert_eq!(handle.wait(), Err(RequestError::Stopped));
}

#[test]
fn a_local_client_dropped_by_a_panic_fails_its_handles() {
    let (_broker, mut client) = local_client();
    let handle = client.request(9).send().unwrap();
    client.inject_panic();
    // The client unwinds with the panic: nothing is said to the broker, and
    // the handle learns that the client failed.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        client.poll(Duration::from_millis(10))
    }));
    assert!(unwound.is_err());
    assert_eq!(handle.wait(), Err(RequestError::Internal));
}

/// The timeout travels as the request's deadline (docs/deadlines.md): the
/// default one for a two-way request; for a one-way request, whose caller
/// waits for nothing, only one set on the request itself.
#[test]
fn the_deadline_sent_is_the_callers_wait() {
    let mut h = Harness::ready();
    let deadline_of = |actions: &[Action]| match actions {
        [Action::Send(Message::Request(r))] => r.deadline_ms,
        other => panic!("{other:?}"),
    };
    let (_two_way, sent) = h.submit(10, (7, 1), Flags::empty());
    assert_eq!(deadline_of(&sent), DEFAULT_TIMEOUT as u32);
    let (_one_way, sent) = h.submit(11, (7, 2), Flags::ONE_WAY);
    assert_eq!(deadline_of(&sent), 0, "no deadline from the default");
    let (_timed, sent) = h.submit_full(12, (7, 3), Flags::ONE_WAY, Some(ms(500)), None, &[b"x"]);
    assert_eq!(deadline_of(&sent), 500);
}

/// An ERROR naming a request with status FORBIDDEN (what a proxy sends a
/// client that has not greeted it yet) ends it `Forbidden`, as a RESPONSE
/// FORBIDDEN does.
#[test]
fn an_error_with_status_forbidden_ends_the_request_forbidden() {
    let mut h = Harness::ready();
    let mut a = h.send(10, (7, 1), Flags::empty());
    h.feed(
        20,
        Message::Error(ErrorReply {
            error: "forbidden: key K may not send request type 7".to_owned(),
            request: Some(rref(7, 1)),
            status: Some(Status::Forbidden),
        }),
    );
    let err = expect_err(&mut a);
    assert!(err.is_forbidden(), "{err:?}");
}

#[test]
fn an_expired_that_overtakes_the_timer_ends_the_request_as_a_timeout() {
    let mut h = Harness::ready();
    let (mut handle, _) = h.submit_full(10, (7, 1), Flags::empty(), Some(ms(300)), None, &[]);
    // The broker's EXPIRED is read before the client's timer (at 310) runs.
    h.feed(
        312,
        response(&[], 7, 1, Status::Expired, Some("deadline"), &[]),
    );
    assert_eq!(expect_err(&mut handle), RequestError::Timeout(ms(300)));
    let s = h.core.stats();
    assert_eq!((s.requests_timed_out, s.outstanding), (1, 0));
    // The EXPIRED itself (the request never ran) is still told.
    assert_eq!(h.events(), [refusal_event(1, Status::Expired, "deadline")]);
    // The timer that comes later finds nothing to end.
    h.tick(400);
    assert_eq!(h.core.stats().requests_timed_out, 1);
}

// ------------------------------------------------------------ cancel

/// A handle whose canceller records what it was asked, as the driver's
/// command would carry it.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<CancelAsk>>>;
type CancelAsk = (
    (RequestType, RequestId),
    std::sync::Arc<super::response::Shared>,
);

fn cancellable(h: &mut Harness, n: u64, key: (RequestType, RequestId)) -> (ResponseHandle, Asked) {
    let handle = h.send(n, key, Flags::empty());
    let asked = Asked::default();
    let log = asked.clone();
    let canceller = super::response::Canceller::new(move |t, id, shared| {
        log.lock().unwrap().push(((t, id), shared));
    });
    (handle.with_canceller(canceller), asked)
}

/// What the driver does with a cancel the handle asked for.
fn deliver_cancels(h: &mut Harness, n: u64, asked: &Asked) -> Vec<Action> {
    let now = h.at(n);
    for (key, shared) in asked.lock().unwrap().drain(..) {
        h.core.on_cancel(now, key, &shared);
    }
    h.drain()
}

#[test]
fn cancel_ends_the_handle_and_sends_cancel_to_a_1_5_broker() {
    let mut h = Harness::ready();
    let (mut handle, asked) = cancellable(&mut h, 1, (7, 1));
    assert!(handle.cancel());
    assert_eq!(expect_err(&mut handle), RequestError::Cancelled);
    let actions = deliver_cancels(&mut h, 2, &asked);
    let [Action::Send(Message::Cancel(c))] = actions.as_slice() else {
        panic!("expected CANCEL, got {:?}", kinds(&actions));
    };
    assert_eq!((c.request_type, c.request_id, c.dispatch_tag), (7, 1, 0));
    assert!(c.route.is_empty());
    let stats = h.core.stats();
    assert_eq!((stats.requests_cancelled, stats.outstanding), (1, 0));
    // An outcome that crossed the CANCEL goes to the events.
    assert!(h.feed(3, ok(7, 1)).is_empty());
    assert!(matches!(
        h.events().as_slice(),
        [ClientEvent::Response { request_id: 1, .. }]
    ));
    // A second cancel finds the outcome taken: nothing more.
    assert!(!handle.cancel());
    assert!(asked.lock().unwrap().is_empty());
}

#[test]
fn cancel_after_the_outcome_cancels_nothing() {
    let mut h = Harness::ready();
    let (handle, asked) = cancellable(&mut h, 1, (7, 1));
    assert!(h.feed(2, ok(7, 1)).is_empty());
    assert!(!handle.cancel());
    assert!(asked.lock().unwrap().is_empty());
    assert_eq!(handle.wait().map(|r| r.request_id), Ok(1));
}

#[test]
fn a_broker_older_than_1_5_is_not_sent_cancel() {
    let mut h = Harness::new().greeting();
    // The broker's WELCOME says minor 4.
    let (mut header, _) = crate::testing::encode(Message::Welcome {
        heartbeat_ms: crate::testing::BROKER_HB,
        max_message_size: 0,
    });
    assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
    header[3] = 4;
    assert!(h.feed_raw(0, &header, Payload::new()).is_empty());
    h.events();
    let (handle, asked) = cancellable(&mut h, 1, (7, 1));
    assert!(handle.cancel());
    // Kind 25 would be refused there: nothing is sent, the request is
    // no longer outstanding all the same.
    assert!(deliver_cancels(&mut h, 2, &asked).is_empty());
    assert_eq!(h.core.stats().outstanding, 0);
    assert_eq!(handle.wait(), Err(RequestError::Cancelled));
}

#[test]
fn a_cancel_for_an_earlier_request_under_the_key_leaves_a_newer_one_alone() {
    let mut h = Harness::ready();
    let (old, asked) = cancellable(&mut h, 1, (7, 1));
    assert!(h.feed(2, ok(7, 1)).is_empty());
    let (_new, _) = cancellable(&mut h, 3, (7, 1));
    // The old handle's state, as a cancel command still in the channel
    // would carry it: it names the old request only.
    let (_, shared) = Slot::new();
    h.core.on_cancel(h.at(4), (7, 1), &shared);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.stats().outstanding, 1);
    drop(old);
    assert!(asked.lock().unwrap().is_empty());
}

#[test]
fn an_awaited_handle_dropped_unresolved_cancels_and_a_blocking_one_does_not() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let mut h = Harness::ready();
    // Never polled: dropping lets the request go on.
    let (handle, asked) = cancellable(&mut h, 1, (7, 1));
    drop(handle);
    assert!(asked.lock().unwrap().is_empty());
    assert_eq!(h.core.stats().outstanding, 1);
    // Polled once, pending, then dropped: cancelled.
    let (mut handle, asked) = cancellable(&mut h, 2, (7, 2));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(std::pin::Pin::new(&mut handle).poll(&mut cx).is_pending());
    drop(handle);
    assert_eq!(kinds(&deliver_cancels(&mut h, 3, &asked)), ["CANCEL"]);
    // Polled to its end, then dropped: nothing to cancel.
    let (mut handle, asked) = cancellable(&mut h, 4, (7, 3));
    assert!(std::pin::Pin::new(&mut handle).poll(&mut cx).is_pending());
    assert!(h.feed(5, ok(7, 3)).is_empty());
    assert!(std::pin::Pin::new(&mut handle).poll(&mut cx).is_ready());
    drop(handle);
    assert!(asked.lock().unwrap().is_empty());
}

/// A request sent while the client greets may reach the broker: its
/// cancel waits for the WELCOME, which says whether the broker takes it.
#[test]
fn a_cancel_while_greeting_goes_at_the_welcome() {
    let mut h = Harness::new().greeting();
    let (handle, asked) = cancellable(&mut h, 1, (7, 1));
    assert!(handle.cancel());
    assert!(deliver_cancels(&mut h, 2, &asked).is_empty());
    assert_eq!(kinds(&h.welcome(3)), ["CANCEL"]);
    // Sent once: a later WELCOME (after a REREGISTER, say) sends nothing.
    assert!(h.welcome(4).is_empty());
}

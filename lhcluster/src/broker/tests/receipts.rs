//! `RECEIPT_SENT` and `RECEIPT_RECEIVED`: when they go, and when a re-send
//! repeats them.

use super::*;

#[test]
fn receipt_sent_follows_the_dispatch() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RECEIPT_ON_SEND, &[]);
    let r = h.expect_receipt_sent(CA, 7, 1);
    assert!(r.route.is_empty());
    h.expect_nothing();
    // Queued: the receipt comes when it is dispatched, not before.
    h.request_held(CA, 7, 2, Flags::RECEIPT_ON_SEND | Flags::ONE_WAY);
    h.result_answered(W1, CA, 7, 1);
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_receipt_sent(CA, 7, 2);
    h.expect_nothing();
}

#[test]
fn receipt_received_is_forwarded_only_when_asked_and_from_the_assigned_worker() {
    let mut h = Harness::with_client_and_worker(2).and_worker_2(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RECEIPT_ON_RECEIVE, &[]);
    h.request_dispatched(CA, W2, 7, 2);
    h.expect_nothing();
    // From another worker: dropped.
    h.receipt_received(W2, 7, 1);
    h.expect_nothing();
    // From the assigned worker: forwarded to the origin.
    h.receipt_received(W1, 7, 1);
    let r = h.expect_receipt_received(CA, 7, 1);
    assert!(r.route.is_empty());
    h.expect_nothing();
    // Not asked for: dropped.
    h.receipt_received(W2, 7, 2);
    h.expect_nothing();
    // Unknown request: dropped.
    h.receipt_received(W1, 7, 42);
    h.expect_nothing();
    h.result_answered_alone(W1, CA, 7, 1);
    let s = h.stats();
    assert_eq!(s.requests_completed, 1);
    assert_eq!(s.malformed_backend, 0);
}

#[test]
fn resend_repeats_receipt_received_only_once_the_worker_sent_it() {
    let mut h = Harness::new().and_client(PROXY).and_worker(1);
    let routed = |flags| {
        Message::Request(Request {
            route: b"r1".to_vec(),
            ..req(7, 1, flags, &[])
        })
    };
    h.client_sends(PROXY, routed(Flags::RECEIPT_ON_RECEIVE));
    h.expect_dispatch_alone(W1, 7, 1, 1);
    // Not received yet: a re-send earns nothing.
    h.client_sends(PROXY, routed(Flags::RECEIPT_ON_RECEIVE));
    h.expect_nothing();
    h.receipt_received(W1, 7, 1);
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"r1");
    h.expect_nothing();
    // Received: a re-send asking for it gets it again, both receipts in order.
    h.client_sends(
        PROXY,
        routed(Flags::RECEIPT_ON_RECEIVE | Flags::RECEIPT_ON_SEND),
    );
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"r1");
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"r1");
    h.expect_nothing();
    // A re-send not asking for it gets nothing.
    h.client_sends(PROXY, routed(Flags::empty()));
    h.expect_nothing();
    assert_eq!(h.stats().requests_resent, 3);
}

#[test]
fn a_retry_must_be_received_again_before_receipt_received_is_repeated() {
    let mut h = Harness::with_client_and_worker(1);
    let flags = Flags::RECEIPT_ON_RECEIVE | Flags::RETRY_ON_DEATH;
    h.request_dispatched_with(CA, W1, (7, 1), flags, &[]);
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.retried_on_w2();
    h.expect_nothing();
    h.request_held(CA, 7, 1, flags);
    h.receipt_received(W2, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.request(CA, 7, 1, flags, &[]);
    h.expect_receipt_received(CA, 7, 1);
    h.expect_nothing();
}

//! Client names (`HELLO` again) and `reply_to`: responses to the named
//! client, receipts to the sender.

use super::*;

#[test]
fn hello_again_updates_interval_and_name_and_is_welcomed_again() {
    let mut h = Harness::new();
    h.connect_named(CA, "alice");
    h.hello_every(CA, Some("alicia"), 100);
    h.expect_welcome(Side::Frontend, CA);
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request_reply_to(CB, (7, 1), Flags::empty(), "alicia");
    h.expect_dispatch(W1, 7, 1, 1);
    h.result_answered(W1, CA, 7, 1);
    // The new interval (100 ms x 3) applies.
    h.at(250);
    h.client_heartbeat(CB);
    h.worker_heartbeat(W1);
    h.tick_at(301);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1, "client-a forgotten, client-b kept");
    assert_eq!(h.stats().client_deaths, 1);
}

#[test]
fn reply_to_sends_the_response_to_the_named_client_and_receipts_to_the_sender() {
    let mut h = Harness::with_client_and_worker(1);
    h.connect_named(CB, "bob");
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(
                7,
                1,
                Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
                &[b"q"],
            )
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CA, 7, 1);
    h.result_relayed(W1, CB, (7, 1), &[b"for-bob"]);
}

#[test]
fn unknown_reply_to_is_refused() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_reply_to(CA, (7, 1), Flags::ONE_WAY, "nobody");
    let r = h.expect_status(CA, 7, 1, Status::UnknownReplyTo);
    assert!(r.error.is_some());
    let s = h.quiet_stats();
    assert_eq!((s.requests_unknown_reply_to, s.requests_dispatched), (1, 0));
}

#[test]
fn a_later_hello_with_the_same_name_rebinds_it() {
    let mut h = Harness::with_named_clients(&[(CB, "bob"), (CC, "bob")]).and_worker(1);
    h.request_reply_to(CA, (7, 1), Flags::empty(), "bob");
    h.expect_dispatch(W1, 7, 1, 1);
    h.result_answered_alone(W1, CC, 7, 1);
    // CB leaving does not release the name CC now holds.
    h.client_sends(CB, Message::Disconnect { route: Vec::new() });
    h.request_reply_to(CA, (7, 2), Flags::empty(), "bob");
    h.expect_dispatch_alone(W1, 7, 2, 1);
}

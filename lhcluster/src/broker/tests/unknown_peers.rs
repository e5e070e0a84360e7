//! Messages from peers the broker does not know: asked to re-register.

use super::*;

#[test]
fn messages_from_an_unknown_worker_ask_it_to_reregister() {
    let mut h = Harness::new();
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
    h.result(W1, 7, 1, Status::Ok, &[b"x"]);
    h.expect_reregister(Side::Backend, W1);
    h.receipt_received(W1, 7, 1);
    h.expect_reregister(Side::Backend, W1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    let s = h.quiet_stats();
    assert_eq!((s.unknown_workers, s.workers), (3, 0));
    assert_eq!(s.malformed_backend, 0);
    h.connect_worker(W1, &[7], 1);
    assert_eq!(h.stats().workers, 1);
}

#[test]
fn a_request_from_an_unknown_client_is_processed_and_reregister_sent() {
    let mut h = Harness::new().and_worker(1);
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[b"x"]);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_receipt_sent(CA, 7, 1);
    h.expect_nothing();
    // Known from now on: no second REREGISTER.
    h.request_held(CA, 7, 2, Flags::empty());
    h.result_answered(W1, CA, 7, 1);
    h.expect_dispatch_alone(W1, 7, 2, 1);
}

#[test]
fn a_heartbeat_from_an_unknown_client_asks_it_to_reregister() {
    let mut h = Harness::new();
    h.client_heartbeat(CA);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_nothing();
    // The core also registers it (with the broker's interval), where
    // protocol.md §13.2 keeps it Unknown: reported as a mismatch.
    assert_eq!(h.stats().clients, 1);
    h.client_heartbeat(CA);
    h.expect_nothing();
    // A DISCONNECT from an unknown client is ignored.
    h.client_sends(CB, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
}

//! Takeovers (`ALLOW_REDIRECT`): the newer requester gets the outcome and
//! the receipts already earned, the previous one is told `REDIRECTED`.

use super::*;

/// `CA` and `CB` connected, and `W1` (capacity 1) running request 7/1,
/// which `CA` sent with `flags` (`RECEIPT_ON_SEND` among them) and the body
/// "a", and got its RECEIPT_SENT.
fn with_a_running(flags: Flags) -> Harness {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), flags, &[b"a"]);
    h.expect_receipt_sent(CA, 7, 1);
    h
}

#[test]
fn takeover_of_an_in_flight_request_hands_over_the_earned_receipts() {
    let mut h = Harness::with_two_clients();
    h.connect(CC);
    h.connect_worker(W1, &[7], 1);
    let flags = Flags::ALLOW_REDIRECT | Flags::RECEIPT_ON_RECEIVE | Flags::ONE_WAY;
    h.request_dispatched_with(CA, W1, (7, 1), flags, &[]);
    // Not received yet: B gets only what it asked and was earned.
    h.request(CB, 7, 1, flags | Flags::RECEIPT_ON_SEND, &[]);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CB, 7, 1);
    h.request(CC, 7, 1, Flags::RECEIPT_ON_RECEIVE, &[]);
    h.expect_receipt_received(CC, 7, 1);
    h.expect_nothing();
    h.result_answered_alone(W1, CC, 7, 1);
}

#[test]
fn takeover_of_a_retried_pending_request_gets_receipt_sent_on_dispatch() {
    let flags = Flags::ALLOW_REDIRECT | Flags::RETRY_ON_DEATH | Flags::RECEIPT_ON_SEND;
    let mut h = with_a_running(flags);
    kill_by_silence(&mut h, W1, &[], &[CA, CB]);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    h.request(CB, 7, 1, Flags::RECEIPT_ON_SEND | Flags::ONE_WAY, &[b"b"]);
    h.expect_status_alone(CA, 7, 1, Status::Redirected);
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch_of(W2, (7, 1), 2, &[b"b"]);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
}

#[test]
fn takeover_then_retry_sends_receipt_sent_once() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::ALLOW_REDIRECT, &[]);
    h.request(
        CB,
        7,
        1,
        Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH,
        &[b"b"],
    );
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA, CB]);
    h.expect_dispatch_alone(W2, 7, 1, 2);
}

#[test]
fn takeover_of_a_pending_request_replaces_origin_flags_and_payload() {
    let mut h = Harness::with_two_clients();
    h.request(CA, 7, 0, Flags::empty(), &[b"before"]);
    let flags_a = Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT | Flags::RECEIPT_ON_SEND;
    h.request(CA, 7, 1, flags_a, &[b"from-a"]);
    h.request(CA, 7, 2, Flags::empty(), &[b"after"]);
    let flags_b = Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
    h.request(CB, 7, 1, flags_b, &[b"from-b"]);
    let r = h.expect_status(CA, 7, 1, Status::Redirected);
    assert!(r.payload.is_empty());
    let s = h.quiet_stats();
    assert_eq!(
        (s.requests_redirected, s.requests_rejected, s.pending),
        (1, 0, 3)
    );

    // Queue position kept; payload and flags replaced.
    h.connect_worker(W1, &[7], 3);
    h.expect_dispatch(W1, 7, 0, 1);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.flags, flags_b);
    assert_eq!(frames(&d.payload), owned(&[b"from-b"]));
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_dispatch_alone(W1, 7, 2, 1);
    h.receipt_received(W1, 7, 1);
    h.expect_receipt_received(CB, 7, 1);
    h.result(W1, 7, 1, Status::Ok, &[b"answer"]);
    h.expect_status_alone(CB, 7, 1, Status::Ok);
}

#[test]
fn takeover_of_an_in_flight_request_moves_the_response() {
    let flags_a = Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT | Flags::RECEIPT_ON_SEND;
    let mut h = with_a_running(flags_a);
    h.request(CB, 7, 1, Flags::RECEIPT_ON_SEND, &[b"b"]);
    // Nothing goes to the worker; A is told, B gets its receipt at once.
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.expect_receipt_sent(CB, 7, 1);
    h.expect_nothing();
    assert_eq!(h.stats().requests_dispatched, 1);
    // B's flags have no ALLOW_REDIRECT: a third requester is rejected.
    h.connect(CC);
    h.request(CC, 7, 1, Flags::empty(), &[]);
    h.expect_status(CC, 7, 1, Status::Rejected);
    // A re-send from A is now "another origin" too.
    h.request(CA, 7, 1, flags_a, &[]);
    h.expect_status(CA, 7, 1, Status::Rejected);
    h.result_relayed(W1, CB, (7, 1), &[b"r"]);
}

#[test]
fn takeover_by_a_one_way_request_sends_no_outcome() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request(
        CA,
        7,
        1,
        Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT,
        &[],
    );
    h.expect_dispatch(W1, 7, 1, 1);
    h.request(CB, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_status_alone(CA, 7, 1, Status::Redirected);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
}

#[test]
fn one_way_first_requester_without_notify_on_redirect_hears_nothing() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::ALLOW_REDIRECT | Flags::ONE_WAY, &[]);
    h.request_held(CB, 7, 1, Flags::empty());
    assert_eq!(h.stats().requests_redirected, 1);
    h.result_answered_alone(W1, CB, 7, 1);
}

/// protocol.md §5/§6 say REDIRECTED goes to the previous requester only if
/// its flags had NOTIFY_ON_REDIRECT. The core deliberately sends it to every
/// two-way previous requester as well (so that it never waits forever).
/// This test pins the code's behaviour; the mismatch is reported.
#[test]
fn two_way_first_requester_without_notify_on_redirect_is_told_redirected() {
    for pending in [true, false] {
        let mut h = Harness::with_two_clients();
        h.request(CA, 7, 1, Flags::ALLOW_REDIRECT, &[]);
        if !pending {
            h.connect_worker(W1, &[7], 1);
            h.expect_dispatch(W1, 7, 1, 1);
        }
        h.request(CB, 7, 1, Flags::empty(), &[]);
        h.expect_status_alone(CA, 7, 1, Status::Redirected);
    }
}

#[test]
fn takeover_with_retry_on_death_uses_the_new_payload_for_a_retry() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(
        CA,
        W1,
        (7, 1),
        Flags::ALLOW_REDIRECT | Flags::ONE_WAY,
        &[b"old"],
    );
    h.request(CB, 7, 1, Flags::RETRY_ON_DEATH, &[b"new"]);
    h.expect_nothing();
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA, CB]);
    h.expect_dispatch_of(W2, (7, 1), 2, &[b"new"]);
    h.expect_nothing();
    h.result_answered_alone(W2, CB, 7, 1);
}

#[test]
fn redirected_goes_to_the_previous_origin_and_the_outcome_to_the_new_destination() {
    let mut h = Harness::with_named_clients(&[(CB, "bob"), (CC, "carol")]).and_worker(1);
    h.request_reply_to(
        CA,
        (7, 1),
        Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT,
        "bob",
    );
    h.expect_dispatch(W1, 7, 1, 1);
    // CB takes over, sending the response to carol.
    h.request_reply_to(CB, (7, 1), Flags::empty(), "carol");
    h.expect_status_alone(CA, 7, 1, Status::Redirected);
    h.result(W1, 7, 1, Status::Ok, &[b"c"]);
    h.expect_status_alone(CC, 7, 1, Status::Ok);
}

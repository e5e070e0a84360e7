//! Requests with a (type, id) the broker already holds: rejected from
//! another client, idempotent from the same one, released once completed.

use super::*;

#[test]
fn duplicate_from_another_client_while_pending_is_rejected() {
    let mut h = Harness::with_two_clients();
    h.request(CA, 7, 1, Flags::empty(), &[b"from-a"]);
    h.request(CB, 7, 1, Flags::empty(), &[b"from-b"]);
    let r = h.expect_status(CB, 7, 1, Status::Rejected);
    assert!(r.payload.is_empty());
    let s = h.quiet_stats();
    assert_eq!((s.requests_rejected, s.pending), (1, 1));

    h.connect_worker(W1, &[7], 2);
    h.expect_dispatch_of(W1, (7, 1), 1, &[b"from-a"]);
    h.expect_nothing();
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn duplicate_from_another_client_while_in_flight_is_rejected() {
    let mut h = Harness::with_two_clients().and_worker(2);
    h.request_dispatched(CA, W1, 7, 1);
    // Even a one-way duplicate gets its refusal.
    h.request(CB, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_status_alone(CB, 7, 1, Status::Rejected);
    assert_eq!(h.stats().requests_dispatched, 1);
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn same_client_resend_while_pending_is_idempotent() {
    let mut h = Harness::with_client();
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[b"original"]);
    // Not handed to a worker yet: no RECEIPT_SENT for the re-send either.
    h.request(
        CA,
        7,
        1,
        Flags::RECEIPT_ON_SEND | Flags::ONE_WAY,
        &[b"changed"],
    );
    let s = h.quiet_stats();
    assert_eq!(
        (s.requests_resent, s.requests_rejected, s.pending),
        (1, 0, 1)
    );

    h.connect_worker(W1, &[7], 2);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    // Payload and flags are not replaced by a re-send.
    assert_eq!(frames(&d.payload), owned(&[b"original"]));
    assert_eq!(d.flags, Flags::RECEIPT_ON_SEND);
    h.expect_receipt_sent(CA, 7, 1);
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[]);
    // Still two-way: the original flags won.
    h.expect_status_alone(CA, 7, 1, Status::Ok);
}

#[test]
fn same_client_resend_while_in_flight_repeats_receipt_sent_only_when_asked() {
    let mut h = Harness::with_request_running(2);
    h.request_held(CA, 7, 1, Flags::empty());
    h.request(CA, 7, 1, Flags::RECEIPT_ON_SEND, &[]);
    h.expect_receipt_sent(CA, 7, 1);
    let s = h.quiet_stats();
    assert_eq!(
        (
            s.requests_resent,
            s.requests_dispatched,
            s.requests_rejected
        ),
        (2, 1, 0)
    );
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn a_completed_key_is_released_and_runs_again() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"one"]);
    h.result_answered(W1, CA, 7, 1);
    h.request(CA, 7, 1, Flags::empty(), &[b"two"]);
    h.expect_dispatch_of(W1, (7, 1), 1, &[b"two"]);
    h.result_answered(W1, CA, 7, 1);
    // Another client may now use the key too.
    h.request(CB, 7, 1, Flags::empty(), &[b"three"]);
    h.expect_dispatch_alone(W1, 7, 1, 1);
    assert_eq!(h.stats().requests_resent, 0);
}

#[test]
fn same_id_with_another_type_is_another_request() {
    let mut h = Harness::with_two_clients();
    h.connect_worker(W1, &[7, 8], 2);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_dispatched(CB, W1, 8, 1);
    h.expect_nothing();
}

//! Queue bounds (`OVERLOADED`), `FAIL_FAST` (`NO_WORKERS`), and types
//! listed in the stats only while they have work or workers.

use super::*;

#[test]
fn per_type_queue_bound_answers_overloaded() {
    let mut h = Harness::with_config(|c| c.max_pending_per_type = 2);
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.request_held(CA, 7, 2, Flags::empty());
    h.request(CA, 7, 3, Flags::empty(), &[]);
    let r = h.expect_status(CA, 7, 3, Status::Overloaded);
    assert!(r.error.is_some());
    // One-way requests get the refusal too.
    h.request(CA, 7, 4, Flags::ONE_WAY, &[]);
    h.expect_status(CA, 7, 4, Status::Overloaded);
    // Another type has its own bound.
    h.request_held(CA, 8, 1, Flags::empty());
    let s = h.stats();
    assert_eq!((s.requests_overloaded, s.pending), (2, 3));
    assert_eq!(h.type_stats(7).pending, 2);

    // The refused key was not stored: once there is room it is accepted.
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.request_held(CA, 7, 3, Flags::empty());
    assert_eq!(h.type_stats(7).pending, 2);
}

#[test]
fn total_queue_bound_answers_overloaded() {
    let mut h = Harness::with_config(|c| c.max_pending_total = 3);
    h.connect(CA);
    h.request(CA, 1, 1, Flags::empty(), &[]);
    h.request(CA, 2, 1, Flags::empty(), &[]);
    h.request_held(CA, 3, 1, Flags::empty());
    h.request(CA, 4, 1, Flags::empty(), &[]);
    h.expect_status_alone(CA, 4, 1, Status::Overloaded);
    let s = h.stats();
    assert_eq!((s.requests_overloaded, s.pending), (1, 3));
    // The refused request left no type behind.
    assert!(!s.types.contains_key(&4));
}

#[test]
fn zero_bounds_still_dispatch_to_a_free_worker() {
    let mut h = Harness::with_config(|c| {
        c.max_pending_per_type = 0;
        c.max_pending_total = 0;
    });
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.request_dispatched(CA, W1, 7, 1);
    // The worker is busy now: nothing may be queued.
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_status_alone(CA, 7, 2, Status::Overloaded);
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight, s.requests_overloaded), (0, 1, 1));
}

#[test]
fn fail_fast_without_worker_answers_no_workers() {
    let mut h = Harness::with_client();
    h.request(CA, 7, 1, Flags::FAIL_FAST, &[]);
    let r = h.expect_status(CA, 7, 1, Status::NoWorkers);
    assert!(r.payload.is_empty());
    h.request(CA, 7, 2, Flags::FAIL_FAST | Flags::ONE_WAY, &[]);
    h.expect_status_alone(CA, 7, 2, Status::NoWorkers);
    let s = h.stats();
    assert_eq!(
        (s.requests_no_workers, s.pending, s.requests_received),
        (2, 0, 2)
    );
    assert!(s.types.is_empty(), "no type left behind: {:?}", s.types);

    // Without FAIL_FAST it queues.
    h.request_held(CA, 7, 3, Flags::empty());
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn fail_fast_queues_when_a_busy_worker_serves_the_type() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_held(CA, 7, 2, Flags::FAIL_FAST);
    assert_eq!(h.stats().pending, 1);
    h.result_answered(W1, CA, 7, 1);
    h.expect_dispatch_alone(W1, 7, 2, 1);
}

#[test]
fn idle_types_are_dropped_from_stats() {
    let mut h = Harness::with_client();
    h.connect_worker(W1, &[5], 1);
    h.request_dispatched(CA, W1, 5, 1);
    h.result_answered(W1, CA, 5, 1);
    // Still listed while a worker serves it.
    assert_eq!(h.type_stats(5), ts(1, 1, 1, 0, 0, 1));
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    let s = h.stats();
    assert!(s.types.is_empty(), "{:?}", s.types);
    assert_eq!(s.workers, 0);

    // A type that was only refused never lingers either.
    h.request(CA, 6, 1, Flags::FAIL_FAST, &[]);
    h.expect_status(CA, 6, 1, Status::NoWorkers);
    h.request_reply_to(CA, (9, 1), Flags::empty(), "nobody");
    h.expect_status(CA, 9, 1, Status::UnknownReplyTo);
    assert!(h.stats().types.is_empty());
}

#[test]
fn type_stays_listed_while_work_is_queued_or_in_flight() {
    let mut h = Harness::with_client();
    h.connect_worker(W1, &[5], 1);
    h.request_dispatched(CA, W1, 5, 1);
    h.request(CA, 5, 2, Flags::empty(), &[]);
    // The worker re-registers without type 5: its request stays in flight.
    h.ready(W1, &[6], 1);
    h.expect_welcome(Side::Backend, W1);
    h.expect_nothing();
    assert_eq!(h.type_stats(5), ts(2, 1, 0, 1, 1, 0));
    h.result_answered(W1, CA, 5, 1);
    // Type 5 is not served any more: the queued one stays queued.
    h.expect_nothing();
    assert_eq!(h.type_stats(5), ts(2, 1, 1, 1, 0, 0));
}

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
    let mut h = Harness::with_request_running(1);
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
    let s = h.quiet_stats();
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

// ----- byte bounds (docs/bounds.md) -------------------------------------

impl Harness {
    /// The driver's outbox reports `event` for a peer on `side`.
    fn peer_event(&mut self, side: Side, peer: &[u8], event: crate::outbox::PeerEvent) {
        let now = self.now();
        self.core.on_peer_event(now, side, peer, event);
    }
}

#[test]
fn pending_bytes_bound_answers_overloaded_and_counts_retry_copies() {
    let mut h = Harness::with_config(|c| c.max_pending_bytes = 10);
    h.connect(CA);
    h.request(CA, 7, 1, Flags::empty(), &[b"123456"]);
    h.expect_nothing();
    assert_eq!(h.stats().pending_bytes, 6);
    // 6 + 6 > 10: refused, and not stored.
    h.request(CA, 7, 2, Flags::empty(), &[b"abc", b"def"]);
    h.expect_status_alone(CA, 7, 2, Status::Overloaded);
    // 6 + 4 fits.
    h.request_held(CA, 7, 3, Flags::empty());
    h.request(CA, 7, 4, Flags::empty(), &[b"wxyz"]);
    h.expect_nothing();
    assert_eq!(h.stats().pending_bytes, 10);

    // Dispatching releases the queued bytes; a RETRY_ON_DEATH request keeps
    // a copy, counted until it completes.
    h.connect_worker(W1, &[7], 3);
    h.expect_dispatch(W1, 7, 1, 1);
    h.expect_dispatch(W1, 7, 3, 1);
    h.expect_dispatch(W1, 7, 4, 1);
    assert_eq!(h.stats().pending_bytes, 0);
    h.result_answered(W1, CA, 7, 1);
    h.request(CA, 8, 1, Flags::RETRY_ON_DEATH, &[b"retry"]);
    h.connect_worker(W2, &[8], 1);
    h.expect_dispatch(W2, 8, 1, 1);
    assert_eq!(h.stats().pending_bytes, 5, "the retry copy");
    // A worker death queues the copy (still 5), the next dispatch is the
    // last try (no copy kept), the result leaves nothing.
    h.peer_event(Side::Backend, W2, crate::outbox::PeerEvent::Cut);
    assert_eq!(h.stats().pending_bytes, 5);
    h.connect_worker(W3, &[8], 1);
    h.expect_dispatch(W3, 8, 1, 2);
    assert_eq!(h.stats().pending_bytes, 0);
    h.result_answered(W3, CA, 8, 1);
    assert_eq!(h.stats().pending_bytes, 0);
}

#[test]
fn a_client_over_its_outbox_limit_is_refused_until_it_catches_up() {
    use crate::outbox::PeerEvent;
    let mut h = Harness::with_two_clients().and_worker(4);
    h.peer_event(Side::Frontend, CA, PeerEvent::OverLimit);
    h.expect_nothing();
    h.request(CA, 7, 1, Flags::empty(), &[b"x"]);
    let r = h.expect_status(CA, 7, 1, Status::Overloaded);
    assert!(r.error.is_some_and(|e| e.contains("not reading")));
    h.expect_nothing();
    // Others are served meanwhile.
    h.request_dispatched(CB, W1, 7, 5);
    let s = h.stats();
    assert_eq!((s.refused_slow, s.requests_overloaded), (1, 1));
    // The refusal kept no dedupe entry: caught up, the same key runs.
    h.peer_event(Side::Frontend, CA, PeerEvent::CaughtUp);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"x"]);
}

#[test]
fn a_cut_client_is_sent_shutdown_forgotten_and_its_queued_requests_end() {
    use crate::outbox::PeerEvent;
    let mut h = Harness::with_two_clients();
    h.connect_named(CA, "alice");
    h.request_held(CA, 7, 1, Flags::empty());
    h.request_held(CA, 8, 2, Flags::empty());
    h.request_held(CB, 7, 3, Flags::empty());
    h.peer_event(Side::Frontend, CA, PeerEvent::OverLimit);
    h.peer_event(Side::Frontend, CA, PeerEvent::Cut);
    h.expect_kind(Side::Frontend, CA, "SHUTDOWN");
    let s = h.quiet_stats();
    assert_eq!(
        (
            s.slow_consumers,
            s.requests_dropped_slow,
            s.pending,
            s.clients
        ),
        (1, 2, 1, 1)
    );
    // Type 8 had nothing else: gone from the stats.
    assert!(!s.types.contains_key(&8));
    // Its name is released, and the others' work goes on.
    h.request_reply_to(CB, (7, 4), Flags::empty(), "alice");
    h.expect_status(CB, 7, 4, Status::UnknownReplyTo);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 3, 1);
    // Speaking again, it is an unknown client (asked to greet) and served.
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_reregister(Side::Frontend, CA);
}

#[test]
fn a_worker_cut_for_not_reading_is_declared_dead_and_its_work_retried() {
    use crate::outbox::PeerEvent;
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RETRY_ON_DEATH, &[b"job"]);
    h.connect_worker(W2, &[7], 1);
    h.expect_nothing();
    h.peer_event(Side::Backend, W1, PeerEvent::OverLimit);
    h.peer_event(Side::Backend, W1, PeerEvent::Cut);
    h.expect_dispatch(W2, 7, 1, 2);
    let s = h.stats();
    assert_eq!((s.slow_workers, s.worker_deaths, s.workers), (1, 1, 1));
    h.result_answered_alone(W2, CA, 7, 1);
}

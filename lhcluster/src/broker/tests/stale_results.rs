//! Results of a dispatch that is no longer current (protocol.md §8.3): a
//! worker declared dead comes back, is given the retry of its own request
//! (or a new request under the same key), and then sends the result of
//! what it ran before.

use super::*;

/// The fault campaign's sequence (issue 18, finding 4): `W1` (capacity 1)
/// runs attempt 1 of a `RETRY_ON_DEATH` request, is partitioned and
/// declared dead; the request is queued again; `W1` comes back, registers
/// and is given attempt 2; then attempt 1's result, finished during the
/// partition, arrives. It must not answer the request, nor free the slot
/// attempt 2 holds.
#[test]
fn a_result_of_an_earlier_attempt_neither_answers_nor_frees_a_credit() {
    let mut h = Harness::with_a_retry_running(&[b"job"]);
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_nothing();
    assert_eq!((h.stats().pending, h.stats().requests_retried), (1, 1));

    // The partition heals: W1 registers again and gets attempt 2.
    h.connect_worker(W1, &[7], 1);
    let d = h.expect_dispatch(W1, 7, 1, 2);
    assert_eq!(frames(&d.payload), owned(&[b"job"]));

    // Attempt 1's result is dropped and keeps attempt 2's slot; attempt
    // 2's answers.
    stale_then_current(&mut h, (1, 0), (2, 0));
    assert_eq!(h.type_stats(7), ts(2, 3, 1, 0, 1, 1));
}

/// The case the attempt cannot tell (protocol.md §8.3): request 7/1 ends
/// by `WORKER_DEATH` while `W1` (capacity 1) is partitioned; `W1` comes
/// back, and a *new* request 7/1 is dispatched to it, attempt 1 again; then
/// the old run's result arrives, sent before `W1` received the new
/// DISPATCH. Its tag names the old dispatch: dropped and counted, and the
/// slot stays taken until the new run's result.
#[test]
fn a_result_of_an_ended_request_does_not_answer_a_new_one_under_its_key() {
    let (mut h, old, new) = ended_and_its_key_back_on_its_worker();
    assert_ne!(new.dispatch_tag, old, "each dispatch has its own tag");
    // The old run's result (same key, same attempt, the old tag) is
    // dropped and keeps the new run's slot; the new run's answers.
    stale_then_current(&mut h, (1, old), (1, new.dispatch_tag));
}

/// The same sequence with a worker that predates tags (attempt only): its
/// old result cannot be told from the new run's, and is taken as the
/// answer (the limit protocol.md §8.3 states for such workers).
#[test]
fn without_a_tag_a_result_of_an_ended_request_is_taken_for_the_new_one() {
    let (mut h, _, _) = ended_and_its_key_back_on_its_worker();
    h.result_attempt(W1, 7, 1, 1, Status::Ok, &[b"old run"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"old run"]));
    assert_eq!(h.stats().stale_results, 0);
}

/// A tagged result is judged by its tag alone: with the current tag it
/// answers, whatever attempt it names.
#[test]
fn the_tag_decides_over_the_attempt() {
    let mut h = retried_back_on_its_worker();
    let tag = h.dispatches[&(W1.to_vec(), 7, 1)].1;
    h.result_tagged(W1, 7, 1, (1, tag), Status::Ok, &[b"current"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"current"]));
    assert_eq!(h.stats().stale_results, 0);
}

/// A malformed RESULT carrying an old tag fails nothing (§8.4): stale
/// before it is garbled, even at the current attempt.
#[test]
fn a_garbled_result_with_an_old_tag_fails_nothing() {
    let (mut h, old, _) = ended_and_its_key_back_on_its_worker();
    let (mut header, _) = encode(Message::Result(WorkResult {
        request_type: 7,
        request_id: 1,
        attempt: 1,
        dispatch_tag: old,
        status: Status::Ok,
        error: None,
        payload: Payload::new(),
    }));
    // A repeated field's last value wins: status 0, which is invalid.
    header.extend([0x38, 0x00]);
    stale_garbled_result_fails_nothing(&mut h, &header);
}

/// The same late result after attempt 2 went to another worker is not
/// assigned to its sender at all: `unknown_results`, as before.
#[test]
fn a_result_of_an_earlier_attempt_on_another_worker_is_unknown() {
    let mut h = Harness::with_a_retry_running(&[]);
    h.retried_on_w2();
    h.connect_worker(W1, &[7], 1);
    h.result_attempt(W1, 7, 1, 1, Status::Ok, &[]);
    let s = h.quiet_stats();
    assert_eq!((s.stale_results, s.unknown_results), (0, 1));
    h.result_answered(W2, CA, 7, 1);
}

/// A result naming an attempt the request never had (a later one) is no
/// answer either.
#[test]
fn a_result_of_a_future_attempt_is_stale() {
    let mut h = Harness::with_request_running(1);
    h.result_attempt(W1, 7, 1, 2, Status::Ok, &[]);
    h.expect_nothing();
    assert_eq!(h.stats().stale_results, 1);
    h.result_answered(W1, CA, 7, 1);
}

/// A 1.0 worker sends no attempt: its result answers the request assigned
/// to it, whatever the attempt (protocol.md §3.2, §8.3).
#[test]
fn a_result_without_attempt_answers_the_current_one() {
    let mut h = retried_back_on_its_worker();
    h.result_attempt(W1, 7, 1, 0, Status::Ok, &[b"v1.0"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"v1.0"]));
    let s = h.quiet_stats();
    assert_eq!(
        (s.stale_results, s.requests_completed, s.in_flight),
        (0, 1, 0)
    );
}

/// A malformed RESULT of an earlier attempt does not end the current one
/// as `FAILED` (§8.4): it is stale before it is garbled.
#[test]
fn a_garbled_result_of_an_earlier_attempt_fails_nothing() {
    let mut h = retried_back_on_its_worker();
    // RESULT{type 7, id 1, attempt 1} with status 0 (invalid).
    let header = [0x08, 0x01, 0x18, 0x05, 0x28, 0x07, 0x30, 0x01, 0x78, 0x01];
    stale_garbled_result_fails_nothing(&mut h, &header);
}

/// The sequence of the first test up to attempt 2's DISPATCH: `W1`
/// (capacity 1) declared dead while running attempt 1 of request 7/1 from
/// `CA`, registered again, and given attempt 2.
fn retried_back_on_its_worker() -> Harness {
    let mut h = Harness::with_a_retry_running(&[]);
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 2);
    h
}

/// The sequence of the reused-key test up to the new DISPATCH: `W1`
/// (capacity 1) declared dead while running request 7/1 ("old") from `CA`,
/// which ends `WORKER_DEATH`; `W1` registered again and given a new request
/// 7/1 ("new"), attempt 1 again. Returns the old dispatch's tag and the new
/// DISPATCH.
fn ended_and_its_key_back_on_its_worker() -> (Harness, u64, Dispatch) {
    let mut h = Harness::with_client_and_worker(1);
    h.request(CA, 7, 1, Flags::empty(), &[b"old"]);
    let old = h.expect_dispatch(W1, 7, 1, 1).dispatch_tag;
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    h.connect_worker(W1, &[7], 1);
    let new = h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"new"]);
    assert_eq!(frames(&new.payload), owned(&[b"new"]));
    (h, old, new)
}

/// `W1` (capacity 1, running request 7/1 from `CA`) sends `header`, a
/// RESULT with an invalid status that names an attempt or dispatch no
/// longer current: it gets an ERROR and is counted stale, and fails
/// nothing: 7/1 stays in flight, and its current result answers it.
fn stale_garbled_result_fails_nothing(h: &mut Harness, header: &[u8]) {
    let e = h.backend_refused(W1, header, Payload::new());
    assert!(e.error.contains("invalid status"), "{}", e.error);
    let s = h.quiet_stats();
    assert_eq!((s.stale_results, s.in_flight), (1, 1));
    h.result_answered(W1, CA, 7, 1);
}

/// `W1` (capacity 1, running request 7/1 from `CA`) sends a RESULT naming
/// `stale` (attempt, tag), then one naming `current`. The first is dropped
/// and counted, and its slot stays taken: request 7/2 waits. The second
/// answers 7/1 and frees the slot, which 7/2 then takes.
fn stale_then_current(h: &mut Harness, stale: (u32, u64), current: (u32, u64)) {
    let before = h.type_stats(7);
    h.result_tagged(W1, 7, 1, stale, Status::Ok, &[b"stale"]);
    let s = h.quiet_stats();
    assert_eq!((s.stale_results, s.unknown_results), (1, 0));
    assert_eq!((s.requests_completed, s.in_flight), (0, 1));

    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.expect_nothing();
    let waiting = TypeStats {
        received: before.received + 1,
        pending: 1,
        ..before
    };
    assert_eq!(h.type_stats(7), waiting);

    h.result_tagged(W1, 7, 1, current, Status::Ok, &[b"current"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"current"]));
    h.expect_dispatch(W1, 7, 2, 1);
    h.expect_nothing();
    assert_eq!(h.stats().requests_completed, 1);
}

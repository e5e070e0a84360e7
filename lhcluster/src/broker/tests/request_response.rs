//! A request to a free worker and its result answered: statuses, payload
//! frames moved through, request id zero.

use super::*;

#[test]
fn request_to_a_free_worker_is_dispatched_and_its_result_answered() {
    let mut h = Harness::with_client_and_worker(1);
    // Unknown flag bits are preserved into DISPATCH.
    let flags = Flags::from_bits_retain(1 << 40);
    let d = h.request_dispatched_with(CA, W1, (7, 1), flags, &[b"hello", b"", b"world"]);
    assert_eq!(d.flags, flags);
    assert_eq!(frames(&d.payload), owned(&[b"hello", b"", b"world"]));
    h.expect_nothing();

    assert_eq!(h.request_counts(), (1, 1, 0));
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight, s.workers, s.clients), (0, 1, 1, 1));
    assert_eq!(h.type_stats(7), ts(1, 1, 0, 0, 1, 1));

    h.result(W1, 7, 1, Status::Ok, &[b"answer", b"2"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"answer", b"2"]));
    assert!(r.route.is_empty());
    assert_eq!(r.error, None);
    h.expect_nothing();

    assert_eq!(h.request_counts(), (1, 1, 1));
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (0, 0));
    assert_eq!(h.type_stats(7), ts(1, 1, 1, 0, 0, 1));
}

#[test]
fn failed_and_bad_request_results_keep_status_and_error() {
    let mut h = Harness::with_client_and_worker(2);
    h.request(CA, 7, 1, Flags::empty(), &[b"x"]);
    h.request(CA, 7, 2, Flags::empty(), &[b"y"]);
    let tag1 = h.expect_dispatch(W1, 7, 1, 1).dispatch_tag;
    let tag2 = h.expect_dispatch(W1, 7, 2, 1).dispatch_tag;
    for (id, tag, status) in [(1, tag1, Status::Failed), (2, tag2, Status::BadRequest)] {
        h.worker_sends(
            W1,
            Message::Result(WorkResult {
                request_type: 7,
                request_id: id,
                attempt: 1,
                dispatch_tag: tag,
                status,
                error: Some(format!("boom {id}")),
                payload: payload(&[b"partial"]),
            }),
        );
        let r = h.expect_status(CA, 7, id, status);
        assert_eq!(r.error.as_deref(), Some(format!("boom {id}").as_str()));
        assert_eq!(frames(&r.payload), owned(&[b"partial"]));
    }
    h.expect_nothing();
    assert_eq!(h.stats().requests_completed, 2);
}

#[test]
fn payload_frames_are_moved_not_copied() {
    // Large frames live on the heap inside the zmq message: moving the frame
    // keeps the data pointer, copying it would not.
    let mut h = Harness::with_client_and_worker(1);
    let body = Frame::from(&[0xAB_u8; 4096][..]);
    let body_ptr = body.as_ptr();
    h.client_sends(
        CA,
        Message::Request(Request {
            payload: vec![body],
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(
        d.payload[0].as_ptr(),
        body_ptr,
        "DISPATCH payload was copied"
    );

    let answer = Frame::from(&[0xCD_u8; 4096][..]);
    let answer_ptr = answer.as_ptr();
    h.worker_sends(
        W1,
        Message::Result(WorkResult {
            request_type: 7,
            request_id: 1,
            attempt: 1,
            dispatch_tag: d.dispatch_tag,
            status: Status::Ok,
            error: None,
            payload: vec![answer],
        }),
    );
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(
        r.payload[0].as_ptr(),
        answer_ptr,
        "RESPONSE payload was copied"
    );
}

#[test]
fn request_id_zero_is_a_valid_id() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 0), Flags::empty(), &[b"zero"]);
    h.result_answered_alone(W1, CA, 7, 0);
}

//! Scale: long queues (compact storage), many types and many workers
//! (the free lists).

use super::*;

#[test]
fn a_long_queue_keeps_every_payload_intact() {
    // Past about a thousand queued requests, small payloads are stored
    // compactly (copied out of the receive buffers): what is dispatched
    // must still be exactly what was sent, single or multi-frame, small or
    // large, empty or not.
    let mut h = Harness::with_client();
    let big = vec![0x5A_u8; 16 * 1024];
    let body = |id: u64| -> Vec<Vec<u8>> {
        match id % 4 {
            0 => vec![id.to_le_bytes().repeat(8)],
            1 => vec![b"head".to_vec(), id.to_le_bytes().to_vec(), Vec::new()],
            2 => vec![big.clone(), id.to_le_bytes().to_vec()],
            _ => Vec::new(),
        }
    };
    let count = 1500;
    for id in 0..count {
        let frames = body(id);
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        h.request(CA, 7, id, Flags::empty(), &refs);
    }
    h.expect_nothing();
    assert_eq!(h.stats().pending, count);
    h.connect_worker(W1, &[7], u32::try_from(count).unwrap());
    for id in 0..count {
        let d = h.expect_dispatch(W1, 7, id, 1);
        assert_eq!(frames(&d.payload), body(id), "payload of request {id}");
    }
    h.expect_nothing();
}

#[test]
fn a_retried_request_from_a_long_queue_keeps_its_payload() {
    let mut h = Harness::with_client();
    for id in 0..1200 {
        h.request(CA, 7, id, Flags::RETRY_ON_DEATH, &[&id.to_le_bytes(), b"x"]);
    }
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 0, 1);
    // W1 dies: request 0 goes back to the head of the queue, then to W2.
    h.tick(3 * u64::from(HB) + 10);
    h.take();
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch_of(W2, (7, 0), 2, &[&0_u64.to_le_bytes(), b"x"]);
}

#[test]
fn lru_order_spans_workers_with_few_and_many_types() {
    // W2 serves many types (it is kept in one list, not under each type);
    // the least recently used free worker still gets the next request.
    let many: Vec<u32> = (1..=40).collect();
    let mut h = Harness::with_client_and_worker(1);
    h.connect_worker(W2, &many, 1);
    h.connect_worker(W3, &[7], 1);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_dispatched(CA, W2, 7, 2);
    h.request_dispatched(CA, W3, 7, 3);
    for (w, id) in [(W3, 3), (W1, 1), (W2, 2)] {
        h.result_answered(w, CA, 7, id);
    }
    for (id, w) in [(4, W3), (5, W1), (6, W2)] {
        h.request_dispatched(CA, w, 7, id);
    }
    // Only W2 serves type 30.
    h.result_answered(W2, CA, 7, 6);
    h.request_dispatched(CA, W2, 30, 1);
    h.expect_nothing();
}

#[test]
fn many_idle_workers_of_other_types_are_skipped() {
    let mut h = Harness::with_client();
    let ids: Vec<Vec<u8>> = (0..200).map(|i| format!("idle-{i}").into_bytes()).collect();
    for (i, id) in ids.iter().enumerate() {
        h.connect_worker(id, &[100 + u32::try_from(i).unwrap()], 1);
    }
    let wide: Vec<u32> = (1000..1100).collect();
    h.connect_worker(W2, &wide, 1);
    h.connect_worker(W1, &[7], 1);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_held(CA, 7, 2, Flags::empty());
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn a_worker_re_registering_with_other_types_moves_between_lists() {
    let many: Vec<u32> = (1..=40).collect();
    let mut h = Harness::with_client_and_worker(1);
    // Now many types (one list), then a single other one (per type).
    h.connect_worker(W1, &many, 1);
    h.request_dispatched(CA, W1, 30, 1);
    h.result_answered(W1, CA, 30, 1);
    h.connect_worker(W1, &[8], 1);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.request_held(CA, 30, 2, Flags::empty());
    h.request_dispatched(CA, W1, 8, 1);
    h.expect_nothing();
}

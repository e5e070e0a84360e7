//! Malformed and unexpected input on both sockets: `ERROR` answers (never
//! to an `ERROR`), version mismatches, garbled results.

use super::*;
use crate::protocol::PROTOCOL_MINOR;

/// A valid request/result pair still goes through.
fn assert_traffic_flows(h: &mut Harness, client: &[u8], worker: &[u8], t: u32, id: u64) {
    h.request_dispatched_with(client, worker, (t, id), Flags::empty(), &[b"ok?"]);
    h.result(worker, t, id, Status::Ok, &[b"ok!"]);
    h.expect_status_alone(client, t, id, Status::Ok);
}

#[test]
fn garbage_and_empty_headers_on_the_frontend_get_an_error() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched(CA, W1, 7, 1);

    let e = h.frontend_refused(CB, &[0xFF, 0xFF, 0xFF, 0xFF], payload(&[b"x"]));
    assert!(e.error.contains("protobuf"), "{}", e.error);
    assert_eq!(e.request, None);
    h.expect_nothing();

    // No header frame at all: the driver passes an empty slice.
    let e = h.frontend_refused(CB, &[], Payload::new());
    assert_eq!(
        e.error,
        "unsupported protocol version 0.0 (this peer speaks 1.x)"
    );
    assert_eq!(e.request, None);
    let s = h.quiet_stats();
    assert_eq!(s.malformed_frontend, 2);
    assert_eq!(s.requests_received, 1);
    // CA's request is unaffected, and CB's traffic works.
    h.result_answered(W1, CA, 7, 1);
    assert_traffic_flows(&mut h, CB, W1, 7, 2);
}

#[test]
fn wrong_major_version_gets_an_unsupported_version_error() {
    let mut h = Harness::with_client_and_worker(1);
    let header = with_major(Message::Heartbeat { heartbeat_ms: 0 }, 2);
    let e = h.frontend_refused(CA, &header, Payload::new());
    assert_eq!(
        e.error,
        format!("unsupported protocol version 2.{PROTOCOL_MINOR} (this peer speaks 1.x)")
    );
    assert_eq!(e.request, None);
    h.expect_nothing();

    let header = with_major(ready_message(&[7], 1, HB), 2);
    let e = h.backend_refused(W2, &header, Payload::new());
    assert!(
        e.error
            .starts_with(&format!("unsupported protocol version 2.{PROTOCOL_MINOR}"))
    );
    let s = h.quiet_stats();
    assert_eq!(
        (s.malformed_frontend, s.malformed_backend, s.workers),
        (1, 1, 1)
    );
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn wrong_major_request_gets_an_error_with_the_request_fields() {
    let mut h = Harness::with_client();
    let header = with_major(
        Message::Request(Request {
            route: b"r".to_vec(),
            ..req(42, 300, Flags::empty(), &[])
        }),
        2,
    );
    let e = h.frontend_refused(CA, &header, payload(&[b"x"]));
    assert_eq!(
        e.error,
        format!("unsupported protocol version 2.{PROTOCOL_MINOR} (this peer speaks 1.x)")
    );
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 42,
            request_id: 300,
            route: b"r".to_vec()
        })
    );
}

#[test]
fn unexpected_kinds_on_the_frontend_get_an_error() {
    let mut h = Harness::with_client_and_worker(1);
    h.client_sends(CA, ready_message(&[7], 1, HB));
    let e = h.expect_error(Side::Frontend, CA);
    assert_eq!(e.error, "unexpected READY on the broker frontend");
    assert_eq!(e.request, None);
    h.client_sends(
        CA,
        Message::Welcome {
            heartbeat_ms: HB,
            max_message_size: 0,
        },
    );
    let e = h.expect_error(Side::Frontend, CA);
    assert!(e.error.contains("WELCOME"), "{}", e.error);
    h.client_sends(CA, Message::Shutdown);
    h.expect_error(Side::Frontend, CA);
    let s = h.quiet_stats();
    assert_eq!((s.malformed_frontend, s.workers), (3, 1));
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

/// The broker-to-broker kinds (1.2) belong on the cluster endpoint: on the
/// frontend and the backend they are kinds the socket does not take
/// (protocol.md §12, §18), answered with ERROR naming the request if the
/// header names one, whoever sends them.
#[test]
fn cluster_kinds_on_the_frontend_and_backend_get_an_error() {
    let mut h = Harness::with_client_and_worker(1);
    let sockets = [
        (Side::Frontend, CA, "frontend"),
        (Side::Backend, W1, "backend"),
        (Side::Backend, W2, "backend"),
    ];
    for (side, peer, socket) in sockets {
        for msg in crate::testing::cluster_messages() {
            let name = msg.kind_name();
            let names_request = matches!(
                msg,
                Message::Forward(_) | Message::Execute(_) | Message::Executed(_)
            );
            let (header, body) = encode(msg);
            match side {
                Side::Backend => h.backend_raw(peer, &header, body),
                _ => h.frontend_raw(peer, &header, body),
            }
            let e = h.expect_error(side, peer);
            assert_eq!(e.error, format!("unexpected {name} on the broker {socket}"));
            assert_eq!(
                e.request.map(|r| (r.request_type, r.request_id)),
                names_request.then_some((7, 1)),
                "{name}"
            );
        }
    }
    let s = h.quiet_stats();
    assert_eq!((s.malformed_frontend, s.malformed_backend), (6, 12));
    assert_eq!((s.requests_received, s.workers, s.clients), (0, 1, 1));
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn unexpected_kind_naming_a_request_on_the_frontend_gets_an_error() {
    let mut h = Harness::with_client();
    // A (valid) RESULT, sent on the frontend.
    let (header, body) = encode(Message::Result(WorkResult {
        request_type: 7,
        request_id: 1,
        attempt: 1,
        dispatch_tag: 0,
        status: Status::Ok,
        error: None,
        payload: payload(&[b"x"]),
    }));
    let e = h.frontend_refused(CA, &header, body);
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 1,
            route: Vec::new()
        })
    );
}

#[test]
fn frontend_refusals_of_request_shaped_headers() {
    let mut h = Harness::with_client_and_worker(1);
    // A REQUEST with type 0 is missing its request_type: ERROR, no request.
    let (header, _) = encode(Message::Request(req(0, 5, Flags::empty(), &[])));
    let e = h.frontend_refused(CA, &header, Payload::new());
    assert!(e.error.contains("request_type"), "{}", e.error);
    assert_eq!(e.request, None);
    // A HELLO with a payload frame is refused.
    let (header, _) = encode(Message::Hello(Hello {
        heartbeat_ms: HB,
        name: None,
        route: Vec::new(),
    }));
    let e = h.frontend_refused(CA, &header, payload(&[b"extra"]));
    assert!(e.error.contains("payload"), "{}", e.error);
    // A HELLO with interval 0 is refused.
    let (header, _) = encode(Message::Hello(Hello {
        heartbeat_ms: 0,
        name: None,
        route: Vec::new(),
    }));
    h.frontend_refused(CA, &header, Payload::new());
    let s = h.quiet_stats();
    assert_eq!((s.malformed_frontend, s.requests_received), (3, 0));
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn a_request_with_its_payload_both_inline_and_in_frames_gets_an_error_naming_it() {
    let mut h = Harness::new().and_client(PROXY).and_worker(1);
    // The header carries "a" inline (field 17); a frame "b" follows it.
    let (header, rest) = encode(Message::Request(Request {
        route: b"route-1".to_vec(),
        ..req(7, 1, Flags::empty(), &[b"a"])
    }));
    assert!(rest.is_empty(), "a lone small frame goes inline");
    h.frontend_raw(PROXY, &header, payload(&[b"b"]));
    // An ERROR with the request fields (route included), not a RESPONSE:
    // the request was never processed, so it has no outcome.
    let e = h.expect_error(Side::Frontend, PROXY);
    assert!(e.error.contains("inline_payload"), "{}", e.error);
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 1,
            route: b"route-1".to_vec()
        })
    );
    let s = h.quiet_stats();
    assert_eq!((s.malformed_frontend, s.requests_received), (1, 0));
    // Nothing was admitted: (7, 1) is free.
    assert_traffic_flows(&mut h, PROXY, W1, 7, 1);
}

#[test]
fn routing_ids_are_opaque_whatever_their_length_or_first_byte() {
    // Ids a conforming peer would not choose (16 bytes, first byte not 0):
    // one as ZeroMQ generates them (5 bytes, starting with 0) and a 1-byte
    // one. They are served like any other.
    let client: &[u8] = &[0x00, 0x80, 0x00, 0x41, 0xA7];
    let worker: &[u8] = &[0x00];
    let mut h = Harness::new();
    h.connect(client);
    h.connect_worker(worker, &[7], 1);
    assert_traffic_flows(&mut h, client, worker, 7, 1);
    let s = h.stats();
    assert_eq!((s.clients, s.workers, s.malformed_frontend), (1, 1, 0));
}

#[test]
fn an_error_from_a_peer_is_never_answered() {
    let mut h = Harness::with_client_and_worker(1);
    let err = || {
        Message::Error(ErrorReply {
            error: "something went wrong".into(),
            request: Some(RequestRef {
                request_type: 7,
                request_id: 1,
                route: Vec::new(),
            }),
            status: None,
        })
    };
    h.client_sends(CA, err());
    h.worker_sends(W1, err());
    // From unknown peers too.
    h.client_sends(CB, err());
    h.worker_sends(W2, err());
    h.expect_nothing();
    assert_traffic_flows(&mut h, CA, W1, 7, 1);
}

#[test]
fn a_malformed_error_is_not_answered_either() {
    let mut h = Harness::with_client_and_worker(1);
    let (header, _) = encode(Message::Error(ErrorReply {
        error: "bad".into(),
        request: None,
        status: None,
    }));
    h.frontend_raw(CA, &header, payload(&[b"unexpected"]));
    h.backend_raw(W1, &header, payload(&[b"unexpected"]));
    h.expect_nothing();
}

#[test]
fn garbage_and_unexpected_kinds_on_the_backend_get_an_error() {
    let mut h = Harness::with_request_running(1);

    let e = h.backend_refused(W2, &[0xFF, 0x01], Payload::new());
    assert_eq!(e.request, None);
    let e = h.backend_refused(W2, &[], Payload::new());
    assert!(e.error.starts_with("unsupported protocol version 0.0"));
    // A registered worker sends a REQUEST: ERROR with the request fields,
    // never a RESPONSE on the backend.
    h.worker_sends(W1, Message::Request(req(7, 9, Flags::empty(), &[b"x"])));
    let e = h.expect_error(Side::Backend, W1);
    assert_eq!(e.error, "unexpected REQUEST on the broker backend");
    assert_eq!(
        e.request,
        Some(RequestRef {
            request_type: 7,
            request_id: 9,
            route: Vec::new()
        })
    );
    // Same from an unregistered peer.
    h.worker_sends(W2, Message::Request(req(7, 9, Flags::empty(), &[])));
    h.expect_error(Side::Backend, W2);
    // A HELLO on the backend.
    h.worker_sends(
        W1,
        Message::Hello(Hello {
            heartbeat_ms: HB,
            name: None,
            route: Vec::new(),
        }),
    );
    let e = h.expect_error(Side::Backend, W1);
    assert_eq!(e.error, "unexpected HELLO on the broker backend");
    // READY with capacity 0 or type 0 is refused and registers nothing.
    h.ready(W3, &[7], 0);
    let e = h.expect_error(Side::Backend, W3);
    assert!(e.error.contains("capacity"), "{}", e.error);
    h.ready(W3, &[7, 0], 1);
    let e = h.expect_error(Side::Backend, W3);
    assert!(e.error.contains("request_types"), "{}", e.error);
    let s = h.quiet_stats();
    assert_eq!((s.malformed_backend, s.malformed_frontend), (7, 0));
    assert_eq!((s.workers, s.in_flight), (1, 1));
    // The in-flight request completes normally.
    h.result_answered(W1, CA, 7, 1);
    assert_traffic_flows(&mut h, CA, W1, 7, 2);
}

/// A RESULT whose status is not a worker status (REJECTED) does not decode.
fn result_header_with_status(t: u32, id: u64, status: Status) -> Vec<u8> {
    let (header, _) = encode(Message::Response(Response {
        request_type: t,
        request_id: id,
        status,
        error: None,
        route: Vec::new(),
        payload: Payload::new(),
    }));
    // RESPONSE (kind 6) -> RESULT (kind 5): `18 06` -> `18 05`, after
    // `08 01 10 0N` (major 1, this minor).
    assert_eq!(
        &header[..6],
        &[0x08, 0x01, 0x10, PROTOCOL_MINOR as u8, 0x18, 0x06]
    );
    let mut header = header;
    header[5] = 0x05;
    header
}

/// The core ends a request as FAILED when its assigned worker sends a
/// malformed RESULT for it (`fail_garbled_result`), so it does not stay in
/// flight until the worker dies. protocol.md §12 says a malformed message
/// "never changes any state": reported as a mismatch; this pins the code.
#[test]
fn a_malformed_result_from_the_assigned_worker_fails_the_request() {
    let mut h = Harness::with_request_running(1);
    h.request_held(CA, 7, 2, Flags::empty());
    let header = result_header_with_status(7, 1, Status::Rejected);
    let e = h.backend_refused(W1, &header, Payload::new());
    assert!(e.error.contains("status"), "{}", e.error);
    let r = h.expect_status(CA, 7, 1, Status::Failed);
    assert!(r.error.is_some());
    h.expect_dispatch_alone(W1, 7, 2, 1);
    assert_eq!(h.stats().malformed_backend, 1);
}

#[test]
fn a_malformed_result_for_a_request_not_assigned_to_the_worker_changes_nothing() {
    let mut h = Harness::with_client_and_worker(1).and_worker_2(1);
    h.request_dispatched(CA, W1, 7, 1);
    let header = result_header_with_status(7, 1, Status::Rejected);
    h.backend_refused(W2, &header, Payload::new());
    let s = h.quiet_stats();
    assert_eq!((s.in_flight, s.requests_completed), (1, 0));
    h.result_answered_alone(W1, CA, 7, 1);
}

/// Only a malformed RESULT fails its request: a RECEIPT_RECEIVED with a stray
/// payload frame from the assigned worker is refused and changes nothing.
#[test]
fn a_malformed_receipt_received_does_not_fail_the_request() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RECEIPT_ON_RECEIVE, &[]);
    let (header, _) = encode(Message::ReceiptReceived(RequestRef {
        request_type: 7,
        request_id: 1,
        route: Vec::new(),
    }));
    h.backend_refused(W1, &header, payload(&[b"stray"]));
    h.expect_nothing();
    h.result(W1, 7, 1, Status::Ok, &[b"real"]);
    h.expect_status_alone(CA, 7, 1, Status::Ok);
}

/// A RESULT over the broker's size limits (docs/security.md, "Limits on
/// input") is dropped unread, but its request is not left in flight on a
/// worker that thinks it answered: it ends FAILED and the credit comes back.
#[test]
fn an_oversized_result_fails_its_request_and_frees_the_credit() {
    let mut h = Harness::with_request_running(1);
    h.request_held(CA, 7, 2, Flags::empty());
    let (attempt, dispatch_tag) = h.dispatches[&(W1.to_vec(), 7, 1)];
    let (header, _) = encode(Message::Result(WorkResult {
        request_type: 7,
        request_id: 1,
        attempt,
        dispatch_tag,
        status: Status::Ok,
        error: None,
        payload: Payload::new(),
    }));
    let size = crate::io::Oversized {
        frames: 2,
        bytes: 20 << 20,
    };
    let now = h.now();
    h.core.on_oversized(now, Side::Backend, W1, size, &header);
    let r = h.expect_status(CA, 7, 1, Status::Failed);
    assert!(r.error.unwrap().contains("max_message_size"));
    h.expect_dispatch_alone(W1, 7, 2, 1);
    assert_eq!(h.stats().oversized, 1);
    // From another worker: counted, nothing else.
    h.core.on_oversized(now, Side::Backend, W2, size, &header);
    h.expect_nothing();
    // From a client: counted, and answered with an ERROR naming the
    // request its header names, so that a request ends at its client.
    h.core.on_oversized(now, Side::Frontend, CA, size, &header);
    let e = h.expect_error(Side::Frontend, CA);
    let named = e.request.map(|r| (r.request_type, r.request_id));
    assert_eq!(named, Some((7, 1)));
    assert!(e.error.contains("max_message_size"), "{}", e.error);
    h.expect_nothing();
    assert_eq!(h.stats().oversized, 3);
}

#[test]
fn welcome_tells_clients_and_workers_the_largest_message_the_broker_takes() {
    let mut h = Harness::with_config(|c| c.max_message_size = 64 << 10);
    h.hello(CA, None);
    h.ready(W1, &[7], 1);
    for (side, peer) in [(Side::Frontend, CA), (Side::Backend, W1)] {
        match h.expect_kind(side, peer, "WELCOME") {
            Message::Welcome {
                max_message_size, ..
            } => assert_eq!(max_message_size, 64 << 10),
            _ => unreachable!("a WELCOME"),
        }
    }
}

#[test]
fn a_clustered_broker_keeps_room_in_its_welcome_for_what_a_forward_adds() {
    let mut h = Harness::with_config(|c| {
        c.max_message_size = 64 << 10;
        c.cluster_bind = Some("inproc://cluster-room".into());
    });
    h.hello(CA, None);
    match h.expect_kind(Side::Frontend, CA, "WELCOME") {
        Message::Welcome {
            max_message_size, ..
        } => assert_eq!(max_message_size, (64 << 10) - 1280),
        _ => unreachable!("a WELCOME"),
    }
}

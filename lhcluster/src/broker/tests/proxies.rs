//! Proxies: routes echoed back, each route its own origin, names
//! registered and released through a proxy.

use super::*;

#[test]
fn route_is_echoed_on_receipts_and_responses() {
    let mut h = Harness::new().and_client(PROXY).and_worker(1);
    h.client_sends(
        PROXY,
        Message::Request(Request {
            route: b"route-1".to_vec(),
            ..req(
                7,
                1,
                Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
                &[b"q"],
            )
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"route-1");
    h.receipt_received(W1, 7, 1);
    assert_eq!(h.expect_receipt_received(PROXY, 7, 1).route, b"route-1");
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(h.expect_status(PROXY, 7, 1, Status::Ok).route, b"route-1");
    // Refusals echo the route too.
    h.client_sends(
        PROXY,
        Message::Request(Request {
            route: b"route-2".to_vec(),
            ..req(8, 1, Flags::FAIL_FAST, &[])
        }),
    );
    assert_eq!(
        h.expect_status(PROXY, 8, 1, Status::NoWorkers).route,
        b"route-2"
    );
    h.expect_nothing();
}

#[test]
fn different_routes_of_one_proxy_are_different_origins() {
    let mut h = Harness::new().and_client(PROXY).and_worker(1);
    let routed = |route: &[u8], flags| {
        Message::Request(Request {
            route: route.to_vec(),
            ..req(7, 1, flags, &[])
        })
    };
    h.client_sends(PROXY, routed(b"r1", Flags::empty()));
    h.expect_dispatch(W1, 7, 1, 1);
    h.client_sends(PROXY, routed(b"r2", Flags::empty()));
    let r = h.expect_status(PROXY, 7, 1, Status::Rejected);
    assert_eq!(r.route, b"r2");
    // The same route again is an idempotent re-send.
    h.client_sends(PROXY, routed(b"r1", Flags::RECEIPT_ON_SEND));
    assert_eq!(h.expect_receipt_sent(PROXY, 7, 1).route, b"r1");
    let s = h.quiet_stats();
    assert_eq!((s.requests_rejected, s.requests_resent), (1, 1));
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(h.expect_status(PROXY, 7, 1, Status::Ok).route, b"r1");
    h.expect_nothing();
}

#[test]
fn routed_hello_binds_a_name_without_welcome_and_routed_disconnect_releases_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect(CA);
    h.client_sends(
        PROXY,
        Message::Hello(Hello {
            heartbeat_ms: HB,
            name: Some("dave".into()),
            route: b"dave-route".to_vec(),
        }),
    );
    h.expect_nothing();
    h.connect_worker(W1, &[7], 1);
    h.request_reply_to(CA, (7, 1), Flags::RECEIPT_ON_SEND, "dave");
    h.expect_dispatch(W1, 7, 1, 1);
    assert!(h.expect_receipt_sent(CA, 7, 1).route.is_empty());
    h.result(W1, 7, 1, Status::Ok, &[]);
    assert_eq!(
        h.expect_status(PROXY, 7, 1, Status::Ok).route,
        b"dave-route"
    );
    h.expect_nothing();

    h.client_sends(
        PROXY,
        Message::Disconnect {
            route: b"dave-route".to_vec(),
        },
    );
    h.expect_nothing();
    assert_eq!(h.stats().clients, 2, "the proxy itself stays");
    h.request_reply_to(CA, (7, 2), Flags::empty(), "dave");
    h.expect_status_alone(CA, 7, 2, Status::UnknownReplyTo);
}

#[test]
fn proxy_disconnect_forgets_every_name_registered_through_it() {
    let mut h = Harness::new();
    h.connect(PROXY);
    h.connect(CA);
    for (name, route) in [("dave", b"r-dave"), ("erin", b"r-erin")] {
        h.client_sends(
            PROXY,
            Message::Hello(Hello {
                heartbeat_ms: HB,
                name: Some(name.into()),
                route: route.to_vec(),
            }),
        );
    }
    h.expect_nothing();
    h.client_sends(PROXY, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    for (id, name) in [(1, "dave"), (2, "erin")] {
        h.client_sends(
            CA,
            Message::Request(Request {
                reply_to: Some(name.into()),
                ..req(7, id, Flags::empty(), &[])
            }),
        );
        h.expect_status(CA, 7, id, Status::UnknownReplyTo);
    }
    h.expect_nothing();
}

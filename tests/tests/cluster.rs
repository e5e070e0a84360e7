//! Three brokers joined into a cluster, in one process over inproc and
//! loopback TCP, with real clients and workers (docs/clustering.md).

use std::time::Duration;

use lhcluster::{Broker, Flags, Status};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Three brokers: the first binds a cluster endpoint, the second dials
/// it, the third dials both (routes work whichever side dials).
fn cluster_of_three(transport: Transport) -> Vec<Broker> {
    let mut brokers: Vec<Broker> = Vec::new();
    for i in 0..3 {
        let peers: Vec<String> = brokers
            .iter()
            .map(|b| b.cluster_endpoint().expect("clustered").to_owned())
            .collect();
        brokers.push(broker_with(transport, |c| {
            c.cluster_bind = Some(transport.endpoint("cluster"));
            c.cluster_peers = peers;
            c.name = Some(format!("b{i}"));
        }));
    }
    let meshed = eventually(Duration::from_secs(10), || {
        brokers.iter().all(|b| {
            let stats = b.stats().unwrap();
            let c = stats.cluster.expect("clustered");
            c.peers.iter().filter(|p| p.state == "up").count() == 2
        })
    });
    assert!(meshed, "every broker has a route to the two others");
    brokers
}

/// Waits until `broker` knows that a member serves `request_type`.
fn expect_served_remotely(broker: &Broker, request_type: u32) {
    let seen = eventually(Duration::from_secs(10), || {
        let c = broker.stats().unwrap().cluster.expect("clustered");
        c.peers.iter().any(|p| p.serves.contains_key(&request_type))
    });
    assert!(seen, "the broker learns what the others serve");
}

fn served_across(transport: Transport) {
    let brokers = cluster_of_three(transport);
    let _worker = echo_worker(&brokers[2], &[7]);
    expect_served_remotely(&brokers[0], 7);
    let client = client(&brokers[0]);
    // Enough keys that every broker owns some.
    for id in 1..=60u64 {
        let body = format!("req-{id}");
        let reply = client
            .send(7, id, Flags::RECEIPT_ON_SEND, vec![body.as_bytes().into()])
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(text(&reply.payload), body);
    }
    let entry = brokers[0].stats().unwrap().cluster.unwrap();
    let worker_side = brokers[2].stats().unwrap();
    assert!(
        entry.forwarded_out > 0 && entry.executed_out > 0,
        "{entry:?}"
    );
    assert_eq!(entry.relayed, 0);
    assert_eq!(
        worker_side.requests_completed, 60,
        "each ran once, on broker 2's worker"
    );
}

inproc_and_tcp_tests!(
    LIMIT,
    served_across,
    a_worker_on_one_broker_serves_clients_of_another_inproc,
    a_worker_on_one_broker_serves_clients_of_another_tcp
);

/// The same (type, id) sent through two brokers while the first is
/// pending: the second is rejected, as on one broker.
#[test]
fn a_duplicate_through_another_broker_is_rejected() {
    time_limit(LIMIT, || {
        let brokers = cluster_of_three(Transport::Inproc);
        let a = client(&brokers[0]);
        let b = client(&brokers[1]);
        // No worker yet: the first waits at its owner.
        let pending = || -> u64 { brokers.iter().map(|b| b.stats().unwrap().pending).sum() };
        for id in 1..=6u64 {
            let first = a.send(9, id, Flags::empty(), vec![]).unwrap();
            // Held at its owner before the duplicate leaves (the two take
            // different ways there).
            assert!(eventually(Duration::from_secs(10), || pending() == id));
            let second = b.send(9, id, Flags::empty(), vec![]).unwrap();
            let refused = second.wait().unwrap_err();
            assert_eq!(refused.status(), Some(Status::Rejected), "{refused}");
            drop(first);
        }
        let _worker = echo_worker(&brokers[1], &[9]);
        // Six requests pending in the cluster, each run once.
        let done = eventually(Duration::from_secs(10), || {
            brokers[1].stats().unwrap().requests_completed == 6
        });
        assert!(done, "the queued requests are served once each");
    });
}

/// A broker that stops is left by the others: its workers' requests go to
/// workers elsewhere, and what it owned is answered.
#[test]
fn a_broker_that_stops_leaves_the_cluster() {
    time_limit(LIMIT, || {
        let brokers = cluster_of_three(Transport::Inproc);
        let _w1 = echo_worker(&brokers[1], &[7]);
        let _w2 = echo_worker(&brokers[2], &[7]);
        expect_served_remotely(&brokers[0], 7);
        let client = client(&brokers[0]);
        brokers[2].stop().unwrap();
        let left = eventually(Duration::from_secs(10), || {
            let c = brokers[0].stats().unwrap().cluster.unwrap();
            c.peers.iter().filter(|p| p.state == "up").count() == 1
        });
        assert!(left, "the stopped broker leaves the view");
        for id in 1..=20u64 {
            let reply = client
                .send(7, id, Flags::empty(), vec![(&b"x"[..]).into()])
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(text(&reply.payload), "x");
        }
    });
}

/// A client that lets the library pick its request ids gets ids its own
/// broker owns (the broker's VIEW): with its worker on the same broker, no
/// request crosses to another.
#[test]
fn library_picked_ids_need_no_hop() {
    time_limit(LIMIT, || {
        let brokers = cluster_of_three(Transport::Inproc);
        let _worker = echo_worker(&brokers[0], &[7]);
        let client = client(&brokers[0]);
        // The VIEW follows the WELCOME on the same connection: once a first
        // request is answered, the client has read it.
        client.request(7).send().unwrap().wait().unwrap();
        let before = brokers[0].stats().unwrap().cluster.unwrap();
        for i in 0..60u64 {
            let body = format!("r{i}");
            let reply = client
                .request(7)
                .payload_bytes(body.as_bytes())
                .send()
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(text(&reply.payload), body);
        }
        let c = brokers[0].stats().unwrap().cluster.unwrap();
        assert_eq!(c.forwarded_out, before.forwarded_out, "{c:?}");
        assert_eq!(c.executed_out, before.executed_out, "{c:?}");
    });
}

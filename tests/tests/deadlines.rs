//! Deadlines end to end (docs/deadlines.md): a client's timeout travels
//! with its request, the broker drops a request whose caller gave up, and a
//! handler sees the time left.

use std::sync::atomic::Ordering;
use std::time::Duration;

use lhcluster::worker::{RequestContext, Worker};
use lhcluster::{Flags, Payload};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The fault issue 15 found: a request to a type with no worker timed out
/// at the client and ran much later for nobody. Now it never runs.
#[test]
fn a_request_whose_caller_gave_up_never_runs() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        times_out(client.request(9).id(1), Duration::from_millis(200));
        let expired = eventually(Duration::from_secs(5), || {
            broker.stats().unwrap().requests_expired == 1
        });
        assert!(expired, "the broker drops it at its deadline");
        let (_worker, runs) = counting_echo_worker(&broker, 9);
        // A second request is served: the first was never dispatched.
        let reply = client.request(9).id(2).send().unwrap().wait().unwrap();
        assert_eq!((reply.request_id, runs.load(Ordering::SeqCst)), (2, 1));
        assert_eq!(broker.stats().unwrap().requests_dispatched, 1);
    });
}

/// A handler sees how long its caller still waits.
#[test]
fn a_handler_sees_the_time_left() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let _worker = Worker::builder(worker_config(&broker))
            .handle_raw(5, |_: Payload, ctx: &RequestContext| {
                let left = ctx.remaining().map_or(0, |d| d.as_millis() as u64);
                Ok(vec![left.to_string().into_bytes().into()])
            })
            .start()
            .unwrap();
        let client = client(&broker);
        let reply = client
            .send(5, 1, Flags::empty(), vec![])
            .unwrap()
            .wait()
            .unwrap();
        // The client's default timeout here is 10 s (client_config).
        let left: u64 = text(&reply.payload).parse().unwrap();
        assert!((1..=10_000).contains(&left), "{left} ms left");
    });
}

//! A caller blocked on its handle reads the client's socket (the leader,
//! `driver.rs`), while the driver sleeps without the socket's descriptor.
//! Here the driver looks again only every 120 s (`LEADER_GRACE` in unit
//! tests) and has no timer sooner (heartbeats a minute apart): a request
//! that relied on its look would hang, and each test must end well before
//! (`within_wait`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::client::{Client, ClientConfig, ResponseHandle};
use crate::protocol::Payload;
use crate::worker::RequestContext;
use crate::{Broker, BrokerConfig, Worker, WorkerConfig};

const WAIT: Duration = Duration::from_secs(20);
const HEARTBEAT: Duration = Duration::from_secs(60);

fn inproc(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("inproc://lead-{name}-{n}")
}

/// A broker, an echo worker (type 1) and a connected client. Heartbeats a
/// minute apart: the client's driver has no timer of its own for minutes.
fn served() -> (Broker, Worker, Client) {
    let mut config = BrokerConfig::new(inproc("front"), inproc("back"));
    config.heartbeat = HEARTBEAT;
    let broker = Broker::start(config).unwrap();
    let worker = Worker::builder(WorkerConfig::new(broker.backend()))
        .handle_raw(1, |p: Payload, _: &RequestContext| Ok(p))
        .start()
        .unwrap();
    let mut config = ClientConfig::new(broker.frontend());
    config.heartbeat = HEARTBEAT;
    let client = Client::connect(config).unwrap();
    assert!(client.wait_connected(WAIT));
    (broker, worker, client)
}

/// Runs `f` on a thread and fails if it takes longer than `WAIT`.
fn within_wait(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(WAIT)
        .expect("done without the driver's 120 s look");
}

/// A blocked round trip, so that the driver sleeps without the socket's
/// descriptor, with no request outstanding once it returns.
fn round_trip(client: &Client) {
    let reply = client
        .request(1)
        .payload_bytes(b"lead")
        .send()
        .unwrap()
        .wait();
    assert!(reply.is_ok(), "{reply:?}");
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn blocked_round_trips_are_answered_while_the_driver_sleeps() {
    within_wait(|| {
        let (_broker, _worker, client) = served();
        for _ in 0..200 {
            round_trip(&client);
        }
    });
}

/// 20 times: a blocked round trip (the leader leaves, nobody reads the
/// socket now), then a request whose handle `observe` waits on without
/// blocking in a wait.
fn after_a_leader_left(observe: fn(ResponseHandle)) {
    within_wait(move || {
        let (_broker, _worker, client) = served();
        for _ in 0..20 {
            round_trip(&client);
            observe(client.request(1).payload_bytes(b"next").send().unwrap());
        }
    });
}

#[test]
fn an_awaited_request_sent_after_a_leader_left_is_read() {
    after_a_leader_left(|mut handle| {
        // The first poll wakes the driver.
        let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            match Pin::new(&mut handle).poll(&mut cx) {
                Poll::Ready(outcome) => {
                    assert!(outcome.is_ok(), "{outcome:?}");
                    break;
                }
                Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
            }
        }
    });
}

#[test]
fn a_request_polled_with_is_done_after_a_leader_left_is_read() {
    after_a_leader_left(|handle| {
        while !handle.is_done() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

#[test]
fn other_threads_blocked_requests_are_answered_while_one_leads() {
    within_wait(|| {
        let (_broker, _worker, client) = served();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        round_trip(&client);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    });
}

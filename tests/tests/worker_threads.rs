//! Where a worker's blocking handlers run: fast types on the socket's
//! thread, the rest on the pool, and a fast handler that runs long taken
//! over without stopping the worker (docs/guide.md, "Worker").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lhcluster::client::ResponseHandle;
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, Client, Payload};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

/// The name of the socket's threads (the pool's are `lhcluster-handler-N`).
const SOCKET_THREAD: &str = "lhcluster-worker";

/// What the handler of type 1 saw: the thread of each run, how many run at
/// once (now and at most), and a gate that `block` requests wait on.
#[derive(Default)]
struct Probe {
    threads: Mutex<Vec<String>>,
    running: AtomicU64,
    most: AtomicU64,
    gate: Mutex<()>,
}

impl Probe {
    /// A handler that echoes, and waits for the gate first when the payload
    /// is `block`, or `block-inline` and it runs on the socket's thread
    /// (elsewhere, `block-inline` answers `not-inline` at once).
    fn handler(
        self: &Arc<Self>,
    ) -> impl Fn(Payload, &RequestContext) -> Result<Payload, HandlerError> + Send + Sync + 'static
    {
        let probe = self.clone();
        move |payload: Payload, _: &RequestContext| {
            let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
            probe.most.fetch_max(now, Ordering::SeqCst);
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let inline = name == SOCKET_THREAD;
            probe.threads.lock().unwrap().push(name);
            let mut payload = payload;
            match text(&payload).as_str() {
                "block" => drop(probe.gate.lock().unwrap()),
                "block-inline" if inline => drop(probe.gate.lock().unwrap()),
                "block-inline" => payload = vec!["not-inline".into()],
                _ => {}
            }
            probe.running.fetch_sub(1, Ordering::SeqCst);
            Ok(payload)
        }
    }

    fn last_thread(&self) -> String {
        self.threads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// A broker, a worker of `capacity` and `prefetch` with the probe's
/// handler for type 1, and a client, after fast requests have moved type 1
/// to the socket's thread.
fn warmed_up(capacity: u32, prefetch: u32) -> (Broker, Worker, Client, Arc<Probe>) {
    warmed_up_with(|config| {
        config.capacity = capacity;
        config.prefetch = prefetch;
    })
}

/// [`warmed_up`] with a chance to adjust the worker's configuration.
fn warmed_up_with(adjust: impl FnOnce(&mut WorkerConfig)) -> (Broker, Worker, Client, Arc<Probe>) {
    let broker = broker(Transport::Inproc);
    let probe = Arc::new(Probe::default());
    let mut config = worker_config(&broker);
    adjust(&mut config);
    let worker = Worker::builder(config)
        .handle_raw(1, probe.handler())
        .start()
        .unwrap();
    expect_workers(&broker, 1, Duration::from_secs(5));
    let client = client(&broker);
    warm_up(&client, &probe);
    (broker, worker, client, probe)
}

/// Sends a request that blocks on the gate on the socket's thread, and
/// waits until it does. On a loaded machine a fast run may be preempted
/// long enough to be taken over, which sends the type to the pool for a
/// while: then the request answers at once, and the type is warmed up
/// again.
fn block_socket_thread(client: &Client, probe: &Probe, id: u64) -> ResponseHandle {
    for attempt in 0..10 {
        let mut handle = client
            .request(1)
            .id(id + attempt * 100_000)
            .payload_bytes(b"block-inline")
            .send()
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || {
            probe.running.load(Ordering::SeqCst) == 1 || handle.is_done()
        }));
        if !handle.is_done() {
            assert_eq!(probe.last_thread(), SOCKET_THREAD);
            return handle;
        }
        let outcome = handle.try_take().unwrap().unwrap();
        assert_eq!(text(&outcome.payload), "not-inline");
        warm_up(client, probe);
    }
    panic!("the type never ran on the socket's thread for long");
}

/// Sends fast requests one at a time until three in a row run on the
/// socket's thread; panics if that takes more than 500. (One preempted run
/// lifts the type's moving average of run times above the fast bound for
/// several runs: a single run on the socket's thread says little about the
/// next.)
fn warm_up(client: &Client, probe: &Probe) {
    let mut in_a_row = 0;
    for i in 0..500 {
        let response = client
            .request(1)
            .id(10_000 + i)
            .payload_bytes(b"fast")
            .send();
        response.unwrap().wait().unwrap();
        if probe.last_thread() == SOCKET_THREAD {
            in_a_row += 1;
            if in_a_row == 3 {
                return;
            }
        } else {
            in_a_row = 0;
        }
    }
    panic!(
        "no fast request ran on the socket's thread: {:?}",
        probe.threads.lock().unwrap()
    );
}

#[test]
fn a_fast_handler_runs_on_the_socket_thread_and_one_that_blocks_is_taken_over() {
    time_limit(LIMIT, || {
        let (_broker, worker, client, probe) = warmed_up(4, 0);
        // The first runs of a type are timed on the pool.
        assert!(
            probe.threads.lock().unwrap()[0].starts_with("lhcluster-handler-"),
            "{:?}",
            probe.threads.lock().unwrap()
        );

        let before = worker.stats().unwrap().socket_takeovers;
        let closed = probe.gate.lock().unwrap();
        let blocked = block_socket_thread(&client, &probe, 1);
        // The socket's thread is stuck in the handler, yet requests are
        // served: another thread took the socket over.
        for i in 0..20 {
            let response = client.request(1).id(100 + i).payload_bytes(b"fast").send();
            let outcome = response.unwrap().wait().unwrap();
            assert_eq!(text(&outcome.payload), "fast");
        }
        let stats = worker.stats().unwrap();
        // (A fast run preempted for long on a loaded machine may be taken
        // over too: hence at least one.)
        assert!(stats.socket_takeovers > before, "{stats:?}");
        assert!(stats.registered, "heartbeats went on: {stats:?}");
        assert_eq!(probe.running.load(Ordering::SeqCst), 1, "still blocked");
        drop(closed);
        assert_eq!(text(&blocked.wait().unwrap().payload), "block-inline");
    });
}

/// A run on the socket's thread holds one of the pool's `capacity` places,
/// also after the socket is taken over from it: with capacity 2 and five
/// requests at the worker (prefetch 3), two run at once, never three.
#[test]
fn a_run_on_the_socket_thread_counts_against_capacity() {
    time_limit(LIMIT, || {
        let (broker, worker, client, probe) = warmed_up(2, 3);
        probe.most.store(0, Ordering::SeqCst);

        let before = worker.stats().unwrap().socket_takeovers;
        let closed = probe.gate.lock().unwrap();
        let first = block_socket_thread(&client, &probe, 1);
        let rest: Vec<_> = (2..=5)
            .map(|i| {
                client
                    .request(1)
                    .id(i)
                    .payload_bytes(b"block")
                    .send()
                    .unwrap()
            })
            .collect();
        // All five at the worker (credits: capacity + prefetch), the first
        // taken over, and a second running on the pool.
        assert!(
            eventually(Duration::from_secs(10), || {
                broker.stats().unwrap().in_flight == 5
                    && probe.running.load(Ordering::SeqCst) == 2
                    && worker.stats().unwrap().socket_takeovers > before
            }),
            "{:?} {:?}",
            broker.stats().unwrap(),
            worker.stats().unwrap()
        );
        // Time for a pool thread to start a third, were it allowed to.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(probe.most.load(Ordering::SeqCst), 2);
        drop(closed);
        assert_eq!(text(&first.wait().unwrap().payload), "block-inline");
        for h in rest {
            assert_eq!(text(&h.wait().unwrap().payload), "block");
        }
        assert_eq!(probe.most.load(Ordering::SeqCst), 2, "capacity 2");
    });
}

/// A stop during a takeover ends the worker after its shutdown timeout,
/// with the thread that ran a fast handler still stuck in it, and the
/// request it ran ends for its client as any request of a worker that left
/// without answering.
#[test]
fn a_stop_does_not_wait_for_a_handler_stuck_on_a_socket_thread() {
    time_limit(LIMIT, || {
        let (broker, worker, client, probe) = warmed_up_with(|config| {
            config.capacity = 2;
            config.shutdown_timeout = Duration::from_millis(300);
        });
        let before = worker.stats().unwrap().socket_takeovers;
        let closed = probe.gate.lock().unwrap();
        let blocked = block_socket_thread(&client, &probe, 1);
        assert!(eventually(Duration::from_secs(10), || worker
            .stats()
            .unwrap()
            .socket_takeovers
            > before));
        // The gate opens only after the stop has returned.
        worker.stop().unwrap();
        assert!(worker.stats().is_err(), "the worker has stopped");
        assert!(eventually(Duration::from_secs(10), || broker
            .stats()
            .unwrap()
            .workers
            == 0));
        drop(closed);
        // The broker declared the worker dead with the request in flight
        // (no retry asked): the client learns of it.
        assert!(blocked.wait().is_err());
    });
}

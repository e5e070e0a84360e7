//! A `Client` sends each request on the caller's thread, under the lock it
//! shares with its driver thread, and a caller blocked on its handle reads
//! the socket while it waits (client/driver.rs): what that must not
//! change, each test under a time limit.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lhcluster::Payload;
use lhcluster::client::{Client, Outcome, RequestError, ResponseHandle};
use lhcluster::worker::{RequestContext, Worker};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Sends request after request from inside the previous one's waker (run
/// by the client's driver thread). A waker run while the driver held the
/// client's lock would wait for itself.
struct Chain {
    client: Client,
    left: AtomicUsize,
    current: Mutex<Option<ResponseHandle>>,
    done: crossbeam_channel::Sender<Result<(), String>>,
}

impl Chain {
    /// Polls the current request with this chain as its waker; sends the
    /// next one when it has resolved.
    fn step(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut current = self.current.lock().unwrap();
        loop {
            let Some(handle) = current.as_mut() else {
                return;
            };
            let outcome = match std::pin::Pin::new(handle).poll(&mut Context::from_waker(&waker)) {
                Poll::Pending => return,
                Poll::Ready(outcome) => outcome,
            };
            if let Err(e) = outcome {
                let _ = self.done.send(Err(format!("a request failed: {e}")));
                *current = None;
                return;
            }
            if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
                let _ = self.done.send(Ok(()));
                *current = None;
                return;
            }
            *current = Some(
                self.client
                    .request(1)
                    .payload_bytes(b"next")
                    .send()
                    .unwrap(),
            );
        }
    }
}

impl Wake for Chain {
    fn wake(self: Arc<Self>) {
        self.step();
    }
}

#[test]
fn a_waker_may_send_the_next_request() {
    time_limit(LIMIT, || {
        let (_broker, _worker, client) = served(Transport::Inproc, &[1]);
        let (done, finished) = crossbeam_channel::bounded(1);
        let first = client.request(1).payload_bytes(b"first").send().unwrap();
        let chain = Arc::new(Chain {
            client: client.clone(),
            left: AtomicUsize::new(200),
            current: Mutex::new(Some(first)),
            done,
        });
        chain.step();
        let outcome = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("the chain of 200 requests ends");
        assert_eq!(outcome, Ok(()));
        assert_eq!(client.stats().unwrap().requests_sent, 200);
    });
}

#[test]
fn one_threads_requests_keep_their_order_while_another_uses_the_driver() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = order.clone();
        let mut config = worker_config(&broker);
        config.capacity = 1;
        let _worker = Worker::builder(config)
            .handle_raw(1, move |p: Payload, ctx: &RequestContext| {
                seen.lock().unwrap().push(ctx.request_id);
                Ok(p)
            })
            .start()
            .unwrap();
        let client = client(&broker);
        // Stats requests keep the driver's command channel busy, so that
        // some requests queue there and others are sent at once.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let (client, stop) = (client.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    client.stats().unwrap();
                }
            })
        };
        let handles: Vec<_> = (0..2000u64)
            .map(|i| client.request(1).id(i).send().unwrap())
            .collect();
        for handle in handles {
            handle.wait().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        let order = order.lock().unwrap();
        assert_eq!(*order, (0..2000).collect::<Vec<_>>());
    });
}

/// A broker, a worker whose type-1 handler blocks until the gate opens (and
/// says when it has started; type 2 echoes), and a client.
struct Gated {
    _broker: lhcluster::Broker,
    _worker: Worker,
    started: crossbeam_channel::Receiver<()>,
    gate: Gate,
    client: Client,
}

impl Gated {
    fn start() -> Self {
        let broker = broker(Transport::Inproc);
        let (started_tx, started) = crossbeam_channel::unbounded();
        let gate = Gate::default();
        let held = gate.clone();
        let mut config = worker_config(&broker);
        config.capacity = 4;
        let worker = Worker::builder(config)
            .handle_raw(1, move |p: Payload, _: &RequestContext| {
                let _ = started_tx.send(());
                held.wait();
                Ok(p)
            })
            .handle_raw(2, echo)
            .start()
            .unwrap();
        let client = client(&broker);
        Self {
            _broker: broker,
            _worker: worker,
            started,
            gate,
            client,
        }
    }

    /// A thread that sends a type-1 request (held at the gate) and blocks on
    /// its handle, reading the client's socket.
    fn blocked_caller(&self, payload: &'static [u8]) -> std::thread::JoinHandle<Outcome> {
        let client = self.client.clone();
        std::thread::spawn(move || {
            client
                .request(1)
                .payload_bytes(payload)
                .send()
                .unwrap()
                .wait()
        })
    }

    /// Waits until a type-1 request runs.
    fn running(&self) {
        self.started
            .recv_timeout(Duration::from_secs(10))
            .expect("the slow request runs");
    }
}

/// Opens once; everyone waiting goes on.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let open = self.0.0.lock().unwrap();
        drop(self.0.1.wait_while(open, |open| !*open).unwrap());
    }
}

#[test]
fn while_one_caller_waits_on_the_socket_every_other_request_is_answered() {
    time_limit(LIMIT, || {
        let g = Gated::start();
        let (client, gate) = (&g.client, &g.gate);
        let leader = g.blocked_caller(b"slow");
        g.running();
        // Blocked callers on other threads, and an awaited handle: the
        // responses come through whichever thread reads.
        let waiters: Vec<_> = (0..4)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let sent = format!("{t}-{i}");
                        let reply = client
                            .request(2)
                            .payload_bytes(sent.as_bytes())
                            .send()
                            .unwrap()
                            .wait()
                            .unwrap();
                        assert_eq!(text(&reply.payload), sent);
                    }
                })
            })
            .collect();
        let awaited = block_on(client.request(2).payload_bytes(b"async").send().unwrap()).unwrap();
        assert_eq!(text(&awaited.payload), "async");
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert!(!leader.is_finished(), "the slow request is still running");
        gate.open();
        let slow = leader.join().unwrap().unwrap();
        assert_eq!(text(&slow.payload), "slow");
        assert_eq!(client.stats().unwrap().outstanding, 0);
    });
}

#[test]
fn a_blocked_caller_returns_at_its_wait_timeout_and_the_request_goes_on() {
    time_limit(LIMIT, || {
        let g = Gated::start();
        let (client, gate) = (&g.client, &g.gate);
        let handle = client
            .request(1)
            .id(7)
            .payload_bytes(b"slow")
            .send()
            .unwrap();
        g.running();
        let waited = std::time::Instant::now();
        let outcome = handle.wait_timeout(Duration::from_millis(200));
        let waited = waited.elapsed();
        assert_eq!(
            outcome,
            Err(RequestError::Timeout(Duration::from_millis(200)))
        );
        assert!(
            waited >= Duration::from_millis(200),
            "returned after {waited:?}"
        );
        // The request went on: its response arrives (for nobody).
        assert_eq!(client.stats().unwrap().outstanding, 1);
        gate.open();
        assert!(
            eventually(Duration::from_secs(10), || client
                .stats()
                .unwrap()
                .outstanding
                == 0),
            "the response arrives"
        );
        // The socket is read as before: a new request is answered.
        let reply = client
            .request(2)
            .payload_bytes(b"after")
            .send()
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(text(&reply.payload), "after");
    });
}

#[test]
fn a_stop_ends_a_caller_blocked_on_the_socket() {
    time_limit(LIMIT, || {
        let g = Gated::start();
        let (client, gate) = (&g.client, &g.gate);
        let waiter = g.blocked_caller(b"");
        g.running();
        client.stop().unwrap();
        assert_eq!(waiter.join().unwrap(), Err(RequestError::Stopped));
        gate.open();
    });
}

#[test]
fn a_handle_waited_on_in_slices_gets_its_outcome_once() {
    time_limit(LIMIT, || {
        let g = Gated::start();
        let (client, gate) = (&g.client, &g.gate);
        let mut handle = client.request(1).payload_bytes(b"slow").send().unwrap();
        g.running();
        assert!(handle.wait_for(Duration::from_millis(100)).is_none());
        assert!(handle.wait_for(Duration::ZERO).is_none());
        gate.open();
        let reply = handle
            .wait_for(Duration::from_secs(10))
            .expect("the outcome arrives")
            .unwrap();
        assert_eq!(text(&reply.payload), "slow");
        // Taken: a further wait says so at once.
        assert!(matches!(
            handle.wait_for(Duration::from_secs(10)),
            Some(Err(RequestError::Protocol(_)))
        ));
    });
}

#[test]
fn a_waiter_blocks_another_thread_until_the_outcome_and_leaves_it_to_the_handle() {
    time_limit(LIMIT, || {
        let g = Gated::start();
        let mut handle = g.client.request(1).payload_bytes(b"slow").send().unwrap();
        g.running();
        let waiter = handle.waiter();
        assert!(
            !waiter.wait(Duration::from_millis(50)),
            "not before the outcome"
        );
        let waiting = {
            let waiter = waiter.clone();
            std::thread::spawn(move || waiter.wait(Duration::from_secs(20)))
        };
        g.gate.open();
        assert!(waiting.join().unwrap(), "the outcome arrived");
        let reply = handle
            .try_take()
            .expect("the outcome is the handle's")
            .unwrap();
        assert_eq!(text(&reply.payload), "slow");
        assert!(waiter.wait(Duration::ZERO), "done stays done");
    });
}

//! A `Client` sends each request on the caller's thread, under the lock it
//! shares with its driver thread (client/driver.rs): what that must not
//! change, each test under a time limit.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lhcluster::Payload;
use lhcluster::client::{Client, ResponseHandle};
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

//! Support for the integration tests: unique endpoints, time limits, fast
//! heartbeat settings and a scripted raw peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lhcluster::client::{
    Client, ClientConfig, ClientEvent, Outcome, ReceiptKind, RequestBuilder, RequestError,
    ResponseHandle,
};
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Payload};

/// A unique `inproc://` endpoint.
pub fn inproc(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "inproc://{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Loopback TCP on a port the OS picks (read the bound one from the role).
pub const TCP_ANY: &str = "tcp://127.0.0.1:0";

/// Transports the tests run over.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// `inproc://`
    Inproc,
    /// `tcp://127.0.0.1`
    Tcp,
}

impl Transport {
    /// A fresh endpoint to bind.
    pub fn endpoint(self, name: &str) -> String {
        match self {
            Transport::Inproc => inproc(name),
            Transport::Tcp => TCP_ANY.to_owned(),
        }
    }
}

/// Heartbeat interval used by the tests: short, so deaths are noticed fast.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// A broker with fast heartbeats on fresh endpoints.
pub fn broker(transport: Transport) -> Broker {
    broker_with(transport, |_| {})
}

/// Like [`broker`], with a chance to adjust the configuration.
pub fn broker_with(transport: Transport, adjust: impl FnOnce(&mut BrokerConfig)) -> Broker {
    let mut config = BrokerConfig::new(transport.endpoint("front"), transport.endpoint("back"));
    config.heartbeat = HEARTBEAT;
    adjust(&mut config);
    Broker::start(config).expect("broker starts")
}

/// A worker configuration with fast heartbeats.
pub fn worker_config(broker: &Broker) -> WorkerConfig {
    let mut config = WorkerConfig::new(broker.backend());
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

/// A client configuration with fast heartbeats.
pub fn client_config(endpoint: &str) -> ClientConfig {
    let mut config = ClientConfig::new(endpoint);
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.request_timeout = Some(Duration::from_secs(10));
    config
}

/// A connected client with fast heartbeats.
pub fn client(broker: &Broker) -> Client {
    let client = Client::connect(client_config(broker.frontend())).expect("client starts");
    assert!(
        client.wait_connected(Duration::from_secs(5)),
        "client connects"
    );
    client
}

/// Sends a typed request and waits for its response, which must be a
/// success.
pub fn call_typed<R: lhcluster::Request>(client: &Client, request: &R) -> R::Response {
    (client.send_typed(request))
        .expect("the request is sent")
        .wait()
        .expect("the request succeeds")
}

/// A handler that answers with the request's payload.
pub fn echo(payload: Payload, _: &RequestContext) -> Result<Payload, HandlerError> {
    Ok(payload)
}

/// A worker of `broker` that echoes every type of `types`.
pub fn echo_worker(broker: &Broker, types: &[u32]) -> Worker {
    let mut builder = Worker::builder(worker_config(broker));
    for &t in types {
        builder = builder.handle_raw(t, echo);
    }
    builder.start().expect("worker starts")
}

/// A worker of `broker` that echoes type `t` and counts the requests it
/// ran: the worker, and the count.
pub fn counting_echo_worker(broker: &Broker, t: u32) -> (Worker, Arc<AtomicU64>) {
    let runs = Arc::new(AtomicU64::new(0));
    let counter = runs.clone();
    let worker = Worker::builder(worker_config(broker))
        .handle_raw(t, move |p: Payload, _: &RequestContext| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(p)
        })
        .start()
        .expect("worker starts");
    (worker, runs)
}

/// A broker over `transport`, an echo worker of `types` and a connected
/// client: the request path, ready to serve.
pub fn served(transport: Transport, types: &[u32]) -> (Broker, Worker, Client) {
    let broker = broker(transport);
    let worker = echo_worker(&broker, types);
    let client = client(&broker);
    (broker, worker, client)
}

/// A payload's frames as text, joined by `|`.
pub fn text(payload: &Payload) -> String {
    payload
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join("|")
}

/// `request` with the id `i` and the payload `n{i}`: one of a numbered
/// window of requests.
pub fn numbered(request: RequestBuilder<'_>, i: u64) -> RequestBuilder<'_> {
    request.id(i).payload_bytes(format!("n{i}").as_bytes())
}

/// Sends `request` with `flags` and `RECEIPT_ON_SEND`, and waits until the
/// broker has handed it to a worker.
pub fn send_until_dispatched(request: RequestBuilder<'_>, flags: Flags) -> ResponseHandle {
    let handle = request
        .flags(flags | Flags::RECEIPT_ON_SEND)
        .send()
        .expect("request sent");
    let dispatched = handle.wait_receipt(ReceiptKind::Sent, Duration::from_secs(5));
    assert!(dispatched, "the request reaches a worker");
    handle
}

/// The outcome of request `request_id` that an event of `client` reports
/// (an untracked request's, or one sent to it by name), waiting for the
/// events as they come; `None` if the client stops first.
pub fn response_event(client: &Client, request_id: u64) -> Option<Outcome> {
    client.events().iter().find_map(|e| match e {
        ClientEvent::Response {
            request_id: id,
            outcome,
            ..
        } if id == request_id => Some(outcome),
        _ => None,
    })
}

/// Waits until `broker` counts `n` workers, and fails the test if it does
/// not within `timeout`.
pub fn expect_workers(broker: &Broker, n: u64, timeout: Duration) {
    let counted = eventually(timeout, || broker.stats().unwrap().workers == n);
    assert!(counted, "the broker should count {n} workers");
}

/// Two tests of `$body(transport)`, each under the time limit `$limit`:
/// `$inproc` over `inproc://`, `$tcp` over loopback TCP.
#[macro_export]
macro_rules! inproc_and_tcp_tests {
    ($limit:expr, $body:expr, $inproc:ident, $tcp:ident) => {
        #[test]
        fn $inproc() {
            $crate::time_limit($limit, || ($body)($crate::Transport::Inproc));
        }

        #[test]
        fn $tcp() {
            $crate::time_limit($limit, || ($body)($crate::Transport::Tcp));
        }
    };
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `limit`, so that a hang fails in seconds instead of stalling CI.
pub fn time_limit<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = thread.join();
            v
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic here.
            match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the closure sends before returning"),
            }
        }
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            panic!("test exceeded its time limit of {limit:?}")
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes. For conditions
/// that have no event to wait on (e.g. a stats counter); returns whether it
/// held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `request` with `timeout` (a `Client`'s: its handle waits) and
/// checks that it ends in its timeout.
pub fn times_out(request: RequestBuilder<'_>, timeout: Duration) {
    let outcome = request.timeout(timeout).send().unwrap().wait();
    assert!(
        matches!(outcome, Err(RequestError::Timeout(_))),
        "{outcome:?}"
    );
}

/// A minimal executor for `.await` in tests: the SDK needs no runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A raw DEALER that speaks (or garbles) the protocol by hand.
pub fn raw_dealer(endpoint: &str) -> zmq::Socket {
    let socket = lhcluster::context().socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(5000).expect("rcvtimeo");
    socket.connect(endpoint).expect("connect");
    socket
}

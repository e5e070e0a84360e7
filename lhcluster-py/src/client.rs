//! The client: blocking requests, response handles, and asyncio futures
//! completed from one dispatcher thread (no thread per pending request).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use lhcluster::client::{ClientEvent, Outcome, ReceiptKind, Waiter};
use lhcluster::{Client as RsClient, Flags, RequestError, ResponseHandle};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::roles::{detached, role_methods};
use crate::{config, errors, payload, request_type};

/// How long a blocked wait goes without looking at Python's signals (so
/// that Ctrl-C interrupts a thread waiting on a request).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// An outcome kept by a handle: the payload frames, or the error.
type Stored = Result<Vec<Vec<u8>>, RequestError>;

fn store(outcome: Outcome) -> Stored {
    outcome.map(|reply| reply.payload.iter().map(|f| f.to_vec()).collect())
}

/// The outcome for Python: the response (decoded when typed; `None` for a
/// delivery-only request), or the exception.
fn to_python<'py>(
    py: Python<'py>,
    stored: &Stored,
    typed: bool,
    delivery_only: bool,
) -> PyResult<Bound<'py, PyAny>> {
    match stored {
        Ok(_) if delivery_only => Ok(py.None().into_bound(py)),
        Ok(frames) => payload::decode(py, frames, typed),
        Err(e) => Err(errors::request(py, e)),
    }
}

/// Runs `wait_slice` (given the end of its slice) without the GIL until it
/// gives `Some`, or `until` passes (`None`: no deadline), coming back every
/// [`SIGNAL_CHECK`] to let Python handle signals (a `KeyboardInterrupt`
/// ends the wait with that exception).
fn wait_in_slices<T: Send>(
    py: Python<'_>,
    until: Option<Instant>,
    mut wait_slice: impl FnMut(Instant) -> Option<T> + Send,
) -> PyResult<Option<T>> {
    loop {
        let slice_end = {
            let next = Instant::now() + SIGNAL_CHECK;
            until.map_or(next, |u| u.min(next))
        };
        if let Some(t) = py.detach(|| wait_slice(slice_end)) {
            return Ok(Some(t));
        }
        py.check_signals()?;
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(None);
        }
    }
}

fn poll_handle(handle: &mut ResponseHandle, cx: &mut Context<'_>) -> Option<Outcome> {
    match Pin::new(handle).poll(cx) {
        Poll::Ready(outcome) => Some(outcome),
        Poll::Pending => None,
    }
}

/// A client: sends requests to a broker (or a client proxy) and gets their
/// outcomes.
///
/// `Client(broker, **options)`: `broker` is an endpoint or a list of them
/// (failover, one at a time); the options are the Rust `ClientConfig`'s
/// (`name`, `request_timeout`, `heartbeat`, `curve_server_key`, ...).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct Client {
    inner: RsClient,
}

/// What `submit` made of a request.
struct Sent {
    handle: ResponseHandle,
    typed: bool,
    delivery_only: bool,
}

impl Client {
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        rtype: &Bound<'_, PyAny>,
        payload: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        id: Option<u64>,
        flags: u64,
        typed: Option<bool>,
        reply_to: Option<String>,
        one_way: bool,
    ) -> PyResult<Sent> {
        let request_type = request_type(rtype)?;
        let (frames, typed) = payload::encode(py, payload, typed)?;
        let mut flags = Flags::from_bits_retain(flags);
        if one_way {
            flags |= Flags::ONE_WAY;
        }
        let delivery_only = flags.contains(Flags::ONE_WAY) || reply_to.is_some();
        let mut builder = self
            .inner
            .request(request_type)
            .flags(flags)
            .payload(frames);
        if let Some(id) = id {
            builder = builder.id(id);
        }
        if let Some(t) = timeout {
            builder = builder.timeout(crate::duration(t)?);
        }
        if let Some(name) = reply_to {
            builder = builder.reply_to(name);
        }
        let mut handle = builder.send().map_err(|e| errors::lib(py, &e))?;
        // Python waits by polling the handle as a future; dropping it still
        // lets the request go on (Response.cancel takes it back).
        handle.set_cancel_on_drop(false);
        Ok(Sent {
            handle,
            typed,
            delivery_only,
        })
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (broker, **options))]
    fn new(
        py: Python<'_>,
        broker: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: lhcluster::ClientConfig =
            config::with_endpoints("Client", "brokers", "broker", broker, options)?;
        let inner = detached(py, || RsClient::connect(config))?;
        Ok(Self { inner })
    }

    /// Sends a request and blocks (without the GIL) until its outcome: the
    /// response, or an exception of `lhcluster.Error` (`Failed`,
    /// `Rejected`, `Timeout`, ...).
    ///
    /// `request_type` is a name (hashed as `#[derive(Request)]` does) or a
    /// number. `payload`: `bytes` are sent as they are and the response is
    /// `bytes`; any other value is sent as MessagePack and the response
    /// decoded (`typed` forces either). `timeout` (seconds) overrides the
    /// client's `request_timeout` and is the request's deadline; `id` is
    /// its natural id (the dedupe key); `flags` are `lhcluster.Flags`.
    #[pyo3(signature = (request_type, payload=None, *, timeout=None, id=None, flags=0, typed=None))]
    #[allow(clippy::too_many_arguments)]
    fn request<'py>(
        &self,
        py: Python<'py>,
        request_type: &Bound<'py, PyAny>,
        payload: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        id: Option<u64>,
        flags: u64,
        typed: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Sent {
            mut handle,
            typed,
            delivery_only,
        } = self.submit(
            py,
            request_type,
            payload,
            timeout,
            id,
            flags,
            typed,
            None,
            false,
        )?;
        // The client ends every request (its timeout, a lost broker, stop),
        // so this wait has no deadline of its own. Blocking on the handle
        // (not polling it as a future) lets this thread read the client's
        // socket meanwhile: its response wakes it directly.
        let outcome = wait_in_slices(py, None, |end| {
            handle.wait_for(end.saturating_duration_since(Instant::now()))
        })?
        .expect("a wait without deadline ends with an outcome");
        to_python(py, &store(outcome), typed, delivery_only)
    }

    /// Sends a request and returns its `Response` handle at once. Besides
    /// `request`'s arguments: `reply_to` (another client's name receives
    /// the response) and `one_way` (no response: the handle resolves to
    /// `None` at delivery).
    #[pyo3(signature = (request_type, payload=None, *, timeout=None, id=None, flags=0, typed=None, reply_to=None, one_way=false))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        request_type: &Bound<'_, PyAny>,
        payload: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        id: Option<u64>,
        flags: u64,
        typed: Option<bool>,
        reply_to: Option<String>,
        one_way: bool,
    ) -> PyResult<Response> {
        let sent = self.submit(
            py,
            request_type,
            payload,
            timeout,
            id,
            flags,
            typed,
            reply_to,
            one_way,
        )?;
        Ok(Response {
            request_type: sent.handle.request_type(),
            request_id: sent.handle.request_id(),
            typed: sent.typed,
            delivery_only: sent.delivery_only,
            waiter: sent.handle.waiter(),
            inner: Mutex::new(ResponseInner {
                handle: sent.handle,
                outcome: None,
            }),
        })
    }

    /// Sends a request and returns an `asyncio.Future` of its outcome,
    /// bound to the running event loop (call it from a coroutine:
    /// `await client.request_async(...)`). The same arguments as `send`.
    /// The future is completed with `loop.call_soon_threadsafe` by one
    /// dispatcher thread shared by every client.
    #[pyo3(signature = (request_type, payload=None, *, timeout=None, id=None, flags=0, typed=None, reply_to=None, one_way=false))]
    #[allow(clippy::too_many_arguments)]
    fn request_async<'py>(
        &self,
        py: Python<'py>,
        request_type: &Bound<'py, PyAny>,
        payload: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        id: Option<u64>,
        flags: u64,
        typed: Option<bool>,
        reply_to: Option<String>,
        one_way: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = running_loop(py)?;
        let future = event_loop.call_method0("create_future")?;
        let sent = self.submit(
            py,
            request_type,
            payload,
            timeout,
            id,
            flags,
            typed,
            reply_to,
            one_way,
        )?;
        dispatcher().send_pending(Pending {
            source: Source::Handle(sent.handle),
            future: future.clone().unbind(),
            event_loop: event_loop.unbind(),
            typed: sent.typed,
            delivery_only: sent.delivery_only,
        });
        Ok(future)
    }

    /// Blocks (without the GIL) until the client has a session with a
    /// broker, up to `timeout` seconds; `False` if it has none by then.
    fn wait_connected(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = crate::duration(timeout)?;
        Ok(py.detach(|| self.inner.wait_connected(timeout)))
    }

    /// A fresh request id, unique to this client.
    fn next_id(&self) -> u64 {
        self.inner.next_id()
    }

    /// The next event (responses meant for this client as a `reply_to`
    /// target, one-way refusals, receipts, connection changes) as a dict,
    /// waiting up to `timeout` seconds (`None`: forever); `None` if there
    /// is none by then. A typed response's payload is decoded when `typed`.
    #[pyo3(signature = (timeout=None, *, typed=false))]
    fn next_event<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        typed: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let until = match timeout {
            Some(t) => Some(Instant::now() + crate::duration(t)?),
            None => None,
        };
        let events = self.inner.events().clone();
        let event = loop {
            let slice = {
                let next = Instant::now() + SIGNAL_CHECK;
                until.map_or(next, |u| u.min(next))
            };
            let got = py.detach(|| events.recv_deadline(slice).ok());
            if let Some(e) = got {
                break e;
            }
            py.check_signals()?;
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(None);
            }
        };
        let d = PyDict::new(py);
        match event {
            ClientEvent::Connected => d.set_item("kind", "connected")?,
            ClientEvent::Disconnected => d.set_item("kind", "disconnected")?,
            ClientEvent::Receipt {
                request_type,
                request_id,
                kind,
            } => {
                d.set_item("kind", "receipt")?;
                d.set_item("request_type", request_type)?;
                d.set_item("request_id", request_id)?;
                d.set_item("receipt", receipt_name(kind))?;
            }
            ClientEvent::Response {
                request_type,
                request_id,
                outcome,
            } => {
                d.set_item("kind", "response")?;
                d.set_item("request_type", request_type)?;
                d.set_item("request_id", request_id)?;
                match to_python(py, &store(outcome), typed, false) {
                    Ok(v) => d.set_item("payload", v)?,
                    Err(e) => d.set_item("error", e.value(py))?,
                }
            }
            _ => d.set_item("kind", "other")?,
        }
        Ok(Some(d))
    }
}

role_methods! {
    Client,
    /// A snapshot of the client's statistics, as a dict.
    stats,
    /// Says goodbye to the broker and stops (idempotent); outstanding
    /// requests end with `lhcluster.Stopped`.
    stop
}

fn receipt_name(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Sent => "sent",
        ReceiptKind::Received => "received",
    }
}

struct ResponseInner {
    handle: ResponseHandle,
    outcome: Option<Stored>,
}

impl ResponseInner {
    fn poll(&mut self, cx: &mut Context<'_>) -> Option<Stored> {
        if self.outcome.is_none() {
            self.outcome = poll_handle(&mut self.handle, cx).map(store);
        }
        self.outcome.clone()
    }

    /// The outcome if it has arrived, kept for the other waiters.
    fn take_done(&mut self) -> Option<Stored> {
        if self.outcome.is_none() {
            self.outcome = self.handle.try_take().map(store);
        }
        self.outcome.clone()
    }
}

/// The eventual outcome of one request sent with `Client.send`.
///
/// Dropping it does not cancel the request; `cancel()` does.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct Response {
    inner: Mutex<ResponseInner>,
    /// Blocks `result` without the lock (other threads may cancel, or look).
    waiter: Waiter,
    request_type: u32,
    request_id: u64,
    typed: bool,
    delivery_only: bool,
}

impl Response {
    fn lock(&self) -> std::sync::MutexGuard<'_, ResponseInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Response {
    /// The request type id.
    #[getter]
    fn request_type(&self) -> u32 {
        self.request_type
    }

    /// The request id (assigned by the client when none was given).
    #[getter]
    fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Waits (without the GIL) for the outcome, up to `timeout` seconds
    /// (`None`: until the client ends the request), and returns the
    /// response or raises the outcome's exception. Raises
    /// `lhcluster.Timeout` if the outcome has not come by `timeout`; the
    /// request goes on and `result` may be called again.
    #[pyo3(signature = (timeout=None))]
    fn result<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let until = match timeout {
            Some(t) => Some(Instant::now() + crate::duration(t)?),
            None => None,
        };
        // Blocking on the waiter (not polling the handle as a future) lets
        // this thread read the client's socket meanwhile: the response
        // wakes it directly. The lock is only taken without the GIL, and
        // not while blocking.
        let got = wait_in_slices(py, until, |end| {
            // Only what is kept: a look at the handle itself would wake
            // the client's driver, which this wait makes needless.
            if let Some(stored) = self.lock().outcome.clone() {
                return Some(stored);
            }
            self.waiter
                .wait(end.saturating_duration_since(Instant::now()));
            self.lock().take_done()
        })?;
        match got {
            Some(stored) => to_python(py, &stored, self.typed, self.delivery_only),
            None => Err(errors::new(
                py,
                "Timeout",
                format!(
                    "no outcome within {:?} (the request goes on)",
                    timeout.unwrap_or_default()
                ),
                None,
            )),
        }
    }

    /// Takes the request back (protocol 1.5): `True` if this ended it (its
    /// outcome is then `lhcluster.Cancelled`; the broker takes a queued
    /// request out of its queue, and tells the worker running one, whose
    /// handler sees `ctx.is_cancelled()`), `False` if the outcome had
    /// already arrived (take it with `result`).
    fn cancel(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            let inner = self.lock();
            inner.outcome.is_none() && inner.handle.cancel()
        })
    }

    /// Whether the outcome has arrived.
    fn done(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            let inner = self.lock();
            inner.outcome.is_some() || inner.handle.is_done()
        })
    }

    /// The receipts received so far: `"sent"` (`RECEIPT_ON_SEND`: a worker
    /// has it) and `"received"` (`RECEIPT_ON_RECEIVE`: the worker accepted
    /// it), in arrival order.
    fn receipts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let kinds = py.detach(|| self.lock().handle.receipts());
        PyList::new(py, kinds.into_iter().map(receipt_name))
    }

    /// Waits up to `timeout` seconds for the receipt `kind` (`"sent"` or
    /// `"received"`): `True` when it came, `False` if the outcome came
    /// without it or the time ran out.
    fn wait_receipt(&self, py: Python<'_>, kind: &str, timeout: f64) -> PyResult<bool> {
        let kind = match kind {
            "sent" => ReceiptKind::Sent,
            "received" => ReceiptKind::Received,
            other => {
                return Err(PyValueError::new_err(format!(
                    "a receipt is \"sent\" or \"received\", not {other:?}"
                )));
            }
        };
        let until = Instant::now() + crate::duration(timeout)?;
        loop {
            let slice = (until - Instant::now().min(until)).min(SIGNAL_CHECK);
            let (got, done) = py.detach(|| {
                let inner = self.lock();
                if inner.handle.receipts().contains(&kind) {
                    return (true, true);
                }
                if inner.outcome.is_some() {
                    return (false, true);
                }
                let got = inner.handle.wait_receipt(kind, slice);
                (got, got || inner.handle.is_done())
            });
            if done {
                return Ok(got);
            }
            py.check_signals()?;
            if Instant::now() >= until {
                return Ok(false);
            }
        }
    }

    /// `await response`: the outcome as `result()` gives it, without
    /// blocking the event loop (the dispatcher thread that completes
    /// `request_async` futures completes this one too). It may be awaited
    /// several times, and mixed with `result()`.
    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let event_loop = running_loop(py)?;
        let future = event_loop.call_method0("create_future")?;
        let me = slf.get();
        dispatcher().send_pending(Pending {
            source: Source::Response(slf.clone().unbind()),
            future: future.clone().unbind(),
            event_loop: event_loop.unbind(),
            typed: me.typed,
            delivery_only: me.delivery_only,
        });
        future.call_method0("__await__")
    }

    fn __repr__(&self) -> String {
        format!(
            "Response(request_type={}, request_id={})",
            self.request_type, self.request_id
        )
    }
}

/// The running event loop (`asyncio.get_running_loop()`): an error outside
/// a coroutine.
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get_loop = GET_LOOP.get_or_try_init(py, || {
        py.import("asyncio")?
            .getattr("get_running_loop")
            .map(Bound::unbind)
    })?;
    Ok(get_loop.call0(py)?.into_bound(py))
}

/// What an asyncio future waits on.
enum Source {
    /// A handle only the future has (`request_async`).
    Handle(ResponseHandle),
    /// A `Response` the caller holds too (`await response`), which keeps
    /// the outcome for its other waiters.
    Response(Py<Response>),
}

impl Source {
    fn poll(&mut self, cx: &mut Context<'_>) -> Option<Stored> {
        match self {
            Source::Handle(handle) => poll_handle(handle, cx).map(store),
            // A frozen, `Sync` class: reachable without the GIL. Never
            // wait for its lock: a thread in `wait_receipt` may hold it
            // for a while, and this thread serves every future of the
            // process; a busy one is polled again at the next re-poll.
            Source::Response(response) => match response.get().inner.try_lock() {
                Ok(mut inner) => inner.poll(cx),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().poll(cx),
                Err(std::sync::TryLockError::WouldBlock) => None,
            },
        }
    }

    /// A handle keeps one waker, its last poller's: a `Response` awaited
    /// twice may have lost this future's, and one busy when polled (another
    /// thread in `result`, `cancel` or `wait_receipt` holding its lock) is
    /// not polled then, so those are polled again every [`SHARED_REPOLL`],
    /// however busy the dispatcher is.
    fn shared(&self) -> bool {
        matches!(self, Source::Response(_))
    }
}

/// How often the dispatcher polls the `Response`s it waits on, in case
/// another waiter took their waker.
const SHARED_REPOLL: Duration = Duration::from_millis(100);

/// One request awaited by an asyncio future.
struct Pending {
    source: Source,
    future: Py<PyAny>,
    event_loop: Py<PyAny>,
    typed: bool,
    delivery_only: bool,
}

enum Msg {
    Add(Pending),
    Wake(u64),
}

/// The asyncio dispatcher: one thread that owns every awaited handle,
/// polls a handle when its waker fires, and completes the finished ones'
/// futures in batches, one `call_soon_threadsafe` per event loop.
struct Dispatcher {
    tx: Sender<Msg>,
}

impl Dispatcher {
    fn send_pending(&self, pending: Pending) {
        // The thread never ends, so the channel never closes.
        let _ = self.tx.send(Msg::Add(pending));
    }
}

fn dispatcher() -> &'static Dispatcher {
    static DISPATCHER: OnceLock<Dispatcher> = OnceLock::new();
    DISPATCHER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wake_tx = tx.clone();
        thread::Builder::new()
            .name("lhcluster-asyncio".to_owned())
            .spawn(move || run_dispatcher(&rx, &wake_tx))
            .expect("cannot spawn the lhcluster asyncio dispatcher thread");
        Dispatcher { tx }
    })
}

struct KeyWaker {
    key: u64,
    tx: Sender<Msg>,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.tx.send(Msg::Wake(self.key));
    }
}

fn run_dispatcher(rx: &Receiver<Msg>, tx: &Sender<Msg>) {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    // The keys of the pending `Response`s, polled again on a timer.
    let mut shared: HashSet<u64> = HashSet::new();
    let mut next_repoll = Instant::now() + SHARED_REPOLL;
    let mut next_key = 0u64;
    loop {
        let mut batch = Vec::new();
        if shared.is_empty() {
            match rx.recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => return,
            }
        } else {
            match rx.recv_deadline(next_repoll) {
                Ok(msg) => batch.push(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Due whether or not other messages kept the thread busy.
            if Instant::now() >= next_repoll {
                prune_cancelled(&mut pending, &mut shared);
                batch.extend(shared.iter().map(|&k| Msg::Wake(k)));
                next_repoll = Instant::now() + SHARED_REPOLL;
            }
        }
        let mut ready: Vec<(Pending, Stored)> = Vec::new();
        let mut handle = |msg: Msg, pending: &mut HashMap<u64, Pending>| {
            let key = match msg {
                Msg::Add(p) => {
                    next_key += 1;
                    if p.source.shared() {
                        shared.insert(next_key);
                    }
                    pending.insert(next_key, p);
                    next_key
                }
                Msg::Wake(key) => key,
            };
            let Some(p) = pending.get_mut(&key) else {
                return;
            };
            let waker = Waker::from(Arc::new(KeyWaker {
                key,
                tx: tx.clone(),
            }));
            let mut cx = Context::from_waker(&waker);
            if let Some(outcome) = p.source.poll(&mut cx) {
                shared.remove(&key);
                if let Some(p) = pending.remove(&key) {
                    ready.push((p, outcome));
                }
            }
        };
        for msg in batch {
            handle(msg, &mut pending);
        }
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut pending);
        }
        if !ready.is_empty() {
            // Never let a panic end this thread: every later future would
            // wait forever. (Taking the GIL panics once the interpreter is
            // finalizing; nobody awaits anything then.)
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Python::attach(|py| deliver(py, ready));
            }));
        }
    }
}

/// Forgets the awaits of `Response`s whose future is done already (its
/// awaiting task was cancelled, by `asyncio.wait_for` say): the request
/// goes on, and the caller still holds its `Response`, but this future
/// waits for nothing. (A `request_async` future keeps its entry until its
/// request ends: that entry owns the handle.)
fn prune_cancelled(pending: &mut HashMap<u64, Pending>, shared: &mut HashSet<u64>) {
    if shared.is_empty() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Python::attach(|py| {
            shared.retain(|key| {
                let done = pending.get(key).is_none_or(|p| {
                    p.future
                        .bind(py)
                        .call_method0("done")
                        .and_then(|d| d.is_truthy())
                        .unwrap_or(true)
                });
                if done {
                    pending.remove(key);
                }
                !done
            });
        });
    }));
}

/// Completes the futures of `ready`, one `call_soon_threadsafe` per loop.
fn deliver(py: Python<'_>, ready: Vec<(Pending, Stored)>) {
    static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let Ok(resolve) = RESOLVE.get_or_try_init(py, || {
        py.import("lhcluster._aio")?
            .getattr("_resolve")
            .map(Bound::unbind)
    }) else {
        return;
    };
    let mut by_loop: Vec<(Py<PyAny>, Vec<Bound<'_, PyTuple>>)> = Vec::new();
    for (p, outcome) in ready {
        let (ok, value) = match to_python(py, &outcome, p.typed, p.delivery_only) {
            Ok(v) => (true, v),
            Err(e) => (false, e.into_value(py).into_bound(py).into_any()),
        };
        let ok = pyo3::types::PyBool::new(py, ok).to_owned().into_any();
        let Ok(item) = PyTuple::new(py, [p.future.bind(py).clone(), ok, value]) else {
            continue;
        };
        match by_loop
            .iter_mut()
            .find(|(l, _)| l.bind(py).is(p.event_loop.bind(py)))
        {
            Some((_, items)) => items.push(item),
            None => by_loop.push((p.event_loop, vec![item])),
        }
    }
    for (event_loop, items) in by_loop {
        let Ok(batch) = PyList::new(py, items) else {
            continue;
        };
        // A closed loop refuses: nobody awaits those futures any more.
        let _ = event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (resolve.bind(py), batch));
    }
}

//! The worker: Python handlers run on the Rust worker's pool threads,
//! each call taking the GIL only while Python code runs.

use lhcluster::worker::{HandlerError, RequestContext as RsContext};
use lhcluster::{Frame, Payload, Worker as RsWorker, WorkerConfig};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::roles::{detached, role_methods};
use crate::{config, errors, msgpack, payload};

/// What a handler knows about the request it runs.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct RequestContext {
    /// The request type id.
    #[pyo3(get)]
    request_type: u32,
    /// The name the handler was registered under (`None` for a number).
    #[pyo3(get)]
    type_name: Option<String>,
    /// The request id.
    #[pyo3(get)]
    request_id: u64,
    /// The delivery flags (`lhcluster.Flags` bits: receipts, retry, ...).
    #[pyo3(get)]
    flags: u64,
    /// 1 on the first dispatch, more after a retry on worker death.
    #[pyo3(get)]
    attempt: u32,
    /// When the requester stops waiting, on the `time.monotonic()` clock;
    /// `None` without a deadline.
    #[pyo3(get)]
    deadline: Option<f64>,
    /// The Rust context, for its cancel flag.
    rs: RsContext,
}

fn monotonic(py: Python<'_>) -> PyResult<f64> {
    static MONOTONIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MONOTONIC
        .get_or_try_init(py, || {
            py.import("time")?.getattr("monotonic").map(Bound::unbind)
        })?
        .call0(py)?
        .extract(py)
}

#[pymethods]
impl RequestContext {
    /// Seconds left until the deadline (0 once passed), or `None`.
    fn remaining(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        match self.deadline {
            Some(d) => Ok(Some((d - monotonic(py)?).max(0.0))),
            None => Ok(None),
        }
    }

    /// Whether the deadline has passed (never, without one).
    fn is_expired(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.remaining(py)?.is_some_and(|left| left <= 0.0))
    }

    /// Whether the requester has cancelled the request (protocol 1.5):
    /// nobody waits for the outcome any more. Cooperative: a long handler
    /// checks it between steps and returns early (what it returns then is
    /// dropped).
    fn is_cancelled(&self) -> bool {
        self.rs.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!(
            "RequestContext(request_type={}, type_name={:?}, request_id={}, flags={}, attempt={}, deadline={:?})",
            self.request_type,
            self.type_name,
            self.request_id,
            self.flags,
            self.attempt,
            self.deadline
        )
    }
}

/// A registered Python handler.
struct PyHandler {
    name: Option<String>,
    func: Py<PyAny>,
    typed: bool,
}

/// The text of a Python exception: its message, or its class name when it
/// has none.
fn exception_text(py: Python<'_>, e: &PyErr) -> String {
    let value = e.value(py);
    let text = value.str().map(|s| s.to_string()).unwrap_or_default();
    if text.is_empty() {
        value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "exception".to_owned())
    } else {
        text
    }
}

fn is_bad_request(py: Python<'_>, e: &PyErr) -> bool {
    static BAD_REQUEST: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    BAD_REQUEST
        .get_or_try_init(py, || {
            py.import("lhcluster.errors")?
                .getattr("BadRequest")
                .map(Bound::unbind)
        })
        .ok()
        .and_then(|cls| e.value(py).is_instance(cls.bind(py)).ok())
        .unwrap_or(false)
}

/// Logs a handler's exception (`lhcluster._handler_failed`: a traceback at
/// warning level, unless it is an `lhcluster.Error` raised on purpose).
fn report(py: Python<'_>, name: Option<&str>, request_type: u32, e: &PyErr) {
    static REPORT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if let Ok(report) = REPORT.get_or_try_init(py, || {
        py.import("lhcluster")?
            .getattr("_handler_failed")
            .map(Bound::unbind)
    }) {
        let label = name.map_or_else(|| request_type.to_string(), str::to_owned);
        if let Err(e) = report.call1(py, (label, e.value(py))) {
            e.write_unraisable(py, None);
        }
    }
}

impl PyHandler {
    fn call(&self, payload: Payload, ctx: &RsContext) -> Result<Payload, HandlerError> {
        Python::attach(|py| {
            let arg = payload::decode(py, &payload, self.typed).map_err(|e| {
                HandlerError::bad_request(format!(
                    "the payload does not decode: {}",
                    exception_text(py, &e)
                ))
            })?;
            let deadline = match ctx.remaining() {
                Some(left) => Some(
                    monotonic(py).map_err(|e| HandlerError::failed(exception_text(py, &e)))?
                        + left.as_secs_f64(),
                ),
                None => None,
            };
            let context = RequestContext {
                request_type: ctx.request_type,
                type_name: self.name.clone(),
                request_id: ctx.request_id,
                flags: ctx.flags.bits(),
                attempt: ctx.attempt,
                deadline,
                rs: ctx.clone(),
            };
            let returned = self
                .func
                .call1(py, (arg, context))
                .map_err(|e| {
                    report(py, self.name.as_deref(), ctx.request_type, &e);
                    let text = exception_text(py, &e);
                    if is_bad_request(py, &e) {
                        HandlerError::bad_request(text)
                    } else {
                        HandlerError::failed(text)
                    }
                })?
                .into_bound(py);
            let encoded = if self.typed {
                msgpack::pack(&returned).map(|b| vec![Frame::from(b)])
            } else if returned.is_none() {
                Ok(Payload::new())
            } else {
                payload::encode(py, Some(&returned), Some(false)).map(|(p, _)| p)
            };
            encoded.map_err(|e| {
                HandlerError::failed(format!(
                    "the handler's return value cannot be sent: {}",
                    exception_text(py, &e)
                ))
            })
        })
    }
}

/// A running worker (made by `lhcluster.Worker.start()`).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct Worker {
    inner: RsWorker,
}

#[pymethods]
impl Worker {
    /// Starts a worker on `broker` (an endpoint or a list) with
    /// `handlers`, a list of `(type_id, name, function, typed)`, and the
    /// Rust `WorkerConfig`'s options (`capacity`, `name`, `heartbeat`, ...).
    #[new]
    #[pyo3(signature = (broker, handlers, **options))]
    fn new(
        py: Python<'_>,
        broker: &Bound<'_, PyAny>,
        handlers: Vec<(u32, Option<String>, Py<PyAny>, bool)>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: WorkerConfig =
            config::with_endpoints("Worker", "brokers", "broker", broker, options)?;
        let mut builder = RsWorker::builder(config);
        for (type_id, name, func, typed) in handlers {
            // The name goes to the broker (its stats and logs show it).
            let type_name = name.clone().unwrap_or_default();
            let handler = PyHandler { name, func, typed };
            builder = builder.handle_raw_named(
                type_id,
                type_name,
                move |payload: Payload, ctx: &RsContext| handler.call(payload, ctx),
            );
        }
        let inner = detached(py, || builder.start())?;
        Ok(Self { inner })
    }

    /// Checks a worker's options without starting it (`TypeError` for an
    /// unknown or ill-typed one, `lhcluster.ConfigError` for a bad value).
    #[staticmethod]
    #[pyo3(signature = (broker, **options))]
    fn _check(
        py: Python<'_>,
        broker: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let config: WorkerConfig =
            config::with_endpoints("Worker", "brokers", "broker", broker, options)?;
        config
            .validate()
            .map_err(|e| errors::lib(py, &lhcluster::Error::from(e)))
    }

    /// Stops at once, without waiting for running handlers: the broker
    /// declares this worker dead (`WORKER_DEATH` or a retry).
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.abort())
    }
}

role_methods! {
    Worker,
    /// A snapshot of the worker's statistics, as a dict.
    stats,
    /// Stops the worker (idempotent): running handlers finish (within
    /// `shutdown_timeout`), the broker is told.
    stop
}

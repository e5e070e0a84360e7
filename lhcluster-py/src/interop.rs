//! Rust typed code for the interop tests (`tests/test_interop.py`): a
//! `#[derive(Request)]` worker and `send_typed` client, and typed
//! notifications both ways, run inside the Python process so that the tests
//! need no second build. Private (`lhcluster._native._interop_*`), not API.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::Receiver;
use lhcluster::notify::{NotifyOutcome, NotifyPublisher, NotifySubscriberConfig};
use lhcluster::typed::NotifyRouter;
use lhcluster::worker::HandlerError;
use lhcluster::{Client, ClientConfig, NotifyPublisherConfig, Worker, WorkerConfig};
use pyo3::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors;
use crate::roles::detached;

/// Served by a Rust worker, called from Python.
#[derive(Serialize, Deserialize, lhcluster::Request)]
#[request_type(name = "interop.add", response = Sum)]
struct Add {
    #[request_id]
    id: u64,
    a: i64,
    b: i64,
    tags: Vec<String>,
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Sum {
    sum: i64,
    tags: Vec<String>,
    note: Option<String>,
}

/// Served by a Python worker, called from Rust.
#[derive(Serialize, Deserialize, lhcluster::Request)]
#[request_type(name = "interop.join", response = Joined)]
struct Join {
    parts: Vec<String>,
    sep: String,
}

#[derive(Serialize, Deserialize)]
struct Joined {
    text: String,
    count: u32,
}

#[derive(Serialize, Deserialize, lhcluster::Notification)]
#[notification(name = "interop.event")]
struct Event {
    seq: u64,
    text: String,
}

/// The request type ids the derive computed, to compare with Python's.
#[pyfunction]
pub(crate) fn _interop_type_ids() -> (u32, u32) {
    use lhcluster::Request;
    (Add::REQUEST_TYPE, Join::REQUEST_TYPE)
}

/// A Rust echo worker for `python -m lhcluster.bench` (`bench.echo`: the
/// payload back, on the worker's I/O thread when `inline`).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct BenchEcho {
    inner: Worker,
}

#[pymethods]
impl BenchEcho {
    /// An echo worker of `capacity` (`lhcluster bench`'s default is its
    /// window, 64, so that the broker forwards at once, as the baselines
    /// do: a worker of capacity 1 measures its round trip, not the client).
    #[new]
    #[pyo3(signature = (backend, inline, capacity=64))]
    fn new(py: Python<'_>, backend: String, inline: bool, capacity: u32) -> PyResult<Self> {
        let mut config = WorkerConfig::new(backend);
        config.inline = inline;
        config.capacity = capacity.max(1);
        let builder = Worker::builder(config).handle_raw(
            lhcluster::request_type_id("bench.echo"),
            |payload: lhcluster::Payload, _ctx: &lhcluster::worker::RequestContext| Ok(payload),
        );
        let inner = detached(py, || builder.start())?;
        Ok(Self { inner })
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.stop())
    }
}

/// A running Rust worker serving `interop.add` (`a < 0` fails).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct InteropWorker {
    inner: Worker,
}

#[pymethods]
impl InteropWorker {
    #[new]
    fn new(py: Python<'_>, backend: String) -> PyResult<Self> {
        let builder = Worker::builder(WorkerConfig::new(backend)).handle::<Add>(|req, _ctx| {
            if req.a < 0 {
                return Err(HandlerError::failed(format!("negative: {}", req.a)));
            }
            Ok(Sum {
                sum: req.a + req.b,
                tags: req.tags,
                note: req.note,
            })
        });
        let inner = detached(py, || builder.start())?;
        Ok(Self { inner })
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.stop())
    }
}

/// Sends `interop.join` from a Rust typed client; returns `(text, count)`
/// or raises the outcome's exception.
#[pyfunction]
pub(crate) fn _interop_join(
    py: Python<'_>,
    frontend: String,
    parts: Vec<String>,
    sep: String,
) -> PyResult<(String, u32)> {
    let outcome = py.detach(|| {
        let client = Client::connect(ClientConfig::new(frontend)).map_err(Err)?;
        let result = client
            .send_typed(&Join { parts, sep })
            .map_err(Ok)
            .and_then(|h| h.wait_timeout(Duration::from_secs(10)).map_err(Ok));
        let _ = client.stop();
        result
    });
    match outcome {
        Ok(j) => Ok((j.text, j.count)),
        Err(Err(e)) => Err(errors::lib(py, &e)),
        Err(Ok(e)) => match e {
            lhcluster::TypedRequestError::Request(r) => Err(errors::request(py, &r)),
            other => Err(errors::new(
                py,
                "DecodeError",
                errors::with_causes(&other),
                None,
            )),
        },
    }
}

/// Publishes typed `interop.event` notifications from Rust.
#[pyfunction]
pub(crate) fn _interop_publish(
    py: Python<'_>,
    backend: String,
    events: Vec<(u64, String)>,
) -> PyResult<()> {
    py.detach(|| -> Result<(), String> {
        let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(backend))
            .map_err(|e| e.to_string())?;
        for (seq, text) in events {
            publisher
                .publish_typed(&Event { seq, text })
                .map_err(|e| e.to_string())?;
        }
        publisher.stop().map_err(|e| e.to_string())
    })
    .map_err(|e| errors::new(py, "Error", e, None))
}

/// A Rust typed subscriber of `interop.event`, collecting what it gets.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct InteropSink {
    subscriber: lhcluster::NotifySubscriber,
    events: Mutex<Receiver<(u64, String)>>,
}

#[pymethods]
impl InteropSink {
    #[new]
    fn new(py: Python<'_>, frontend: String) -> PyResult<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let subscriber = detached(py, || {
            NotifyRouter::new()
                .on::<Event>(move |e| {
                    let _ = tx.send((e.seq, e.text));
                    NotifyOutcome::Continue
                })
                .connect(NotifySubscriberConfig::new(frontend))
        })?;
        Ok(Self {
            subscriber,
            events: Mutex::new(rx),
        })
    }

    /// Up to `count` events, waiting up to `timeout` seconds in all.
    fn take(&self, py: Python<'_>, count: usize, timeout: f64) -> PyResult<Vec<(u64, String)>> {
        let until = std::time::Instant::now() + crate::duration(timeout)?;
        Ok(py.detach(|| {
            let rx = self.events.lock().unwrap_or_else(|p| p.into_inner());
            let mut got = Vec::new();
            while got.len() < count {
                match rx.recv_deadline(until) {
                    Ok(e) => got.push(e),
                    Err(_) => break,
                }
            }
            got
        }))
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.subscriber.stop())
    }
}

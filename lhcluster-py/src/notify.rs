//! The notification subscriber: every notification goes to one Python
//! callable (`lhcluster.NotifySubscriber`'s dispatcher), on the Rust
//! subscriber's handler thread, in order.

use std::time::Duration;

use lhcluster::NotifySubscriberConfig;
use lhcluster::notify::{NotifyOutcome, NotifySubscriber as RsSubscriber, RawNotification};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::roles::{detached, role_methods};
use crate::{config, payload};

/// A running subscriber (made by `lhcluster.NotifySubscriber`).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct NotifySubscriber {
    inner: RsSubscriber,
}

fn dispatch(func: &Py<PyAny>, n: RawNotification) -> NotifyOutcome {
    Python::attach(|py| {
        let result = payload::decode(py, &n.payload, false)
            .and_then(|body| func.call1(py, (n.topic, body, n.notify_id)));
        match result {
            Ok(r) => match r.extract::<Option<String>>(py).ok().flatten().as_deref() {
                Some("unsubscribe") => NotifyOutcome::Unsubscribe,
                Some("stop") => NotifyOutcome::Stop,
                _ => NotifyOutcome::Continue,
            },
            Err(e) => {
                // The dispatcher reports its callbacks' errors itself; this
                // is a bug of the dispatcher: shown, not fatal.
                e.write_unraisable(py, None);
                NotifyOutcome::Continue
            }
        }
    })
}

#[pymethods]
impl NotifySubscriber {
    /// Connects to `endpoint` (a notify broker's frontend, or a list), with
    /// `dispatch(topic, payload_bytes, notify_id)` called for each
    /// notification (returning `"unsubscribe"` or `"stop"` to do that), and
    /// the Rust `NotifySubscriberConfig`'s options (`topics`, `prefixes`,
    /// `confirm_timeout`, ...).
    #[new]
    #[pyo3(signature = (endpoint, dispatch, **options))]
    fn new(
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        dispatch: Py<PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: NotifySubscriberConfig = config::with_endpoints(
            "NotifySubscriber",
            "endpoints",
            "endpoint",
            endpoint,
            options,
        )?;
        let handler = move |n: RawNotification| self::dispatch(&dispatch, n);
        let inner = detached(py, || RsSubscriber::connect(config, handler))?;
        Ok(Self { inner })
    }

    /// Subscribes to a topic (exact match); returns once in force.
    fn subscribe(&self, py: Python<'_>, topic: &str) -> PyResult<()> {
        detached(py, || self.inner.subscribe(topic))
    }

    /// Subscribes to every topic that starts with `prefix`.
    fn subscribe_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<()> {
        detached(py, || self.inner.subscribe_prefix(prefix))
    }

    /// Removes an exact subscription.
    fn unsubscribe(&self, py: Python<'_>, topic: &str) -> PyResult<()> {
        detached(py, || self.inner.unsubscribe(topic))
    }

    /// Removes a prefix subscription.
    fn unsubscribe_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<()> {
        detached(py, || self.inner.unsubscribe_prefix(prefix))
    }

    /// The exact topics subscribed to.
    fn topics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.topics())
    }

    /// The prefixes subscribed to.
    fn prefixes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.prefixes())
    }

    /// The endpoint in use.
    #[getter]
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    /// Whether the subscriber has stopped.
    fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Waits (without the GIL) up to `timeout` seconds for the subscriber
    /// to stop; `True` once it has.
    fn wait_stopped(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout: Duration = crate::duration(timeout)?;
        Ok(py.detach(|| self.inner.wait_stopped(timeout)))
    }
}

role_methods! {
    NotifySubscriber,
    /// A snapshot of the subscriber's statistics, as a dict.
    stats,
    /// Stops the subscriber (idempotent).
    stop
}

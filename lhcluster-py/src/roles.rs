//! The roles without callbacks: Broker, ClientProxy, NotifyBroker and
//! NotifyPublisher. Each starts in its constructor, as in Rust, and stops
//! with `stop()`, at the end of a `with` block, or when collected.

use lhcluster::notify::{NotifyBroker as RsNotifyBroker, NotifyPublisher as RsNotifyPublisher};
use lhcluster::{Broker as RsBroker, ClientProxy as RsClientProxy};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{config, errors, payload};

/// A `stats()` snapshot as a `dict` (nested maps as dicts).
pub(crate) fn stats_dict<'py>(
    py: Python<'py>,
    stats: &impl Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(stats)
        .map_err(|e| errors::new(py, "Error", format!("cannot read the stats: {e}"), None))?;
    json_to_py(py, &value)
}

fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => crate::list_of(py, items, |item| json_to_py(py, item))?,
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                // Per-type maps are keyed by request type id: ints in Python.
                match k.parse::<u64>() {
                    Ok(n) => dict.set_item(n, json_to_py(py, item)?)?,
                    Err(_) => dict.set_item(k, json_to_py(py, item)?)?,
                }
            }
            dict.into_any()
        }
    })
}

/// Runs `f` without the GIL (a role's own threads may need it meanwhile);
/// its error becomes the `lhcluster` exception.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, lhcluster::Error> + Send,
) -> PyResult<T> {
    py.detach(f).map_err(|e| errors::lib(py, &e))
}

/// `stats()` of a role: the snapshot taken without the GIL, as a dict.
pub(crate) fn role_stats<'py, S: Serialize + Send>(
    py: Python<'py>,
    stats: impl FnOnce() -> Result<S, lhcluster::Error> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    stats_dict(py, &detached(py, stats)?)
}

/// Stops a role being collected, without the GIL (its threads may need it
/// to finish); an error has nowhere to go.
pub(crate) fn stop_on_drop(stop: impl FnOnce() -> Result<(), lhcluster::Error> + Send) {
    Python::attach(|py| {
        let _ = py.detach(stop);
    });
}

/// The methods every role class shares, in a `#[pymethods]` block of their
/// own (the `multiple-pymethods` feature), and its `Drop`: `stats()` and
/// `stop()` on the Rust role in its `inner` field, a `with` block that
/// stops the role at its end, and a stop when collected. The docstrings of
/// `stats` and `stop` are the role's own:
///
/// ```ignore
/// role_methods! {
///     Broker,
///     /// A snapshot of the broker's statistics, as a dict.
///     stats,
///     /// Stops the broker (idempotent).
///     stop
/// }
/// ```
macro_rules! role_methods {
    ($role:ident, $(#[$stats_doc:meta])* stats, $(#[$stop_doc:meta])* stop $(,)?) => {
        #[::pyo3::pymethods]
        impl $role {
            $(#[$stats_doc])*
            fn stats<'py>(
                &self,
                py: ::pyo3::Python<'py>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                $crate::roles::role_stats(py, || self.inner.stats())
            }

            $(#[$stop_doc])*
            fn stop(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                $crate::roles::detached(py, || self.inner.stop())
            }

            fn __enter__(slf: ::pyo3::Py<Self>) -> ::pyo3::Py<Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(
                &self,
                py: ::pyo3::Python<'_>,
                _exc: &::pyo3::Bound<'_, ::pyo3::types::PyTuple>,
            ) -> ::pyo3::PyResult<bool> {
                self.stop(py)?;
                Ok(false)
            }
        }

        impl Drop for $role {
            fn drop(&mut self) {
                $crate::roles::stop_on_drop(|| self.inner.stop());
            }
        }
    };
}
pub(crate) use role_methods;

/// The configuration of a role bound on a frontend and a backend.
/// A key list from a key file's text or a list of its lines; a malformed
/// one is a `ConfigError` naming the line.
fn key_list(value: &Bound<'_, PyAny>) -> PyResult<lhcluster::curve::KeyList> {
    let text = match value.extract::<String>() {
        Ok(text) => text,
        Err(_) => value
            .extract::<Vec<String>>()
            .map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "a key list is a key file's text or a list of its lines",
                )
            })?
            .join("\n"),
    };
    lhcluster::curve::KeyList::parse(&text)
        .map_err(|e| errors::new(value.py(), "ConfigError", e.to_string(), None))
}

fn frontend_backend<C: DeserializeOwned>(
    role: &str,
    frontend: &Bound<'_, PyAny>,
    backend: &Bound<'_, PyAny>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<C> {
    config::build(
        role,
        vec![
            ("frontend", config::endpoint(role, "frontend", frontend)?),
            ("backend", config::endpoint(role, "backend", backend)?),
        ],
        options,
    )
}

/// A broker: binds a frontend (clients, proxies) and a backend (workers),
/// and routes each request to a free worker of its type.
///
/// `Broker(frontend, backend, **options)`: the options are the fields of
/// the Rust `BrokerConfig` (`heartbeat`, `max_pending_per_type`,
/// `cluster_bind`, `curve_secret_key`, ...). Starts at once; raises
/// `lhcluster.EndpointError` when an endpoint cannot be bound.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct Broker {
    inner: RsBroker,
}

#[pymethods]
impl Broker {
    #[new]
    #[pyo3(signature = (frontend, backend, **options))]
    fn new(
        py: Python<'_>,
        frontend: &Bound<'_, PyAny>,
        backend: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: lhcluster::BrokerConfig =
            frontend_backend("Broker", frontend, backend, options)?;
        let inner = detached(py, || RsBroker::start(config))?;
        Ok(Self { inner })
    }

    /// The frontend endpoint, where clients and proxies connect (with the
    /// port chosen, for `tcp://127.0.0.1:*`).
    #[getter]
    fn frontend(&self) -> &str {
        self.inner.frontend()
    }

    /// The backend endpoint, where workers connect.
    #[getter]
    fn backend(&self) -> &str {
        self.inner.backend()
    }

    /// The cluster endpoint, when `cluster_bind` was given.
    #[getter]
    fn cluster_endpoint(&self) -> Option<&str> {
        self.inner.cluster_endpoint()
    }

    /// Replaces the allow lists from the next handshake on (as SIGHUP does
    /// for `lhcluster broker`): `client_keys`, `worker_keys` as a key file's
    /// text or a list of its lines (`KEY [types…]`); `None` keeps a list.
    /// A side started without a list cannot get one.
    #[pyo3(signature = (client_keys=None, worker_keys=None))]
    fn reload_keys(
        &self,
        py: Python<'_>,
        client_keys: Option<&Bound<'_, PyAny>>,
        worker_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let clients = client_keys.map(key_list).transpose()?;
        let workers = worker_keys.map(key_list).transpose()?;
        detached(py, || self.inner.reload_keys(clients, workers))
    }

    fn __repr__(&self) -> String {
        format!(
            "Broker(frontend={:?}, backend={:?})",
            self.inner.frontend(),
            self.inner.backend()
        )
    }
}

role_methods! {
    Broker,
    /// A snapshot of the broker's statistics, as a dict.
    stats,
    /// Stops the broker (idempotent): peers are told it shuts down.
    stop
}

/// A client proxy: clients connect to it as to a broker; it buffers their
/// requests and re-sends them until the delivery they asked for is
/// confirmed, across broker restarts.
///
/// `ClientProxy(bind, broker, **options)`: `broker` is an endpoint or a
/// list of them (failover); the options are the Rust `ClientProxyConfig`'s.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct ClientProxy {
    inner: RsClientProxy,
}

#[pymethods]
impl ClientProxy {
    #[new]
    #[pyo3(signature = (bind, broker, **options))]
    fn new(
        py: Python<'_>,
        bind: &Bound<'_, PyAny>,
        broker: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: lhcluster::ClientProxyConfig = config::build(
            "ClientProxy",
            vec![
                ("bind", config::endpoint("ClientProxy", "bind", bind)?),
                (
                    "brokers",
                    config::endpoints("ClientProxy", "broker", broker)?,
                ),
            ],
            options,
        )?;
        let inner = detached(py, || RsClientProxy::start(config))?;
        Ok(Self { inner })
    }

    /// Replaces the client allow list from the next handshake on (as
    /// SIGHUP does for `lhcluster proxy`): a key file's text or a list of
    /// its lines.
    fn reload_keys(&self, py: Python<'_>, client_keys: &Bound<'_, PyAny>) -> PyResult<()> {
        let clients = key_list(client_keys)?;
        detached(py, || self.inner.reload_keys(clients))
    }

    /// The endpoint clients connect to.
    #[getter]
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    fn __repr__(&self) -> String {
        format!("ClientProxy(endpoint={:?})", self.inner.endpoint())
    }
}

role_methods! {
    ClientProxy,
    /// A snapshot of the proxy's statistics, as a dict.
    stats,
    /// Stops the proxy (idempotent).
    stop
}

/// A notify broker: publishers connect to its backend, subscribers to its
/// frontend; it fans notifications out by topic.
///
/// `NotifyBroker(frontend, backend, **options)` (the Rust
/// `NotifyBrokerConfig`'s options).
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct NotifyBroker {
    inner: RsNotifyBroker,
}

#[pymethods]
impl NotifyBroker {
    #[new]
    #[pyo3(signature = (frontend, backend, **options))]
    fn new(
        py: Python<'_>,
        frontend: &Bound<'_, PyAny>,
        backend: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: lhcluster::NotifyBrokerConfig =
            frontend_backend("NotifyBroker", frontend, backend, options)?;
        let inner = detached(py, || RsNotifyBroker::start(config))?;
        Ok(Self { inner })
    }

    /// Where subscribers connect.
    #[getter]
    fn frontend(&self) -> &str {
        self.inner.frontend()
    }

    /// Where publishers connect.
    #[getter]
    fn backend(&self) -> &str {
        self.inner.backend()
    }

    /// Replaces the allow lists from the next handshake on (as SIGHUP does
    /// for `lhcluster notify-broker`); `None` keeps a list.
    #[pyo3(signature = (subscriber_keys=None, publisher_keys=None))]
    fn reload_keys(
        &self,
        py: Python<'_>,
        subscriber_keys: Option<&Bound<'_, PyAny>>,
        publisher_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let subscribers = subscriber_keys.map(key_list).transpose()?;
        let publishers = publisher_keys.map(key_list).transpose()?;
        detached(py, || self.inner.reload_keys(subscribers, publishers))
    }

    fn __repr__(&self) -> String {
        format!(
            "NotifyBroker(frontend={:?}, backend={:?})",
            self.inner.frontend(),
            self.inner.backend()
        )
    }
}

role_methods! {
    NotifyBroker,
    /// A snapshot of the notify broker's statistics, as a dict.
    stats,
    /// Stops the notify broker (idempotent).
    stop
}

/// A notification publisher. `publish` never blocks.
///
/// `NotifyPublisher(endpoint, **options)`: `endpoint` is a notify broker's
/// backend, or a list of them (published to all); the options are the Rust
/// `NotifyPublisherConfig`'s. Returns once the broker has subscribed to
/// everything (`connect_timeout`, 5 s by default), so the first
/// notification published reaches it.
#[pyclass(frozen, module = "lhcluster._native")]
pub(crate) struct NotifyPublisher {
    inner: RsNotifyPublisher,
}

#[pymethods]
impl NotifyPublisher {
    #[new]
    #[pyo3(signature = (endpoint, **options))]
    fn new(
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config: lhcluster::NotifyPublisherConfig = config::with_endpoints(
            "NotifyPublisher",
            "endpoints",
            "endpoint",
            endpoint,
            options,
        )?;
        let inner = detached(py, || RsNotifyPublisher::connect(config))?;
        Ok(Self { inner })
    }

    /// Publishes `payload` on `topic`: `bytes` as they are, any other value
    /// as MessagePack (`typed=True` encodes `bytes` too). `id` is an
    /// optional publisher-chosen notification id. Never blocks: a full
    /// queue raises `lhcluster.QueueFull` (the notification is dropped).
    #[pyo3(signature = (topic, payload=None, *, id=None, typed=None))]
    fn publish(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: Option<&Bound<'_, PyAny>>,
        id: Option<u64>,
        typed: Option<bool>,
    ) -> PyResult<()> {
        let (frames, _) = payload::encode(py, payload, typed)?;
        let result = match id {
            Some(id) => self.inner.publish_with_id(topic, id, frames),
            None => self.inner.publish(topic, frames),
        };
        result.map_err(|e| errors::publish(py, &e))
    }

    /// Blocks (without the GIL) until connected to a notify broker, up to
    /// `timeout` seconds.
    fn wait_connected(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = crate::duration(timeout)?;
        Ok(py.detach(|| self.inner.wait_connected(timeout)))
    }

    /// The endpoint (the first, given several).
    #[getter]
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    fn __repr__(&self) -> String {
        format!("NotifyPublisher(endpoint={:?})", self.inner.endpoint())
    }
}

role_methods! {
    NotifyPublisher,
    /// A snapshot of the publisher's statistics, as a dict.
    stats,
    /// Stops the publisher (idempotent), sending what is queued first
    /// (within `linger`).
    stop
}

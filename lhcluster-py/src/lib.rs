//! `lhcluster._native`: the Rust half of the `lhcluster` Python package,
//! a binding of the `lhcluster` crate's public API (no protocol code of its
//! own). The Python half (`python/lhcluster`) adds the decorators, the
//! asyncio glue, the exception classes and the command line; `.pyi` stubs
//! document both. docs/python.md is the guide.
//!
//! Rules kept throughout: the GIL is released whenever Rust waits or does
//! I/O (`py.detach`), and Rust threads take it only to run Python code; a
//! role's `stop` (and its drop) runs without the GIL, since its threads may
//! need it to finish; errors become `lhcluster.errors` exceptions.

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyString};

mod client;
mod config;
mod errors;
mod interop;
mod msgpack;
mod notify;
mod payload;
mod roles;
mod worker;

/// Seconds as a `Duration`, refusing negative, NaN and infinite values.
pub(crate) fn duration(secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        PyValueError::new_err(format!(
            "a duration is a finite number of seconds, 0 or more, not {secs}"
        ))
    })
}

/// A Python list of `items`, each converted by `convert` (the first error
/// ends it).
pub(crate) fn list_of<'py, T>(
    py: Python<'py>,
    items: impl IntoIterator<Item = T>,
    mut convert: impl FnMut(T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let list = PyList::empty(py);
    for item in items {
        list.append(convert(item)?)?;
    }
    Ok(list.into_any())
}

/// A request type given by name (hashed like `#[derive(Request)]`) or by
/// number.
pub(crate) fn request_type(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    if let Ok(name) = value.cast::<PyString>() {
        return Ok(lhcluster::request_type_id(&name.to_cow()?));
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<pyo3::types::PyBool>() {
        return match value.extract::<u32>() {
            Ok(0) | Err(_) => Err(PyValueError::new_err(format!(
                "a request type number is from 1 to 4294967295, not {value}"
            ))),
            Ok(n) => Ok(n),
        };
    }
    Err(PyTypeError::new_err(format!(
        "a request type is a name (str) or a number (int), not {}",
        value.get_type().name()?
    )))
}

/// The request type id of a name: the 32-bit FNV-1a hash of its UTF-8
/// bytes, 0 mapped to 1, as `#[derive(Request)]` computes it in Rust.
#[pyfunction]
fn request_type_id(name: &str) -> u32 {
    lhcluster::request_type_id(name)
}

/// Encodes a value as MessagePack, as typed payloads travel (dicts and
/// dataclasses as maps keyed by field name).
#[pyfunction]
fn packb<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &msgpack::pack(value)?))
}

/// Decodes one MessagePack document (empty bytes are `None`).
#[pyfunction]
fn unpackb<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    msgpack::unpack(py, data)
}

/// Whether the libzmq built in has CURVE (encryption and authentication).
#[pyfunction]
fn curve_available() -> bool {
    lhcluster::curve::available()
}

/// A new CURVE key pair, as Z85 text: `(public, secret)`.
#[pyfunction]
fn curve_keypair(py: Python<'_>) -> PyResult<(String, String)> {
    let secret = lhcluster::curve::SecretKey::generate().map_err(|e| errors::lib(py, &e))?;
    Ok((secret.public_key().to_z85(), secret.to_z85()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<roles::Broker>()?;
    m.add_class::<roles::ClientProxy>()?;
    m.add_class::<roles::NotifyBroker>()?;
    m.add_class::<roles::NotifyPublisher>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Response>()?;
    m.add_class::<worker::Worker>()?;
    m.add_class::<worker::RequestContext>()?;
    m.add_class::<notify::NotifySubscriber>()?;
    m.add_function(wrap_pyfunction!(request_type_id, m)?)?;
    m.add_function(wrap_pyfunction!(packb, m)?)?;
    m.add_function(wrap_pyfunction!(unpackb, m)?)?;
    m.add_function(wrap_pyfunction!(curve_available, m)?)?;
    m.add_function(wrap_pyfunction!(curve_keypair, m)?)?;
    m.add_class::<interop::InteropWorker>()?;
    m.add_class::<interop::InteropSink>()?;
    m.add_class::<interop::BenchEcho>()?;
    m.add_function(wrap_pyfunction!(interop::_interop_type_ids, m)?)?;
    m.add_function(wrap_pyfunction!(interop::_interop_join, m)?)?;
    m.add_function(wrap_pyfunction!(interop::_interop_publish, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! Keyword arguments to role configurations.
//!
//! A role's keyword arguments are read by the same `Deserialize` the CLI's
//! TOML files go through (the library's `serde` feature): the same names
//! (the Rust fields, and their file aliases), the defaults of `new`, and
//! unknown names refused. Durations are seconds (an `int` or a `float`), a
//! `datetime.timedelta`, or text such as `"250ms"`; `None` turns an
//! optional one off.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The configuration fields that are durations, in every role.
const DURATIONS: &[&str] = &[
    "heartbeat",
    "reconnect_min",
    "reconnect_max",
    "shutdown_timeout",
    "slow_consumer_timeout",
    "resend",
    "resend_initial",
    "resend_max",
    "linger",
    "stats_log_interval",
    "stats_interval",
    "request_timeout",
    "connect_timeout",
    "confirm_timeout",
];

/// The durations that `None` turns off (`Option<Duration>` in Rust).
const OPTIONAL_DURATIONS: &[&str] = &[
    "stats_log_interval",
    "stats_interval",
    "request_timeout",
    "connect_timeout",
    "confirm_timeout",
];

/// Builds the configuration of role `role` from its positional values
/// (already named) and its keyword arguments.
pub(crate) fn build<T: DeserializeOwned>(
    role: &str,
    positional: Vec<(&str, Value)>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<T> {
    let mut map = Map::new();
    for (k, v) in positional {
        map.insert(k.to_owned(), v);
    }
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            let key: String = k.extract()?;
            if map.contains_key(&key) {
                return Err(PyTypeError::new_err(format!(
                    "{role}() got multiple values for argument '{key}'"
                )));
            }
            let value = to_json(role, &key, &v)?;
            map.insert(key, value);
        }
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("unknown field `") {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let expected = expected
                .trim_start_matches(", expected one of ")
                .trim_start_matches(", expected ");
            PyTypeError::new_err(format!(
                "{role}() got an unexpected keyword argument '{name}' (its options: {expected})"
            ))
        } else if text.starts_with("invalid type") {
            PyTypeError::new_err(format!("{role}(): {text}"))
        } else {
            PyValueError::new_err(format!("{role}(): {text}"))
        }
    })
}

/// An endpoint or a list of endpoints.
pub(crate) fn endpoints(role: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let mut all = Vec::new();
        for item in value.try_iter()? {
            let item = item?;
            let s = item.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{role}(): `{name}` must be an endpoint (str) or a list of them"
                ))
            })?;
            all.push(Value::String(s.to_cow()?.into_owned()));
        }
        return Ok(Value::Array(all));
    }
    Err(PyTypeError::new_err(format!(
        "{role}(): `{name}` must be an endpoint (str) or a list of them, not {}",
        value.get_type().name()?
    )))
}

/// The configuration of a role whose one positional argument, `arg`, is an
/// endpoint or a list of them: the configuration's field `field`.
pub(crate) fn with_endpoints<T: DeserializeOwned>(
    role: &str,
    field: &str,
    arg: &str,
    value: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<T> {
    build(role, vec![(field, endpoints(role, arg, value)?)], kwargs)
}

/// A single endpoint.
pub(crate) fn endpoint(role: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    match value.cast::<PyString>() {
        Ok(s) => Ok(Value::String(s.to_cow()?.into_owned())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{role}(): `{name}` must be an endpoint (str), not {}",
            value.get_type().name()?
        ))),
    }
}

fn to_json(role: &str, key: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let is_duration = DURATIONS.contains(&key);
    if v.is_none() {
        return Ok(if OPTIONAL_DURATIONS.contains(&key) {
            Value::String("off".to_owned())
        } else {
            Value::Null
        });
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(v.extract()?));
    }
    if is_duration && (v.is_instance_of::<PyFloat>() || v.hasattr("total_seconds")?) {
        let secs: f64 = if v.is_instance_of::<PyFloat>() {
            v.extract()?
        } else {
            v.call_method0("total_seconds")?.extract()?
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(PyValueError::new_err(format!(
                "{role}(): `{key}` must be a duration of 0 or more seconds, not {secs}"
            )));
        }
        // Whole microseconds: what humantime reads back exactly.
        return Ok(Value::String(format!("{}us", (secs * 1e6).round() as u64)));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err(format!(
            "{role}(): `{key}` is out of range"
        )));
    }
    if v.is_instance_of::<PyFloat>() {
        let f: f64 = v.extract()?;
        return Ok(serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut all = Vec::new();
        for item in v.try_iter()? {
            all.push(to_json(role, key, &item?)?);
        }
        return Ok(Value::Array(all));
    }
    Err(PyTypeError::new_err(format!(
        "{role}(): `{key}` cannot be a {}",
        v.get_type().name()?
    )))
}

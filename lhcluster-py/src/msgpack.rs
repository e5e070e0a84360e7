//! Python objects to and from MessagePack: the payload format of typed
//! requests, responses and notifications, structs as maps keyed by field
//! name, exactly as `rmp_serde::to_vec_named` writes them on the Rust side.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use rmpv::{Integer, Value, ValueRef};

use crate::errors;

/// How deep a Python value may nest: deeper is almost surely a cycle.
const MAX_DEPTH: usize = 256;

/// Encodes a Python value as one MessagePack document.
pub(crate) fn pack(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let value = to_value(value, 0)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value)
        .map_err(|e| PyValueError::new_err(format!("cannot write MessagePack: {e}")))?;
    Ok(out)
}

/// Decodes one MessagePack document (an empty frame is `nil`, as the Rust
/// typed layer reads it) into Python values.
pub(crate) fn unpack<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if bytes.is_empty() {
        return Ok(py.None().into_bound(py));
    }
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| {
        errors::new(
            py,
            "DecodeError",
            format!("payload is not MessagePack: {e}"),
            None,
        )
    })?;
    if !rest.is_empty() {
        return Err(errors::new(
            py,
            "DecodeError",
            format!(
                "payload is not one MessagePack document: {} bytes left over",
                rest.len()
            ),
            None,
        ));
    }
    if let Some(at) = reserved_marker_at(bytes) {
        return Err(errors::new(
            py,
            "DecodeError",
            format!("payload is not MessagePack: the reserved marker 0xc1 at byte {at}"),
            None,
        ));
    }
    from_value(py, &value)
}

/// Where the document has the marker MessagePack reserves (0xc1, "never
/// used"), if it does: rmpv reads it as nil, where the Rust typed layer
/// (rmp-serde) refuses the payload, and so must we. Called once rmpv has
/// read `bytes` as one whole document, so every length is within it (a
/// length that is not ends the walk, found nothing).
fn reserved_marker_at(bytes: &[u8]) -> Option<usize> {
    use rmp::Marker;
    // A big-endian length of `n` bytes at `at`.
    let length = |at: usize, n: usize| -> Option<usize> {
        let field = bytes.get(at..at.checked_add(n)?)?;
        usize::try_from(field.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))).ok()
    };
    let mut pos = 0;
    // Values still to read: the document, then each array item, each map
    // key and value.
    let mut values: usize = 1;
    while values > 0 {
        values -= 1;
        let at = pos;
        let marker = Marker::from_u8(*bytes.get(pos)?);
        pos += 1;
        // Bytes to skip after the marker (after the length, for those with
        // one), and values that follow.
        let (skip, follow) = match marker {
            Marker::Reserved => return Some(at),
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::FixStr(n) => (usize::from(n), 0),
            Marker::FixArray(n) => (0, usize::from(n)),
            Marker::FixMap(n) => (0, 2 * usize::from(n)),
            Marker::Str8
            | Marker::Bin8
            | Marker::Str16
            | Marker::Bin16
            | Marker::Str32
            | Marker::Bin32 => {
                let n = length_size(marker);
                let len = length(pos, n)?;
                pos += n;
                (len, 0)
            }
            // The length, then the type byte, then the data.
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let n = length_size(marker);
                let len = length(pos, n)?;
                pos += n;
                (len.checked_add(1)?, 0)
            }
            Marker::Array16 | Marker::Array32 => {
                let n = length_size(marker);
                let len = length(pos, n)?;
                pos += n;
                (0, len)
            }
            Marker::Map16 | Marker::Map32 => {
                let n = length_size(marker);
                let len = length(pos, n)?;
                pos += n;
                (0, len.checked_mul(2)?)
            }
        };
        pos = pos.checked_add(skip)?;
        values = values.checked_add(follow)?;
    }
    None
}

/// How many bytes the length after a marker takes.
fn length_size(marker: rmp::Marker) -> usize {
    use rmp::Marker;
    match marker {
        Marker::Str8 | Marker::Bin8 | Marker::Ext8 => 1,
        Marker::Str16 | Marker::Bin16 | Marker::Ext16 | Marker::Array16 | Marker::Map16 => 2,
        _ => 4,
    }
}

fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "cannot encode as MessagePack: nested deeper than {MAX_DEPTH} levels (a cycle?)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Boolean(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Integer(Integer::from(i)));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Integer(Integer::from(u)));
        }
        return Err(PyValueError::new_err(format!(
            "cannot encode as MessagePack: {obj} does not fit in 64 bits"
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::F64(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.as_ref().into()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Binary(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Binary(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes: Vec<u8> = obj.call_method0("tobytes")?.extract()?;
        return Ok(Value::Binary(bytes));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            map.push((to_value(&k, depth + 1)?, to_value(&v, depth + 1)?));
        }
        return Ok(Value::Map(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return array(l.iter(), depth);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return array(t.iter(), depth);
    }
    // A dataclass instance: a map of its fields, as a Rust struct is.
    if obj.hasattr("__dataclass_fields__")? && !obj.is_instance_of::<pyo3::types::PyType>() {
        let fields = obj.getattr("__dataclass_fields__")?;
        let fields = fields.cast::<PyDict>()?;
        let mut map = Vec::with_capacity(fields.len());
        for name in fields.keys() {
            let name = name.cast::<PyString>()?;
            let value = obj.getattr(name)?;
            map.push((
                Value::String(name.to_cow()?.as_ref().into()),
                to_value(&value, depth + 1)?,
            ));
        }
        return Ok(Value::Map(map));
    }
    Err(PyTypeError::new_err(format!(
        "cannot encode a {} as MessagePack (use None, bool, int, float, str, bytes, list, tuple, dict or a dataclass)",
        obj.get_type().name()?
    )))
}

/// A list's or a tuple's items (at `depth`) as a MessagePack array.
fn array<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>, depth: usize) -> PyResult<Value> {
    let items = items
        .map(|item| to_value(&item, depth + 1))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Value::Array(items))
}

fn from_value<'py>(py: Python<'py>, value: &ValueRef<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        ValueRef::Nil => py.None().into_bound(py),
        ValueRef::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        ValueRef::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(v), _) => v.into_pyobject(py)?.into_any(),
            (None, Some(v)) => v.into_pyobject(py)?.into_any(),
            (None, None) => unreachable_integer(py)?,
        },
        ValueRef::F32(f) => PyFloat::new(py, f64::from(*f)).into_any(),
        ValueRef::F64(f) => PyFloat::new(py, *f).into_any(),
        ValueRef::String(s) => match s.as_str() {
            Some(text) => PyString::new(py, text).into_any(),
            // Not UTF-8: handed over as the bytes it is.
            None => PyBytes::new(py, s.as_bytes()).into_any(),
        },
        ValueRef::Binary(b) => PyBytes::new(py, b).into_any(),
        ValueRef::Array(items) => crate::list_of(py, items, |item| from_value(py, item))?,
        ValueRef::Map(pairs) => {
            let dict = PyDict::new(py);
            for (k, v) in pairs {
                dict.set_item(key(py, k)?, from_value(py, v)?)?;
            }
            dict.into_any()
        }
        ValueRef::Ext(code, data) => {
            return Err(errors::new(
                py,
                "DecodeError",
                format!(
                    "MessagePack extension type {code} ({} bytes) has no Python value",
                    data.len()
                ),
                None,
            ));
        }
    })
}

/// A map key: arrays become tuples (a list cannot be a dict key).
fn key<'py>(py: Python<'py>, value: &ValueRef<'_>) -> PyResult<Bound<'py, PyAny>> {
    match value {
        ValueRef::Array(items) => {
            let items = items
                .iter()
                .map(|i| key(py, i))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        ValueRef::Map(_) => Err(errors::new(
            py,
            "DecodeError",
            "a MessagePack map used as a map key has no Python value".to_owned(),
            None,
        )),
        other => from_value(py, other),
    }
}

fn unreachable_integer(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Err(errors::new(
        py,
        "DecodeError",
        "MessagePack integer out of range".to_owned(),
        None,
    ))
}

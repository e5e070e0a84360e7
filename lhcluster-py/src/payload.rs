//! Payloads between Python and the wire: raw `bytes` frames, or one
//! MessagePack frame for typed values (the Rust typed layer's format).

use std::ops::Deref;

use lhcluster::{Frame, Payload};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyTuple};

use crate::msgpack;

/// Whether `obj` is raw bytes (`bytes`, `bytearray`, `memoryview`).
fn is_bytes(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
        || obj.is_instance_of::<PyMemoryView>()
}

fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    obj.call_method0("tobytes")?.extract()
}

/// The frames of a payload, and whether it is typed. `None` is an empty
/// payload (MessagePack `nil` when typed). Untyped (the default for
/// bytes-like values): the bytes as one frame, or a list of bytes as
/// several. Typed (the default for any other value): one MessagePack
/// frame.
pub(crate) fn encode(
    _py: Python<'_>,
    payload: Option<&Bound<'_, PyAny>>,
    typed: Option<bool>,
) -> PyResult<(Payload, bool)> {
    let Some(obj) = payload.filter(|p| !p.is_none()) else {
        return Ok(match typed {
            Some(true) => (vec![Frame::from(&[0xc0u8][..])], true),
            _ => (Payload::new(), false),
        });
    };
    let typed = typed.unwrap_or(!is_bytes(obj));
    if typed {
        return Ok((vec![Frame::from(msgpack::pack(obj)?)], true));
    }
    if is_bytes(obj) {
        return Ok((vec![Frame::from(bytes_of(obj)?)], false));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut frames = Payload::new();
        for item in obj.try_iter()? {
            let item = item?;
            if !is_bytes(&item) {
                return Err(PyTypeError::new_err(
                    "an untyped payload is bytes, or a list of bytes (one per frame)",
                ));
            }
            frames.push(Frame::from(bytes_of(&item)?));
        }
        return Ok((frames, false));
    }
    Err(PyTypeError::new_err(format!(
        "an untyped payload is bytes, or a list of bytes (one per frame), not {} (typed=True sends it as MessagePack)",
        obj.get_type().name()?
    )))
}

/// A payload for Python: typed, the decoded MessagePack value (an empty
/// payload is `None`); untyped, `bytes` (`b""` when empty), or a list of
/// `bytes` when there are several frames.
pub(crate) fn decode<'py, F: Deref<Target = [u8]>>(
    py: Python<'py>,
    frames: &[F],
    typed: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if typed {
        return match frames {
            [] => Ok(py.None().into_bound(py)),
            [one] => msgpack::unpack(py, one),
            more => Err(crate::errors::new(
                py,
                "DecodeError",
                format!("expected one MessagePack payload frame, got {}", more.len()),
                None,
            )),
        };
    }
    match frames {
        [] => Ok(PyBytes::new(py, b"").into_any()),
        [one] => Ok(PyBytes::new(py, one).into_any()),
        more => crate::list_of(py, more, |f| Ok(PyBytes::new(py, f).into_any())),
    }
}

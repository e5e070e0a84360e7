//! The payload codec of typed requests, responses and notifications:
//! MessagePack with named fields, in one payload frame.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{Frame, Payload};

/// MessagePack `nil`: what an empty payload decodes as.
const NIL: &[u8] = &[0xc0];

/// Why a value could not be encoded into, or decoded from, a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError {
    message: String,
}

impl PayloadError {
    fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PayloadError {}

/// Encodes `value` as one payload frame: a MessagePack document whose
/// structs are maps keyed by field name (`rmp_serde::to_vec_named`).
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Point {
///     x: u8,
/// }
/// let payload = lhcluster::typed::encode(&Point { x: 1 })?;
/// assert_eq!(&payload[0][..], b"\x81\xa1x\x01"); // {"x": 1}
/// # Ok::<(), lhcluster::typed::PayloadError>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
    let bytes = rmp_serde::to_vec_named(value).map_err(PayloadError::new)?;
    Ok(vec![Frame::from(bytes)])
}

/// Decodes a payload of one MessagePack frame. An empty payload decodes as
/// MessagePack `nil` (so as `()`, or `None`), which is what a one-way
/// request's delivery carries; more than one frame is an error.
pub fn decode<T: DeserializeOwned>(payload: &[Frame]) -> Result<T, PayloadError> {
    let bytes: &[u8] = match payload {
        [] => NIL,
        [frame] => &frame[..],
        frames => {
            return Err(PayloadError::new(format!(
                "expected one MessagePack payload frame, got {}",
                frames.len()
            )));
        }
    };
    rmp_serde::from_slice(bytes).map_err(PayloadError::new)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        name: String,
        count: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        name: String,
        count: u32,
        note: Option<String>,
    }

    #[test]
    fn round_trip() {
        let v = V1 {
            name: "a".into(),
            count: 3,
        };
        assert_eq!(decode::<V1>(&encode(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn named_fields_make_optional_fields_compatible() {
        let new = V2 {
            name: "a".into(),
            count: 3,
            note: Some("x".into()),
        };
        let old: V1 = decode(&encode(&new).unwrap()).unwrap();
        assert_eq!(old.count, 3);
        let back: V2 = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(back.note, None);
    }

    #[test]
    fn empty_payload_is_nil() {
        decode::<()>(&[]).unwrap();
        assert_eq!(decode::<Option<u32>>(&[]).unwrap(), None);
        assert!(decode::<V1>(&[]).is_err());
    }

    #[test]
    fn more_than_one_frame_is_an_error() {
        let e = decode::<u32>(&[Frame::from(&b"\x01"[..]), Frame::from(&b"\x02"[..])]).unwrap_err();
        assert_eq!(e.message(), "expected one MessagePack payload frame, got 2");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<V1>(&[Frame::from(&b"\xff\x00garbage"[..])]).is_err());
    }
}

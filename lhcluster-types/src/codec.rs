//! The payload codec of typed requests, responses and notifications:
//! MessagePack with named fields, in one payload frame.

use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// MessagePack `nil`: what an empty payload decodes as.
const NIL: &[u8] = &[0xc0];

/// Why a value could not be encoded into, or decoded from, a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The value cannot be written as MessagePack (its `Serialize` failed).
    #[error("{0}")]
    Encode(#[source] rmp_serde::encode::Error),
    /// The payload frame is not MessagePack of the expected type: not
    /// MessagePack at all, or a field missing or of another type.
    #[error("{0}")]
    Decode(#[source] rmp_serde::decode::Error),
    /// The payload has more than one frame (a typed payload is one frame).
    #[error("expected one MessagePack payload frame, got {0}")]
    FrameCount(usize),
}

/// Encodes `value` as the bytes of one payload frame: a MessagePack
/// document whose structs are maps keyed by field name
/// (`rmp_serde::to_vec_named`).
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Point {
///     x: u8,
/// }
/// let frame = lhcluster_types::encode_frame(&Point { x: 1 })?;
/// assert_eq!(frame, b"\x81\xa1x\x01"); // {"x": 1}
/// # Ok::<(), lhcluster_types::PayloadError>(())
/// ```
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PayloadError> {
    rmp_serde::to_vec_named(value).map_err(PayloadError::Encode)
}

/// Decodes a payload of one MessagePack frame (any frame type that derefs
/// to bytes). An empty payload decodes as MessagePack `nil` (so as `()`, or
/// `None`), which is what a one-way request's delivery carries; more than
/// one frame is an error.
///
/// ```
/// let frames = [b"\x81\xa1x\x01".to_vec()];
/// let point: std::collections::HashMap<String, u8> = lhcluster_types::decode_frames(&frames)?;
/// assert_eq!(point["x"], 1);
/// # Ok::<(), lhcluster_types::PayloadError>(())
/// ```
pub fn decode_frames<T, F>(payload: &[F]) -> Result<T, PayloadError>
where
    T: DeserializeOwned,
    F: Deref<Target = [u8]>,
{
    let bytes: &[u8] = match payload {
        [] => NIL,
        [frame] => frame,
        frames => return Err(PayloadError::FrameCount(frames.len())),
    };
    rmp_serde::from_slice(bytes).map_err(PayloadError::Decode)
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
        assert_eq!(
            decode_frames::<V1, _>(&[encode_frame(&v).unwrap()]).unwrap(),
            v
        );
    }

    #[test]
    fn named_fields_make_optional_fields_compatible() {
        let new = V2 {
            name: "a".into(),
            count: 3,
            note: Some("x".into()),
        };
        let old: V1 = decode_frames(&[encode_frame(&new).unwrap()]).unwrap();
        assert_eq!(old.count, 3);
        let back: V2 = decode_frames(&[encode_frame(&old).unwrap()]).unwrap();
        assert_eq!(back.note, None);
    }

    #[test]
    fn empty_payload_is_nil() {
        let empty: [Vec<u8>; 0] = [];
        decode_frames::<(), _>(&empty).unwrap();
        assert_eq!(decode_frames::<Option<u32>, _>(&empty).unwrap(), None);
        assert!(matches!(
            decode_frames::<V1, _>(&empty),
            Err(PayloadError::Decode(_))
        ));
    }

    #[test]
    fn more_than_one_frame_is_an_error() {
        let e = decode_frames::<u32, _>(&[&b"\x01"[..], &b"\x02"[..]]).unwrap_err();
        assert!(matches!(e, PayloadError::FrameCount(2)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "expected one MessagePack payload frame, got 2"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let e = decode_frames::<V1, _>(&[&b"\xff\x00garbage"[..]]).unwrap_err();
        // The MessagePack error is kept as the source.
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.is::<rmp_serde::decode::Error>(), "{source:?}");
    }

    #[test]
    fn unencodable_values_are_an_error() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        let e = encode_frame(&Fails).unwrap_err();
        assert!(matches!(e, PayloadError::Encode(_)), "{e:?}");
        assert_eq!(e.to_string(), "nope");
    }
}

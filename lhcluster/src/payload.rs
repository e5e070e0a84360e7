//! Typed payloads as frames: one MessagePack frame (the codec itself is
//! `lhcluster-types`', which has no ZeroMQ). The roles' typed APIs encode
//! and decode through here; the public path is `lhcluster::typed::{encode,
//! decode}`, re-exported by the `typed` façade.

use lhcluster_types::PayloadError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{Frame, Payload};

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
    Ok(vec![Frame::from(lhcluster_types::encode_frame(value)?)])
}

/// Decodes a payload of one MessagePack frame. An empty payload decodes as
/// MessagePack `nil` (so as `()`, or `None`), which is what a one-way
/// request's delivery carries; more than one frame is an error.
pub fn decode<T: DeserializeOwned>(payload: &[Frame]) -> Result<T, PayloadError> {
    lhcluster_types::decode_frames(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_each_way() {
        let payload = encode(&(1_u8, "a")).unwrap();
        assert_eq!(payload.len(), 1);
        assert_eq!(
            decode::<(u8, String)>(&payload).unwrap(),
            (1, "a".to_owned())
        );
        assert_eq!(decode::<Option<u8>>(&[]).unwrap(), None);
    }
}

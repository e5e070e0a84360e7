//! Which broker of a cluster owns a request key (docs/protocol.md §18.4):
//! rendezvous hashing over the members' ids. The brokers route by it; a
//! client that picks its own request ids uses it to pick ids its broker
//! owns (docs/clustering.md §9).

use crate::protocol::{RequestId, RequestType};

/// SplitMix64's finaliser: the mixing step of the ownership score.
pub(crate) fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A member's rendezvous score for a request key.
pub(crate) fn score(member: u64, request_type: RequestType, request_id: RequestId) -> u64 {
    mix(member ^ mix(u64::from(request_type) ^ mix(request_id)))
}

/// The owner of a key among `members` (the highest score; ties to the
/// larger id).
pub(crate) fn owner(
    members: impl IntoIterator<Item = u64>,
    request_type: RequestType,
    request_id: RequestId,
) -> Option<u64> {
    members
        .into_iter()
        .map(|m| (score(m, request_type, request_id), m))
        .max()
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of protocol.md §18.4.
    #[test]
    fn the_score_matches_protocol_md() {
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(score(1, 7, 42), 0x383D_3086_26EF_A9F0);
        assert_eq!(score(2, 7, 42), 0x3DA8_0056_E267_A8E6);
        assert_eq!(owner([1, 2], 7, 42), Some(2));
        assert_eq!(owner([], 7, 42), None);
    }
}

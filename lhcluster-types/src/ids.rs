//! Request type ids and request ids, and the stable id of a name (so that
//! any language computes the same).

/// Identifies the kind of work a request asks for. `0` is reserved.
pub type RequestType = u32;

/// Identifies one request within its [`RequestType`]; together they form the
/// dedupe key.
pub type RequestId = u64;

/// The request type id of a name: the 32-bit FNV-1a hash of its UTF-8
/// bytes, with `0` (reserved) mapped to `1`.
///
/// FNV-1a: start from `0x811c9dc5`; for each byte, `h ^= byte` then
/// `h = h.wrapping_mul(0x01000193)`. It is what `#[derive(Request)]` uses
/// for a request without an explicit `id`, and what the `lhcluster` tool
/// uses for `--type NAME`.
///
/// ```
/// # extern crate lhcluster_types as lhcluster;
/// assert_eq!(lhcluster::request_type_id("orders.create"), 0x1D4F_B242);
/// ```
pub const fn request_type_id(name: &str) -> RequestType {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    if hash == 0 { 1 } else { hash }
}

#[cfg(test)]
mod tests {
    use super::request_type_id;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(request_type_id(""), 0x811c_9dc5);
        assert_eq!(request_type_id("a"), 0xe40c_292c);
        assert_eq!(request_type_id("foobar"), 0xbf9c_f968);
    }
}

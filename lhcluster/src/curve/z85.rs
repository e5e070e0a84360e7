//! Z85 (ZeroMQ RFC 32), the text form of CURVE keys: 4 bytes as 5
//! printable characters. Written here rather than taken from the `zmq`
//! crate because libzmq's decoder accepts characters outside the alphabet
//! and groups that overflow 32 bits without a word, and a key file with a
//! typo must be refused, not read as some other key.

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Why a text is not Z85.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Z85Error {
    /// The length is not a multiple of 5.
    Length(usize),
    /// A character outside the alphabet, at this (0-based) position.
    Char(usize, char),
    /// A group of 5 characters whose value does not fit in 32 bits, at
    /// this position.
    Overflow(usize),
}

impl std::fmt::Display for Z85Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Z85Error::Length(n) => write!(f, "{n} characters, not a multiple of 5"),
            Z85Error::Char(at, c) => write!(f, "character {c:?} at position {} is not Z85", at + 1),
            Z85Error::Overflow(at) => {
                write!(f, "the group at position {} is out of range", at + 1)
            }
        }
    }
}

/// `data` as Z85 text; its length must be a multiple of 4 (keys: 32).
pub(crate) fn encode(data: &[u8]) -> String {
    debug_assert_eq!(data.len() % 4, 0);
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut group = [0u8; 5];
        for slot in group.iter_mut().rev() {
            *slot = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

/// The bytes `text` encodes.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, Z85Error> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() % 5 != 0 {
        return Err(Z85Error::Length(chars.len()));
    }
    let mut out = Vec::with_capacity(chars.len() / 5 * 4);
    for (g, group) in chars.chunks_exact(5).enumerate() {
        let mut value: u64 = 0;
        for (i, &c) in group.iter().enumerate() {
            let digit = u8::try_from(c)
                .ok()
                .and_then(|b| ALPHABET.iter().position(|&a| a == b))
                .ok_or(Z85Error::Char(g * 5 + i, c))?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).map_err(|_| Z85Error::Overflow(g * 5))?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example() {
        // ZeroMQ RFC 32's test vector.
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&bytes), "HelloWorld");
        assert_eq!(decode("HelloWorld").unwrap(), bytes);
    }

    #[test]
    fn agrees_with_libzmq_both_ways() {
        let data: Vec<u8> = (0..=255u8).chain(0..=255u8).take(32 * 8).collect();
        let ours = encode(&data);
        assert_eq!(ours, zmq::z85_encode(&data).unwrap());
        assert_eq!(decode(&ours).unwrap(), data);
        assert_eq!(encode(&[0xff; 4]), "%nSc0");
        assert_eq!(decode("%nSc0").unwrap(), [0xff; 4]);
    }

    #[test]
    fn refuses_what_is_not_z85() {
        assert_eq!(decode("Hell"), Err(Z85Error::Length(4)));
        assert_eq!(decode("Hell\"World"), Err(Z85Error::Char(4, '"')));
        assert_eq!(decode("Hellé"), Err(Z85Error::Char(4, 'é')));
        // "#####" is 85^5 - 1, above u32::MAX.
        assert_eq!(decode("#####"), Err(Z85Error::Overflow(0)));
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }
}

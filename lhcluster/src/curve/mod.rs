//! CURVE: encryption and server authentication on every socket
//! (docs/security.md).
//!
//! ZeroMQ's CURVE mechanism (RFC 26) gives each connection a key exchange
//! and encryption. A bound role (a broker's ROUTERs, a proxy's client side,
//! a notify broker, a binding publisher) is a CURVE *server*: it holds a
//! [`SecretKey`]. A connecting role (client, worker, proxy upstream,
//! subscriber, connecting publisher, a broker's cluster dials) is a CURVE
//! *client*: it holds the server's [`PublicKey`] and a secret key of its
//! own (one is generated when it is not given). A client whose server key
//! is not the server's gets no connection at all: the handshake fails and
//! its messages wait, unsent, as if the server were down.
//!
//! Keys travel as Z85 text (40 characters), as `lhcluster keygen` writes
//! them. Without keys a role runs in clear, as before.

mod files;
mod keys;
mod socket;
mod x25519;
mod z85;
mod zap;

use std::fmt;
use std::str::FromStr;

pub use files::{KeyFileError, read_key_list, read_public_key, read_secret_key, write_key_pair};
pub use keys::{KeyList, KeyListError};
pub(crate) use socket::{SocketCurve, apply, warn_if_clear};
pub(crate) use zap::{ZapDomain, register as register_zap, server_side};

/// Whether the libzmq this crate links has CURVE (it does when built by
/// this workspace: see vendor/zmq-sys/README.md).
pub fn available() -> bool {
    zmq::has("curve") == Some(true)
}

/// Why a text is not a CURVE key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 40 characters long.
    #[error("a CURVE key is 40 Z85 characters, this one has {0}")]
    Length(usize),
    /// 40 characters, but not Z85.
    #[error("not a Z85 key: {0}")]
    Z85(String),
    /// A request type after a key in a key list that cannot be allowed.
    #[error("{0}")]
    Type(String),
}

fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let len = text.chars().count();
    if len != 40 {
        return Err(KeyError::Length(len));
    }
    let bytes = z85::decode(text).map_err(|e| KeyError::Z85(e.to_string()))?;
    // 40 Z85 characters are always 32 bytes.
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A CURVE public key: a server's (for the roles that connect to it), or a
/// client's (in an allow list).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key of its Z85 text (surrounding white space ignored).
    pub fn from_z85(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self)
    }

    /// The key as Z85 text.
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0)
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key of its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_z85())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_z85(s)
    }
}

/// A CURVE secret key: a server's, or a client's own. Its public half is
/// derived from it ([`SecretKey::public_key`]). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// The key of its Z85 text (surrounding white space ignored).
    pub fn from_z85(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self)
    }

    /// A new random key (libsodium's generator, through libzmq). Fails
    /// only when libzmq has no CURVE.
    pub fn generate() -> Result<Self, crate::Error> {
        let pair = zmq::CurveKeyPair::new().map_err(crate::error::zmq_err(
            "generating a CURVE key pair (is CURVE built in?)",
        ))?;
        Ok(Self(pair.secret_key))
    }

    /// The public key that goes with this secret key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::public_key(&self.0))
    }

    /// The key as Z85 text: what a key file holds. Keep it secret.
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

impl FromStr for SecretKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_z85(s)
    }
}

/// In config files, keys are Z85 strings.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a role's keys at `validate()`: keys need a libzmq with CURVE;
/// `missing` names a field that is set without the field it needs (a
/// connecting role's own secret key without the server's public key, a key
/// list without the server's secret key).
pub(crate) fn check_config(
    any_key: bool,
    missing: Option<(&'static str, &'static str)>,
) -> Result<(), crate::ConfigError> {
    if let Some((field, needed)) = missing {
        return Err(crate::ConfigError::invalid(
            field,
            format!("is set but `{needed}` is not, and it needs it (docs/security.md)"),
        ));
    }
    if any_key && !available() {
        return Err(crate::ConfigError::invalid(
            "curve",
            "keys are set but this libzmq was built without CURVE (libsodium)",
        ));
    }
    Ok(())
}

/// [`check_config`] of a role that connects to a CURVE server (a client, a
/// worker, a subscriber): its own secret key needs the server's public key.
pub(crate) fn check_client_keys(
    server_key: &Option<PublicKey>,
    secret_key: &Option<SecretKey>,
) -> Result<(), crate::ConfigError> {
    check_config(
        server_key.is_some(),
        (secret_key.is_some() && server_key.is_none())
            .then_some(("curve_secret_key", "curve_server_key")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_is_built_in() {
        assert_eq!(zmq::has("curve"), Some(true));
        assert!(available());
    }

    #[test]
    fn keys_round_trip_through_z85() {
        let secret = SecretKey::generate().unwrap();
        let text = secret.to_z85();
        assert_eq!(text.len(), 40);
        assert_eq!(SecretKey::from_z85(&format!(" {text}\n")).unwrap(), secret);
        let public = secret.public_key();
        assert_eq!(public.to_z85().parse::<PublicKey>().unwrap(), public);
        // Debug never shows the secret.
        assert!(!format!("{secret:?}").contains(&text));
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert_eq!(PublicKey::from_z85("abc"), Err(KeyError::Length(3)));
        let bad = format!("{}\"", "a".repeat(39));
        let err = PublicKey::from_z85(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a Z85 key: character '\"' at position 40 is not Z85"
        );
    }

    #[test]
    fn the_public_key_is_libsodiums() {
        // The ZeroMQ guide's (and libzmq's test suite's) server key pair.
        let secret = SecretKey::from_z85("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6").unwrap();
        assert_eq!(
            secret.public_key().to_z85(),
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
        );
    }
}

//! Lists of allowed public keys, as key files hold them: one Z85 key per
//! line, optionally followed by the request types the key may use.

use std::collections::HashMap;

use super::{KeyError, PublicKey};
use crate::protocol::RequestType;

/// The public keys a bound role lets in (through its ZAP handler, see
/// docs/security.md), each with the request types it may use.
///
/// Text form (a `--client-keys` / `--worker-keys` file): one key per line,
/// its 40 Z85 characters, then optionally the request types it may use,
/// separated by white space or commas (`KEY thumbnails,resize`). A type is
/// a name, mapped to its number as `#[derive(Request)]` and the CLI's
/// `--type` map it ([`request_type_id`](crate::request_type_id)), or a
/// decimal number taken as the number itself. Blank lines and lines
/// starting with `#` are skipped; a key listed twice takes the types of
/// its last line.
///
/// What the types mean (docs/security.md): in a broker's
/// `curve_worker_keys` the types a worker holding the key may register;
/// in its `curve_client_keys` the types a client (or proxy) holding it may
/// send. A key without types may use every type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyList {
    keys: HashMap<PublicKey, Allowed>,
}

/// What one listed key may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Allowed {
    /// The types as written, for messages (empty: any type).
    names: Vec<String>,
    /// The same as numbers, sorted and deduplicated (empty: any type).
    types: Vec<RequestType>,
}

/// A line of a key list that does not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct KeyListError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong with its key.
    #[source]
    pub source: KeyError,
}

/// A request type as a key list writes it: a decimal number, or a name.
fn parse_type(word: &str) -> Result<RequestType, KeyError> {
    match word.parse::<RequestType>() {
        Ok(0) => Err(KeyError::Type(
            "request type 0 is reserved: it cannot be allowed".to_owned(),
        )),
        Ok(t) => Ok(t),
        Err(_) => Ok(crate::request_type_id(word)),
    }
}

impl KeyList {
    /// A list of these keys, each allowed every type.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k, Allowed::default())).collect(),
        }
    }

    /// Adds `key` (or replaces its entry), allowed only `types` (names or
    /// numbers, as in the text form); no types: every type.
    pub fn allow<S: AsRef<str>>(
        &mut self,
        key: PublicKey,
        types: impl IntoIterator<Item = S>,
    ) -> Result<&mut Self, KeyError> {
        let mut allowed = Allowed::default();
        for name in types {
            let name = name.as_ref();
            allowed.types.push(parse_type(name)?);
            allowed.names.push(name.to_owned());
        }
        allowed.types.sort_unstable();
        allowed.types.dedup();
        self.keys.insert(key, allowed);
        Ok(self)
    }

    /// Reads the text form (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, KeyListError> {
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |source| KeyListError {
                line: i + 1,
                source,
            };
            let mut words = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty());
            let key = words.next().unwrap_or_default();
            let key = PublicKey::from_z85(key).map_err(error)?;
            let mut list = Self::default();
            list.allow(key, words).map_err(error)?;
            keys.extend(list.keys);
        }
        Ok(Self { keys })
    }

    /// Whether `key` is listed.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains_key(key)
    }

    /// The types listed after `key`, as written (empty: any).
    pub fn types(&self, key: &PublicKey) -> Option<&[String]> {
        self.keys.get(key).map(|a| a.names.as_slice())
    }

    /// The types `key` may use, as numbers, sorted (empty: any); `None`
    /// for a key not listed.
    pub fn type_ids(&self, key: &PublicKey) -> Option<&[RequestType]> {
        self.keys.get(key).map(|a| a.types.as_slice())
    }

    /// Whether `key` is listed and may use `request_type`.
    pub fn allows(&self, key: &PublicKey, request_type: RequestType) -> bool {
        self.type_ids(key)
            .is_some_and(|t| t.is_empty() || t.binary_search(&request_type).is_ok())
    }

    /// Whether some key is limited to some types (else every listed key
    /// may use every type).
    pub fn restricts_types(&self) -> bool {
        self.keys.values().any(|a| !a.types.is_empty())
    }

    /// The listed keys.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.keys()
    }

    /// How many keys are listed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is listed (nobody gets in).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// In config files, a list of lines of the text form.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for KeyList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        KeyList::parse(&lines.join("\n")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::SecretKey;

    #[test]
    fn reads_keys_types_and_comments() {
        let a = SecretKey::generate().unwrap().public_key();
        let b = SecretKey::generate().unwrap().public_key();
        let text = format!("# workers\n\n{a} thumbnails 42\n  {b}\n");
        let list = KeyList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&a) && list.contains(&b));
        assert_eq!(list.types(&a).unwrap(), ["thumbnails", "42"]);
        assert!(list.types(&b).unwrap().is_empty());
        let thumbnails = crate::request_type_id("thumbnails");
        let mut ids = vec![42, thumbnails];
        ids.sort_unstable();
        assert_eq!(list.type_ids(&a).unwrap(), ids);
        assert!(list.allows(&a, 42) && list.allows(&a, thumbnails));
        assert!(!list.allows(&a, crate::request_type_id("payments")));
        // No types: any type.
        assert!(list.allows(&b, 7) && list.restricts_types());
        let c = SecretKey::generate().unwrap().public_key();
        assert!(!list.allows(&c, 42), "not listed");
        assert!(!KeyList::from_keys([a]).restricts_types());
    }

    #[test]
    fn types_may_be_separated_by_commas() {
        let a = SecretKey::generate().unwrap().public_key();
        let list = KeyList::parse(&format!("{a} thumbnails,resize, 7\n")).unwrap();
        assert_eq!(list.types(&a).unwrap(), ["thumbnails", "resize", "7"]);
        assert!(list.allows(&a, crate::request_type_id("resize")) && list.allows(&a, 7));
    }

    /// A line the list refuses is named by its number, with what is wrong
    /// with it (type 0 included, which no key may be allowed).
    #[test]
    fn a_bad_line_is_named() {
        let a = SecretKey::generate().unwrap().public_key();
        for (text, line, message) in [
            (
                format!("{a}\n{a} payments 0\n"),
                2,
                "line 2: request type 0 is reserved: it cannot be allowed",
            ),
            (
                format!("{a}\n# ok\nnot-a-key\n"),
                3,
                "line 3: a CURVE key is 40 Z85 characters, this one has 9",
            ),
        ] {
            let err = KeyList::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{text}");
            assert_eq!(err.to_string(), message);
        }
    }
}

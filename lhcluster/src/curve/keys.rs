//! Lists of allowed public keys, as key files hold them: one Z85 key per
//! line, optionally followed by the request types the key may use.

use std::collections::HashMap;

use super::{KeyError, PublicKey};

/// The public keys a bound role lets in (through its ZAP handler, see
/// docs/security.md), each with the request types it may use.
///
/// Text form (a `--client-keys` / `--worker-keys` file): one key per line,
/// its 40 Z85 characters, then optionally the request types (names or
/// numbers) it may register or send, separated by white space. Blank lines
/// and lines starting with `#` are skipped. **The types are read but not
/// enforced yet**: a listed key may use every type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyList {
    keys: HashMap<PublicKey, Vec<String>>,
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

impl KeyList {
    /// A list of these keys, each allowed every type.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k, Vec::new())).collect(),
        }
    }

    /// Reads the text form (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, KeyListError> {
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            let key = PublicKey::from_z85(key).map_err(|source| KeyListError {
                line: i + 1,
                source,
            })?;
            keys.insert(key, words.map(str::to_owned).collect());
        }
        Ok(Self { keys })
    }

    /// Whether `key` is listed.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains_key(key)
    }

    /// The types listed after `key` (empty: any). Not enforced yet.
    pub fn types(&self, key: &PublicKey) -> Option<&[String]> {
        self.keys.get(key).map(Vec::as_slice)
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
    }

    #[test]
    fn a_bad_line_is_named() {
        let a = SecretKey::generate().unwrap().public_key();
        let err = KeyList::parse(&format!("{a}\n# ok\nnot-a-key\n")).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(
            err.to_string(),
            "line 3: a CURVE key is 40 Z85 characters, this one has 9"
        );
    }
}

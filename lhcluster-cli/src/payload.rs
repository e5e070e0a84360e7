//! Payloads as the tools read and print them: text, a file or stdin in;
//! JSON in, encoded as the MessagePack typed code expects (maps keyed by
//! field name, `rmp_serde::to_vec_named`, as `lhcluster::typed::encode`
//! writes); and out, a payload that is one whole MessagePack map or array
//! shown as JSON.

use std::fmt;
use std::io::{Cursor, Read};

use anyhow::Context;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Nesting the JSON view follows (deeper: shown as text, not decoded);
/// well under what the stack holds.
const MAX_DEPTH: usize = 128;

/// Reads a payload given as text, or from stdin when it is `-`.
pub fn text_or_stdin(text: &str) -> anyhow::Result<Vec<u8>> {
    if text == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the payload from stdin")?;
        Ok(bytes)
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// Encodes JSON text (or stdin's, for `-`) as one MessagePack document,
/// what a typed handler decodes: `{"a": 1}` is the struct `{ a: 1 }`.
pub fn json_to_msgpack(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = text_or_stdin(text)?;
    let value: Value =
        serde_json::from_slice(&bytes).context("--payload-json is not valid JSON")?;
    Ok(lhcluster::typed::encode(&value)
        .context("cannot encode the JSON as MessagePack")?
        .remove(0)
        .to_vec())
}

/// The payload as JSON, if it is one whole MessagePack map or array (its
/// first byte says so, it decodes, and nothing follows it). Text never is:
/// its first byte is not a map or array marker, or it does not decode to
/// its end (`hi` stays text, not the number 104 and a stray byte).
pub fn msgpack_as_json(bytes: &[u8]) -> Option<Value> {
    let first = *bytes.first()?;
    // fixmap, fixarray, array 16/32, map 16/32.
    if !matches!(first, 0x80..=0x9f | 0xdc..=0xdf) {
        return None;
    }
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    let value = Json::deserialize(&mut de).ok()?;
    (de.position() == bytes.len() as u64).then_some(value.0)
}

/// How a payload is printed on a text line: JSON for a MessagePack map or
/// array, else its text (invalid UTF-8 as U+FFFD).
pub fn to_text(bytes: &[u8]) -> String {
    match msgpack_as_json(bytes) {
        Some(value) => value.to_string(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// How a payload goes into a JSON line: `("payload", JSON)` for a
/// MessagePack map or array, `("payload", "text")` for UTF-8 text, and
/// `("payload_base64", "…")` for other bytes, so that nothing is lost.
pub fn to_json_field(bytes: &[u8]) -> (&'static str, Value) {
    if let Some(value) = msgpack_as_json(bytes) {
        return ("payload", value);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => ("payload", Value::String(text.to_owned())),
        Err(_) => ("payload_base64", Value::String(base64(bytes))),
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Any MessagePack value as JSON: binary as text when it is UTF-8 (else an
/// array of byte values), map keys that are not strings as their JSON
/// text, an extension as `[tag, bytes]`, NaN and infinities as strings.
struct Json(Value);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(JsonVisitor { depth: 0 })
            .map(Json)
    }
}

/// One level of the JSON view.
#[derive(Clone, Copy)]
struct JsonVisitor {
    depth: usize,
}

impl JsonVisitor {
    fn inner<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom("nested too deep"));
        }
        Ok(JsonVisitor {
            depth: self.depth + 1,
        })
    }
}

/// A nested value, decoded one level deeper.
struct Nested(Value);

struct NestedSeed(JsonVisitor);

impl<'de> de::DeserializeSeed<'de> for NestedSeed {
    type Value = Nested;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Nested, D::Error> {
        deserializer.deserialize_any(self.0).map(Nested)
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Value, E> {
        self.visit_f64(f64::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map_or_else(|| Value::String(v.to_string()), Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(match std::str::from_utf8(v) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => Value::Array(v.iter().map(|&b| Value::from(b)).collect()),
        })
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self.inner()?)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self.inner()?)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        // The length is the sender's claim: do not reserve on its word.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Nested(item)) = seq.next_element_seed(NestedSeed(inner))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut object = serde_json::Map::new();
        while let Some(Nested(key)) = map.next_key_seed(NestedSeed(inner))? {
            let key = match key {
                Value::String(text) => text,
                other => other.to_string(),
            };
            let Nested(value) = map.next_value_seed(NestedSeed(inner))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgpack(json: &str) -> Vec<u8> {
        json_to_msgpack(json).unwrap()
    }

    #[test]
    fn json_encodes_as_typed_code_expects() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Add {
            a: i32,
            b: i32,
        }
        let bytes = msgpack(r#"{"a": 1, "b": -2}"#);
        let add: Add = lhcluster::typed::decode(&[bytes.into()]).unwrap();
        assert_eq!(add, Add { a: 1, b: -2 });
        assert!(json_to_msgpack("{nope").is_err());
    }

    #[test]
    fn maps_and_arrays_print_as_json_and_text_stays_text() {
        for json in [r#"{"a":1,"b":[true,null,"x",1.5]}"#, "[1,2,3]", "[]", "{}"] {
            assert_eq!(to_text(&msgpack(json)), json);
        }
        for text in ["hi", "", "1", "hello world", "\u{dc}ber", "[1]", "{}"] {
            assert_eq!(to_text(text.as_bytes()), text);
        }
        // A scalar MessagePack document is not shown as JSON.
        assert_eq!(msgpack_as_json(&msgpack("5")), None);
        // Trailing bytes: not one whole document.
        let mut bytes = msgpack("[1]");
        bytes.push(0);
        assert_eq!(msgpack_as_json(&bytes), None);
    }

    #[test]
    fn any_messagepack_value_has_a_json_view() {
        #[derive(serde::Serialize)]
        struct Odd {
            #[serde(with = "serde_bytes_like")]
            bin: Vec<u8>,
            nan: f64,
        }
        mod serde_bytes_like {
            pub(super) fn serialize<S: serde::Serializer>(
                v: &[u8],
                s: S,
            ) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let bytes = rmp_serde::to_vec_named(&Odd {
            bin: vec![0xff, 1],
            nan: f64::NAN,
        })
        .unwrap();
        assert_eq!(to_text(&bytes), r#"{"bin":[255,1],"nan":"NaN"}"#);
        let mut map = std::collections::BTreeMap::new();
        map.insert(7_u8, "seven");
        let bytes = rmp_serde::to_vec(&map).unwrap();
        assert_eq!(to_text(&bytes), r#"{"7":"seven"}"#);
    }

    #[test]
    fn no_input_panics_or_hangs() {
        // Claims of huge lengths, deep nesting, truncation.
        let deep = vec![0x91; 100_000];
        for bytes in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1][..],
            &[0x81][..],
            &[0x92, 0xdb, 0xff, 0xff, 0xff, 0xff][..],
            &deep[..],
        ] {
            assert_eq!(msgpack_as_json(bytes), None);
            let _ = to_text(bytes);
            let _ = to_json_field(bytes);
        }
    }

    #[test]
    fn json_lines_lose_nothing() {
        assert_eq!(to_json_field(b"hi"), ("payload", Value::from("hi")));
        assert_eq!(
            to_json_field(&msgpack(r#"{"a":1}"#)),
            ("payload", serde_json::json!({"a": 1}))
        );
        assert_eq!(
            to_json_field(&[0xff, 0xfe, 0x00, 0x01]),
            ("payload_base64", Value::from("//4AAQ=="))
        );
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"f"), "Zg==");
    }
}

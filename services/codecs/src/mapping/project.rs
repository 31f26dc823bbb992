//! Parsing only what a mapping reads: a [`Projection`] is the tree of object members a mapping's
//! paths can reach, and [`Projection::parse`] builds a [`Value`] that holds those members (each
//! path's final value whole) and nothing else, skipping the rest of the document without
//! allocating for it.
//!
//! Why: a USGS feature is ~700 bytes of which a mapping reads a handful of values; building the
//! whole `Value` tree (a `String` per key and per text value, a `BTreeMap` per object) and dropping
//! it again cost more than everything else the codec does. Every path resolves on the pruned value
//! exactly as on the full one: kept members are parsed by `Value`'s own deserializer, an object or
//! array on the way to a path is still an object or array (resolving a key in an array, or an
//! index anywhere but a whole value, finds nothing either way), and skipped values are still
//! parsed by serde_json (syntax, UTF-8, number range, nesting depth), so a document is accepted
//! here exactly when `serde_json::from_slice::<Value>` accepts it. The one construct `Value`
//! treats specially (a map keyed by serde_json's private raw-value token, with the `raw_value`
//! feature) is refused, so the caller falls back to the full parse for it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::path::{Path, Segment};

/// The key serde_json's `Value` deserializer treats as an embedded raw value.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Which parts of a JSON value to keep, see the module documentation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Projection {
    /// Keep the value whole (a path ends here or indexes into it).
    whole: bool,
    /// Object members to keep and what to keep of each; other members are skipped.
    members: Vec<(String, Projection)>,
    /// What to keep of every element of an array (none: the array is kept empty).
    elements: Option<Box<Projection>>,
}

impl Projection {
    /// Keeps the value at `path` whole (everything from its first index on, too).
    pub fn keep(&mut self, path: &Path) {
        let mut node = self;
        for s in path.segments() {
            if node.whole {
                return;
            }
            match s {
                Segment::Key(k) => node = node.member(k),
                Segment::Index(_) => break,
            }
        }
        node.set_whole();
    }

    /// Keeps member `key` whole.
    pub fn keep_key(&mut self, key: &str) {
        if !self.whole {
            self.member(key).set_whole();
        }
    }

    /// What to keep of member `key` (added if absent).
    pub fn member(&mut self, key: &str) -> &mut Projection {
        let i = match self.members.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.members.push((key.to_owned(), Projection::default()));
                self.members.len() - 1
            }
        };
        &mut self.members[i].1
    }

    /// Keeps `each` of every element of an array here.
    pub fn elements(&mut self, each: Projection) {
        if !self.whole {
            self.elements = Some(Box::new(each));
        }
    }

    /// Adds everything `other` keeps.
    pub fn merge(&mut self, other: &Projection) {
        if other.whole {
            self.set_whole();
        }
        if self.whole {
            return;
        }
        for (k, p) in &other.members {
            self.member(k).merge(p);
        }
        if let Some(e) = &other.elements {
            match &mut self.elements {
                Some(mine) => mine.merge(e),
                None => self.elements = Some(e.clone()),
            }
        }
    }

    /// The member projection for `key`. Keys are short and most are skipped: comparing the
    /// length and first byte before the bytes saves a `memcmp` call per member and key.
    fn member_named(&self, key: &str) -> Option<&Projection> {
        let (len, first) = (key.len(), key.as_bytes().first());
        self.members.iter().find(|(k, _)| k.len() == len && k.as_bytes().first() == first && k == key).map(|(_, p)| p)
    }

    fn set_whole(&mut self) {
        self.whole = true;
        self.members.clear();
        self.elements = None;
    }

    /// Parses `bytes` (one JSON document, as `serde_json::from_slice`) keeping what this
    /// projection names. Fails where `serde_json::from_slice::<Value>` fails (and on the raw-value
    /// token, see the module documentation).
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        // `Value` only accepts valid UTF-8 (outside strings anything else is a syntax error, inside
        // them an error too). Checking it once up front lets serde_json read from a `str`, which
        // skips re-validating every string it scans, kept or skipped.
        let text = std::str::from_utf8(bytes).map_err(|_| serde_json::Error::custom("not UTF-8"))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let v = self.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole { serde::Deserialize::deserialize(d) } else { d.deserialize_any(self) }
    }
}

/// The scalars as `Value`'s own visitor builds them; objects and arrays pruned.
impl<'de> Visitor<'de> for &Projection {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match &self.elements {
            Some(each) => {
                while let Some(v) = seq.next_element_seed(&**each)? {
                    out.push(v);
                }
            }
            None => while seq.next_element::<Skip>()?.is_some() {},
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.member_named(&key.0) {
                // Later duplicates replace earlier ones, as in `Value`.
                Some(p) => {
                    let v = map.next_value_seed(p)?;
                    out.insert(key.0.into_owned(), v);
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                refuse_token(v)?;
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                refuse_token(v)?;
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn refuse_token<E: serde::de::Error>(key: &str) -> Result<(), E> {
    if key == RAW_VALUE_TOKEN { Err(E::custom("raw-value token as an object key")) } else { Ok(()) }
}

/// A value parsed and dropped. Unlike `serde::de::IgnoredAny` (serde_json skips those with a scan that
/// checks neither nesting depth, number range nor UTF-8), it goes through `deserialize_any`, so it
/// accepts exactly what `Value` accepts, without allocating (strings are borrowed).
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Key<'de>>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn proj(paths: &[&str]) -> Projection {
        let mut p = Projection::default();
        for s in paths {
            p.keep(&Path::parse(s).unwrap());
        }
        p
    }

    #[test]
    fn keeps_only_what_paths_reach() {
        let doc = br#"{"a": {"b": 1, "c": [1, {"x": 2}], "d": "no"}, "e": [{"f": 3, "g": 4}], "h": {"i": 5}}"#;
        let p = proj(&["a.b", "a.c[1].x", "h", "a.zz.y"]);
        assert_eq!(p.parse(doc).unwrap(), json!({"a": {"b": 1, "c": [1, {"x": 2}]}, "h": {"i": 5}}));
        let mut each = Projection::default();
        each.keep_key("f");
        let mut q = Projection::default();
        q.member("e").elements(each);
        assert_eq!(q.parse(doc).unwrap(), json!({"e": [{"f": 3}]}));
        // An array where an object was expected stays an (empty) array; a scalar stays as it is.
        assert_eq!(proj(&["e.f", "h.i.j"]).parse(doc).unwrap(), json!({"e": [], "h": {"i": 5}}));
    }

    #[test]
    fn accepts_exactly_what_value_accepts() {
        let deep = format!("{{\"skip\": {}{}, \"k\": 1}}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<&[u8]> = vec![
            br#"{"skip": 1e400, "k": 1}"#,
            br#"{"skip": "\ud800", "k": 1}"#,
            b"{\"skip\": \"\xff\", \"k\": 1}",
            br#"{"skip": [1, 2,], "k": 1}"#,
            br#"{"k": 1} x"#,
            br#"{"k": 1, "k": {"z": 2}}"#,
            br#"{"skip": {"$serde_json::private::RawValue": "1"}, "k": 1}"#,
            br#"{"skip": -0.0, "k": 1e-400, "k2": 18446744073709551616}"#,
            deep.as_bytes(),
        ];
        for c in cases {
            let full = serde_json::from_slice::<Value>(c);
            let pruned = proj(&["k", "k2"]).parse(c);
            match (&full, &pruned) {
                (Ok(f), Ok(p)) => {
                    assert_eq!(f.get("k"), p.get("k"), "{}", String::from_utf8_lossy(c));
                    assert_eq!(f.get("k2"), p.get("k2"), "{}", String::from_utf8_lossy(c));
                }
                (Err(_), Err(_)) => {}
                // The raw-value token is refused even where `Value` might accept it.
                (Ok(_), Err(e)) if e.to_string().contains("raw-value") => {}
                _ => panic!("{}: full {full:?}, pruned {pruned:?}", String::from_utf8_lossy(c)),
            }
        }
    }
}

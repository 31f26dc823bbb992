//! JSON and newline-delimited JSON through a [`Mapping`]: [`JsonCodec`] (one document per call:
//! an HTTP body, an MQTT message, a file) and [`NdjsonCodec`] (one JSON value per line).
//!
//! A payload is one record (any JSON value, usually an object), an array of records, or, with a
//! records path (e.g. `states` for an OpenSky `/states/all` answer, `data.items`), the array or
//! value found there. Each record is mapped on its own: a bad record is one rejection carrying that
//! record re-serialised as JSON, and never fails its neighbours. A payload that is not JSON at all,
//! or has nothing at the records path, is one `malformed` (or `schema`) rejection with the whole
//! payload.

use geostream_model::{Mapping, ReasonCode};
use serde_json::Value;

use crate::codec::{Codec, Context, Framing, Outcome, Rejection, Skip};
use crate::mapping::{CompiledMapping, MappingError, Path};

/// Options shared by the JSON codecs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Path (mapping path syntax) of the records inside each payload; none = the payload itself
    /// (an array is a list of records, anything else one record).
    pub records: Option<String>,
}

/// What the codecs share: the compiled mapping and the records path.
#[derive(Debug)]
struct Records {
    mapping: CompiledMapping,
    records: Option<Path>,
}

impl Records {
    fn new(mapping: &Mapping, opts: &JsonOptions) -> Result<Self, MappingError> {
        let compiled = CompiledMapping::new(mapping)?;
        if !compiled.has_position() {
            return Err(MappingError::Invalid("json records need lon/lat or a geometry path".into()));
        }
        let records = opts
            .records
            .as_deref()
            .map(|p| Path::parse(p).map_err(|source| MappingError::Path { field: "records".into(), source }))
            .transpose()?;
        Ok(Records { mapping: compiled, records })
    }

    fn decode(&self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let doc: Value = match serde_json::from_slice(input) {
            Ok(v) => v,
            Err(e) => {
                out(reject(ReasonCode::Malformed, located(ctx, format!("not JSON: {e}")), input.to_vec()));
                return;
            }
        };
        let target = match &self.records {
            None => &doc,
            Some(p) => match p.resolve(&doc) {
                Some(v) => v,
                None => {
                    out(reject(ReasonCode::Schema, located(ctx, format!("no records at {p}")), input.to_vec()));
                    return;
                }
            },
        };
        match target {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    out(self.one(item, None, ctx, Some(i)));
                }
            }
            single => out(self.one(single, Some(input), ctx, None)),
        }
    }

    fn one(&self, v: &Value, whole: Option<&[u8]>, ctx: &Context, index: Option<usize>) -> Outcome {
        match self.mapping.apply(v, ctx) {
            Ok(o) => Outcome::Observation(Box::new(o)),
            Err(f) => {
                let raw = match whole {
                    Some(b) if self.records.is_none() => b.to_vec(),
                    _ => serde_json::to_vec(v).unwrap_or_default(),
                };
                let detail = match index {
                    Some(i) => located(ctx, format!("record {i}: {}", f.detail)),
                    None => located(ctx, f.detail),
                };
                reject(f.reason, detail, raw)
            }
        }
    }
}

pub(crate) fn reject(reason: ReasonCode, detail: String, raw: Vec<u8>) -> Outcome {
    Outcome::Rejected(Rejection { reason, detail, raw })
}

pub(crate) fn located(ctx: &Context, detail: String) -> String {
    if ctx.location.is_empty() { detail } else { format!("{}: {detail}", ctx.location) }
}

/// JSON documents (a record, an array of records, or records at a path) through a mapping.
#[derive(Debug)]
pub struct JsonCodec {
    inner: Records,
}

impl JsonCodec {
    /// Compiles the mapping; it must say where the position is (lon/lat or geometry).
    pub fn new(mapping: &Mapping, opts: JsonOptions) -> Result<Self, MappingError> {
        Ok(JsonCodec { inner: Records::new(mapping, &opts)? })
    }

    /// Replaces the compiled mapping (e.g. to set a different future-time skew).
    pub fn map_mapping(mut self, f: impl FnOnce(CompiledMapping) -> CompiledMapping) -> Self {
        self.inner.mapping = f(self.inner.mapping);
        self
    }
}

impl Codec for JsonCodec {
    fn name(&self) -> &'static str {
        "json"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        self.inner.decode(input, ctx, out);
    }
}

/// Newline-delimited JSON (JSON Lines): each line is a payload as for [`JsonCodec`]; blank lines
/// are skipped.
#[derive(Debug)]
pub struct NdjsonCodec {
    inner: Records,
}

impl NdjsonCodec {
    /// Compiles the mapping; it must say where the position is (lon/lat or geometry).
    pub fn new(mapping: &Mapping, opts: JsonOptions) -> Result<Self, MappingError> {
        Ok(NdjsonCodec { inner: Records::new(mapping, &opts)? })
    }
}

impl Codec for NdjsonCodec {
    fn name(&self) -> &'static str {
        "ndjson"
    }

    fn framing(&self) -> Framing {
        Framing::Lines
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        if input.iter().all(u8::is_ascii_whitespace) {
            out(Outcome::Skipped(Skip::Blank));
            return;
        }
        self.inner.decode(input, ctx, out);
    }
}

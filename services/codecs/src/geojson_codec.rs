//! GeoJSON Features and FeatureCollections ([`GeoJsonCodec`]), whole documents or one per line
//! (newline-delimited GeoJSON and RFC 8142 GeoJSON text sequences, [`GeoJsonCodec::seq`]).
//!
//! The geometry is the feature's own (reprojected if the mapping names a `crs`), unless the mapping
//! names `lon`/`lat` or a `geometry` path. Mapping paths resolve against the **Feature object**, so
//! time, track and attributes are written `properties.time`, `id`, `properties.mag`. For the USGS
//! earthquake feeds: `{"track": "id", "time": "properties.time", "time_format": "unix_ms",
//! "attributes": {"mag": "properties.mag", ...}}`. Coordinates beyond the second (USGS puts the
//! depth in km there) are kept as they are.
//!
//! A feature whose `geometry` is `null` is rejected with `schema` (an observation is a position),
//! unless [`GeoJsonOptions::skip_null_geometry`] counts it as skipped (`NotAPosition`) instead.
//! A member of `features` that is not a Feature object is rejected with `schema`. Each rejected
//! feature carries itself re-serialised as JSON; one bad feature never fails the collection.
//!
//! Speed: a document is first parsed keeping only what the mapping reads ([`Projection`]: each
//! feature's `type`, `geometry` and mapped paths; the USGS features are ~700 bytes of which a
//! mapping reads a few values). When every feature of it becomes an observation or a skip, those
//! are the outcomes. When anything is rejected, the document is decoded again from a full
//! `serde_json::Value`, so a rejection carries the whole feature re-serialised, exactly as before.

use geostream_model::{Mapping, ReasonCode};
use serde_json::Value;

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::json::{located, reject};
use crate::mapping::{CompiledMapping, MappingError, Projection};

/// Options of the GeoJSON codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeoJsonOptions {
    /// Count features with `"geometry": null` as skipped instead of rejecting them.
    pub skip_null_geometry: bool,
}

/// GeoJSON through a mapping, see the module documentation.
#[derive(Debug)]
pub struct GeoJsonCodec {
    mapping: CompiledMapping,
    opts: GeoJsonOptions,
    framing: Framing,
    /// What [`GeoJsonCodec::decode`] parses first, see the module documentation.
    projection: Projection,
}

/// What decoding a document reads: each feature's `type`, `geometry` and mapped paths, for a lone
/// Feature and for every member of a FeatureCollection's `features`.
fn document_projection(mapping: &CompiledMapping) -> Projection {
    let mut feature = mapping.projection();
    feature.keep_key("type");
    feature.keep_key("geometry");
    let mut doc = feature.clone();
    doc.member("features").elements(feature);
    doc
}

impl GeoJsonCodec {
    /// A codec for whole documents (a Feature or a FeatureCollection per call).
    pub fn new(mapping: &Mapping, opts: GeoJsonOptions) -> Result<Self, MappingError> {
        let mapping = CompiledMapping::new(mapping)?;
        Ok(GeoJsonCodec { projection: document_projection(&mapping), mapping, opts, framing: Framing::Document })
    }

    /// A codec for newline-delimited GeoJSON / GeoJSON text sequences (a leading RS, 0x1E, is
    /// ignored): one Feature (or FeatureCollection) per line; blank lines are skipped.
    pub fn seq(mapping: &Mapping, opts: GeoJsonOptions) -> Result<Self, MappingError> {
        Ok(GeoJsonCodec { framing: Framing::Lines, ..Self::new(mapping, opts)? })
    }

    /// Replaces the compiled mapping (e.g. to set a different future-time skew).
    pub fn map_mapping(mut self, f: impl FnOnce(CompiledMapping) -> CompiledMapping) -> Self {
        self.mapping = f(self.mapping);
        self.projection = document_projection(&self.mapping);
        self
    }

    fn feature(&self, f: &Value, whole: Option<&[u8]>, ctx: &Context, index: Option<usize>) -> Outcome {
        let raw = || match whole {
            Some(b) => b.to_vec(),
            None => serde_json::to_vec(f).unwrap_or_default(),
        };
        let at = |d: String| match index {
            Some(i) => located(ctx, format!("feature {i}: {d}")),
            None => located(ctx, d),
        };
        let Some(obj) = f.as_object().filter(|o| o.get("type").and_then(Value::as_str) == Some("Feature")) else {
            return reject(ReasonCode::Schema, at("not a GeoJSON Feature object".into()), raw());
        };
        let geometry = obj.get("geometry").filter(|g| !g.is_null());
        if geometry.is_none() && !self.mapping.has_position() {
            if self.opts.skip_null_geometry {
                return Outcome::Skipped(Skip::NotAPosition);
            }
            return reject(ReasonCode::Schema, at("feature has no geometry (null or missing)".into()), raw());
        }
        match self.mapping.apply_with_geometry(f, geometry, ctx) {
            Ok(o) => Outcome::Observation(Box::new(o)),
            Err(e) => reject(e.reason, at(e.detail), raw()),
        }
    }
}

impl Codec for GeoJsonCodec {
    fn name(&self) -> &'static str {
        "geojson"
    }

    fn framing(&self) -> Framing {
        self.framing
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let body = input.strip_prefix(b"\x1e").unwrap_or(input);
        if self.framing == Framing::Lines && body.iter().all(u8::is_ascii_whitespace) {
            out(Outcome::Skipped(Skip::Blank));
            return;
        }
        // The fast path, kept only when nothing was rejected (see the module documentation). A
        // document the pruned parse refuses is refused by the full parse too, which reports it.
        if let Ok(doc) = self.projection.parse(body) {
            // One outcome per feature; sized up front so a large collection does not regrow it.
            let features = doc.get("features").and_then(Value::as_array).map_or(1, Vec::len);
            let mut outcomes = Vec::with_capacity(features);
            self.document(&doc, input, ctx, &mut |o| outcomes.push(o));
            if !outcomes.iter().any(|o| matches!(o, Outcome::Rejected(_))) {
                outcomes.into_iter().for_each(out);
                return;
            }
        }
        self.decode_full(body, input, ctx, out);
    }
}

impl GeoJsonCodec {
    /// Decodes `body` (the input without a leading RS) from a full `Value`.
    fn decode_full(&self, body: &[u8], input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let doc: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                out(reject(ReasonCode::Malformed, located(ctx, format!("not JSON: {e}")), input.to_vec()));
                return;
            }
        };
        self.document(&doc, input, ctx, out);
    }

    /// The outcomes of one parsed document (a Feature or a FeatureCollection).
    fn document(&self, doc: &Value, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        match doc.get("type").and_then(Value::as_str) {
            Some("FeatureCollection") => match doc.get("features") {
                Some(Value::Array(features)) => {
                    for (i, f) in features.iter().enumerate() {
                        out(self.feature(f, None, ctx, Some(i)));
                    }
                }
                _ => out(reject(
                    ReasonCode::Schema,
                    located(ctx, "FeatureCollection without a features array".into()),
                    input.to_vec(),
                )),
            },
            Some("Feature") => out(self.feature(doc, Some(input), ctx, None)),
            _ => out(reject(
                ReasonCode::Schema,
                located(ctx, "expected a GeoJSON Feature or FeatureCollection".into()),
                input.to_vec(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::FeedId;
    use geostream_model::time::OffsetDateTime;

    const USGS: &[u8] = include_bytes!("../tests/data/usgs_all_week_2018-02-07.geojson");

    /// The fast path gives exactly the outcomes of decoding from a full `Value`, on real features
    /// with random damage (deleted, inserted, replaced and swapped bytes) and several mappings.
    #[test]
    fn fast_path_matches_full_parse() {
        let start = USGS.iter().position(|&b| b == b'\n').unwrap() + 1;
        let end = start + USGS[start..].iter().position(|&b| b == b'\n').unwrap();
        let feature = &USGS[start..end - 1];
        let mut collection = USGS[..8_000].to_vec();
        collection.truncate(collection.iter().rposition(|&b| b == b'\n').unwrap() - 1);
        collection.extend_from_slice(b"]}");
        let mappings: Vec<Mapping> = [
            serde_json::json!({"track": "id", "time": "properties.time", "time_format": "unix_ms",
                "attributes": {"mag": "properties.mag", "depth_km": "geometry.coordinates[2]"}}),
            serde_json::json!({"lon": "geometry.coordinates[0]", "lat": "geometry.coordinates[1]",
                "attributes": {"p": "properties", "tz": "properties.tz"}, "units": {"tz": "ft"}}),
            serde_json::json!({"time": "properties.updated", "time_format": "unix_us"}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let ctx = Context::new(FeedId::new("f").unwrap(), OffsetDateTime::from_unix_timestamp(1_517_968_154).unwrap());
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const BYTES: &[u8] = b"{}[],:\"0-e.9nx\\ ";
        let mut fast_observations = 0;
        for case in 0..600 {
            let mut input = if case % 2 == 0 { collection.clone() } else { feature.to_vec() };
            for _ in 0..=next() % 3 {
                let i = next() as usize % input.len();
                let b = BYTES[next() as usize % BYTES.len()];
                match next() % 4 {
                    0 => drop(input.remove(i)),
                    1 => input.insert(i, b),
                    2 => input[i] = b,
                    _ => {
                        let j = next() as usize % input.len();
                        input.swap(i, j);
                    }
                }
            }
            let opts = GeoJsonOptions { skip_null_geometry: case % 3 == 0 };
            let mut codec = GeoJsonCodec::new(&mappings[case % mappings.len()], opts).unwrap();
            let mut fast = Vec::new();
            codec.decode(&input, &ctx, &mut |o| fast.push(o));
            let mut full = Vec::new();
            codec.decode_full(&input, &input, &ctx, &mut |o| full.push(o));
            assert_eq!(fast, full, "case {case}: {}", String::from_utf8_lossy(&input));
            fast_observations += fast.iter().filter(|o| matches!(o, Outcome::Observation(_))).count();
        }
        assert!(fast_observations > 500, "too few observations to compare: {fast_observations}");
    }
}

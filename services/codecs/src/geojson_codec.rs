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

use geostream_model::{Mapping, ReasonCode};
use serde_json::Value;

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::json::{located, reject};
use crate::mapping::{CompiledMapping, MappingError};

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
}

impl GeoJsonCodec {
    /// A codec for whole documents (a Feature or a FeatureCollection per call).
    pub fn new(mapping: &Mapping, opts: GeoJsonOptions) -> Result<Self, MappingError> {
        Ok(GeoJsonCodec { mapping: CompiledMapping::new(mapping)?, opts, framing: Framing::Document })
    }

    /// A codec for newline-delimited GeoJSON / GeoJSON text sequences (a leading RS, 0x1E, is
    /// ignored): one Feature (or FeatureCollection) per line; blank lines are skipped.
    pub fn seq(mapping: &Mapping, opts: GeoJsonOptions) -> Result<Self, MappingError> {
        Ok(GeoJsonCodec { framing: Framing::Lines, ..Self::new(mapping, opts)? })
    }

    /// Replaces the compiled mapping (e.g. to set a different future-time skew).
    pub fn map_mapping(mut self, f: impl FnOnce(CompiledMapping) -> CompiledMapping) -> Self {
        self.mapping = f(self.mapping);
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
        let doc: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                out(reject(ReasonCode::Malformed, located(ctx, format!("not JSON: {e}")), input.to_vec()));
                return;
            }
        };
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
            Some("Feature") => out(self.feature(&doc, Some(input), ctx, None)),
            _ => out(reject(
                ReasonCode::Schema,
                located(ctx, "expected a GeoJSON Feature or FeatureCollection".into()),
                input.to_vec(),
            )),
        }
    }
}

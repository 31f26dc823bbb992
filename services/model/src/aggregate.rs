//! Aggregates: statistics of one bin (or SQL group) in one event-time window, as a GeoJSON
//! Feature on `<tenant>.aggregates`.

use std::collections::BTreeMap;

use geojson::Geometry;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::feature::{FeatureDe, clash_error, clash_ser_error, reserved_clash, serialize_feature};
use crate::idhash::IdHasher;
use crate::ids::{AnalyticId, RecordId};
use crate::wgs84::check_geometry;
use crate::window::Window;

named_enum! {
    /// Which kind of analytic produced an aggregate.
    AggregateKind, "aggregate kind", "bin, sql" {
        /// A spatial bin (geohash, H3 or grid cell) counted over a window.
        Bin => "bin",
        /// A row of a windowed SQL query.
        Sql => "sql",
    }
}

/// An aggregate, the record on `<tenant>.aggregates`.
///
/// On the wire: `{"type":"Feature","id":..,"geometry":..|null,"properties":{"kind":..,
/// "analytic":..,"window":{"start":..,"end":..},"bin":..,"version":..,"count":..,
/// "values":{..},<attributes>}}`.
///
/// The id hashes analytic, window, bin and shard only. A late observation makes the processor emit a
/// correction of the same aggregate: same id, higher `version`, so the search engine (external
/// versioning) replaces the old document and never lets an older version overwrite a newer one.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Deterministic id, see the type documentation.
    pub id: RecordId,
    /// The cell's shape or centre; null for non-spatial SQL groups.
    pub geometry: Option<Geometry>,
    /// Bin or SQL.
    pub kind: AggregateKind,
    /// The analytic that produced it.
    pub analytic: AnalyticId,
    /// The event-time window it covers.
    pub window: Window,
    /// The cell id (geohash, H3 index, grid key) or the SQL group key.
    pub bin: String,
    /// The processor's input partition whose observations it covers, if it covers only one. The
    /// processor keeps state per partition (observations are partitioned by track), so a bin's
    /// total over a window is the sum of its shards: queries group by analytic, window and bin and
    /// sum. Part of the id, so the shards of one bin never overwrite each other.
    pub shard: Option<u32>,
    /// Starts at 1; each correction of the same aggregate carries a higher version.
    pub version: u32,
    /// Number of observations aggregated.
    pub count: u64,
    /// Statistics by name (e.g. `speed_mean`); always finite.
    pub values: BTreeMap<String, f64>,
    /// Non-numeric extras (e.g. SQL text columns).
    pub attributes: Map<String, Value>,
}

impl Aggregate {
    /// Property names the record itself uses; attributes must not use them.
    pub const RESERVED_PROPERTIES: &'static [&'static str] =
        &["kind", "analytic", "window", "bin", "shard", "version", "count", "values"];

    /// Longest bin key, in bytes.
    pub const MAX_BIN_BYTES: usize = 512;

    /// A first version (1) of an aggregate with no values yet; the id is computed.
    pub fn new(kind: AggregateKind, analytic: AnalyticId, window: Window, bin: impl Into<String>) -> Self {
        let mut a = Aggregate {
            id: RecordId::from_bytes([0; 16]),
            geometry: None,
            kind,
            analytic,
            window,
            bin: bin.into(),
            shard: None,
            version: 1,
            count: 0,
            values: BTreeMap::new(),
            attributes: Map::new(),
        };
        a.refresh_id();
        a
    }

    /// The id this aggregate's identifying fields hash to (not the version).
    pub fn compute_id(&self) -> RecordId {
        let mut h = IdHasher::new("geostream.aggregate.v1");
        h.str(self.analytic.as_str());
        h.time(self.window.start);
        h.time(self.window.end);
        h.str(&self.bin);
        // Absent for whole (unsharded) aggregates, so their ids are what they were before shards.
        if let Some(shard) = self.shard {
            h.str("shard");
            h.u64(u64::from(shard));
        }
        h.finish()
    }

    /// Recomputes `id` after identifying fields were changed.
    pub fn refresh_id(&mut self) {
        self.id = self.compute_id();
    }

    /// Checks geometry, window, bin, values, attribute names and that `id` matches the content.
    pub fn validate(&self) -> Result<(), ModelError> {
        let subject = || format!("aggregate {} of analytic {:?}", self.id, self.analytic.as_str());
        let bad = |field: String, problem: String| ModelError::InvalidField { subject: subject(), field, problem };
        if let Some(g) = &self.geometry {
            check_geometry(g).map_err(|p| p.into_error(subject()))?;
        }
        self.window.check(&subject())?;
        if self.bin.len() > Self::MAX_BIN_BYTES {
            return Err(bad(
                "bin".into(),
                format!("is {} bytes long, the limit is {}", self.bin.len(), Self::MAX_BIN_BYTES),
            ));
        }
        if let Some((name, v)) = self.values.iter().find(|(_, v)| !v.is_finite()) {
            return Err(bad(
                format!("values.{name}"),
                format!("is {v}; statistics must be finite numbers (JSON has no NaN or infinity)"),
            ));
        }
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_error(subject(), key, Self::RESERVED_PROPERTIES));
        }
        let computed = self.compute_id();
        if computed != self.id {
            return Err(ModelError::IdMismatch {
                subject: subject(),
                stored: self.id.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct PropsRef<'a> {
    kind: AggregateKind,
    analytic: &'a AnalyticId,
    window: &'a Window,
    bin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<u32>,
    version: u32,
    count: u64,
    values: &'a BTreeMap<String, f64>,
    #[serde(flatten)]
    attributes: &'a Map<String, Value>,
}

#[derive(Deserialize)]
struct Props {
    kind: AggregateKind,
    analytic: AnalyticId,
    window: Window,
    bin: String,
    #[serde(default)]
    shard: Option<u32>,
    version: u32,
    count: u64,
    #[serde(default)]
    values: BTreeMap<String, f64>,
    #[serde(flatten)]
    attributes: Map<String, Value>,
}

impl Serialize for Aggregate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_ser_error(key));
        }
        let props = PropsRef {
            kind: self.kind,
            analytic: &self.analytic,
            window: &self.window,
            bin: &self.bin,
            shard: self.shard,
            version: self.version,
            count: self.count,
            values: &self.values,
            attributes: &self.attributes,
        };
        serialize_feature(s, &self.id, &self.geometry, &props)
    }
}

impl<'de> Deserialize<'de> for Aggregate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FeatureDe::<Option<Geometry>, Props>::deserialize(d)?;
        let p = f.properties;
        Ok(Aggregate {
            id: f.id,
            geometry: f.geometry,
            kind: p.kind,
            analytic: p.analytic,
            window: p.window,
            bin: p.bin,
            shard: p.shard,
            version: p.version,
            count: p.count,
            values: p.values,
            attributes: p.attributes,
        })
    }
}

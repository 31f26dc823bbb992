//! The declarative-mapping normaliser: a feed's [`Mapping`] compiled once
//! ([`CompiledMapping::new`] checks paths, units, CRS, time format and zone) and applied to each
//! decoded record (a [`serde_json::Value`]: a JSON record, a GeoJSON feature, a CSV row as an
//! object of column → text) to give a validated [`Observation`] or a [`Failure`] with its
//! dead-letter reason.
//!
//! What `apply` does, in order:
//! 1. **track**: the value at `track` (a string, or a number written in decimal); when a track path
//!    is configured and the value is missing, `null` or not a valid track id → `schema`.
//! 2. **time**: the value at `time`, parsed per `time_format` ([`TimeParser`]); with no time path
//!    the event time is `ctx.received`. A configured path whose value is missing → `schema`; a
//!    value that does not parse or is outside years 0..=9999 → `invalid_time`; a time more than
//!    the allowed skew (default 24 h, [`CompiledMapping::with_max_future`]) after `ctx.received` →
//!    `future_time`.
//! 3. **position**: `lon`/`lat` (numbers or numeric strings) or a GeoJSON `geometry` object at a
//!    path, reprojected from `crs` to WGS84 ([`Crs`]); with neither, the record's own geometry (a
//!    GeoJSON feature's, from `crs`; an Esri JSON feature's, decoded by its codec and reprojected
//!    from the spatial reference its payload names, [`CompiledMapping::apply_with_native`]).
//!    Missing → `schema`; not a number / not a geometry → `schema`; non-finite or out of range (lon
//!    outside [-180, 180], lat outside [-90, 90]) or not reprojectable → `invalid_coordinates`; a
//!    point at exactly (0, 0) → `null_island`. Every source of positions goes through the same
//!    reprojection and checks.
//! 4. **attributes**: each mapped attribute whose value is present and not `null` is copied under
//!    its mapped name; one with a unit is converted to SI ([`Unit`]) and must be numeric (else
//!    `schema`). With [`CompiledMapping::with_numbers_from_strings`] (the CSV codec) text cells
//!    that are decimal numbers become JSON numbers (text with a leading zero such as a squawk
//!    `0123` stays text), and `true`/`false` (any case) become booleans.
//!    `ctx.source_attributes` are merged in afterwards without overwriting mapped ones (reserved
//!    names `feed`, `track`, `time`, `received` are never taken from the source).

mod crs;
mod path;
mod project;
mod time;
mod units;

pub use crs::{Crs, CrsError};
pub use path::{Path, PathError, Segment};
pub use project::Projection;
pub use time::TimeParser;
pub use units::Unit;

use geostream_model::geojson::{Geometry, GeometryValue, Position};
use geostream_model::time::{Duration, OffsetDateTime};
use geostream_model::{Mapping, Observation, ReasonCode, TrackId};
use serde_json::{Map, Number, Value};

use crate::codec::Context;

/// Why a mapping cannot be compiled: a configuration error, reported once, not per record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// A path does not parse.
    #[error("mapping.{field}: {source}")]
    Path {
        /// The mapping field (`track`, `attributes.speed`, ...).
        field: String,
        /// The syntax problem.
        source: PathError,
    },
    /// A unit name is not known.
    #[error("mapping.units.{attribute}: unit {unit:?} is not known; known units: {known}")]
    UnknownUnit {
        /// The attribute.
        attribute: String,
        /// The unit as written.
        unit: String,
        /// The known unit names.
        known: String,
    },
    /// A unit is given for an attribute the mapping does not map.
    #[error("mapping.units.{attribute}: there is no mapped attribute {attribute:?} to convert")]
    UnitWithoutAttribute {
        /// The attribute.
        attribute: String,
    },
    /// The CRS is not supported.
    #[error("mapping.crs: {0}")]
    Crs(#[from] CrsError),
    /// The time format or time zone is not usable.
    #[error("mapping.time_format: {0}")]
    Time(String),
    /// The mapping is inconsistent (e.g. lon without lat, no position for a format that needs one).
    #[error("mapping: {0}")]
    Invalid(String),
}

impl geostream_model::Classify for MappingError {
    fn class(&self) -> geostream_model::ErrorClass {
        geostream_model::ErrorClass::User
    }
}

/// Why one record could not become an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The dead-letter reason.
    pub reason: ReasonCode,
    /// What and where, for a person.
    pub detail: String,
}

impl Failure {
    fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Failure { reason, detail: detail.into() }
    }
}

#[derive(Debug)]
enum PositionSource {
    None,
    LonLat(Path, Path),
    Geometry(Path),
}

/// The geometry a record carries itself, for mappings that name no position.
enum Native<'a> {
    /// None (or `null`).
    Missing,
    /// A GeoJSON geometry object, in the mapping's CRS.
    Json(&'a Value),
    /// Decoded by the codec, in the CRS the payload names.
    Typed(GeometryValue, &'a Crs),
}

#[derive(Debug)]
struct Attribute {
    name: String,
    path: Path,
    unit: Option<Unit>,
}

/// A [`Mapping`] checked and compiled, ready to apply to many records.
#[derive(Debug)]
pub struct CompiledMapping {
    track: Option<Path>,
    time: Option<(Path, TimeParser)>,
    position: PositionSource,
    crs: Crs,
    attributes: Vec<Attribute>,
    max_future: Duration,
    numbers_from_strings: bool,
}

/// The default allowed clock skew: event times up to 24 h after `received` are accepted.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::hours(24);

fn parse_path(field: &str, s: &str) -> Result<Path, MappingError> {
    Path::parse(s).map_err(|source| MappingError::Path { field: field.to_owned(), source })
}

impl CompiledMapping {
    /// Checks and compiles `m`: every path parses, every unit is known and belongs to a mapped
    /// attribute, the CRS is supported, the custom time format parses and the time zone exists.
    pub fn new(m: &Mapping) -> Result<Self, MappingError> {
        let track = m.track.as_deref().map(|p| parse_path("track", p)).transpose()?;
        let parser = TimeParser::new(&m.time_format, m.time_zone.as_deref()).map_err(MappingError::Time)?;
        let time = m.time.as_deref().map(|p| parse_path("time", p)).transpose()?.map(|p| (p, parser));
        let position = match (&m.lon, &m.lat, &m.geometry) {
            (Some(_), Some(_), Some(_)) => {
                return Err(MappingError::Invalid("geometry is set together with lon/lat; map one".into()));
            }
            (Some(lon), Some(lat), None) => PositionSource::LonLat(parse_path("lon", lon)?, parse_path("lat", lat)?),
            (None, None, Some(g)) => PositionSource::Geometry(parse_path("geometry", g)?),
            (None, None, None) => PositionSource::None,
            _ => return Err(MappingError::Invalid("lon and lat are mapped together".into())),
        };
        let crs = Crs::parse(m.crs.as_deref())?;
        for attribute in m.units.keys() {
            if !m.attributes.contains_key(attribute) {
                return Err(MappingError::UnitWithoutAttribute { attribute: attribute.clone() });
            }
        }
        let mut attributes = Vec::with_capacity(m.attributes.len());
        for (name, path) in &m.attributes {
            if Observation::RESERVED_PROPERTIES.contains(&name.as_str()) || name.is_empty() {
                return Err(MappingError::Invalid(format!(
                    "attribute name {name:?} is empty or reserved ({})",
                    Observation::RESERVED_PROPERTIES.join(", ")
                )));
            }
            let unit = match m.units.get(name) {
                None => None,
                Some(u) => Some(Unit::parse(u).ok_or_else(|| MappingError::UnknownUnit {
                    attribute: name.clone(),
                    unit: u.clone(),
                    known: Unit::NAMES.iter().flat_map(|(_, n)| n.iter().copied()).collect::<Vec<_>>().join(", "),
                })?),
            };
            attributes.push(Attribute {
                name: name.clone(),
                path: parse_path(&format!("attributes.{name}"), path)?,
                unit,
            });
        }
        Ok(CompiledMapping {
            track,
            time,
            position,
            crs,
            attributes,
            max_future: DEFAULT_MAX_FUTURE,
            numbers_from_strings: false,
        })
    }

    /// Sets how far after `received` an event time may lie before it is `future_time`.
    pub fn with_max_future(mut self, skew: Duration) -> Self {
        self.max_future = skew;
        self
    }

    /// Whether numeric text in attributes becomes numbers (for text formats such as CSV).
    pub fn with_numbers_from_strings(mut self, on: bool) -> Self {
        self.numbers_from_strings = on;
        self
    }

    /// Whether the mapping says where the position is (lon/lat or a geometry path).
    pub fn has_position(&self) -> bool {
        !matches!(self.position, PositionSource::None)
    }

    /// The source CRS.
    pub fn crs(&self) -> &Crs {
        &self.crs
    }

    /// Every value of a record this mapping reads (track, time, position, attributes), for parsing
    /// only those ([`Projection::parse`]); `apply` gives the same result on the pruned record.
    pub fn projection(&self) -> Projection {
        let mut p = Projection::default();
        let paths =
            self.track.iter().chain(self.time.iter().map(|(t, _)| t)).chain(self.attributes.iter().map(|a| &a.path));
        let position: Vec<&Path> = match &self.position {
            PositionSource::None => Vec::new(),
            PositionSource::LonLat(lon, lat) => vec![lon, lat],
            PositionSource::Geometry(g) => vec![g],
        };
        for path in paths.chain(position) {
            p.keep(path);
        }
        p
    }

    /// Applies the mapping to one record.
    pub fn apply(&self, value: &Value, ctx: &Context) -> Result<Observation, Failure> {
        self.apply_with_geometry(value, None, ctx)
    }

    /// Applies the mapping to one record whose format carries a geometry of its own (a GeoJSON
    /// feature's `geometry`), used when the mapping names no position. `None` there means the
    /// record has no geometry (a `schema` failure).
    pub fn apply_with_geometry(
        &self,
        value: &Value,
        native_geometry: Option<&Value>,
        ctx: &Context,
    ) -> Result<Observation, Failure> {
        let native = match native_geometry {
            None | Some(Value::Null) => Native::Missing,
            Some(g) => Native::Json(g),
        };
        self.apply_native(value, native, ctx)
    }

    /// Like [`CompiledMapping::apply_with_geometry`] for formats whose geometry is decoded by the
    /// codec itself (Esri JSON) and whose coordinates are in a CRS the payload names rather than
    /// the mapping's: `geometry` is reprojected from `crs` and checked by the same rules as every
    /// other position. Used only when the mapping names no position.
    pub fn apply_with_native(
        &self,
        value: &Value,
        geometry: Option<GeometryValue>,
        crs: &Crs,
        ctx: &Context,
    ) -> Result<Observation, Failure> {
        let native = match geometry {
            None => Native::Missing,
            Some(g) => Native::Typed(g, crs),
        };
        self.apply_native(value, native, ctx)
    }

    fn apply_native(&self, value: &Value, native: Native<'_>, ctx: &Context) -> Result<Observation, Failure> {
        let track = self.track(value)?;
        let time = self.time(value, ctx)?;
        let geometry = match &self.position {
            PositionSource::LonLat(lon, lat) => {
                let x = number_at(value, lon, "lon")?;
                let y = number_at(value, lat, "lat")?;
                self.point(x, y)?
            }
            PositionSource::Geometry(p) => match p.resolve(value) {
                None | Some(Value::Null) => {
                    return Err(Failure::new(ReasonCode::Schema, format!("no geometry at {p}")));
                }
                Some(g) => self.geometry(g)?,
            },
            PositionSource::None => match native {
                Native::Missing => return Err(Failure::new(ReasonCode::Schema, "the record has no geometry")),
                Native::Json(g) => self.geometry(g)?,
                Native::Typed(g, crs) => self.checked_geometry(g, crs)?,
            },
        };
        let mut attributes = self.attributes(value)?;
        ctx.merge_source_attributes(&mut attributes);
        // `try_new` validates the content as `validate` does, without hashing the id a second time.
        Observation::try_new(ctx.feed.clone(), track, time, ctx.received, geometry, attributes)
            .map_err(|e| Failure::new(ReasonCode::Schema, e.to_string()))
    }

    fn track(&self, value: &Value) -> Result<Option<TrackId>, Failure> {
        let Some(p) = &self.track else { return Ok(None) };
        let text = match p.resolve(value) {
            None | Some(Value::Null) => return Err(Failure::new(ReasonCode::Schema, format!("no track id at {p}"))),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(Failure::new(
                    ReasonCode::Schema,
                    format!("track id at {p} is {}, not a string or number", kind(other)),
                ));
            }
        };
        TrackId::new(text).map(Some).map_err(|e| Failure::new(ReasonCode::Schema, format!("track id at {p}: {e}")))
    }

    fn time(&self, value: &Value, ctx: &Context) -> Result<OffsetDateTime, Failure> {
        let Some((p, parser)) = &self.time else { return Ok(ctx.received) };
        let v = match p.resolve(value) {
            None | Some(Value::Null) => return Err(Failure::new(ReasonCode::Schema, format!("no event time at {p}"))),
            Some(v) => v,
        };
        let t = parser.parse(v).map_err(|e| Failure::new(ReasonCode::InvalidTime, format!("time at {p}: {e}")))?;
        if !(0..=9999).contains(&t.year()) {
            return Err(Failure::new(ReasonCode::InvalidTime, format!("time at {p} is in year {}", t.year())));
        }
        let limit = ctx.received.checked_add(self.max_future);
        if limit.is_some_and(|l| t > l) {
            return Err(Failure::new(
                ReasonCode::FutureTime,
                format!("time at {p} is {t}, more than {} after receipt at {}", self.max_future, ctx.received),
            ));
        }
        Ok(t)
    }

    fn point(&self, x: f64, y: f64) -> Result<Geometry, Failure> {
        let mut pos = Position::from([x, y]);
        position(&self.crs, &mut pos)?;
        if pos[0] == 0.0 && pos[1] == 0.0 {
            return Err(Failure::new(ReasonCode::NullIsland, "position is exactly (0, 0): no fix"));
        }
        Ok(Geometry::new(GeometryValue::Point { coordinates: pos }))
    }

    fn geometry(&self, g: &Value) -> Result<Geometry, Failure> {
        if let Some(point) = plain_point(g) {
            return self.checked_geometry(point, &self.crs);
        }
        let parsed: Geometry = serde_json::from_value(g.clone())
            .map_err(|e| Failure::new(ReasonCode::Schema, format!("not a GeoJSON geometry: {e}")))?;
        self.checked_geometry(parsed.value, &self.crs)
    }

    /// Every position reprojected from `crs` and checked; a point at exactly (0, 0) is refused.
    fn checked_geometry(&self, mut value: GeometryValue, crs: &Crs) -> Result<Geometry, Failure> {
        positions(crs, &mut value)?;
        if let GeometryValue::Point { coordinates } = &value
            && coordinates[0] == 0.0
            && coordinates[1] == 0.0
        {
            return Err(Failure::new(ReasonCode::NullIsland, "position is exactly (0, 0): no fix"));
        }
        Ok(Geometry::new(value))
    }

    fn attributes(&self, value: &Value) -> Result<Map<String, Value>, Failure> {
        // Collected as a list and made a map at the end: `self.attributes` is sorted by name (it
        // comes from a `BTreeMap`), so building the map is one pass instead of a search and shift
        // per insert.
        let mut out = Vec::with_capacity(self.attributes.len());
        for a in &self.attributes {
            let v = match a.path.resolve(value) {
                None | Some(Value::Null) => continue,
                Some(v) => v,
            };
            let v = match a.unit {
                Some(unit) => {
                    let n = as_f64(v).ok_or_else(|| {
                        Failure::new(
                            ReasonCode::Schema,
                            format!("attribute {} at {} is {}, not a number in {unit:?}", a.name, a.path, kind(v)),
                        )
                    })?;
                    match Number::from_f64(unit.to_si(n)) {
                        Some(n) => Value::Number(n),
                        None => {
                            return Err(Failure::new(
                                ReasonCode::Schema,
                                format!("attribute {} at {} is not finite", a.name, a.path),
                            ));
                        }
                    }
                }
                None if self.numbers_from_strings => match v {
                    Value::String(s) => text_value(s),
                    other => other.clone(),
                },
                None => v.clone(),
            };
            out.push((a.name.clone(), v));
        }
        Ok(out.into_iter().collect())
    }
}

/// `{"type": "Point", "coordinates": [numbers...]}` with nothing else (the common case) read
/// directly, as the `geojson` crate reads it (integers converted with `as f64`, at least two
/// coordinates) but without cloning the value and going through its deserializer. Anything else
/// (other types, `bbox`, foreign members, odd coordinates) is `None` and goes the general way.
fn plain_point(g: &Value) -> Option<GeometryValue> {
    let obj = g.as_object().filter(|o| o.len() == 2)?;
    if obj.get("type")?.as_str()? != "Point" {
        return None;
    }
    let coords = obj.get("coordinates")?.as_array().filter(|c| c.len() >= 2)?;
    let coordinates = match coords.as_slice() {
        [Value::Number(x), Value::Number(y)] => Position::from([x.as_f64()?, y.as_f64()?]),
        _ => Position::from(coords.iter().map(|c| c.as_number()?.as_f64()).collect::<Option<Vec<f64>>>()?),
    };
    Some(GeometryValue::Point { coordinates })
}

/// Reprojects one position in place from `crs` to WGS84 and checks it.
fn position(crs: &Crs, pos: &mut Position) -> Result<(), Failure> {
    if pos.len() < 2 {
        return Err(Failure::new(ReasonCode::Schema, "a position has fewer than two coordinates"));
    }
    let (x, y) = (pos[0], pos[1]);
    if !(x.is_finite() && y.is_finite()) {
        return Err(Failure::new(ReasonCode::InvalidCoordinates, format!("coordinates ({x}, {y}) are not finite")));
    }
    let (lon, lat) = crs.to_wgs84(x, y).ok_or_else(|| {
        Failure::new(ReasonCode::InvalidCoordinates, format!("({x}, {y}) cannot be reprojected to WGS84"))
    })?;
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        return Err(Failure::new(
            ReasonCode::InvalidCoordinates,
            format!("longitude {lon} / latitude {lat} out of range"),
        ));
    }
    pos[0] = lon;
    pos[1] = lat;
    Ok(())
}

fn positions(crs: &Crs, g: &mut GeometryValue) -> Result<(), Failure> {
    match g {
        GeometryValue::Point { coordinates } => position(crs, coordinates),
        GeometryValue::MultiPoint { coordinates } | GeometryValue::LineString { coordinates } => {
            coordinates.iter_mut().try_for_each(|p| position(crs, p))
        }
        GeometryValue::MultiLineString { coordinates } | GeometryValue::Polygon { coordinates } => {
            coordinates.iter_mut().flatten().try_for_each(|p| position(crs, p))
        }
        GeometryValue::MultiPolygon { coordinates } => {
            coordinates.iter_mut().flatten().flatten().try_for_each(|p| position(crs, p))
        }
        GeometryValue::GeometryCollection { geometries } => {
            geometries.iter_mut().try_for_each(|g| positions(crs, &mut g.value))
        }
    }
}

/// A text cell as a JSON value: decimal numbers without a leading zero become numbers, `true` and
/// `false` booleans, everything else stays text.
fn text_value(s: &str) -> Value {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    let numeric = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && !digits.ends_with('.');
    if numeric && !leading_zero {
        if let Ok(i) = t.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Some(n) = t.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_owned())
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn number_at(value: &Value, p: &Path, what: &str) -> Result<f64, Failure> {
    match p.resolve(value) {
        None | Some(Value::Null) => Err(Failure::new(ReasonCode::Schema, format!("no {what} at {p}"))),
        Some(v) => as_f64(v)
            .ok_or_else(|| Failure::new(ReasonCode::Schema, format!("{what} at {p} is {}, not a number", kind(v)))),
    }
}

/// A JSON value's kind in words (`a string`, `an object`), for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::FeedId;
    use serde_json::json;

    fn ctx() -> Context {
        Context::new(FeedId::new("f").unwrap(), OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap())
    }

    fn mapping(v: Value) -> Mapping {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compile_errors() {
        let bad = [
            json!({"lon": "a..b", "lat": "y"}),
            json!({"lon": "x", "lat": "y", "attributes": {"s": "s"}, "units": {"s": "furlongs"}}),
            json!({"lon": "x", "lat": "y", "units": {"s": "knots"}}),
            json!({"lon": "x", "lat": "y", "crs": "EPSG:99999"}),
            json!({"lon": "x", "lat": "y", "time": "t", "time_format": {"custom": "[bogus]"}}),
            json!({"lon": "x", "lat": "y", "time_zone": "Nowhere/Land"}),
            json!({"lon": "x"}),
            json!({"lon": "x", "lat": "y", "attributes": {"time": "t"}}),
        ];
        for m in bad {
            assert!(CompiledMapping::new(&mapping(m.clone())).is_err(), "{m}");
        }
    }

    #[test]
    fn applies_everything() {
        let m = CompiledMapping::new(&mapping(json!({
            "track": "id", "time": "t", "time_format": "unix_s", "lon": "pos[0]", "lat": "pos[1]",
            "attributes": {"speed": "v", "name": "meta.\"n.x\"", "gone": "nope"},
            "units": {"speed": "knots"}
        })))
        .unwrap();
        let mut c = ctx();
        c.source_attributes.insert("topic".into(), json!("a/b"));
        c.source_attributes.insert("speed".into(), json!(1));
        let o = m
            .apply(&json!({"id": 42, "t": 1_699_999_000, "pos": [10.5, "-20.25"], "v": "10", "meta": {"n.x": "N"}}), &c)
            .unwrap();
        assert_eq!(o.track.unwrap().as_str(), "42");
        assert_eq!(o.time.unix_timestamp(), 1_699_999_000);
        let GeometryValue::Point { coordinates } = &o.geometry.value else { panic!() };
        assert_eq!(coordinates.as_slice(), &[10.5, -20.25]);
        assert!((o.attributes["speed"].as_f64().unwrap() - 5.144_444_444).abs() < 1e-6);
        assert_eq!(o.attributes["name"], json!("N"));
        assert_eq!(o.attributes["topic"], json!("a/b"));
        assert!(!o.attributes.contains_key("gone"));
    }

    #[test]
    fn reasons() {
        let m = CompiledMapping::new(&mapping(json!({"track": "id", "time": "t", "lon": "x", "lat": "y", "attributes": {"s": "s"}, "units": {"s": "kmh"}}))).unwrap();
        let c = ctx();
        let ok = json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": 1, "y": 2});
        assert!(m.apply(&ok, &c).is_ok());
        let cases = [
            (json!({"t": "2023-11-14T22:00:00Z", "x": 1, "y": 2}), ReasonCode::Schema),
            (json!({"id": null, "t": "2023-11-14T22:00:00Z", "x": 1, "y": 2}), ReasonCode::Schema),
            (json!({"id": "a", "x": 1, "y": 2}), ReasonCode::Schema),
            (json!({"id": "a", "t": "yesterday", "x": 1, "y": 2}), ReasonCode::InvalidTime),
            (json!({"id": "a", "t": "2023-11-16T22:00:00Z", "x": 1, "y": 2}), ReasonCode::FutureTime),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": 181, "y": 2}), ReasonCode::InvalidCoordinates),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": 1, "y": -90.5}), ReasonCode::InvalidCoordinates),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": "NaN", "y": 2}), ReasonCode::InvalidCoordinates),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": 0, "y": 0.0}), ReasonCode::NullIsland),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": "east", "y": 2}), ReasonCode::Schema),
            (json!({"id": "a", "t": "2023-11-14T22:00:00Z", "x": 1, "y": 2, "s": "fast"}), ReasonCode::Schema),
            (json!({"id": "", "t": "2023-11-14T22:00:00Z", "x": 1, "y": 2}), ReasonCode::Schema),
        ];
        for (v, want) in cases {
            assert_eq!(m.apply(&v, &c).unwrap_err().reason, want, "{v}");
        }
        // Within the skew is fine; a tighter skew rejects it.
        let soon = json!({"id": "a", "t": "2023-11-15T00:00:00Z", "x": 1, "y": 2});
        assert!(m.apply(&soon, &c).is_ok());
        let tight = CompiledMapping::new(&mapping(json!({"time": "t", "lon": "x", "lat": "y"})))
            .unwrap()
            .with_max_future(Duration::minutes(5));
        assert_eq!(tight.apply(&soon, &c).unwrap_err().reason, ReasonCode::FutureTime);
        // No time path: the received time.
        let nt = CompiledMapping::new(&mapping(json!({"lon": "x", "lat": "y"}))).unwrap();
        assert_eq!(nt.apply(&ok, &c).unwrap().time, c.received);
    }

    #[test]
    fn geometry_path_with_crs() {
        let m = CompiledMapping::new(&mapping(json!({"geometry": "g", "crs": "EPSG:3857"}))).unwrap();
        let o = m
            .apply(
                &json!({"g": {"type": "LineString", "coordinates": [[1113194.9079327357, 6446275.841017158], [0, 1]]}}),
                &ctx(),
            )
            .unwrap();
        let GeometryValue::LineString { coordinates } = &o.geometry.value else { panic!() };
        assert!((coordinates[0][0] - 10.0).abs() < 1e-9 && (coordinates[0][1] - 50.0).abs() < 1e-9);
        assert_eq!(m.apply(&json!({"g": {"type": "Blob"}}), &ctx()).unwrap_err().reason, ReasonCode::Schema);
        assert_eq!(m.apply(&json!({"g": null}), &ctx()).unwrap_err().reason, ReasonCode::Schema);
    }

    #[test]
    fn text_values() {
        assert_eq!(text_value("12"), json!(12));
        assert_eq!(text_value("-1.5"), json!(-1.5));
        assert_eq!(text_value("0.5"), json!(0.5));
        assert_eq!(text_value("0"), json!(0));
        assert_eq!(text_value("0123"), json!("0123"));
        assert_eq!(text_value("False"), json!(false));
        assert_eq!(text_value("1e5"), json!("1e5"));
        assert_eq!(text_value("AFR21SQ"), json!("AFR21SQ"));
        assert_eq!(text_value("3."), json!("3."));
    }
}

//! SQL over the observations of one closed event-time window, for the `sql` analytic: DataFusion
//! with geo and attribute functions, each result row an [`Aggregate`](geostream_model::Aggregate) of kind `sql` with a
//! deterministic id. The analytics engine reaches it through its
//! [`WindowSql`](geostream_analytics::engine::WindowSql) trait, so the pure analytics core does
//! not build DataFusion.
//!
//! Must not: read or write files or the network (DDL, DML and `SET` are refused, no object
//! store or URL tables are registered), let the wall clock or randomness into results (queries
//! using `now()`, `random()`, `uuid()` or any other non-immutable function are refused; window
//! bounds are columns), panic on any input or query (DataFusion runs on
//! a thread of its own and a panic there is returned as [`SqlError::Panicked`]), or emit two
//! aggregates with one id in a window (a duplicate key is an error). Results depend on the query
//! and the observations alone: one partition, output sorted by bin key.
//!
//! ```
//! use geostream_model::geojson::Geometry;
//! use geostream_model::time::OffsetDateTime;
//! use geostream_model::{AnalyticId, FeedId, Observation, Window};
//! use geostream_sql::WindowQuery;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let q = WindowQuery::new(
//!     AnalyticId::new("per-feed")?,
//!     "SELECT feed, count(*) AS count, avg(attr_f64(attributes, 'speed')) AS speed FROM observations GROUP BY feed",
//! )?;
//! let t = OffsetDateTime::from_unix_timestamp(1_714_564_800)?;
//! let window = Window::new(t, t + std::time::Duration::from_secs(60))?;
//! let mut speed = serde_json::Map::new();
//! speed.insert("speed".into(), 4.0.into());
//! let obs = Observation::try_new(FeedId::new("ais")?, None, t, t, Geometry::new_point([10.4, 63.4]), speed)?;
//! let aggs = q.run(&window, &[obs])?;
//! assert_eq!((aggs[0].bin.as_str(), aggs[0].count, aggs[0].values["speed"]), ("ais", 1, 4.0));
//! # Ok(())
//! # }
//! ```
//!
//! # The `observations` table
//!
//! One row per observation of the window, in the order given:
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | Utf8 | the observation id (32 hex digits) |
//! | `feed` | Utf8 | |
//! | `track` | Utf8, nullable | |
//! | `time`, `received` | Timestamp(ns, UTC) | event time, receive time |
//! | `lon`, `lat` | Float64, nullable | null when the geometry is not a Point |
//! | `geometry` | Utf8 | the GeoJSON geometry |
//! | `attributes` | Utf8 | the attributes as a JSON object |
//! | `window_start`, `window_end` | Timestamp(ns, UTC) | the window, the same on every row |
//!
//! # Functions
//!
//! A *point* is OGC WKB (Binary, a 21-byte 2D Point), what `st_point` returns; wherever a point
//! is expected GeoJSON text works too, so `st_x(geometry)` reads the observation's geometry. A
//! well-formed geometry that is not a Point gives null, like `lon`/`lat`. Null in, null out; a
//! malformed argument (bad WKB or GeoJSON, coordinates out of range, a precision out of range)
//! fails the query with a message naming the function and the argument; a wrong argument type
//! is refused when the query is planned.
//!
//! | function | returns | |
//! |---|---|---|
//! | `st_point(lon, lat)` | Binary (WKB) | lon in [-180, 180], lat in [-90, 90] |
//! | `st_x(p)`, `st_y(p)` | Float64 | longitude, latitude |
//! | `st_within(p, polygon)` | Boolean | `polygon` is GeoJSON text of a Polygon or MultiPolygon; geo's `Contains` (a point on the boundary is outside) |
//! | `st_distance(a, b)` | Float64 | metres, haversine (geo) |
//! | `st_geohash(p, precision)` | Utf8 | precision 1 to 12 (the `geohash` crate) |
//! | `h3_cell(p, resolution)` | Utf8 | resolution 0 to 15, the cell index in hex (`h3o`) |
//! | `attr_f64(attributes, name)` | Float64 | null when missing or not a number |
//! | `attr_str(attributes, name)` | Utf8 | null when missing or not a string |
//!
//! DataFusion's own functions are there too: aggregates (`count`, `avg`, `min`, `max`, `sum`,
//! `stddev`, `approx_percentile_cont`, ...), math, string and date/time functions (`date_bin`,
//! `date_trunc`; `date_bin` takes only a literal origin). Left out of the build: regex, crypto,
//! encoding, unicode and nested (array) functions.
//!
//! # Result rows to aggregates
//!
//! - The bin key: a column named `key` (any type, rendered as text); without one, the values of
//!   every column that is neither numeric nor one of the columns below, rendered as text (null as
//!   empty) and joined with `|` in column order (e.g. `u4pru|ais`). The id hashes analytic,
//!   window and key, so two rows with one key in a window are an error naming the key.
//! - `count` (an integer column) → the aggregate's count (0 when absent or null).
//! - `geometry` (a point, or GeoJSON text of any geometry) → the aggregate's geometry; without
//!   it, numeric `lon` and `lat` columns → a Point. Null → no geometry.
//! - Every other numeric column → `values[name]` as f64 (null → left out; NaN or infinity is an
//!   error, JSON has none).
//! - Every other column → `attributes[name]` (text, booleans as JSON booleans, null as null); a
//!   name the aggregate uses itself (`kind`, `window`, `bin`, ...) is refused at planning.
//!
//! Every aggregate is checked with [`Aggregate::validate`](geostream_model::Aggregate::validate); results come sorted by key.

mod error;
mod functions;
mod point;
mod query;
mod results;
mod table;

pub use error::SqlError;
pub use query::{WindowQuery, factory, runner};
pub use table::{TABLE, schema};

//! What the `sql` fuzz target checks: the query text of a `sql` analytic, as a tenant registers it,
//! is either refused with a message or accepted; an accepted query then runs over a fixed window of
//! observations (and an empty one) without taking the process down, gives the same answer twice
//! (aggregate ids depend on it) and every aggregate it makes validates.
//!
//! DataFusion runs each query on a thread of its own and a panic there becomes an error
//! (`SqlError::Panicked`), which is how the processor survives one. libFuzzer's panic hook would
//! abort first, so [`install_panic_hook`] lets panics on that thread unwind to where they are
//! caught, and aborts on any other (an assertion here, a panic in geostream's own code).

use std::sync::Once;
use std::time::Duration;

use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::OffsetDateTime;
use geostream_model::{AnalyticId, FeedId, Observation, TrackId, Window};
use geostream_sql::{SqlError, WindowQuery};
use serde_json::{Map, Value, json};

/// The thread `geostream-sql` runs DataFusion on (`services/sql/src/query.rs`).
const QUERY_THREAD: &str = "geostream-sql";

/// Installs the panic hook described in the module documentation; once per process.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(QUERY_THREAD) {
                // Caught by the query's own join and reported as SqlError::Panicked.
                return;
            }
            default(info);
            std::process::abort();
        }));
    });
}

const T0: i64 = 1_714_564_800;

fn window() -> Window {
    let t = OffsetDateTime::from_unix_timestamp(T0).unwrap_or_else(|e| panic!("fixture time: {e}"));
    Window::new(t, t + Duration::from_secs(600)).unwrap_or_else(|e| panic!("fixture window: {e}"))
}

fn observation(feed: &str, track: Option<&str>, dt: i64, geometry: Geometry, attrs: Value) -> Observation {
    let t = OffsetDateTime::from_unix_timestamp(T0 + dt).unwrap_or_else(|e| panic!("fixture time: {e}"));
    let attrs: Map<String, Value> = attrs.as_object().cloned().unwrap_or_default();
    let feed = FeedId::new(feed).unwrap_or_else(|e| panic!("fixture feed: {e}"));
    let track = track.map(|t| TrackId::new(t).unwrap_or_else(|e| panic!("fixture track: {e}")));
    Observation::try_new(feed, track, t, t, geometry, attrs).unwrap_or_else(|e| panic!("fixture observation: {e}"))
}

/// Two feeds around two harbours and across the antimeridian, numeric, text and missing
/// attributes, a track-less LineString.
fn observations() -> Vec<Observation> {
    let p = |lon: f64, lat: f64| Geometry::new_point([lon, lat]);
    vec![
        observation("ais", Some("v1"), 0, p(10.39, 63.43), json!({"speed": 4.5, "name": "Nordkapp"})),
        observation("ais", Some("v1"), 60, p(10.41, 63.44), json!({"speed": 5.0})),
        observation("ais", Some("v2"), 30, p(179.999, -16.5), json!({"speed": "fast"})),
        observation("adsb", Some("a1"), 10, p(5.32, 60.39), json!({"altitude_m": 1200, "onground": false})),
        observation("adsb", Some("a1"), 70, p(-179.999, -16.6), json!({})),
        observation("adsb", Some("a2"), 599, p(0.0, 0.0), json!({"speed": -1e308, "tags": [1, "x"], "n": null})),
        observation(
            "ais",
            None,
            5,
            Geometry::new(GeometryValue::new_line_string([[10.4, 63.4], [10.5, 63.5]])),
            json!({"speed": 3.5}),
        ),
    ]
}

/// Checks one query text (see the module documentation).
pub fn check(text: &str) {
    let analytic = AnalyticId::new("fuzz-sql").unwrap_or_else(|e| panic!("fixture id: {e}"));
    let query = match WindowQuery::new(analytic, text) {
        Ok(q) => q,
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "query refused without a message");
            if let SqlError::Panicked { message, .. } = &e {
                eprintln!("datafusion panicked (caught) planning {text:?}: {message}");
            }
            return;
        }
    };
    let (w, obs) = (window(), observations());
    let first = query.run(&w, &obs);
    let second = query.run(&w, &obs);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the same window gave two answers for {text:?}");
            for agg in a {
                if let Err(e) = agg.validate() {
                    panic!("an aggregate of {text:?} does not validate: {e}\n{agg:?}");
                }
            }
        }
        (Err(a), Err(b)) => {
            assert!(!a.to_string().trim().is_empty(), "window refused without a message");
            assert_eq!(a.to_string(), b.to_string(), "the same window failed two ways for {text:?}");
        }
        _ => panic!("the same window once ran and once failed for {text:?}: {first:?} / {second:?}"),
    }
    // An empty window: no rows, no panic.
    if let Err(e) = query.run(&w, &[]) {
        assert!(!e.to_string().trim().is_empty(), "empty window refused without a message");
    }
}

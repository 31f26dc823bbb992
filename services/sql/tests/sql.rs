//! The crate through its public API: functions, the result mapping, refusals, determinism, and
//! calls from inside a tokio runtime. Expectations are computed here from the observations with
//! plain Rust (or the reference crates directly), never typed in by hand.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::OffsetDateTime;
use geostream_model::{AggregateKind, AnalyticId, Classify, ErrorClass, FeedId, Observation, TrackId, Window};
use geostream_sql::{SqlError, WindowQuery, factory};
use serde_json::{Value, json};

const T0: i64 = 1_714_564_800;

fn window() -> Window {
    let t = OffsetDateTime::from_unix_timestamp(T0).unwrap();
    Window::new(t, t + Duration::from_secs(3600)).unwrap()
}

fn obs(feed: &str, track: Option<&str>, dt: i64, geometry: Geometry, attrs: Value) -> Observation {
    let t = OffsetDateTime::from_unix_timestamp(T0 + dt).unwrap();
    let Value::Object(attrs) = attrs else { panic!("attributes must be an object") };
    Observation::try_new(FeedId::new(feed).unwrap(), track.map(|t| TrackId::new(t).unwrap()), t, t, geometry, attrs)
        .unwrap()
}

fn point(lon: f64, lat: f64) -> Geometry {
    Geometry::new_point([lon, lat])
}

/// A deterministic spread of points around two harbours, two feeds, some without speed, some
/// with a text speed, one LineString.
fn sample() -> Vec<Observation> {
    let mut out = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift: reproducible without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..300 {
        let (feed, base) = if i % 3 == 0 { ("ais", (10.39, 63.43)) } else { ("adsb", (5.32, 60.39)) };
        let lon = base.0 + next() * 0.6;
        let lat = base.1 + next() * 0.3;
        let attrs = match i % 7 {
            0 => json!({}),
            1 => json!({"speed": "fast"}),
            _ => json!({"speed": (next() * 200.0).round() / 10.0, "name": format!("v{}", i % 5)}),
        };
        out.push(obs(feed, Some(&format!("t{}", i % 11)), i, point(lon, lat), attrs));
    }
    out.push(obs(
        "ais",
        None,
        5,
        Geometry::new(GeometryValue::new_line_string([[10.4, 63.4], [10.5, 63.5]])),
        json!({"speed": 3.5}),
    ));
    out
}

fn q(sql: &str) -> WindowQuery {
    WindowQuery::new(AnalyticId::new("test-sql").unwrap(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(sql: &str) -> String {
    match WindowQuery::new(AnalyticId::new("test-sql").unwrap(), sql) {
        Ok(_) => panic!("{sql} was accepted"),
        Err(e) => {
            assert!(matches!(e, SqlError::Query { .. }), "{sql}: {e:?}");
            assert_eq!(e.class(), ErrorClass::User);
            assert!(!e.retryable());
            let msg = e.to_string();
            assert!(msg.contains("\"test-sql\""), "the message names the analytic: {msg}");
            msg
        }
    }
}

fn run_err(sql: &str, data: &[Observation]) -> String {
    match q(sql).run(&window(), data) {
        Ok(r) => panic!("{sql} ran: {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn lon_lat(o: &Observation) -> Option<(f64, f64)> {
    match &o.geometry.value {
        GeometryValue::Point { coordinates } => Some((coordinates[0], coordinates[1])),
        _ => None,
    }
}

/// Rows keyed by observation id: the test's query selects `id AS key`.
fn by_id(sql: &str, data: &[Observation]) -> BTreeMap<String, geostream_model::Aggregate> {
    q(sql).run(&window(), data).unwrap().into_iter().map(|a| (a.bin.clone(), a)).collect()
}

#[test]
fn the_example_per_cell_statistics_match_a_plain_computation() {
    let data = sample();
    let aggs = q("SELECT st_geohash(st_point(lon, lat), 5) AS cell, feed, count(*) AS count, \
         avg(attr_f64(attributes,'speed')) AS avg_speed FROM observations GROUP BY cell, feed")
    .run(&window(), &data)
    .unwrap();

    // (cell, feed) -> (count, speeds); the LineString has no cell, so it groups under a null cell.
    let mut want: BTreeMap<String, (u64, Vec<f64>)> = BTreeMap::new();
    for o in &data {
        let cell = lon_lat(o).map(|(x, y)| geohash::encode(geohash::Coord { x, y }, 5).unwrap()).unwrap_or_default();
        let e = want.entry(format!("{cell}|{}", o.feed.as_str())).or_default();
        e.0 += 1;
        if let Some(s) = o.attributes.get("speed").and_then(Value::as_f64) {
            e.1.push(s);
        }
    }
    assert!(want.len() > 4, "the sample spreads over several cells: {want:?}");
    assert_eq!(aggs.len(), want.len());
    let got: BTreeMap<_, _> = aggs.iter().map(|a| (a.bin.clone(), a)).collect();
    for (key, (count, speeds)) in &want {
        let a = got.get(key).unwrap_or_else(|| panic!("no aggregate for {key}; got {:?}", got.keys()));
        assert_eq!(a.kind, AggregateKind::Sql);
        assert_eq!(a.window, window());
        assert_eq!(a.count, *count, "{key}");
        if speeds.is_empty() {
            assert!(!a.values.contains_key("avg_speed"), "{key}: no speeds, so avg is null and left out");
        } else {
            let mean = speeds.iter().sum::<f64>() / speeds.len() as f64;
            assert!((a.values["avg_speed"] - mean).abs() < 1e-9, "{key}: {} vs {mean}", a.values["avg_speed"]);
        }
        let (cell, feed) = key.split_once('|').unwrap();
        assert_eq!(a.attributes["feed"], json!(feed));
        if cell.is_empty() {
            assert_eq!(a.attributes["cell"], Value::Null);
        } else {
            assert_eq!(a.attributes["cell"], json!(cell));
        }
        assert_eq!(a.geometry, None);
        a.validate().unwrap();
    }
    let total: u64 = aggs.iter().map(|a| a.count).sum();
    assert_eq!(total, data.len() as u64);
}

#[test]
fn st_point_st_x_st_y_round_trip_and_read_geojson() {
    let data = sample();
    let got = by_id(
        "SELECT id AS key, st_x(st_point(lon, lat)) AS x, st_y(st_point(lon, lat)) AS y, \
         st_x(geometry) AS gx, st_y(geometry) AS gy FROM observations",
        &data,
    );
    assert_eq!(got.len(), data.len());
    for o in &data {
        let a = &got[&o.id.to_string()];
        match lon_lat(o) {
            Some((x, y)) => {
                for (name, want) in [("x", x), ("y", y), ("gx", x), ("gy", y)] {
                    assert_eq!(a.values.get(name), Some(&want), "{name} of {}", o.id);
                }
            }
            None => assert!(a.values.is_empty(), "a LineString has no x or y: {:?}", a.values),
        }
    }
}

#[test]
fn st_distance_is_haversine_metres() {
    let data = sample();
    let (x0, y0) = (10.3951, 63.4305);
    let got = by_id(
        &format!("SELECT id AS key, st_distance(st_point(lon, lat), st_point({x0}, {y0})) AS d FROM observations"),
        &data,
    );
    // The haversine formula written out, with the IUGG mean radius geo documents.
    let hav = |(x1, y1): (f64, f64), (x2, y2): (f64, f64)| {
        let (p1, p2) = (y1.to_radians(), y2.to_radians());
        let a = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((x2 - x1).to_radians() / 2.0).sin().powi(2);
        2.0 * 6_371_008.8 * a.sqrt().asin()
    };
    let mut far = 0;
    for o in &data {
        let a = &got[&o.id.to_string()];
        match lon_lat(o) {
            Some(p) => {
                let want = hav(p, (x0, y0));
                let d = a.values["d"];
                assert!((d - want).abs() <= want * 1e-9 + 1e-6, "{d} vs {want}");
                far += usize::from(d > 100_000.0);
            }
            None => assert!(!a.values.contains_key("d")),
        }
    }
    assert!(far > 0, "the second harbour is hundreds of km away");
}

#[test]
fn st_within_uses_contains_and_a_multipolygon_works() {
    let data = sample();
    // Two boxes, one around part of each harbour.
    let (a, b) = ([10.4, 63.45, 10.7, 63.6], [5.3, 60.4, 5.5, 60.5]);
    let ring = |r: [f64; 4]| json!([[[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]], [r[0], r[1]]]]);
    let poly = json!({"type": "Polygon", "coordinates": ring(a)}).to_string();
    let multi = json!({"type": "MultiPolygon", "coordinates": [ring(a), ring(b)]}).to_string();
    let got = by_id(
        &format!(
            "SELECT id AS key, st_within(st_point(lon, lat), '{poly}') AS in_a, \
             st_within(geometry, '{multi}') AS in_ab FROM observations"
        ),
        &data,
    );
    let inside = |r: [f64; 4], (x, y): (f64, f64)| r[0] < x && x < r[2] && r[1] < y && y < r[3];
    let (mut n_a, mut n_ab) = (0, 0);
    for o in &data {
        let g = &got[&o.id.to_string()];
        match lon_lat(o) {
            Some(p) => {
                let (want_a, want_ab) = (inside(a, p), inside(a, p) || inside(b, p));
                assert_eq!(g.attributes["in_a"], json!(want_a), "{p:?}");
                assert_eq!(g.attributes["in_ab"], json!(want_ab), "{p:?}");
                n_a += usize::from(want_a);
                n_ab += usize::from(want_ab);
            }
            None => {
                assert_eq!(g.attributes["in_a"], Value::Null);
                assert_eq!(g.attributes["in_ab"], Value::Null);
            }
        }
    }
    assert!(0 < n_a && n_a < n_ab && n_ab < data.len(), "{n_a} {n_ab}: the boxes must split the sample");
}

#[test]
fn cells_match_the_geohash_and_h3o_crates() {
    let data = sample();
    let got = by_id(
        "SELECT id AS key, st_geohash(st_point(lon, lat), 7) AS gh, h3_cell(geometry, 9) AS h3 FROM observations",
        &data,
    );
    for o in &data {
        let a = &got[&o.id.to_string()];
        match lon_lat(o) {
            Some((x, y)) => {
                let gh = geohash::encode(geohash::Coord { x, y }, 7).unwrap();
                let cell = h3o::LatLng::new(y, x).unwrap().to_cell(h3o::Resolution::Nine);
                assert_eq!(a.attributes["gh"], json!(gh));
                assert_eq!(a.attributes["h3"], json!(cell.to_string()));
                // And independently of the encoder: the cell contains the point.
                let r = geohash::decode_bbox(&gh).unwrap();
                assert!(r.min().x <= x && x <= r.max().x && r.min().y <= y && y <= r.max().y);
                let parsed: h3o::CellIndex = a.attributes["h3"].as_str().unwrap().parse().unwrap();
                assert_eq!(parsed.resolution(), h3o::Resolution::Nine);
            }
            None => assert_eq!((&a.attributes["gh"], &a.attributes["h3"]), (&Value::Null, &Value::Null)),
        }
    }
}

#[test]
fn attributes_are_read_and_missing_or_mistyped_ones_are_null() {
    let data = sample();
    let got = by_id(
        "SELECT id AS key, attr_f64(attributes, 'speed') AS speed, attr_str(attributes, 'name') AS name, \
         attr_str(attributes, 'speed') AS speed_text, attr_f64(attributes, 'nope') AS nope FROM observations",
        &data,
    );
    let (mut numbers, mut texts) = (0, 0);
    for o in &data {
        let a = &got[&o.id.to_string()];
        let speed = o.attributes.get("speed");
        assert_eq!(a.values.get("speed").copied(), speed.and_then(Value::as_f64));
        assert_eq!(a.attributes["speed_text"], speed.filter(|v| v.is_string()).cloned().unwrap_or(Value::Null));
        assert_eq!(a.attributes["name"], o.attributes.get("name").cloned().unwrap_or(Value::Null));
        assert!(!a.values.contains_key("nope"));
        numbers += usize::from(speed.is_some_and(Value::is_number));
        texts += usize::from(speed.is_some_and(Value::is_string));
    }
    assert!(numbers > 0 && texts > 0);
}

#[test]
fn null_arguments_give_null() {
    let data = sample();
    let got =
        q("SELECT id AS key, st_x(NULL) AS a, st_point(NULL, lat) AS p, st_geohash(st_point(lon, lat), NULL) AS b, \
         h3_cell(NULL, 5) AS c, st_distance(st_point(lon, lat), NULL) AS d, st_within(NULL, NULL) AS e, \
         attr_f64(NULL, 'speed') AS f, attr_str(attributes, NULL) AS g FROM observations LIMIT 3")
        .run(&window(), &data)
        .unwrap();
    assert_eq!(got.len(), 3);
    for a in got {
        assert!(a.values.is_empty(), "{:?}", a.values);
        for name in ["p", "b", "c", "e", "g"] {
            assert_eq!(a.attributes[name], Value::Null, "{name}");
        }
    }
}

#[test]
fn bad_arguments_are_errors_naming_the_function() {
    let data = sample();
    for (sql, needle) in [
        // `CAST(lon ...) * 0` keeps the level per row, out of the reach of constant folding.
        (
            "SELECT id AS key, st_geohash(st_point(lon, lat), CAST(lon AS BIGINT) * 0 + 13) AS g FROM observations",
            "precision 13",
        ),
        (
            "SELECT id AS key, h3_cell(st_point(lon, lat), CAST(lon AS BIGINT) * 0 + 16) AS g FROM observations",
            "resolution 16",
        ),
        ("SELECT id AS key, st_point(lon + 200, lat) AS p FROM observations", "longitude"),
        ("SELECT id AS key, st_x(feed) AS x FROM observations", "st_x"),
        ("SELECT id AS key, st_within(st_point(lon, lat), feed) AS w FROM observations", "st_within"),
        ("SELECT id AS key, attr_f64(feed, 'x') AS x FROM observations", "attr_f64"),
    ] {
        let msg = run_err(sql, &data);
        assert!(msg.contains(needle), "{sql}: {msg}");
        assert!(msg.contains("\"test-sql\""), "{msg}");
    }
    // Constant arguments are folded at planning, so these are refused at registration already.
    for (sql, needle) in [
        ("SELECT st_geohash(st_point(1, 2), 13) AS g FROM observations", "precision 13"),
        ("SELECT h3_cell(st_point(1, 2), -1) AS g FROM observations", "resolution -1"),
        ("SELECT st_point(1, 95) AS g FROM observations", "latitude 95"),
        ("SELECT st_x('{\"type\":') AS x FROM observations", "st_x"),
        ("SELECT st_x(X'0102') AS x FROM observations", "st_x"),
        (
            "SELECT st_within(st_point(1, 2), '{\"type\":\"Point\",\"coordinates\":[1,2]}') AS w FROM observations",
            "Polygon",
        ),
    ] {
        let msg = refused(sql);
        assert!(msg.contains(needle), "{sql}: {msg}");
    }
}

#[test]
fn wrong_types_and_arity_are_refused_at_registration() {
    for (sql, needle) in [
        ("SELECT st_x(1) AS x FROM observations", "st_x: argument 1 must be a point"),
        ("SELECT st_point('a', lat) AS p FROM observations", "st_point: argument 1 must be a number"),
        ("SELECT st_geohash(st_point(lon, lat), 5.5) AS g FROM observations", "argument 2 must be an integer"),
        ("SELECT attr_f64(attributes) AS a FROM observations", "attr_f64 takes 2 argument(s), got 1"),
        ("SELECT attr_str(attributes, 1) AS a FROM observations", "attr_str: argument 2 must be text"),
    ] {
        let msg = refused(sql);
        assert!(msg.contains(needle), "{sql}: {msg}");
    }
}

#[test]
fn a_bad_query_is_refused_at_registration_naming_the_column() {
    let msg = refused("SELECT feed, count(*) AS count FROM observations WHERE speeed > 3 GROUP BY feed");
    assert!(msg.contains("speeed"), "{msg}");
    let msg = refused("SELEC feed FROM observations");
    assert!(msg.to_lowercase().contains("selec"), "{msg}");
    let msg = refused("SELECT no_such_function(lon) FROM observations");
    assert!(msg.contains("no_such_function"), "{msg}");
    let msg = refused("SELECT feed, avg(lon) AS count FROM observations GROUP BY feed");
    assert!(msg.contains("\"count\""), "{msg}");
    let msg = refused("SELECT feed AS bin FROM observations");
    assert!(msg.contains("\"bin\""), "{msg}");
}

#[test]
fn statements_that_are_not_queries_are_refused() {
    let dir = std::env::temp_dir().join(format!("geostream-sql-copy-{}", std::process::id()));
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE observations",
        &format!("COPY (SELECT 1) TO '{}' STORED AS CSV", dir.display()),
        "SET datafusion.execution.target_partitions = 4",
        "SELECT 1; SELECT 2",
    ] {
        refused(sql);
    }
    assert!(!dir.exists(), "COPY must not have written anything");
}

#[test]
fn duplicate_keys_are_refused_naming_the_key() {
    let data = sample();
    let msg = run_err("SELECT 'same' AS key, count(*) AS count FROM observations GROUP BY feed", &data);
    assert!(msg.contains("\"same\""), "{msg}");
    // Numeric columns are not part of the key, so grouping by a number alone collides too.
    let msg = run_err(
        "SELECT feed, CAST(lon * 10 AS BIGINT) AS tenth, count(*) AS count FROM observations GROUP BY feed, tenth",
        &data,
    );
    assert!(msg.contains("two result rows have the key"), "{msg}");
}

#[test]
fn runs_are_deterministic_ids_included() {
    let data = sample();
    let sql = "SELECT h3_cell(st_point(lon, lat), 6) AS cell, feed, count(*) AS count, \
               avg(attr_f64(attributes, 'speed')) AS speed, st_point(avg(lon), avg(lat)) AS geometry \
               FROM observations WHERE lon IS NOT NULL GROUP BY cell, feed";
    let first = q(sql).run(&window(), &data).unwrap();
    let again = q(sql);
    assert_eq!(again.run(&window(), &data).unwrap(), first);
    assert_eq!(again.run(&window(), &data).unwrap(), first);
    assert!(first.len() > 2);
    let mut ids: Vec<_> = first.iter().map(|a| a.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), first.len());
    let bins: Vec<_> = first.iter().map(|a| a.bin.clone()).collect();
    let mut sorted = bins.clone();
    sorted.sort();
    assert_eq!(bins, sorted, "sorted by key");
    // The id is the model's: analytic, window and key, nothing else.
    for a in &first {
        let fresh = geostream_model::Aggregate::new(AggregateKind::Sql, a.analytic.clone(), a.window, a.bin.clone());
        assert_eq!(a.id, fresh.id);
    }
    // Another window, other ids.
    let t = window().end;
    let later = Window::new(t, t + Duration::from_secs(3600)).unwrap();
    let other = q(sql).run(&later, &data).unwrap();
    assert_eq!(other.len(), first.len());
    assert!(other.iter().zip(&first).all(|(a, b)| a.bin == b.bin && a.id != b.id));
}

#[test]
fn geometry_comes_from_a_point_column_or_lon_lat() {
    let data = sample();
    let mut want: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for o in &data {
        if let Some((x, y)) = lon_lat(o) {
            let e = want.entry(o.feed.as_str()).or_default();
            *e = (e.0 + x, e.1 + y, e.2 + 1.0);
        }
    }
    for sql in [
        "SELECT feed, st_point(avg(lon), avg(lat)) AS geometry FROM observations GROUP BY feed",
        "SELECT feed, avg(lon) AS lon, avg(lat) AS lat FROM observations GROUP BY feed",
    ] {
        let got = q(sql).run(&window(), &data).unwrap();
        assert_eq!(got.len(), want.len());
        for a in got {
            let (sx, sy, n) = want[a.bin.as_str()];
            let Some(GeometryValue::Point { coordinates }) = a.geometry.as_ref().map(|g| &g.value) else {
                panic!("{sql}: no point: {:?}", a.geometry)
            };
            assert!((coordinates[0] - sx / n).abs() < 1e-9 && (coordinates[1] - sy / n).abs() < 1e-9);
            assert!(a.values.is_empty(), "lon/lat went to the geometry, not the values: {:?}", a.values);
        }
    }
}

#[test]
fn window_columns_and_an_empty_window() {
    let got =
        q("SELECT window_start, window_end, count(*) AS count FROM observations GROUP BY window_start, window_end")
            .run(&window(), &sample())
            .unwrap();
    assert_eq!(got.len(), 1);
    use geostream_model::time::format_description::well_known::Rfc3339;
    let start = window().start.format(&Rfc3339).unwrap();
    assert_eq!(got[0].attributes["window_start"], json!(start));
    assert_eq!(got[0].count, sample().len() as u64);

    let empty = q("SELECT count(*) AS count FROM observations").run(&window(), &[]).unwrap();
    assert_eq!(empty.len(), 1);
    assert_eq!((empty[0].bin.as_str(), empty[0].count), ("", 0));
    let none = q("SELECT feed, count(*) AS count FROM observations GROUP BY feed").run(&window(), &[]).unwrap();
    assert!(none.is_empty());
}

#[test]
fn non_finite_values_are_refused() {
    let msg = run_err("SELECT feed, ln(0.0) + count(*) AS v FROM observations GROUP BY feed", &sample());
    assert!(msg.contains("values.v"), "{msg}");
}

#[test]
fn the_factory_builds_a_window_sql_and_refuses_bad_queries() {
    let make = factory();
    type Factory =
        dyn Fn(&AnalyticId, &str) -> Result<Box<dyn geostream_analytics::engine::WindowSql>, String> + Send + Sync;
    let boxed: Box<Factory> = Box::new(factory());
    let id = AnalyticId::new("per-feed").unwrap();
    let mut sql = make(&id, "SELECT feed, count(*) AS count FROM observations GROUP BY feed").unwrap();
    let data = sample();
    let got = sql.run(&window(), &data).unwrap();
    let n_ais = data.iter().filter(|o| o.feed.as_str() == "ais").count() as u64;
    assert_eq!(got.iter().find(|a| a.bin == "ais").map(|a| a.count), Some(n_ais));
    let err = match boxed(&id, "SELECT nope FROM observations") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(err.contains("nope") && err.contains("per-feed"), "{err}");
}

#[test]
fn callable_and_droppable_inside_a_tokio_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let data = sample();
    let n = rt.block_on(async {
        let q = q("SELECT feed, count(*) AS count FROM observations GROUP BY feed");
        let n = q.run(&window(), &data).unwrap().iter().map(|a| a.count).sum::<u64>();
        drop(q);
        n
    });
    assert_eq!(n, data.len() as u64);
}

#[test]
fn functions_that_are_not_reproducible_are_refused() {
    for (sql, name) in [
        ("SELECT feed, count(*) AS count FROM observations WHERE time < now() GROUP BY feed", "now()"),
        ("SELECT id AS key, random() AS r FROM observations", "random()"),
        ("SELECT id AS key FROM observations WHERE lon IN (SELECT random() FROM observations)", "random()"),
    ] {
        let msg = refused(sql);
        assert!(msg.contains(name) && msg.contains("reproducible"), "{sql}: {msg}");
    }
}

#[test]
fn the_record_columns_and_time_buckets() {
    use geostream_model::time::format_description::well_known::Rfc3339;
    let data = sample();
    let got = by_id("SELECT id AS key, feed, track, time, received FROM observations", &data);
    for o in &data {
        let a = &got[&o.id.to_string()];
        assert_eq!(a.attributes["feed"], json!(o.feed.as_str()));
        assert_eq!(a.attributes["track"], o.track.as_ref().map_or(Value::Null, |t| json!(t.as_str())));
        assert_eq!(a.attributes["time"], json!(o.time.format(&Rfc3339).unwrap()));
        assert_eq!(a.attributes["received"], json!(o.received.format(&Rfc3339).unwrap()));
    }
    // Counts per minute of event time (date_bin's default origin is the epoch), against the same
    // bucketing done here.
    let aggs =
        q("SELECT date_bin(INTERVAL '1 minute', time) AS minute, count(*) AS count FROM observations GROUP BY minute")
            .run(&window(), &data)
            .unwrap();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for o in &data {
        let secs = o.time.unix_timestamp();
        let minute = OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(60)).unwrap();
        *want.entry(minute.format(&Rfc3339).unwrap()).or_default() += 1;
    }
    assert!(want.len() > 2);
    let got: BTreeMap<String, u64> = aggs.iter().map(|a| (a.bin.clone(), a.count)).collect();
    assert_eq!(got, want);
}

/// The real USGS week of earthquakes (1,707 features): per H3 cell count, mean and max magnitude
/// and centroid, against the same statistics computed here.
#[test]
fn real_earthquakes_per_h3_cell() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let path = std::path::Path::new(&dir).join("../codecs/tests/data/usgs_all_week_2018-02-07.geojson");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut data = Vec::new();
    for f in doc["features"].as_array().unwrap() {
        let c = f["geometry"]["coordinates"].as_array().unwrap();
        let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        let t = OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(f["properties"]["time"].as_i64().unwrap()) * 1_000_000,
        )
        .unwrap();
        let mut attrs = serde_json::Map::new();
        attrs.insert("mag".into(), f["properties"]["mag"].clone());
        let track = TrackId::new(f["id"].as_str().unwrap()).unwrap();
        data.push(
            Observation::try_new(FeedId::new("usgs").unwrap(), Some(track), t, t, point(lon, lat), attrs).unwrap(),
        );
    }
    assert_eq!(data.len(), 1707);
    let start = data.iter().map(|o| o.time).min().unwrap().replace_nanosecond(0).unwrap();
    let end = data.iter().map(|o| o.time).max().unwrap() + Duration::from_secs(1);
    let week = Window::new(start, end).unwrap();

    let aggs = q("SELECT h3_cell(st_point(lon, lat), 3) AS cell, count(*) AS count, \
                  avg(attr_f64(attributes, 'mag')) AS mag_mean, max(attr_f64(attributes, 'mag')) AS mag_max, \
                  st_point(avg(lon), avg(lat)) AS geometry FROM observations GROUP BY cell")
    .run(&week, &data)
    .unwrap();

    // cell -> (count, magnitudes, lon sum, lat sum)
    let mut want: BTreeMap<String, (u64, Vec<f64>, f64, f64)> = BTreeMap::new();
    for o in &data {
        let (x, y) = lon_lat(o).unwrap();
        let cell = h3o::LatLng::new(y, x).unwrap().to_cell(h3o::Resolution::Three).to_string();
        let e = want.entry(cell).or_default();
        e.0 += 1;
        e.1.extend(o.attributes["mag"].as_f64());
        e.2 += x;
        e.3 += y;
    }
    assert!(want.len() > 100, "{} cells", want.len());
    assert_eq!(
        aggs.iter().map(|a| a.bin.as_str()).collect::<Vec<_>>(),
        want.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for a in &aggs {
        let (count, mags, sx, sy) = &want[&a.bin];
        assert_eq!(a.count, *count, "{}", a.bin);
        if mags.is_empty() {
            assert!(a.values.is_empty());
        } else {
            let mean = mags.iter().sum::<f64>() / mags.len() as f64;
            let max = mags.iter().copied().fold(f64::MIN, f64::max);
            assert!((a.values["mag_mean"] - mean).abs() < 1e-9, "{}", a.bin);
            assert_eq!(a.values["mag_max"], max, "{}", a.bin);
        }
        let Some(GeometryValue::Point { coordinates }) = a.geometry.as_ref().map(|g| &g.value) else { panic!() };
        let n = *count as f64;
        assert!((coordinates[0] - sx / n).abs() < 1e-9 && (coordinates[1] - sy / n).abs() < 1e-9);
    }
}

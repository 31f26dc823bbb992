//! Golden tests of the JSON, GeoJSON and CSV codecs on real data. The counts are cross-checked by
//! `tests/pycheck/mapping_counts.py` (Python standard library, written from the documented rules).

use geostream_codecs::csv_codec::{CsvCodec, CsvOptions};
use geostream_codecs::geojson_codec::{GeoJsonCodec, GeoJsonOptions};
use geostream_codecs::json::{JsonCodec, JsonOptions};
use geostream_codecs::{Codec, Context, Outcome, Summary, decode_all};
use geostream_model::geojson::GeometryValue;
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Mapping, Observation};
use serde_json::{Value, json};

use crate::data;

pub fn ctx(received_ms: i64) -> Context {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000).unwrap();
    Context::new(FeedId::new("sample").unwrap(), t)
}

pub fn mapping(v: Value) -> Mapping {
    serde_json::from_value(v).unwrap()
}

pub fn run(codec: &mut dyn Codec, bytes: &[u8], ctx: &Context) -> (Summary, Vec<Outcome>) {
    let outcomes = decode_all(codec, bytes, ctx);
    let mut s = Summary::default();
    outcomes.iter().for_each(|o| s.add(o));
    (s, outcomes)
}

fn observations(outcomes: &[Outcome]) -> Vec<&Observation> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) => Some(&**o),
            _ => None,
        })
        .collect()
}

fn point(o: &Observation) -> Vec<f64> {
    match &o.geometry.value {
        GeometryValue::Point { coordinates } => coordinates.as_slice().to_vec(),
        other => panic!("not a point: {other:?}"),
    }
}

fn usgs_mapping() -> Mapping {
    mapping(json!({
        "track": "id", "time": "properties.time", "time_format": "unix_ms",
        "attributes": {"mag": "properties.mag", "place": "properties.place", "kind": "properties.type",
                       "depth_km": "geometry.coordinates[2]", "updated": "properties.updated"}
    }))
}

/// USGS metadata.generated, 2018-02-07T01:49:14Z.
const USGS_GENERATED_MS: i64 = 1_517_968_154_000;

#[test]
fn usgs_week_all_accepted_with_values() {
    let bytes = data::read("usgs_all_week_2018-02-07.geojson");
    let mut codec = GeoJsonCodec::new(&usgs_mapping(), GeoJsonOptions::default()).unwrap();
    let (s, out) = run(&mut codec, &bytes, &ctx(USGS_GENERATED_MS));
    // pycheck: usgs: records=1707 accepted=1707 rejected={} tracks=1707
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (1707, 0, 1707));
    let obs = observations(&out);
    let first = obs[0];
    assert_eq!(first.track.as_ref().unwrap().as_str(), "ci37868143");
    assert_eq!(first.time.unix_timestamp_nanos(), 1_517_966_773_840_000_000);
    assert_eq!(first.time.to_string(), "2018-02-07 1:26:13.84 +00:00:00");
    assert_eq!(point(first), vec![-118.6671667, 34.4945, 26.49]);
    assert_eq!(first.attributes["mag"], json!(2));
    assert_eq!(first.attributes["depth_km"], json!(26.49));
    assert_eq!(first.attributes["place"], json!("4km W of Castaic, CA"));
    first.validate().unwrap();
    let last = obs[1706];
    assert_eq!(last.track.as_ref().unwrap().as_str(), "uw61345682");
    assert_eq!(last.time.unix_timestamp_nanos(), 1_517_363_399_650_000_000);
    assert_eq!(point(last), vec![-122.197, 46.2035, 3.28]);
    let kinds = |k: &str| obs.iter().filter(|o| o.attributes["kind"] == json!(k)).count();
    // pycheck: types: {'earthquake': 1679, 'explosion': 15, 'quarry blast': 13}
    assert_eq!((kinds("earthquake"), kinds("explosion"), kinds("quarry blast")), (1679, 15, 13));
}

#[test]
fn usgs_week_received_early_rejects_future_times() {
    let bytes = data::read("usgs_all_week_2018-02-07.geojson");
    let mut codec = GeoJsonCodec::new(&usgs_mapping(), GeoJsonOptions::default()).unwrap();
    // 2018-02-03T00:00:00Z: quakes after 2018-02-04T00:00:00Z lie more than 24 h ahead.
    let (s, out) = run(&mut codec, &bytes, &ctx(1_517_616_000_000));
    // pycheck: usgs_received_2018-02-03: accepted=930 rejected={'future_time': 777} tracks=930
    assert_eq!((s.accepted, s.tracks.len()), (930, 930));
    assert_eq!(s.rejected.get("future_time"), Some(&777));
    assert_eq!(s.rejected_total(), 777);
    // Each rejection carries its own feature, re-serialised.
    let Outcome::Rejected(r) = &out[0] else { panic!("{:?}", out[0]) };
    let raw: Value = serde_json::from_slice(&r.raw).unwrap();
    assert_eq!(raw["id"], json!("ci37868143"));
    assert!(r.detail.starts_with("feature 0: time at properties.time is 2018-02-07"), "{}", r.detail);
}

#[test]
fn usgs_feature_damage_is_per_feature() {
    let bytes = data::read("usgs_all_week_2018-02-07.geojson");
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
    let f = doc["features"].as_array_mut().unwrap();
    f[1]["geometry"] = Value::Null;
    f[2]["geometry"]["coordinates"] = json!([0.0, 0.0, 5.0]);
    f[3]["geometry"]["coordinates"] = json!([-200.0, 10.0]);
    f[4]["properties"]["time"] = json!("soon");
    f[5].as_object_mut().unwrap().remove("id");
    f[6] = json!(42);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let mut codec = GeoJsonCodec::new(&usgs_mapping(), GeoJsonOptions::default()).unwrap();
    let (s, out) = run(&mut codec, &bytes, &ctx(USGS_GENERATED_MS));
    assert_eq!(s.accepted, 1707 - 6);
    let want = [("invalid_coordinates", 1), ("invalid_time", 1), ("null_island", 1), ("schema", 3)];
    assert_eq!(s.rejected.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), want);
    let Outcome::Rejected(r) = &out[1] else { panic!() };
    assert_eq!(serde_json::from_slice::<Value>(&r.raw).unwrap(), doc["features"][1]);
    assert!(r.detail.contains("no geometry"), "{}", r.detail);
    // Null geometry as a skip when asked.
    let mut skipping = GeoJsonCodec::new(&usgs_mapping(), GeoJsonOptions { skip_null_geometry: true }).unwrap();
    let (s, _) = run(&mut skipping, &bytes, &ctx(USGS_GENERATED_MS));
    assert_eq!(s.skipped.get("NotAPosition"), Some(&1));
    assert_eq!(s.rejected_total(), 5);
}

#[test]
fn usgs_as_geojson_seq() {
    let bytes = data::read("usgs_all_week_2018-02-07.geojson");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let mut lines = Vec::new();
    for f in doc["features"].as_array().unwrap().iter().take(100) {
        lines.push(0x1e);
        lines.extend(serde_json::to_vec(f).unwrap());
        lines.push(b'\n');
    }
    lines.extend(b"\n{not json\n");
    let mut codec = GeoJsonCodec::seq(&usgs_mapping(), GeoJsonOptions::default()).unwrap();
    let (s, out) = run(&mut codec, &lines, &ctx(USGS_GENERATED_MS));
    assert_eq!(
        (s.accepted, s.rejected.get("malformed").copied(), s.skipped.get("Blank").copied()),
        (100, Some(1), Some(1))
    );
    let Outcome::Rejected(r) = out.last().unwrap() else { panic!() };
    assert_eq!(r.raw, b"{not json");
    assert!(r.detail.starts_with("line 102: not JSON"), "{}", r.detail);
}

fn opensky_mapping(time: &str, format: &str) -> Mapping {
    mapping(json!({
        "track": "icao24", "time": time, "time_format": format, "lon": "longitude", "lat": "latitude",
        "attributes": {"callsign": "callsign", "altitude_m": "altitude", "speed_mps": "groundspeed",
                       "track_deg": "track", "vrate_mps": "vertical_rate", "onground": "onground", "squawk": "squawk"},
        "units": {"altitude_m": "ft", "speed_mps": "knots", "track_deg": "deg", "vrate_mps": "ft/min"}
    }))
}

/// 2021-10-07T13:15:01Z, the end of the 15-minute sample.
const OPENSKY_END_MS: i64 = 1_633_612_501_000;

#[test]
fn opensky_csv_all_rows() {
    let bytes = data::read("opensky_traffic_quickstart_15min.csv");
    let mut codec = CsvCodec::new(&opensky_mapping("timestamp", "unix_ms"), CsvOptions::default()).unwrap();
    let (s, out) = run(&mut codec, &bytes, &ctx(OPENSKY_END_MS));
    // pycheck: opensky_csv: records=21413 accepted=21413 rejected={} tracks=39
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (21413, 0, 39));
    let obs = observations(&out);
    // 2021-10-07T13:00:01Z,1633611601000,392ae7,AFR21SQ,49.0081476761,2.8573849327,3125.0,216.0,
    // 265.4790421004,-960.0,False,1000
    let o = obs[0];
    assert_eq!(o.track.as_ref().unwrap().as_str(), "392ae7");
    assert_eq!(o.time.unix_timestamp(), 1_633_611_601);
    assert_eq!(point(o), vec![2.8573849327, 49.0081476761]);
    let f = |k: &str| o.attributes[k].as_f64().unwrap();
    // pycheck: speed_mps=111.120000000000 altitude_m=952.500000000000 vrate_mps=-4.876800000000
    assert!((f("speed_mps") - 111.12).abs() < 1e-9, "{}", f("speed_mps"));
    assert!((f("altitude_m") - 952.5).abs() < 1e-9);
    assert!((f("vrate_mps") - -4.8768).abs() < 1e-9);
    assert_eq!(f("track_deg"), 265.4790421004);
    assert_eq!(o.attributes["callsign"], json!("AFR21SQ"));
    assert_eq!(o.attributes["onground"], json!(false));
    assert_eq!(o.attributes["squawk"], json!(1000));
    // pycheck: rows without groundspeed: 3420 (the attribute is left out, the row still accepted)
    assert_eq!(obs.iter().filter(|o| !o.attributes.contains_key("speed_mps")).count(), 3420);

    // The RFC 3339 column gives the same times, hence the same ids.
    let mut by_text = CsvCodec::new(&opensky_mapping("time_utc", "rfc3339"), CsvOptions::default()).unwrap();
    let (s2, out2) = run(&mut by_text, &bytes, &ctx(OPENSKY_END_MS));
    assert_eq!(s2, s);
    let ids = |v: &[Outcome]| observations(v).iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(&out2), ids(&out));
}

#[test]
fn opensky_csv_bad_rows_are_rejected_alone() {
    let bytes = data::read("opensky_traffic_quickstart_15min.csv");
    let text = String::from_utf8(bytes).unwrap();
    let mut lines: Vec<String> = text.lines().take(11).map(str::to_owned).collect();
    lines[2] = lines[2].replace("48.9152759617", "98.9152759617"); // latitude out of range
    lines[3] = lines[3].replacen(",False,", ",False,1,", 1); // one field too many
    lines[4] = lines[4].replacen("1633611601000", "", 1); // no time
    lines[5] = lines[5].replace("48.5910396253", "").replace("2.1756543611", ""); // no position
    let semi: String = lines.iter().map(|l| l.replace(',', ";") + "\r\n").collect();
    let mut codec =
        CsvCodec::new(&opensky_mapping("timestamp", "unix_ms"), CsvOptions { delimiter: b';', header: None }).unwrap();
    let (s, out) = run(&mut codec, semi.as_bytes(), &ctx(OPENSKY_END_MS));
    assert_eq!(s.accepted, 6);
    let got: Vec<_> = s.rejected.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, [("invalid_coordinates", 1), ("malformed", 1), ("schema", 2)]);
    let Outcome::Rejected(r) = &out[2] else { panic!("{:?}", out[2]) };
    assert_eq!(r.raw, lines[3].replace(',', ";").as_bytes());
    assert!(r.detail.starts_with("row at line 4:"), "{}", r.detail);
}

#[test]
fn calfire_json_array() {
    let bytes = data::read("traffic_opensky_calfire_2020-09.json");
    let m = mapping(json!({
        "track": "icao24", "time": "timestamp", "time_format": "unix_ms", "lon": "longitude", "lat": "latitude",
        "attributes": {"callsign": "callsign", "flight": "flight_id", "speed_mps": "groundspeed",
                       "geoaltitude_m": "geoaltitude", "altitude_m": "altitude"},
        "units": {"speed_mps": "kt", "geoaltitude_m": "feet", "altitude_m": "ft"}
    }));
    // 2020-09-15T00:00:00Z, after the last record.
    let received = 1_600_128_000_000;
    let mut codec = JsonCodec::new(&m, JsonOptions::default()).unwrap();
    let (s, out) = run(&mut codec, &bytes, &ctx(received));
    // pycheck: calfire: records=9955 accepted=9955 rejected={} tracks=45
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (9955, 0, 45));
    let obs = observations(&out);
    let o = obs[0];
    assert_eq!(o.track.as_ref().unwrap().as_str(), "a3c6bd");
    assert_eq!(o.time.unix_timestamp_nanos(), 1_599_702_342_000_000_000);
    assert_eq!(point(o), vec![-122.4367218018, 47.0139312744]);
    // pycheck: speed_mps=58.132222222222 geoaltitude_m=304.800000000000
    assert!((o.attributes["speed_mps"].as_f64().unwrap() - 58.132_222_222_222).abs() < 1e-9);
    assert!((o.attributes["geoaltitude_m"].as_f64().unwrap() - 304.8).abs() < 1e-9);
    assert_eq!(o.attributes["flight"], json!("N342WN_014"));
    // pycheck: flights: 186 (tracked by flight id instead)
    let mut by_flight = mapping(json!({"track": "flight_id", "time": "timestamp", "time_format": "unix_ms",
        "lon": "longitude", "lat": "latitude"}));
    by_flight.time_zone = None;
    let mut codec = JsonCodec::new(&by_flight, JsonOptions::default()).unwrap();
    let (s, _) = run(&mut codec, &bytes, &ctx(received));
    assert_eq!((s.accepted, s.tracks.len()), (9955, 186));
    // The same records under a records path.
    let wrapped = [b"{\"states\":".as_slice(), &bytes, b"}"].concat();
    let mut codec = JsonCodec::new(&m, JsonOptions { records: Some("states".into()) }).unwrap();
    let (s, _) = run(&mut codec, &wrapped, &ctx(received));
    assert_eq!((s.accepted, s.tracks.len()), (9955, 45));
}

//! Edge cases of the JSON, NDJSON, GeoJSON and CSV codecs on small hand-made payloads.

use geostream_codecs::csv_codec::{CsvCodec, CsvOptions};
use geostream_codecs::geojson_codec::{GeoJsonCodec, GeoJsonOptions};
use geostream_codecs::json::{JsonCodec, JsonOptions, NdjsonCodec};
use geostream_codecs::mapping::CompiledMapping;
use geostream_codecs::{Codec, Framing, Outcome};
use geostream_model::time::Duration;
use serde_json::json;

use crate::mapping_files::{ctx, mapping, run};

fn m() -> geostream_model::Mapping {
    mapping(json!({"track": "id", "time": "t", "time_format": "unix_s", "lon": "lon", "lat": "lat"}))
}

#[test]
fn json_payload_shapes() {
    let c = ctx(1_700_000_000_000);
    let mut codec = JsonCodec::new(&m(), JsonOptions::default()).unwrap();
    assert_eq!(codec.framing(), Framing::Document);
    // One object: raw of a rejection is the payload itself.
    let one = br#"{"id":"a","t":1699999999,"lon":0,"lat":0}"#;
    let (s, out) = run(&mut codec, one, &c);
    assert_eq!(s.rejected.get("null_island"), Some(&1));
    let Outcome::Rejected(r) = &out[0] else { panic!() };
    assert_eq!(r.raw, one);
    // Not JSON: one malformed rejection with the whole payload.
    let (s, out) = run(&mut codec, b"[{\"id\":1,", &c);
    assert_eq!((s.accepted, s.rejected.get("malformed").copied()), (0, Some(1)));
    let Outcome::Rejected(r) = &out[0] else { panic!() };
    assert_eq!(r.raw, b"[{\"id\":1,");
    // An array with a good record, a scalar and a record without a track.
    let (s, _) = run(&mut codec, br#"[{"id":"a","t":1699999999,"lon":1,"lat":2}, 7, {"t":1,"lon":1,"lat":2}]"#, &c);
    assert_eq!((s.accepted, s.rejected.get("schema").copied()), (1, Some(2)));
    // Records path missing.
    let mut states = JsonCodec::new(&m(), JsonOptions { records: Some("states".into()) }).unwrap();
    let (s, _) = run(&mut states, br#"{"time": 1}"#, &c);
    assert_eq!(s.rejected.get("schema"), Some(&1));
    // OpenSky /states/all style: records are arrays, paths are indices.
    let arr = mapping(json!({"track": "[0]", "time": "[3]", "time_format": "unix_s", "lon": "[5]", "lat": "[6]",
        "attributes": {"velocity": "[9]"}, "units": {"velocity": "m/s"}}));
    let mut os = JsonCodec::new(&arr, JsonOptions { records: Some("states".into()) }).unwrap();
    let body = br#"{"time":1699999999,"states":[["3c6444","DLH9LF ","Germany",1699999990,1699999990,6.1,50.2,9860.3,false,232.9],["abc",null,"x",1699999990,null,null,null]]}"#;
    let (s, out) = run(&mut os, body, &c);
    assert_eq!((s.accepted, s.rejected.get("schema").copied()), (1, Some(1)));
    let Outcome::Observation(o) = &out[0] else { panic!() };
    assert_eq!(o.attributes["velocity"], json!(232.9));
    // Mapping without a position cannot make a JSON codec.
    assert!(JsonCodec::new(&mapping(json!({"track": "id"})), JsonOptions::default()).is_err());
}

#[test]
fn ndjson_lines() {
    let c = ctx(1_700_000_000_000);
    let mut codec = NdjsonCodec::new(&m(), JsonOptions::default()).unwrap();
    assert_eq!(codec.framing(), Framing::Lines);
    let input = b"{\"id\":\"a\",\"t\":1699999999,\"lon\":1,\"lat\":2}\n\n{\"id\":\"b\",\"t\":\"1699999999.5\",\"lon\":\"3\",\"lat\":\"4\"}\r\nnope\n{\"id\":\"c\",\"t\":1799999999,\"lon\":1,\"lat\":2}\n";
    let (s, out) = run(&mut codec, input, &c);
    assert_eq!(s.accepted, 2);
    assert_eq!(s.skipped.get("Blank"), Some(&1));
    assert_eq!(s.rejected.get("malformed"), Some(&1));
    assert_eq!(s.rejected.get("future_time"), Some(&1));
    let Outcome::Observation(o) = &out[2] else { panic!() };
    assert_eq!(o.time.unix_timestamp_nanos(), 1_699_999_999_500_000_000);
    // A longer skew accepts the future record.
    let mut lenient = JsonCodec::new(&m(), JsonOptions::default())
        .unwrap()
        .map_mapping(|cm: CompiledMapping| cm.with_max_future(Duration::days(10_000)));
    let (s, _) = run(&mut lenient, br#"{"id":"c","t":1799999999,"lon":1,"lat":2}"#, &c);
    assert_eq!(s.accepted, 1);
}

#[test]
fn geojson_shapes_and_crs() {
    let c = ctx(1_700_000_000_000);
    let gm = mapping(json!({"track": "properties.name", "crs": "EPSG:3857"}));
    let mut codec = GeoJsonCodec::new(&gm, GeoJsonOptions::default()).unwrap();
    let feature = br#"{"type":"Feature","properties":{"name":"x"},"geometry":{"type":"Point","coordinates":[1113194.9079327357,6446275.841017158]}}"#;
    let (s, out) = run(&mut codec, feature, &c);
    assert_eq!(s.accepted, 1);
    let Outcome::Observation(o) = &out[0] else { panic!() };
    let geostream_model::geojson::GeometryValue::Point { coordinates } = &o.geometry.value else { panic!() };
    assert!((coordinates[0] - 10.0).abs() < 1e-9 && (coordinates[1] - 50.0).abs() < 1e-9);
    assert_eq!(o.time, c.received);
    for bad in [&br#"{"type":"Point","coordinates":[1,2]}"#[..], br#"{"type":"FeatureCollection"}"#, b"[]"] {
        let (s, _) = run(&mut codec, bad, &c);
        assert_eq!(s.rejected.get("schema"), Some(&1), "{}", String::from_utf8_lossy(bad));
    }
    let (s, _) = run(&mut codec, b"\xff\xfe", &c);
    assert_eq!(s.rejected.get("malformed"), Some(&1));
}

#[test]
fn csv_edge_cases() {
    let c = ctx(1_700_000_000_000);
    let cm = mapping(json!({"track": "\"dev.id\"", "lon": "x", "lat": "y", "crs": "EPSG:32633",
        "attributes": {"v": "v"}, "units": {"v": "km/h"}}));
    let mut codec = CsvCodec::new(&cm, CsvOptions::default()).unwrap();
    let (s, out) = run(&mut codec, b"dev.id,x,y,v\nA,500000,0,36\nB,500000,0,fast\n\xff,1,1,1\n", &c);
    assert_eq!(s.accepted, 1);
    assert_eq!(s.rejected.get("schema"), Some(&1));
    assert_eq!(s.rejected.get("malformed"), Some(&1));
    let Outcome::Observation(o) = &out[0] else { panic!() };
    let geostream_model::geojson::GeometryValue::Point { coordinates } = &o.geometry.value else { panic!() };
    assert!((coordinates[0] - 15.0).abs() < 1e-9 && coordinates[1].abs() < 1e-9);
    assert!((o.attributes["v"].as_f64().unwrap() - 10.0).abs() < 1e-12);
    let Outcome::Rejected(r) = &out[1] else { panic!() };
    assert_eq!(r.raw, b"B,500000,0,fast");
    // Empty payload and header given at construction.
    let (s, _) = run(&mut codec, b"", &c);
    assert_eq!(s.rejected.get("malformed"), Some(&1));
    let mut headless = CsvCodec::new(
        &cm,
        CsvOptions { delimiter: b'\t', header: Some(vec!["dev.id".into(), "x".into(), "y".into()]) },
    )
    .unwrap();
    let (s, _) = run(&mut headless, b"A\t500000\t0\nB\t500000\t1\n", &c);
    assert_eq!(s.accepted, 2);
}

//! Property tests: the mapping codecs never panic, paths and mappings round-trip, reprojection
//! round-trips.

use geostream_codecs::csv_codec::{CsvCodec, CsvOptions};
use geostream_codecs::geojson_codec::{GeoJsonCodec, GeoJsonOptions};
use geostream_codecs::json::{JsonCodec, JsonOptions, NdjsonCodec};
use geostream_codecs::mapping::{CompiledMapping, Crs, Path};
use geostream_codecs::{Codec, decode_all};
use geostream_model::Mapping;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::mapping_files::{ctx, mapping};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e7f64..1e7).prop_map(|f| json!(f)),
        "[a-z0-9.:\\- ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("t".to_owned()),
                    Just("lon".to_owned()),
                    Just("lat".to_owned()),
                    Just("type".to_owned()),
                    Just("features".to_owned()),
                    Just("geometry".to_owned()),
                    Just("coordinates".to_owned()),
                    Just("properties".to_owned()),
                    "[a-z]{1,4}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn codecs() -> Vec<Box<dyn Codec>> {
    let m = mapping(json!({"track": "id", "time": "t", "time_format": "unix_ms", "lon": "lon", "lat": "lat",
        "crs": "EPSG:3857", "attributes": {"s": "s"}, "units": {"s": "knots"}}));
    let g = mapping(json!({"track": "properties.id", "time": "properties.t", "time_format": "rfc3339"}));
    vec![
        Box::new(JsonCodec::new(&m, JsonOptions::default()).unwrap()),
        Box::new(NdjsonCodec::new(&m, JsonOptions { records: Some("a[0].b".into()) }).unwrap()),
        Box::new(GeoJsonCodec::new(&g, GeoJsonOptions::default()).unwrap()),
        Box::new(GeoJsonCodec::seq(&g, GeoJsonOptions { skip_null_geometry: true }).unwrap()),
        Box::new(CsvCodec::new(&m, CsvOptions::default()).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for mut c in codecs() {
            let _ = decode_all(c.as_mut(), &bytes, &ctx(1_700_000_000_000));
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let fc = serde_json::to_vec(&json!({"type": "FeatureCollection", "features": [v.clone(),
            {"type": "Feature", "geometry": v.clone(), "properties": v}]})).unwrap();
        for mut c in codecs() {
            let _ = decode_all(c.as_mut(), &bytes, &ctx(1_700_000_000_000));
            let _ = decode_all(c.as_mut(), &fc, &ctx(1_700_000_000_000));
        }
    }

    #[test]
    fn arbitrary_paths_never_panic(s in "\\PC{0,20}", v in arb_json()) {
        if let Ok(p) = Path::parse(&s) {
            let _ = p.resolve(&v);
            prop_assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn path_display_round_trips(keys in prop::collection::vec(prop_oneof!["\\PC{0,6}".prop_map(Some), (0usize..5).prop_map(|_| None)], 1..5)) {
        // Build a path from keys (None = an index), print it, parse it back, resolve the same.
        let mut text = String::new();
        let mut value = json!("leaf");
        let mut segs = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match k {
                Some(k) => {
                    let escaped = k.replace('\\', "\\\\").replace('"', "\\\"");
                    if i > 0 { text.push('.'); }
                    text.push_str(&format!("\"{escaped}\""));
                    segs.push(Some(k.clone()));
                }
                None => { text.push_str("[0]"); segs.push(None); }
            }
        }
        for s in segs.iter().rev() {
            value = match s { Some(k) => json!({ k.clone(): value }), None => json!([value]) };
        }
        let p = Path::parse(&text).unwrap();
        prop_assert_eq!(p.resolve(&value), Some(&json!("leaf")));
        prop_assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn mapping_round_trips_through_serde(track in "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}", attr in "[a-z]{1,6}", unit in prop::sample::select(vec!["knots", "km/h", "mph", "ft", "ft/min", "m", "m/s", "deg"])) {
        let m = mapping(json!({"track": track, "lon": "p[0]", "lat": "p[1]", "crs": "EPSG:32631",
            "time": "t", "time_format": {"custom": "[year]-[month]-[day] [hour]:[minute]"}, "time_zone": "Europe/Paris",
            "attributes": {attr.clone(): "v"}, "units": {attr: unit}}));
        let text = serde_json::to_string(&m).unwrap();
        let back: Mapping = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert!(CompiledMapping::new(&back).is_ok());
    }

    #[test]
    fn web_mercator_round_trip(lon in -179.999f64..179.999, lat in -85.0f64..85.0) {
        let crs = Crs::parse(Some("EPSG:3857")).unwrap();
        let (x, y) = crs.from_wgs84(lon, lat).unwrap();
        let (lo, la) = crs.to_wgs84(x, y).unwrap();
        let (x2, y2) = crs.from_wgs84(lo, la).unwrap();
        prop_assert!((x2 - x).abs() < 1e-6 && (y2 - y).abs() < 1e-6, "{x},{y} -> {x2},{y2}");
        prop_assert!((lo - lon).abs() < 1e-9 && (la - lat).abs() < 1e-9);
    }

    #[test]
    fn utm_round_trip(zone in 1u32..=60, south in any::<bool>(), de in -2.9f64..2.9, lat in 0.0f64..80.0) {
        let code = if south { 32700 + zone } else { 32600 + zone };
        let crs = Crs::parse(Some(&format!("EPSG:{code}"))).unwrap();
        let lon = -183.0 + 6.0 * f64::from(zone) + de;
        let lat = if south { -lat } else { lat };
        let (x, y) = crs.from_wgs84(lon, lat).unwrap();
        let (lo, la) = crs.to_wgs84(x, y).unwrap();
        prop_assert!((lo - lon).abs() < 1e-7 && (la - lat).abs() < 1e-7, "{lon},{lat} -> {lo},{la}");
    }
}

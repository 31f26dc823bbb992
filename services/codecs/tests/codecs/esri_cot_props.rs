//! Property tests for the Esri JSON and CoT codecs: arbitrary bytes, Esri-shaped JSON, XML-ish
//! token soup and mutated real samples never panic and give only valid observations and explained
//! rejections; generated good records come back field for field.

use geostream_codecs::cot::CotCodec;
use geostream_codecs::esri_json::{EsriJsonCodec, EsriJsonOptions};
use geostream_codecs::{Codec, Outcome, decode_all};
use geostream_model::Observation;
use geostream_model::geojson::{GeometryValue, Position};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::mapping_files::{ctx, mapping};

const RECEIVED_MS: i64 = 1_700_000_000_000;

/// Decodes and checks every outcome; returns the observations.
fn check(codec: &mut dyn Codec, bytes: &[u8]) -> Vec<Observation> {
    let mut obs = Vec::new();
    for o in decode_all(codec, bytes, &ctx(RECEIVED_MS)) {
        match o {
            Outcome::Observation(o) => {
                o.validate().unwrap();
                obs.push(*o);
            }
            Outcome::Rejected(r) => assert!(!r.detail.trim().is_empty(), "a rejection without detail"),
            Outcome::Skipped(_) => {}
        }
    }
    obs
}

fn esri_codecs() -> Vec<EsriJsonCodec> {
    let maps = [
        json!({}),
        json!({"track": "attributes.id", "time": "attributes.t", "time_format": "unix_ms",
               "attributes": {"v": "attributes.v", "z": "geometry.z"}}),
        json!({"track": "attributes.id", "crs": "EPSG:3857"}),
        json!({"lon": "attributes.x", "lat": "attributes.y"}),
    ];
    maps.into_iter()
        .enumerate()
        .map(|(i, m)| EsriJsonCodec::new(&mapping(m), EsriJsonOptions { skip_null_geometry: i % 2 == 0 }).unwrap())
        .collect()
}

fn arb_esri() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        prop_oneof![-2e7f64..2e7, -200f64..200.0, Just(0.0)].prop_map(|f| json!(f)),
        prop_oneof![Just("NaN".to_owned()), "[a-z0-9 ]{0,6}"].prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("features".to_owned()),
                    Just("attributes".to_owned()),
                    Just("geometry".to_owned()),
                    Just("x".to_owned()),
                    Just("y".to_owned()),
                    Just("z".to_owned()),
                    Just("points".to_owned()),
                    Just("paths".to_owned()),
                    Just("rings".to_owned()),
                    Just("spatialReference".to_owned()),
                    Just("wkid".to_owned()),
                    Just("latestWkid".to_owned()),
                    Just("hasZ".to_owned()),
                    Just("hasM".to_owned()),
                    Just("id".to_owned()),
                    Just("t".to_owned()),
                    Just("error".to_owned()),
                    "[a-z]{1,3}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

use crate::data::mutated;

const COLUMBIA: &[u8] = include_bytes!("../data/esri/pyesridump_us_mo_columbia_address_points.json");
const KENT: &[u8] = include_bytes!("../data/esri/pyesridump_us_mi_kent_parcels_stateplane_wkt.json");
const COT_SINGLE: &[u8] = include_bytes!("../data/cot/freetakserver_a-f-G-1581185498052.xml");
const COT_CHAT: &[u8] = include_bytes!("../data/cot/freetakserver_b-t-f-1581185463563.xml");

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

#[derive(Debug, Clone)]
struct GenEvent {
    uid: String,
    lat: f64,
    lon: f64,
    time_ms: i64,
    hae: Option<f64>,
    speed: Option<f64>,
    course: Option<f64>,
    callsign: Option<String>,
}

fn arb_event() -> impl Strategy<Value = GenEvent> {
    (
        "[A-Za-z0-9][A-Za-z0-9.:_-]{0,30}",
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        0i64..253_402_300_799_999,
        prop::option::of(-500.0f64..9000.0),
        prop::option::of(0.0f64..400.0),
        prop::option::of(0.0f64..360.0),
        prop::option::of("[ -~]{1,16}"),
    )
        .prop_filter("not null island", |e| !(e.1 == 0.0 && e.2 == 0.0))
        .prop_map(|(uid, lat, lon, time_ms, hae, speed, course, callsign)| GenEvent {
            uid,
            lat,
            lon,
            time_ms,
            hae,
            speed,
            course,
            callsign,
        })
}

fn rfc3339_ms(ms: i64) -> String {
    let t = geostream_model::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&geostream_model::time::format_description::well_known::Rfc3339).unwrap()
}

impl GenEvent {
    fn xml(&self) -> String {
        let t = rfc3339_ms(self.time_ms);
        let hae = self.hae.map_or("9999999.0".to_owned(), |h| h.to_string());
        let mut detail = String::new();
        if let Some(c) = &self.callsign {
            detail.push_str(&format!("<contact endpoint='*:-1:stcp' callsign='{}'/>", xml_escape(c)));
        }
        if self.speed.is_some() || self.course.is_some() {
            detail.push_str("<track");
            if let Some(s) = self.speed {
                detail.push_str(&format!(" speed='{s}'"));
            }
            if let Some(c) = self.course {
                detail.push_str(&format!(" course=\"{c}\""));
            }
            detail.push_str("/>");
        }
        format!(
            "<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<event version='2.0' uid='{}' type='a-f-G-U-C' \
             time='{t}' start='{t}' stale='{t}' how='m-g'><point lat='{}' lon='{}' hae='{hae}' ce='9999999.0' \
             le='9999999.0'/><detail><takv platform='test'/>{detail}<status battery='50'/></detail></event>",
            xml_escape(&self.uid),
            self.lat,
            self.lon
        )
    }

    fn matches(&self, o: &Observation) {
        assert_eq!(o.track.as_ref().unwrap().as_str(), self.uid.trim());
        assert_eq!(o.time.unix_timestamp_nanos(), i128::from(self.time_ms) * 1_000_000);
        let GeometryValue::Point { coordinates } = &o.geometry.value else { panic!() };
        assert_eq!(coordinates.as_slice(), &[self.lon, self.lat], "coordinates exactly as written");
        assert_eq!(o.attributes.get("hae_m").and_then(Value::as_f64), self.hae);
        assert_eq!(o.attributes.get("speed_mps").and_then(Value::as_f64), self.speed);
        assert_eq!(o.attributes.get("course_deg").and_then(Value::as_f64), self.course);
        assert_eq!(o.attributes.get("callsign").and_then(Value::as_str), self.callsign.as_deref());
        assert_eq!(o.attributes["type"], json!("a-f-G-U-C"));
    }
}

/// An axis-aligned rectangle ring with Esri's winding: clockwise for outer rings, else
/// counter-clockwise, starting at a chosen corner.
fn rect(x0: f64, y0: f64, w: f64, h: f64, outer: bool, start: usize) -> Vec<[f64; 2]> {
    let mut corners = vec![[x0, y0], [x0, y0 + h], [x0 + w, y0 + h], [x0 + w, y0]];
    if !outer {
        corners.reverse();
    }
    corners.rotate_left(start % 4);
    let first = corners[0];
    corners.push(first);
    corners
}

fn area2(ring: &[Position]) -> f64 {
    ring.windows(2).map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1]).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn esri_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for mut c in esri_codecs() {
            check(&mut c, &bytes);
        }
    }

    #[test]
    fn esri_shaped_json_never_panics(v in arb_esri()) {
        let fs = serde_json::to_vec(&json!({"spatialReference": v.clone(), "features": [v.clone(),
            {"attributes": v.clone(), "geometry": v.clone()}]})).unwrap();
        for mut c in esri_codecs() {
            check(&mut c, &serde_json::to_vec(&v).unwrap());
            check(&mut c, &fs);
        }
    }

    #[test]
    fn cot_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&mut CotCodec::new(), &bytes);
    }

    #[test]
    fn cot_xmlish_never_panics(s in "(<\\?xml version='1.0'\\?>|<event |uid='a' |type='a-f-G' |type='t-x-c-t' |time='2024-01-01T00:00:00Z' |>|/>|<point lat='1' lon='2'/>|<point |lat='x' |<detail>|</detail>|<contact callsign='&amp;'/>|<track speed='1'/>|</event>|<event>|&bogus;|<!-- c -->|<!\\[CDATA\\[x\\]\\]>|[ a-z<>/='\"]{0,6}){0,24}") {
        check(&mut CotCodec::new(), s.as_bytes());
    }

    #[test]
    fn cot_mutated_real_events_never_panic(bytes in mutated(COT_SINGLE)) {
        check(&mut CotCodec::new(), &bytes);
    }

    #[test]
    fn cot_mutated_real_pair_never_panics(bytes in mutated(Box::leak([COT_SINGLE, COT_CHAT, COT_SINGLE].concat().into_boxed_slice()))) {
        check(&mut CotCodec::new(), &bytes);
    }

    #[test]
    fn esri_mutated_real_answers_never_panic(bytes in mutated(COLUMBIA), kent in mutated(KENT)) {
        for mut c in esri_codecs() {
            check(&mut c, &bytes);
            check(&mut c, &kent);
        }
    }

    #[test]
    fn cot_generated_events_round_trip(events in prop::collection::vec(arb_event(), 1..6)) {
        let stream: String = events.iter().map(GenEvent::xml).collect();
        let obs = check(&mut CotCodec::new(), stream.as_bytes());
        prop_assert_eq!(obs.len(), events.len());
        for (e, o) in events.iter().zip(&obs) {
            e.matches(o);
        }
    }

    #[test]
    fn esri_generated_points_round_trip(
        points in prop::collection::vec((-179.99f64..179.99, -89.99f64..89.99, 0i64..4_000_000_000_000, any::<u32>()), 1..20),
        mercator in any::<bool>(),
    ) {
        let r = 6_378_137.0_f64;
        let features: Vec<Value> = points.iter().map(|&(lon, lat, t, id)| {
            let geometry = if mercator {
                // Closed-form spherical Mercator, away from the poles where it diverges.
                let lat = lat.clamp(-85.0, 85.0);
                json!({"x": r * lon.to_radians(), "y": r * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0).tan().ln()})
            } else {
                json!({"x": lon, "y": lat})
            };
            json!({"attributes": {"id": id, "t": t, "v": format!("v{id}")}, "geometry": geometry})
        }).collect();
        let sr = if mercator { json!({"wkid": 102100, "latestWkid": 3857}) } else { json!({"wkid": 4326}) };
        let doc = serde_json::to_vec(&json!({"geometryType": "esriGeometryPoint", "spatialReference": sr, "features": features})).unwrap();
        let m = mapping(json!({"track": "attributes.id", "time": "attributes.t", "time_format": "unix_ms", "attributes": {"v": "attributes.v"}}));
        let mut c = EsriJsonCodec::new(&m, EsriJsonOptions::default()).unwrap().map_mapping(|m| m.with_max_future(geostream_model::time::Duration::days(365 * 100)));
        let obs = check(&mut c, &doc);
        let expected: Vec<_> = points.iter().filter(|p| !(p.0 == 0.0 && p.1 == 0.0)).collect();
        prop_assert_eq!(obs.len(), expected.len());
        for (o, &&(lon, lat, t, id)) in obs.iter().zip(&expected) {
            let GeometryValue::Point { coordinates } = &o.geometry.value else { panic!() };
            if mercator {
                let lat = lat.clamp(-85.0, 85.0);
                prop_assert!((coordinates[0] - lon).abs() < 1e-8 && (coordinates[1] - lat).abs() < 1e-8, "{:?} vs {},{}", coordinates, lon, lat);
            } else {
                prop_assert_eq!(coordinates.as_slice(), &[lon, lat]);
            }
            prop_assert_eq!(o.track.as_ref().unwrap().as_str(), id.to_string());
            prop_assert_eq!(o.time.unix_timestamp_nanos(), i128::from(t) * 1_000_000);
            prop_assert_eq!(&o.attributes["v"], &json!(format!("v{id}")));
        }
    }

    #[test]
    fn esri_generated_polygons_group_and_rewind(
        boxes in prop::collection::vec((-170.0f64..160.0, -80.0f64..70.0, 1.0f64..9.0, 1.0f64..9.0, any::<bool>(), 0usize..4), 1..5),
        order in any::<prop::sample::Index>(),
    ) {
        // Boxes laid out on a grid so they never overlap; each may have one hole inside.
        let mut rings = Vec::new();
        let mut expected = Vec::new();
        for (i, &(_, _, w, h, with_hole, start)) in boxes.iter().enumerate() {
            let (x0, y0) = (-170.0 + 20.0 * i as f64, -80.0 + 10.0 * (i % 3) as f64);
            rings.push(rect(x0, y0, w, h, true, start));
            if with_hole {
                rings.push(rect(x0 + w / 4.0, y0 + h / 4.0, w / 2.0, h / 2.0, false, start + 1));
            }
            expected.push((x0, if with_hole { 2 } else { 1 }));
        }
        let k = order.index(rings.len());
        rings.rotate_left(k);
        let doc = serde_json::to_vec(&json!({"features": [{"attributes": {}, "geometry": {"rings": rings}}]})).unwrap();
        let mut c = EsriJsonCodec::new(&mapping(json!({})), EsriJsonOptions::default()).unwrap();
        let obs = check(&mut c, &doc);
        prop_assert_eq!(obs.len(), 1);
        let polys: Vec<Vec<Vec<Position>>> = match &obs[0].geometry.value {
            GeometryValue::Polygon { coordinates } => vec![coordinates.clone()],
            GeometryValue::MultiPolygon { coordinates } => coordinates.clone(),
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(polys.len(), boxes.len());
        for (x0, n) in expected {
            let p = polys.iter().find(|p| p[0].iter().map(|q| q[0]).fold(f64::INFINITY, f64::min) == x0).unwrap();
            prop_assert_eq!(p.len(), n);
            prop_assert!(area2(&p[0]) > 0.0, "outer counter-clockwise");
            if n == 2 {
                prop_assert!(area2(&p[1]) < 0.0, "hole clockwise");
            }
        }
    }
}

#[test]
fn cot_mutated_session_never_panics() {
    let base = crate::data::read("cot/freetakserver_session_2020-02-08_887_events.cot.xml");
    let base: &'static [u8] = base.leak();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&mutated(base), |b| {
            let obs = check(&mut CotCodec::new(), &b);
            // A few flipped bytes can cost a few events, never most of the stream.
            assert!(obs.len() >= 887 - 2 * 8, "{}", obs.len());
            Ok(())
        })
        .unwrap();
}

#[test]
fn esri_mutated_facilities_never_panic() {
    let base = crate::data::read("esri/pyesridump_esri_test_facilities_2015.json");
    let base: &'static [u8] = base.leak();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(32));
    runner
        .run(&mutated(base), |b| {
            for mut c in esri_codecs() {
                check(&mut c, &b);
            }
            Ok(())
        })
        .unwrap();
}

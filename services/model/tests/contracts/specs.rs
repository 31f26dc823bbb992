//! Feed and fence spec contracts: parsing, strictness, validation messages.
#![allow(clippy::unwrap_used)]

use geojson::Geometry;
use geostream_model::{FeedSpec, FenceShape, FenceSpec, Format, ModelError, Replay, Source, TcpMode, TimeFormat};
use proptest::prelude::*;
use serde_json::{Value, json};

fn feed_json() -> Value {
    json!({
        "id": "bus-positions",
        "type": "generic-json-http",
        "source": {"kind": "http_poll", "url": "https://transit.example.org/vehicles", "interval_s": 15,
                   "headers": {"Accept": "application/json"}},
        "format": "json",
        "mapping": {
            "track": "vehicle.id",
            "time": "timestamp",
            "time_format": "unix_ms",
            "lon": "position.lon",
            "lat": "position.lat",
            "attributes": {"speed": "position.speed", "route": "trip.route_id"},
            "units": {"speed": "km/h"}
        },
        "version": 7
    })
}

fn feed_err(v: Value) -> String {
    let spec: FeedSpec = serde_json::from_value(v).unwrap();
    spec.validate().unwrap_err().to_string()
}

#[test]
fn feed_spec_parses_validates_and_round_trips() {
    let spec: FeedSpec = serde_json::from_value(feed_json()).unwrap();
    spec.validate().unwrap();
    assert!(spec.enabled, "enabled defaults to true");
    assert_eq!(spec.type_, "generic-json-http");
    assert_eq!(spec.mapping.time_format, TimeFormat::UnixMs);
    let back: FeedSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn every_source_kind_parses() {
    let sources = [
        json!({"kind": "mqtt", "url": "mqtts://broker.example.org:8883", "topics": ["ais/+/position", "gps/#"]}),
        json!({"kind": "http_poll", "url": "http://x.example.org/feed", "interval_s": 1}),
        json!({"kind": "http_push"}),
        json!({"kind": "http_push", "token_ref": "feed-token"}),
        json!({"kind": "tcp", "address": "ais.example.org:5631", "mode": "client"}),
        json!({"kind": "tcp", "address": "[::]:10110", "mode": "server"}),
        json!({"kind": "udp", "address": "0.0.0.0:10110"}),
        json!({"kind": "file", "path": "feeds/samples/ais.nmea"}),
        json!({"kind": "file", "path": "a.csv", "replay": "original"}),
        json!({"kind": "file", "path": "a.csv", "replay": 10}),
        json!({"kind": "file", "path": "a.csv", "replay": 2.5}),
        json!({"kind": "file", "path": "a.csv", "replay": "original", "repeat": true}),
        json!({"kind": "file", "path": "a.csv", "replay": 60, "repeat": true, "resume": false}),
        json!({"kind": "kafka", "bootstrap": "k1:9092,k2:9092", "topic": "raw.positions", "group": "g"}),
        json!({"kind": "mqtt", "url": "mqtts://b:8883", "topics": ["fleet/+/pos"], "protocol": "5", "client_id": "c1",
               "username": "u", "password_ref": "mqtt-pass", "ca_file": "/etc/ca.pem",
               "topic_template": "fleet/{device}/pos", "track_from_topic": "device"}),
        json!({"kind": "http_poll", "url": "https://x.example.org/f", "interval_s": 30, "timeout_s": 5, "dedupe": false,
               "auth": {"kind": "basic", "username": "u", "password_ref": "p"}}),
        json!({"kind": "http_poll", "url": "https://x.example.org/f", "interval_s": 30,
               "auth": {"kind": "header", "name": "X-Api-Key", "value_ref": "key"}}),
        json!({"kind": "http_push", "token_ref": "t", "max_body_bytes": 1048576}),
        json!({"kind": "tcp", "address": "h:1", "mode": "client", "reconnect_max_s": 5}),
        json!({"kind": "file", "path": "/import", "pattern": "*.gpx", "resume": false}),
        json!({"kind": "kafka", "bootstrap": "k:9092", "topic": "t", "properties": {"security.protocol": "ssl"}}),
    ];
    for s in sources {
        let mut v = feed_json();
        v["source"] = s.clone();
        v["format"] = json!("geojson");
        let spec: FeedSpec = serde_json::from_value(v).unwrap_or_else(|e| panic!("{s}: {e}"));
        spec.validate().unwrap_or_else(|e| panic!("{s}: {e}"));
        let back: FeedSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
    let mut v = feed_json();
    v["source"] = json!({"kind": "mqtt", "url": "mqtt://b", "topics": ["t"]});
    let spec: FeedSpec = serde_json::from_value(v).unwrap();
    assert!(matches!(spec.source, Source::Mqtt { qos: 1, .. }), "qos defaults to 1");
    let mut v = feed_json();
    v["source"] = json!({"kind": "file", "path": "p"});
    let spec: FeedSpec = serde_json::from_value(v).unwrap();
    assert!(matches!(spec.source, Source::File { replay: Replay::Fast, repeat: false, .. }));
    let mut v = feed_json();
    v["source"] = json!({"kind": "tcp", "address": "h:1", "mode": "server"});
    let spec: FeedSpec = serde_json::from_value(v).unwrap();
    assert!(matches!(spec.source, Source::Tcp { mode: TcpMode::Server, .. }));
}

#[test]
fn feed_spec_rejects_unknown_fields_everywhere() {
    for pointer in ["", "/source", "/mapping"] {
        let mut v = feed_json();
        v.pointer_mut(pointer).unwrap()["typo"] = json!(1);
        let e = serde_json::from_value::<FeedSpec>(v).unwrap_err().to_string();
        assert!(e.contains("unknown field `typo`"), "{pointer}: {e}");
    }
    let mut v = feed_json();
    v["source"]["kind"] = json!("carrier_pigeon");
    assert!(serde_json::from_value::<FeedSpec>(v).is_err());
    let mut v = feed_json();
    v["format"] = json!("xml");
    assert!(serde_json::from_value::<FeedSpec>(v).is_err());
    let mut v = feed_json();
    v["source"] = json!({"kind": "file", "path": "p", "replay": "slow"});
    assert!(serde_json::from_value::<FeedSpec>(v).is_err());
}

#[test]
fn feed_validation_names_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"/type": "Not A Type"}), "feed \"bus-positions\": field `type` is \"Not A Type\""),
        (json!({"/source": {"kind": "mqtt", "url": "http://b", "topics": ["t"]}}), "field `source.url`"),
        (json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": []}}), "field `source.topics` is empty"),
        (json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["a/#/b"]}}), "field `source.topics[0]`"),
        (json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["a", "b+"]}}), "field `source.topics[1]`"),
        (json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "qos": 3}}), "field `source.qos` is 3"),
        (
            json!({"/source": {"kind": "http_poll", "url": "https://x", "interval_s": 0}}),
            "field `source.interval_s` is 0",
        ),
        (
            json!({"/source": {"kind": "http_poll", "url": "https://x", "interval_s": 5, "headers": {"Bad Header": "x"}}}),
            "field `source.headers.Bad Header`",
        ),
        (
            json!({"/source": {"kind": "tcp", "address": "nohost", "mode": "client"}}),
            "field `source.address` is \"nohost\" and has no port",
        ),
        (json!({"/source": {"kind": "udp", "address": "h:70000"}}), "has port \"70000\""),
        (json!({"/source": {"kind": "file", "path": " "}}), "field `source.path` must not be empty"),
        (json!({"/source": {"kind": "file", "path": "p", "replay": 0}}), "field `source.replay` is 0"),
        (
            json!({"/source": {"kind": "file", "path": "p", "repeat": true}}),
            "field `source.repeat` needs a paced replay",
        ),
        (
            json!({"/source": {"kind": "file", "path": "p", "replay": "fast", "repeat": true}}),
            "field `source.repeat` needs a paced replay",
        ),
        (json!({"/source": {"kind": "kafka", "bootstrap": "k:9092", "topic": "a b"}}), "field `source.topic`"),
        (json!({"/source": {"kind": "kafka", "bootstrap": "k", "topic": "t"}}), "field `source.bootstrap`"),
        (
            json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "password_ref": "p"}}),
            "field `source.username` is missing",
        ),
        (
            json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "ca_file": "/ca.pem"}}),
            "field `source.ca_file` is set but source.url is not mqtts://",
        ),
        (
            json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "topic_template": "a/dev{x}"}}),
            "field `source.topic_template` level 2",
        ),
        (
            json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "topic_template": "{a}/{a}"}}),
            "captures \"a\" twice",
        ),
        (
            json!({"/source": {"kind": "mqtt", "url": "mqtt://b", "topics": ["t"], "topic_template": "a/{dev}",
                                "track_from_topic": "device"}}),
            "field `source.track_from_topic` is \"device\", which is not a capture",
        ),
        (
            json!({"/source": {"kind": "http_poll", "url": "https://x", "interval_s": 5, "timeout_s": 0}}),
            "field `source.timeout_s` is 0",
        ),
        (
            json!({"/source": {"kind": "http_poll", "url": "https://x", "interval_s": 5,
                                "auth": {"kind": "bearer", "token_ref": ""}}}),
            "field `source.auth.token_ref` must not be empty",
        ),
        (json!({"/source": {"kind": "http_push", "max_body_bytes": 0}}), "field `source.max_body_bytes` is 0"),
        (
            json!({"/source": {"kind": "tcp", "address": "h:1", "mode": "client", "reconnect_max_s": 0}}),
            "field `source.reconnect_max_s` is 0",
        ),
        (json!({"/source": {"kind": "file", "path": "/d", "pattern": "a/*.csv"}}), "field `source.pattern`"),
        (json!({"/mapping/lat": null}), "field `mapping.lat` is missing"),
        (json!({"/mapping/geometry": "geom"}), "field `mapping.geometry` is set together with lon/lat"),
        (json!({"/mapping/lon": null, "/mapping/lat": null}), "format json has no standard position field"),
        (json!({"/mapping/attributes": {"time": "t"}}), "field `mapping.attributes.time` uses a reserved"),
        (json!({"/mapping/attributes": {"x": ""}}), "field `mapping.attributes.x` must not be empty"),
        (json!({"/mapping/time_format": {"custom": ""}}), "field `mapping.time_format.custom`"),
        (json!({"/mapping/units": {"speed": ""}}), "field `mapping.units.speed`"),
    ];
    for (patch, expected) in cases {
        let mut v = feed_json();
        for (pointer, value) in patch.as_object().unwrap() {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent).unwrap()[key] = value.clone();
        }
        let m = feed_err(v);
        assert!(m.contains(expected), "expected {expected:?} in {m:?}");
    }
}

#[test]
fn native_formats_need_no_position_mapping() {
    let mut v = feed_json();
    v["mapping"] = json!({});
    v["format"] = json!("ais");
    let spec: FeedSpec = serde_json::from_value(v).unwrap();
    spec.validate().unwrap();
    assert!(Format::Ais.has_native_geometry() && !Format::Csv.has_native_geometry());
    assert_eq!(Format::ALL.len(), 10);
    for f in Format::ALL {
        assert_eq!(serde_json::to_value(f).unwrap(), json!(f.as_str()));
    }
}

fn fence_json() -> Value {
    json!({
        "id": "trondheim-port",
        "version": 3,
        "name": "Trondheim port limits",
        "geometry": {"type": "Polygon", "coordinates": [[[10.3, 63.4], [10.5, 63.4], [10.5, 63.5], [10.3, 63.5], [10.3, 63.4]]]},
        "properties": {"authority": "Trondheim Havn"}
    })
}

fn fence_err(geometry: Value) -> String {
    let mut v = fence_json();
    v["geometry"] = geometry;
    let spec: FenceSpec = serde_json::from_value(v).unwrap();
    spec.validate().unwrap_err().to_string()
}

#[test]
fn fence_position_limit_is_enforced_with_the_count() {
    let ring = |n: usize| {
        // A closed ring of n positions on a small circle.
        let mut r: Vec<[f64; 2]> = (0..n - 1)
            .map(|i| {
                let a = i as f64 / (n - 1) as f64 * std::f64::consts::TAU;
                [10.0 + 0.1 * a.cos(), 63.0 + 0.1 * a.sin()]
            })
            .collect();
        r.push(r[0]);
        r
    };
    let at_limit = json!({"type": "Polygon", "coordinates": [ring(geostream_model::MAX_FENCE_POSITIONS)]});
    let mut v = fence_json();
    v["geometry"] = at_limit;
    serde_json::from_value::<FenceSpec>(v).unwrap().validate().unwrap();
    let m = fence_err(json!({"type": "MultiPolygon", "coordinates": [[ring(600_000)], [ring(400_001)]]}));
    assert!(m.contains("has 1000001 positions, the limit is 1000000"), "{m}");
}

#[test]
fn fence_spec_shapes_round_trip() {
    let spec: FenceSpec = serde_json::from_value(fence_json()).unwrap();
    spec.validate().unwrap();
    assert!(spec.enabled);
    assert!(matches!(spec.geometry, FenceShape::Geometry(_)));
    assert_eq!(serde_json::to_value(&spec).unwrap()["geometry"], fence_json()["geometry"]);

    let mut v = fence_json();
    v["geometry"] = json!({"type": "Circle", "center": [10.39, 63.43], "radius_m": 500.0});
    let spec: FenceSpec = serde_json::from_value(v.clone()).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.geometry, FenceShape::Circle { center: [10.39, 63.43], radius_m: 500.0 });
    let back = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["geometry"], v["geometry"]);
    assert_eq!(serde_json::from_value::<FenceSpec>(back).unwrap(), spec);

    let mut v = fence_json();
    v["geometry"] = json!({"type": "MultiPolygon", "coordinates": [
        [[[0, 0], [1, 0], [1, 1], [0, 0]]],
        [[[2, 2], [3, 2], [3, 3], [2, 2]], [[2.1, 2.1], [2.2, 2.1], [2.2, 2.2], [2.1, 2.1]]]
    ]});
    let spec: FenceSpec = serde_json::from_value(v).unwrap();
    spec.validate().unwrap();
    let back: FenceSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn fence_spec_is_strict() {
    let mut v = fence_json();
    v["colour"] = json!("red");
    assert!(serde_json::from_value::<FenceSpec>(v).unwrap_err().to_string().contains("unknown field `colour`"));
    let mut v = fence_json();
    v["geometry"] = json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]});
    let e = serde_json::from_value::<FenceSpec>(v).unwrap_err().to_string();
    assert!(e.contains("must be a Polygon, MultiPolygon or Circle, not \"LineString\""), "{e}");
    let mut v = fence_json();
    v["geometry"] = json!({"type": "Circle", "center": [0, 0], "radius_m": 5, "extra": 1});
    assert!(serde_json::from_value::<FenceSpec>(v).is_err());
}

#[test]
fn fence_validation_names_fence_ring_and_position() {
    let m = fence_err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}));
    assert!(m.starts_with("fence \"trondheim-port\": geometry ring 0: is not closed"), "{m}");
    let m = fence_err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}));
    assert!(m.contains("ring 0: has 3 positions; a ring needs at least 4"), "{m}");
    let m = fence_err(json!({"type": "Polygon", "coordinates": [
        [[0, 0], [1, 0], [1, 1], [0, 0]],
        [[0, 0], [1, 0], [1, 95], [0, 0]]
    ]}));
    assert!(m.contains("geometry ring 1, position 2: latitude 95 is outside [-90, 90]"), "{m}");
    let m = fence_err(json!({"type": "MultiPolygon", "coordinates": [
        [[[0, 0], [1, 0], [1, 1], [0, 0]]],
        [[[0, 0], [181, 0], [1, 1], [0, 0]]]
    ]}));
    assert!(m.contains("geometry polygon 1, ring 0, position 1: longitude 181"), "{m}");
    let m = fence_err(json!({"type": "Polygon", "coordinates": []}));
    assert!(m.contains("polygon has no rings"), "{m}");
    let m = fence_err(json!({"type": "Circle", "center": [0, 0], "radius_m": 0}));
    assert!(m.contains("geometry radius_m: is 0"), "{m}");
    let m = fence_err(json!({"type": "Circle", "center": [0, 0], "radius_m": -5}));
    assert!(m.contains("radius_m: is -5"), "{m}");
    let m = fence_err(json!({"type": "Circle", "center": [0, 100], "radius_m": 5}));
    assert!(m.contains("geometry center: latitude 100"), "{m}");

    let mut spec: FenceSpec = serde_json::from_value(fence_json()).unwrap();
    spec.geometry = FenceShape::Circle { center: [0.0, 0.0], radius_m: f64::NAN };
    assert!(spec.validate().unwrap_err().to_string().contains("is NaN"));
    spec.geometry = FenceShape::Geometry(Geometry::new_point([0.0, 0.0]));
    let e = spec.validate().unwrap_err();
    assert!(e.to_string().contains("is a Point; fences must be"), "{e}");
    assert!(matches!(e, ModelError::InvalidGeometry { .. }));
    spec.geometry = FenceShape::Circle { center: [0.0, 0.0], radius_m: 1.0 };
    spec.name = String::new();
    assert!(spec.validate().unwrap_err().to_string().contains("field `name` must not be empty"));
}

proptest! {
    #[test]
    fn prop_circle_fence_round_trip(
        lon in -180.0..=180.0f64, lat in -90.0..=90.0f64, r in 0.001..20_000_000.0f64,
        version in any::<u64>(), enabled in any::<bool>(),
    ) {
        let mut v = fence_json();
        v["geometry"] = json!({"type": "Circle", "center": [lon, lat], "radius_m": r});
        v["version"] = json!(version);
        v["enabled"] = json!(enabled);
        let spec: FenceSpec = serde_json::from_value(v).unwrap();
        prop_assert!(spec.validate().is_ok());
        let text = serde_json::to_string(&spec).unwrap();
        prop_assert_eq!(serde_json::from_str::<FenceSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn prop_feed_round_trip(qos in 0u8..=2, interval in 1u64..86_400, version in any::<u64>(), speed in 0.01..1000.0f64) {
        for source in [
            json!({"kind": "mqtt", "url": "mqtt://b:1883", "topics": ["a/+"], "qos": qos}),
            json!({"kind": "http_poll", "url": "https://x", "interval_s": interval}),
            json!({"kind": "file", "path": "p", "replay": speed}),
        ] {
            let mut v = feed_json();
            v["source"] = source;
            v["version"] = json!(version);
            let spec: FeedSpec = serde_json::from_value(v).unwrap();
            prop_assert!(spec.validate().is_ok());
            let text = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<FeedSpec>(&text).unwrap(), spec);
        }
    }
}

#[test]
fn a_feature_collection_gives_fences_with_ids_names_and_properties() {
    let square =
        json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]});
    let doc = json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "port-a", "name": "Port A", "berths": 12}, "geometry": square},
        {"type": "Feature", "id": 7, "properties": {"zone": "x"}, "geometry": square},
    ]});
    let fences = FenceSpec::from_feature_collection(&doc).unwrap();
    assert_eq!(fences.len(), 2);
    assert_eq!((fences[0].id.as_str(), fences[0].name.as_str()), ("port-a", "Port A"));
    assert_eq!(Value::Object(fences[0].properties.clone()), json!({"berths": 12}), "id and name are not properties");
    // The feature's own id when properties carry none; the name defaults to the id.
    assert_eq!((fences[1].id.as_str(), fences[1].name.as_str()), ("7", "7"));
    assert!(fences.iter().all(|f| f.enabled && f.version == 0 && f.validate().is_ok()));
}

#[test]
fn a_feature_collection_names_the_feature_that_cannot_be_a_fence() {
    use geostream_model::FenceCollectionError;
    let square =
        json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]});
    let err = |features: Value| FenceSpec::from_feature_collection(&json!({"features": features})).unwrap_err();
    assert_eq!(
        FenceSpec::from_feature_collection(&json!({"type": "Feature"})).unwrap_err(),
        FenceCollectionError::NotACollection
    );
    let no_id = err(json!([{"properties": {"id": "a"}, "geometry": square}, {"properties": {}, "geometry": square}]));
    assert!(matches!(&no_id, FenceCollectionError::Feature { index: 1, .. }), "{no_id}");
    assert!(no_id.to_string().starts_with("feature 1: has no fence id"), "{no_id}");
    let point = err(json!([{"properties": {"id": "p"}, "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}}]));
    assert_eq!(point.to_string(), "feature 0: fence \"p\" has geometry Point; fences are Polygons or MultiPolygons");
    let broken = err(json!([{"properties": {"id": "b"}, "geometry": {"type": "Polygon", "coordinates": "x"}}]));
    assert!(broken.to_string().starts_with("feature 0: fence \"b\": geometry:"), "{broken}");
}

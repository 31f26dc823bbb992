//! GTFS-realtime, GPX and CAP codecs on real sample data. Counts and values are cross-checked with
//! independent decoders (Google's gtfs-realtime-bindings, gpxpy, ElementTree) by
//! `tests/pycheck_docs/check_docs.py`.

use geostream_codecs::cap::{CIRCLE_VERTICES, CapCodec};
use geostream_codecs::gpx::{GpxCodec, GpxOptions};
use geostream_codecs::gtfs_rt::GtfsRtCodec;
use geostream_codecs::gtfs_rt::proto;
use geostream_codecs::{Codec, Context, Outcome, Summary, decode_all};
use geostream_model::geojson::GeometryValue;
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Observation, ReasonCode};
use prost::Message;

use crate::data::read;

fn ctx() -> Context {
    Context::new(FeedId::new("docs").unwrap(), OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap())
}

fn run(codec: &mut dyn Codec, bytes: &[u8]) -> (Vec<Observation>, Summary, Vec<Outcome>) {
    let outcomes = decode_all(codec, bytes, &ctx());
    let mut summary = Summary::default();
    let mut obs = Vec::new();
    for o in &outcomes {
        summary.add(o);
        if let Outcome::Observation(b) = o {
            b.validate().unwrap();
            obs.push((**b).clone());
        }
    }
    (obs, summary, outcomes)
}

fn point(o: &Observation) -> (f64, f64) {
    match &o.geometry.value {
        GeometryValue::Point { coordinates } => (coordinates[0], coordinates[1]),
        g => panic!("not a point: {g:?}"),
    }
}

// ---------------------------------------------------------------- GTFS-realtime

const KCM: &str = "gtfs_rt/kcm_king_county_metro_vehicle_positions_1.pb";

#[test]
fn gtfs_rt_kcm_all_627_vehicles() {
    let (obs, s, _) = run(&mut GtfsRtCodec::new(), &read(KCM));
    assert_eq!(s.accepted, 627);
    assert_eq!(s.rejected_total(), 0);
    assert!(s.skipped.is_empty());
    assert_eq!(s.tracks.len(), 627);
    // First vehicle (OpenTripPlanner's test asserts trip 49195152; values from the Python bindings).
    let first = &obs[0];
    assert_eq!(first.track.as_ref().unwrap().as_str(), "4382");
    assert_eq!(first.attributes["trip_id"], "49195152");
    assert_eq!(first.attributes["route_id"], "100001");
    assert_eq!(first.attributes["stop_id"], "2470");
    assert_eq!(first.time.unix_timestamp(), 1_630_596_690);
    let (lon, lat) = point(first);
    // The f32 wire values widened to f64, exactly as Python prints them.
    assert_eq!(lon, -122.37035369873047);
    assert_eq!(lat, 47.63615417480469);
    assert!(!first.attributes.contains_key("bearing_deg"));
    // Every KCM vehicle has its own timestamp, none is at the header time or received time.
    assert!(obs.iter().all(|o| o.time.unix_timestamp() <= 1_630_596_716));
}

fn feed(entities: Vec<proto::FeedEntity>, header_ts: Option<u64>) -> Vec<u8> {
    proto::FeedMessage {
        header: proto::FeedHeader { gtfs_realtime_version: "2.0".into(), timestamp: header_ts, ..Default::default() },
        entity: entities,
    }
    .encode_to_vec()
}

fn vehicle_entity(id: &str, pos: Option<(f32, f32)>) -> proto::FeedEntity {
    proto::FeedEntity {
        id: id.into(),
        vehicle: Some(proto::VehiclePosition {
            position: pos.map(|(lat, lon)| proto::Position {
                latitude: lat,
                longitude: lon,
                bearing: Some(90.0),
                speed: Some(4.5),
                ..Default::default()
            }),
            current_status: Some(proto::vehicle_position::VehicleStopStatus::StoppedAt as i32),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn gtfs_rt_fallbacks_skips_and_rejections() {
    let trip_update =
        proto::FeedEntity { id: "tu".into(), trip_update: Some(proto::TripUpdate::default()), ..Default::default() };
    let bytes = feed(
        vec![vehicle_entity("e1", Some((47.5, -122.3))), vehicle_entity("e2", None), trip_update],
        Some(1_600_000_000),
    );
    let (obs, s, outcomes) = run(&mut GtfsRtCodec::new(), &bytes);
    assert_eq!(s.accepted, 1);
    // No vehicle descriptor: track falls back to the entity id; no vehicle timestamp: header time.
    assert_eq!(obs[0].track.as_ref().unwrap().as_str(), "e1");
    assert_eq!(obs[0].time.unix_timestamp(), 1_600_000_000);
    assert_eq!(obs[0].attributes["bearing_deg"], 90.0);
    assert_eq!(obs[0].attributes["speed_mps"], 4.5);
    assert_eq!(obs[0].attributes["current_status"], "STOPPED_AT");
    match &outcomes[1] {
        Outcome::Rejected(r) => {
            assert_eq!(r.reason, ReasonCode::Schema);
            assert!(r.detail.contains("\"e2\""), "{}", r.detail);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(outcomes[2], Outcome::Skipped(geostream_codecs::Skip::NotAPosition));

    // No header time either: the received time.
    let (obs, _, _) = run(&mut GtfsRtCodec::new(), &feed(vec![vehicle_entity("e1", Some((1.0, 2.0)))], None));
    assert_eq!(obs[0].time, ctx().received);
}

#[test]
fn gtfs_rt_garbage_is_one_malformed_rejection() {
    let (_, s, outcomes) = run(&mut GtfsRtCodec::new(), b"\xff\xff\xff not protobuf");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(s.rejected.get("malformed"), Some(&1));
}

// ---------------------------------------------------------------- CAP

const IPAWS: &str = "alerts/oasiscap_ipaws_montgomery_county_md_2019-12-13.cap.xml";
const NWS: &str = "alerts/oasiscap_nws_blizzard_warning_2021-12-27.cap.xml";

#[test]
fn cap_ipaws_polygon_area() {
    let (obs, s, _) = run(&mut CapCodec::new(), &read(IPAWS));
    assert_eq!((s.accepted, s.rejected_total()), (1, 0));
    let o = &obs[0];
    assert_eq!(o.track.as_ref().unwrap().as_str(), "402013233923688#0.0");
    // <sent>2019-12-13T13:24:50-08:00
    assert_eq!(o.time.unix_timestamp(), OffsetDateTime::from_unix_timestamp(1_576_272_290).unwrap().unix_timestamp());
    let GeometryValue::Polygon { coordinates } = &o.geometry.value else { panic!("{:?}", o.geometry) };
    assert_eq!(coordinates.len(), 1);
    assert_eq!(coordinates[0].len(), 41);
    // "39.09930403047015,-77.12967945345733" is lat,lon: the GeoJSON position is [lon, lat].
    assert_eq!(&coordinates[0][0][..], &[-77.12967945345733, 39.09930403047015][..]);
    assert_eq!(coordinates[0].first(), coordinates[0].last());
    for (k, v) in [
        ("identifier", "402013233923688"),
        ("status", "Actual"),
        ("msgType", "Alert"),
        ("scope", "Public"),
        ("event", "Local Area Emergency"),
        ("urgency", "Immediate"),
        ("severity", "Extreme"),
        ("certainty", "Observed"),
        ("areaDesc", "Montgomery County"),
        ("expires", "2019-12-13T14:24:50-08:00"),
        ("headline", "Alert Montgomery - Police Searching for Suspicious Person"),
    ] {
        assert_eq!(o.attributes[k], v, "{k}");
    }
    assert_eq!(o.attributes["geocodes"], serde_json::json!({"SAME": ["024031"]}));
}

#[test]
fn cap_nws_geocode_only_area_is_skipped() {
    let (_, s, outcomes) = run(&mut CapCodec::new(), &read(NWS));
    assert_eq!(outcomes, vec![Outcome::Skipped(geostream_codecs::Skip::NotAPosition)]);
    assert_eq!(s.accepted, 0);
}

fn cap_doc(area: &str) -> String {
    format!(
        "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>X1</identifier><sender>s</sender>\
         <sent>2024-05-01T12:00:00+02:00</sent><status>Exercise</status><msgType>Alert</msgType><scope>Public</scope>\
         <info><event>Test &amp; check</event><urgency>Future</urgency><severity>Minor</severity><certainty>Likely</certainty>\
         {area}</info></alert>"
    )
}

#[test]
fn cap_circle_and_multi_and_bad_polygons() {
    let doc = cap_doc("<area><areaDesc>c</areaDesc><circle>38.9,-77.0 10</circle></area>");
    let (obs, _, _) = run(&mut CapCodec::new(), doc.as_bytes());
    let GeometryValue::Polygon { coordinates } = &obs[0].geometry.value else { panic!() };
    assert_eq!(coordinates[0].len(), CIRCLE_VERTICES + 1);
    assert_eq!(obs[0].attributes["event"], "Test & check");
    assert_eq!(obs[0].time.unix_timestamp(), 1_714_557_600);

    let doc = cap_doc(
        "<area><areaDesc>m</areaDesc><polygon>1,2 3,4 5,6 1,2</polygon><circle>10,20 1.5</circle></area>\
         <area><areaDesc>open</areaDesc><polygon>1,2 3,4 5,6 7,8</polygon></area>\
         <area><areaDesc>short</areaDesc><polygon>1,2 3,4 1,2</polygon></area>\
         <area><areaDesc>range</areaDesc><polygon>95,2 3,4 5,6 95,2</polygon></area>\
         <area><areaDesc>zero circle</areaDesc><circle>1,2 0</circle></area>",
    );
    let (obs, s, _) = run(&mut CapCodec::new(), doc.as_bytes());
    assert_eq!(s.accepted, 1);
    assert_eq!(s.rejected.get("schema"), Some(&4));
    let GeometryValue::MultiPolygon { coordinates } = &obs[0].geometry.value else { panic!() };
    assert_eq!(coordinates.len(), 2);
    assert_eq!(&coordinates[0][0][0][..], &[2.0, 1.0][..]);
}

#[test]
fn cap_document_level_rejections() {
    for (doc, reason) in [
        ("<alert><identifier>a</identifier>", "malformed"),
        ("<feed><entry/></feed>", "schema"),
        ("<alert><sent>2024-01-01T00:00:00Z</sent></alert>", "schema"),
        ("<alert><identifier>a</identifier><sent>yesterday</sent></alert>", "invalid_time"),
        ("", "schema"),
    ] {
        let (_, s, outcomes) = run(&mut CapCodec::new(), doc.as_bytes());
        assert_eq!(outcomes.len(), 1, "{doc}");
        assert_eq!(s.rejected.get(reason), Some(&1), "{doc}: {outcomes:?}");
    }
}

// ---------------------------------------------------------------- GPX

const KORITA: &str = "gpx/gpxpy_korita-zbevnica.gpx";
const GARMIN: &str = "gpx/georust_garmin-activity.gpx";
const STRAVA: &str = "gpx/georust_strava_route_example.gpx";

#[test]
fn gpx_garmin_activity_988_timed_trackpoints() {
    let (obs, s, _) = run(&mut GpxCodec::default(), &read(GARMIN));
    assert_eq!((s.accepted, s.rejected_total()), (988, 0));
    assert_eq!(s.tracks.iter().collect::<Vec<_>>(), ["casual stroll#0"]);
    let first = &obs[0];
    assert_eq!(point(first), (-121.97232423350215, 37.241738168522716));
    assert_eq!(first.attributes["ele_m"], 104.0);
    assert_eq!(first.attributes["kind"], "trkpt");
    assert_eq!(first.attributes["seq"], 0);
    // 2017-07-29 14:46:35+00:00
    assert_eq!(first.time.unix_timestamp(), 1_501_339_595);
    assert_eq!(obs[987].attributes["seq"], 987);
}

#[test]
fn gpx_korita_four_tracks_two_waypoints_some_untimed() {
    // gpxpy: 871 trkpts in 4 tracks (the first empty; the second, 358 points, untimed) and 2
    // untimed waypoints; 513 of the 873 points have a time.
    let (_, s, _) = run(&mut GpxCodec::default(), &read(KORITA));
    assert_eq!(s.accepted, 513);
    assert_eq!(s.rejected.get("invalid_time"), Some(&360));
    let (obs, s, _) = run(&mut GpxCodec::new(GpxOptions { allow_missing_time: true }), &read(KORITA));
    assert_eq!((s.accepted, s.rejected_total()), (873, 0));
    assert_eq!(obs.iter().filter(|o| o.attributes["kind"] == "trkpt").count(), 871);
    assert_eq!(obs.iter().filter(|o| o.attributes["kind"] == "wpt").count(), 2);
    assert_eq!(obs.iter().filter(|o| o.attributes.get("time_source").is_some()).count(), 360);
    let tracks: Vec<_> = s.tracks.iter().map(String::as_str).collect();
    assert_eq!(tracks, ["03-OCT-10 #2#1", "ACTIVE LOG #2#3", "ACTIVE LOG#2", "gpx#wpt"]);
    assert_eq!(point(&obs[0]), (14.144491442, 45.380600095));
}

#[test]
fn gpx_strava_route_without_times() {
    let (_, s, _) = run(&mut GpxCodec::default(), &read(STRAVA));
    assert_eq!((s.accepted, s.rejected.get("invalid_time")), (0, Some(&113)));
    let (obs, s, _) = run(&mut GpxCodec::new(GpxOptions { allow_missing_time: true }), &read(STRAVA));
    assert_eq!(s.accepted, 113);
    assert_eq!(s.tracks.iter().collect::<Vec<_>>(), ["Afternoon Run#0"]);
    // The route goes out and back: 113 points at 81 distinct positions (gpxpy). Received time + seq
    // milliseconds keeps all 113 distinct (no dedup of revisited positions) and in order.
    let positions: std::collections::BTreeSet<_> = obs.iter().map(|o| format!("{:?}", point(o))).collect();
    assert_eq!(positions.len(), 81);
    for (i, o) in obs.iter().enumerate() {
        assert_eq!(o.time, ctx().received + geostream_model::time::Duration::milliseconds(i as i64));
        assert_eq!(o.attributes["time_source"], "received+seq_ms");
    }
    let ids: std::collections::BTreeSet<_> = obs.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 113);
    assert_eq!(obs[112].attributes["seq"], 112);
    assert_eq!(obs[0].attributes["ele_m"], 25.28);
}

#[test]
fn gpx_garbage_is_one_malformed_rejection() {
    let (_, s, outcomes) = run(&mut GpxCodec::default(), b"<gpx version='1.1'><trk><trkseg><trkpt lat='x'");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(s.rejected.get("malformed"), Some(&1));
}

//! Cursor on Target codec on a real TAK session: 887 events recorded by FreeTAKServer on
//! 2020-02-08 from ATAK and WinTAK clients (tests/data/cot, provenance in tests/data/PROVENANCE.md),
//! as one back-to-back stream and as single documents. Counts and values are cross-checked by
//! `tests/pycheck_esri_cot/check_esri_cot.py` (ElementTree, written from the documented rules).

use geostream_codecs::cot::CotCodec;
use geostream_codecs::registry::{CodecOptions, build};
use geostream_codecs::{Outcome, Skip};
use geostream_model::geojson::GeometryValue;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{Format, Mapping, Observation, ReasonCode};
use serde_json::{Value, json};

use crate::data;
use crate::mapping_files::{ctx, run};

const STREAM: &str = "cot/freetakserver_session_2020-02-08_887_events.cot.xml";
const SINGLES: [&str; 4] = [
    "cot/freetakserver_a-f-G-U-C-1581185446278.xml",
    "cot/freetakserver_a-f-G-E-V-C-1581185447835.xml",
    "cot/freetakserver_a-f-G-1581185498052.xml",
    "cot/freetakserver_b-t-f-1581185463563.xml",
];

/// 2020-02-08T19:00:00Z, after the session.
const RECEIVED_MS: i64 = 1_581_188_400_000;

fn observations(out: &[Outcome]) -> Vec<&Observation> {
    out.iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) => {
                o.validate().unwrap();
                Some(&**o)
            }
            Outcome::Rejected(r) => {
                assert!(!r.detail.is_empty());
                None
            }
            Outcome::Skipped(_) => None,
        })
        .collect()
}

fn lon_lat(o: &Observation) -> (f64, f64) {
    match &o.geometry.value {
        GeometryValue::Point { coordinates } => {
            assert_eq!(coordinates.len(), 2, "the height is an attribute, not a coordinate");
            (coordinates[0], coordinates[1])
        }
        other => panic!("not a point: {other:?}"),
    }
}

fn time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

/// The fields pinned per event, in pycheck's order.
fn check(o: &Observation, uid: &str, type_: &str, t: &str, lat: f64, lon: f64, attrs: Value) {
    assert_eq!(o.track.as_ref().unwrap().as_str(), uid);
    assert_eq!(o.attributes["type"], json!(type_), "{uid}");
    assert_eq!(o.time, time(t), "{uid}");
    assert_eq!(lon_lat(o), (lon, lat), "{uid}");
    let mut want = attrs.as_object().unwrap().clone();
    want.insert("type".into(), json!(type_));
    assert_eq!(o.attributes, want, "{uid}: every attribute, none missing, none extra");
}

#[test]
fn session_stream_all_887_events() {
    let bytes = data::read(STREAM);
    let (s, out) = run(&mut CotCodec::new(), &bytes, &ctx(RECEIVED_MS));
    // pycheck: cot stream: events=887 accepted=887 rejected={} skipped=0 tracks=18
    assert_eq!((s.accepted, s.rejected_total(), s.tracks.len()), (887, 0, 18));
    assert!(s.skipped.is_empty());
    let obs = observations(&out);
    let count = |f: &dyn Fn(&Observation) -> bool| obs.iter().filter(|o| f(o)).count();
    // pycheck: types: {'a-f-G': 9, 'a-f-G-E-V-C': 228, 'a-f-G-U-C': 502, 'a-h-G': 33, 'a-u-A-M-F': 23,
    //   'a-u-A-M-H': 1, 'a-u-G': 69, 'a-u-G-E-V': 11, 'b-m-p-s-m': 10, 'b-t-f': 1}
    let types = [
        ("a-f-G", 9),
        ("a-f-G-E-V-C", 228),
        ("a-f-G-U-C", 502),
        ("a-h-G", 33),
        ("a-u-A-M-F", 23),
        ("a-u-A-M-H", 1),
        ("a-u-G", 69),
        ("a-u-G-E-V", 11),
        ("b-m-p-s-m", 10),
        ("b-t-f", 1),
    ];
    for (t, n) in types {
        assert_eq!(count(&|o| o.attributes["type"] == json!(t)), n, "{t}");
    }
    // pycheck: with callsign: 886 with speed: 730 with hae: 402 with ce: 28
    assert_eq!(count(&|o| o.attributes.contains_key("callsign")), 886);
    assert_eq!(count(&|o| o.attributes.contains_key("speed_mps")), 730);
    assert_eq!(count(&|o| o.attributes.contains_key("hae_m")), 402);
    assert_eq!(count(&|o| o.attributes.contains_key("ce_m")), 28);
    assert_eq!(count(&|o| o.attributes.contains_key("le_m")), 0, "every le is 9999999 (unknown)");

    // pycheck event 0: an ATAK tablet without a fix, near but not at (0, 0); hae/ce/le unknown.
    check(
        obs[0],
        "ANDROID-R52JB0CDC4E",
        "a-f-G-U-C",
        "2020-02-08T18:10:46.207Z",
        -0.004287826538927404,
        -0.0076812372022802555,
        json!({"how": "h-e", "stale": "2020-02-08T18:11:13.207Z", "callsign": "corvTab",
               "course_deg": 0.0, "speed_mps": 0.0}),
    );
    // pycheck event 1: WinTAK; it was sent 2 s before event 0 and arrived after it: stream order kept.
    check(
        obs[1],
        "aa0b0312-b5cd-4c2c-bbbc-9c4c70216261",
        "a-f-G-E-V-C",
        "2020-02-08T18:10:44.000Z",
        43.97957317,
        -66.07737696,
        json!({"how": "h-e", "stale": "2020-02-08T18:11:11.000Z", "hae_m": 26.767999,
               "callsign": "Eliopoli HQ", "course_deg": 0.0, "speed_mps": 0.0}),
    );
    // pycheck event 886: a hostile marker placed by hand, no track element.
    check(
        obs[886],
        "50c506a2-eb03-41ff-b6ce-6256fee4af9a",
        "a-h-G",
        "2020-02-08T18:30:34.000Z",
        44.221007,
        -66.1409294,
        json!({"how": "h-g-i-g-o", "stale": "2020-02-15T18:30:34.000Z", "hae_m": -18.2774285,
               "callsign": "Assault Team 3"}),
    );
    // pycheck: moving events: 1, a phone walking at 0.97 m/s.
    let moving: Vec<_> =
        obs.iter().filter(|o| o.attributes.get("speed_mps").is_some_and(|v| v != &json!(0.0))).collect();
    assert_eq!(moving.len(), 1);
    check(
        moving[0],
        "ANDROID-351811095448994",
        "a-f-G-U-C",
        "2020-02-08T18:24:55.000Z",
        43.967295,
        -66.12627,
        json!({"how": "m-g", "stale": "2020-02-08T18:25:49.000Z", "hae_m": -4.93049702, "ce_m": 23.5,
               "callsign": "C0rv0", "course_deg": 209.49418484, "speed_mps": 0.97000003}),
    );
}

#[test]
fn single_documents_and_their_concatenation() {
    let mut one_by_one = Vec::new();
    for name in SINGLES {
        let (s, out) = run(&mut CotCodec::new(), &data::read(name), &ctx(RECEIVED_MS));
        assert_eq!((s.accepted, s.rejected_total()), (1, 0), "{name}");
        one_by_one.push(observations(&out)[0].clone());
    }
    // pycheck freetakserver_a-f-G-1581185498052.xml: a pretty-printed file (tabs, CRLF), negative hae.
    check(
        &one_by_one[2],
        "deccf9b1-ee37-4205-a235-a6d527fc7c24",
        "a-f-G",
        "2020-02-08T18:11:34.000Z",
        44.2198868,
        -66.1382602,
        json!({"how": "h-g-i-g-o", "stale": "2020-02-15T18:11:34.000Z", "hae_m": -13.62, "callsign": "F.1.184814"}),
    );
    // pycheck freetakserver_b-t-f-...: a GeoChat message at its sender's position, no contact element.
    check(
        &one_by_one[3],
        "GeoChat.ANDROID-R52JB0CDC4E.Eliopoli HQ.a379f777-5d5a-4b14-8511-533f8e33044a",
        "b-t-f",
        "2020-02-08T18:11:03.516Z",
        -0.004287826538927404,
        -0.0076812372022802555,
        json!({"how": "h-g-i-g-o", "stale": "2020-02-09T18:11:03.516Z"}),
    );
    // The same four back to back, as a TAK server sends them: the same observations, same ids.
    let stream: Vec<u8> = SINGLES.iter().flat_map(|n| data::read(n)).collect();
    let (s, out) = run(&mut CotCodec::new(), &stream, &ctx(RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected_total()), (4, 0));
    let together: Vec<Observation> = observations(&out).into_iter().cloned().collect();
    assert_eq!(together, one_by_one);
    // Whitespace between events is fine as well; the registry builds the same codec.
    let spaced: Vec<u8> = SINGLES.iter().flat_map(|n| [data::read(n), b"\r\n\n".to_vec()].concat()).collect();
    let mut built = build(Format::Cot, &Mapping::default(), &CodecOptions::default()).unwrap();
    let (s, _) = run(built.as_mut(), &spaced, &ctx(RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected_total()), (4, 0));
}

#[test]
fn a_cut_event_in_the_stream_costs_only_itself() {
    let bytes = data::read(STREAM);
    // Cut event 100 of the stream in half, as a dropped TCP segment would.
    let starts: Vec<usize> = bytes.windows(5).enumerate().filter(|(_, w)| *w == b"<?xml").map(|(i, _)| i).collect();
    assert_eq!(starts.len(), 887);
    let (a, b) = (starts[100], starts[101]);
    let cut = [&bytes[..a + (b - a) / 2], &bytes[b..]].concat();
    let (s, out) = run(&mut CotCodec::new(), &cut, &ctx(RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected.get("malformed")), (886, Some(&1)));
    assert_eq!(s.rejected_total(), 1);
    let Outcome::Rejected(r) = &out[100] else { panic!("{:?}", out[100]) };
    assert!(r.detail.contains("not well-formed XML"), "{}", r.detail);
    assert!(r.raw.starts_with(b"<event version='2.0' uid="), "the rejection holds the cut event");
    let e = a + cut[a..].windows(6).position(|w| w == b"<event").unwrap();
    assert!(cut[e..].starts_with(&r.raw), "and nothing before it");
    assert!(r.raw.len() < b - a, "nor the next event");
    assert_eq!(observations(&out).len(), 886);
}

#[test]
fn rejections_and_skips() {
    let ev = |attrs: &str, body: &str| format!("<event version='2.0' {attrs}>{body}</event>");
    let good_attrs = "uid='u1' type='a-f-G-U-C' time='2024-05-01T12:00:00Z' stale='2024-05-01T12:05:00Z' how='m-g'";
    let point = "<point lat='59.9' lon='10.7' hae='9999999.0' ce='12.5' le='9999999'/>";
    let one = |doc: String| {
        let (_, out) = run(&mut CotCodec::new(), doc.as_bytes(), &ctx(RECEIVED_MS));
        out
    };
    let reason = |doc: String| match one(doc.clone()).as_slice() {
        [Outcome::Rejected(r)] => {
            assert_eq!(r.raw, doc.trim().as_bytes(), "the event's own bytes");
            (r.reason, r.detail.clone())
        }
        other => panic!("{doc}: {other:?}"),
    };
    let out = one(ev(
        good_attrs,
        &format!("{point}<detail><contact callsign='A &amp; B'/><track course='90' speed='2.5'/></detail>"),
    ));
    let o = observations(&out)[0];
    assert_eq!(o.attributes["callsign"], json!("A & B"), "entities are decoded");
    assert_eq!((o.attributes["course_deg"].clone(), o.attributes["speed_mps"].clone()), (json!(90.0), json!(2.5)));
    assert_eq!(o.attributes["ce_m"], json!(12.5));
    assert!(!o.attributes.contains_key("hae_m") && !o.attributes.contains_key("le_m"));

    let cases = [
        (ev(good_attrs, ""), ReasonCode::Schema, "no <point>"),
        (format!("<event {good_attrs}/>"), ReasonCode::Schema, "no <point>"),
        (ev("type='a-f-G' time='2024-05-01T12:00:00Z'", point), ReasonCode::Schema, "no uid"),
        (ev("uid='u1' time='2024-05-01T12:00:00Z'", point), ReasonCode::Schema, "no type"),
        (ev("uid='u1' type='a-f-G'", point), ReasonCode::Schema, "no time"),
        (ev(good_attrs, "<point lat='north' lon='10'/>"), ReasonCode::Schema, "lat \"north\" is not a number"),
        (ev(good_attrs, "<point lat='59.9'/>"), ReasonCode::Schema, "no lon"),
        (ev(good_attrs, "<point lat='91' lon='10'/>"), ReasonCode::InvalidCoordinates, "out of range"),
        (ev(good_attrs, "<point lat='0' lon='0.0'/>"), ReasonCode::NullIsland, "(0, 0)"),
        (ev("uid='u1' type='a-f-G' time='yesterday'", point), ReasonCode::InvalidTime, "\"yesterday\""),
        (ev("uid='u1' type='a-f-G' time='2024-05-01T12:00:00'", point), ReasonCode::InvalidTime, "offset"),
        (ev("uid='u1' uid='u2' type='a-f-G' time='2024-05-01T12:00:00Z'", point), ReasonCode::Malformed, "event 0"),
        (ev(good_attrs, "<point lat='1' lon='2'>"), ReasonCode::Malformed, "not well-formed XML"),
        ("<alert><info/></alert>".to_owned(), ReasonCode::Schema, "<alert> at byte 0 is not a CoT <event>"),
        ("".to_owned(), ReasonCode::Schema, "no CoT <event>"),
        ("<?xml version='1.0'?>\n<!-- nothing -->".to_owned(), ReasonCode::Schema, "no CoT <event>"),
    ];
    for (doc, want, text) in cases {
        let (r, d) = reason(doc.clone());
        assert_eq!(r, want, "{doc}: {d}");
        assert!(d.contains(text), "{doc}: {d}");
    }
    // TAK pings and deletions carry no position: skipped, not rejected.
    let ping = ev("uid='takPing' type='t-x-c-t' time='2024-05-01T12:00:00Z'", "<point lat='0' lon='0'/>");
    assert_eq!(one(ping), vec![Outcome::Skipped(Skip::NotAPosition)]);
    // Junk between events is rejected alone; the events around it decode.
    let good = ev(good_attrs, point);
    let (s, out) =
        run(&mut CotCodec::new(), format!("{good}garbage{good}</stray>{good}").as_bytes(), &ctx(RECEIVED_MS));
    assert_eq!((s.accepted, s.rejected.get("malformed")), (3, Some(&2)), "{out:?}");
    // Details name the event and carry the source location.
    let mut located = ctx(RECEIVED_MS);
    located.location = "tcp 10.0.0.5:8087".into();
    let (_, out) = run(&mut CotCodec::new(), ev(good_attrs, "").as_bytes(), &located);
    let Outcome::Rejected(r) = &out[0] else { panic!() };
    assert_eq!(r.detail, "tcp 10.0.0.5:8087: event 0 (uid \"u1\"): no <point>");
}

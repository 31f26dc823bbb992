//! Golden test: gpsd's own decode of its annotated sample (`gpsd_sample_annotated.aivdm` →
//! `gpsd_sample_annotated.aivdm.js.chk.jsonl`, gpsd's JSON output, one object per message) against
//! ours, field by field, for every type we decode. gpsd gives lon/lat in degrees, speed in knots,
//! course in degrees (type 27: whole knots/degrees), and prints "not available" as the sentinel
//! (lon 181, lat 91, speed 102.3, course 360, heading 511); we map our `None`s to the same.

use std::collections::BTreeMap;

use geostream_codecs::ais::{AisError, Decoded, DecoderOptions, Message, StaticDataPart};
use serde_json::{Map, Value, json};

use crate::data;

/// gpsd's navigation status texts (type 27 prints the text instead of the code).
const NAV_STATUS: [&str; 16] = [
    "Under way using engine",
    "At anchor",
    "Not under command",
    "Restricted manoeuverability",
    "Constrained by her draught",
    "Moored",
    "Aground",
    "Engaged in fishing",
    "Under way sailing",
    "Reserved for HSC",
    "Reserved for WIG",
    "Reserved",
    "Reserved",
    "Reserved",
    "AIS-SART is active",
    "Not defined",
];

fn dims(m: &mut Map<String, Value>, d: &geostream_codecs::ais::Dimensions) {
    m.insert("to_bow".into(), json!(d.to_bow));
    m.insert("to_stern".into(), json!(d.to_stern));
    m.insert("to_port".into(), json!(d.to_port));
    m.insert("to_starboard".into(), json!(d.to_starboard));
}

/// gpsd's turn: "nan" (n/a), "fastleft"/"fastright" (±127), else round((rot/4.733)^2) with sign.
fn turn(rot: Option<i8>) -> Value {
    match rot {
        None => json!("nan"),
        Some(-127) => json!("fastleft"),
        Some(127) => json!("fastright"),
        Some(r) => {
            let v = (f64::from(r) / 4.733).powi(2).round();
            json!(if r < 0 { -v } else { v } as i64)
        }
    }
}

/// Our message in gpsd's JSON field names and units.
fn gpsd_view(msg: &Message) -> Map<String, Value> {
    let h = msg.header();
    let mut m = Map::new();
    m.insert("type".into(), json!(h.msg_type));
    m.insert("repeat".into(), json!(h.repeat));
    m.insert("mmsi".into(), json!(h.mmsi));
    let lon = |v: Option<f64>| json!(v.unwrap_or(181.0));
    let lat = |v: Option<f64>| json!(v.unwrap_or(91.0));
    match msg {
        Message::Position(p) => {
            m.insert("status".into(), json!(p.nav_status));
            m.insert("turn".into(), turn(p.rot));
            m.insert("speed".into(), json!(p.sog_knots.unwrap_or(102.3)));
            m.insert("accuracy".into(), json!(p.accuracy));
            m.insert("lon".into(), lon(p.lon));
            m.insert("lat".into(), lat(p.lat));
            m.insert("course".into(), json!(p.cog_deg.unwrap_or(360.0)));
            m.insert("heading".into(), json!(p.heading_deg.unwrap_or(511)));
            m.insert("second".into(), json!(p.second));
            m.insert("maneuver".into(), json!(p.maneuver));
            m.insert("raim".into(), json!(p.raim));
            if let Some(radio) = p.radio {
                // A payload cut inside the radio field gives `None` here; gpsd prints the partial
                // bits (one such sentence in the sample, with 5 fill bits). Compared only when whole.
                m.insert("radio".into(), json!(radio));
            }
        }
        Message::BaseStation(b) => {
            let ts =
                format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", b.year, b.month, b.day, b.hour, b.minute, b.second);
            m.insert("timestamp".into(), json!(ts));
            m.insert("accuracy".into(), json!(b.accuracy));
            m.insert("lon".into(), lon(b.lon));
            m.insert("lat".into(), lat(b.lat));
            m.insert("epfd".into(), json!(b.epfd));
            m.insert("raim".into(), json!(b.raim));
            m.insert("radio".into(), json!(b.radio));
        }
        Message::StaticVoyage(s) => {
            m.insert("ais_version".into(), json!(s.ais_version));
            m.insert("imo".into(), json!(s.imo));
            m.insert("callsign".into(), json!(s.callsign.as_str()));
            m.insert("shipname".into(), json!(s.shipname.as_str()));
            m.insert("shiptype".into(), json!(s.shiptype));
            dims(&mut m, &s.dimensions);
            m.insert("epfd".into(), json!(s.epfd));
            let eta = format!("{:02}-{:02}T{:02}:{:02}Z", s.eta_month, s.eta_day, s.eta_hour, s.eta_minute);
            m.insert("eta".into(), json!(eta));
            m.insert("draught".into(), json!(s.draught_m));
            m.insert("destination".into(), json!(s.destination.as_str()));
            m.insert("dte".into(), json!(s.dte.map(u8::from)));
        }
        Message::ClassB(b) => {
            m.insert("reserved".into(), json!(b.reserved));
            m.insert("speed".into(), json!(b.sog_knots.unwrap_or(102.3)));
            m.insert("accuracy".into(), json!(b.accuracy));
            m.insert("lon".into(), lon(b.lon));
            m.insert("lat".into(), lat(b.lat));
            m.insert("course".into(), json!(b.cog_deg.unwrap_or(360.0)));
            m.insert("heading".into(), json!(b.heading_deg.unwrap_or(511)));
            m.insert("second".into(), json!(b.second));
            m.insert("regional".into(), json!(b.regional));
            m.insert("cs".into(), json!(b.cs));
            m.insert("display".into(), json!(b.display));
            m.insert("dsc".into(), json!(b.dsc));
            m.insert("band".into(), json!(b.band));
            m.insert("msg22".into(), json!(b.msg22));
            m.insert("raim".into(), json!(b.raim));
            m.insert("radio".into(), json!(b.radio));
        }
        Message::ClassBExtended(b) => {
            m.insert("reserved".into(), json!(b.reserved));
            m.insert("speed".into(), json!(b.sog_knots.unwrap_or(102.3)));
            m.insert("accuracy".into(), json!(b.accuracy));
            m.insert("lon".into(), lon(b.lon));
            m.insert("lat".into(), lat(b.lat));
            m.insert("course".into(), json!(b.cog_deg.unwrap_or(360.0)));
            m.insert("heading".into(), json!(b.heading_deg.unwrap_or(511)));
            m.insert("second".into(), json!(b.second));
            m.insert("regional".into(), json!(b.regional));
            m.insert("shipname".into(), json!(b.shipname.as_str()));
            m.insert("shiptype".into(), json!(b.shiptype));
            dims(&mut m, &b.dimensions);
            m.insert("epfd".into(), json!(b.epfd));
            m.insert("raim".into(), json!(b.raim));
            m.insert("dte".into(), json!(u8::from(b.dte)));
            m.insert("assigned".into(), json!(b.assigned));
        }
        Message::AidToNavigation(a) => {
            m.insert("aid_type".into(), json!(a.aid_type));
            m.insert("name".into(), json!(a.name.as_str()));
            m.insert("accuracy".into(), json!(a.accuracy));
            m.insert("lon".into(), lon(a.lon));
            m.insert("lat".into(), lat(a.lat));
            dims(&mut m, &a.dimensions);
            m.insert("epfd".into(), json!(a.epfd));
            m.insert("second".into(), json!(a.second));
            m.insert("off_position".into(), json!(a.off_position));
            m.insert("regional".into(), json!(a.regional));
            m.insert("raim".into(), json!(a.raim));
            m.insert("virtual_aid".into(), json!(a.virtual_aid));
        }
        Message::StaticDataReport(s) => match &s.part {
            StaticDataPart::A { shipname } => {
                m.insert("shipname".into(), json!(shipname.as_str()));
            }
            StaticDataPart::B { shiptype, vendor_id, model, serial, callsign, dimensions, .. } => {
                m.insert("shiptype".into(), json!(shiptype));
                m.insert("vendorid3".into(), json!(vendor_id.as_str()));
                m.insert("model".into(), json!(model));
                m.insert("serial".into(), json!(serial));
                m.insert("callsign".into(), json!(callsign.as_str()));
                dims(&mut m, dimensions);
            }
        },
        Message::LongRange(l) => {
            m.insert("status".into(), json!(NAV_STATUS[usize::from(l.nav_status)]));
            m.insert("accuracy".into(), json!(l.accuracy));
            m.insert("raim".into(), json!(l.raim));
            m.insert("lon".into(), lon(l.lon));
            m.insert("lat".into(), lat(l.lat));
            m.insert("speed".into(), json!(l.sog_knots.unwrap_or(63.0)));
            m.insert("course".into(), json!(l.cog_deg.unwrap_or(511.0)));
            m.insert("gnss".into(), json!(l.gnss));
        }
        _ => {}
    }
    m
}

fn same(a: &Value, b: &Value, tolerance: f64) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= tolerance,
        _ => a == b,
    }
}

/// Compares every field of `mine` that gpsd also printed; returns (fields compared, diffs).
fn compare(gpsd: &Map<String, Value>, mine: &Map<String, Value>, diffs: &mut Vec<String>, ctx: &str) -> usize {
    let mut n = 0;
    for (k, v) in mine {
        let gk = if k == "vendorid3" { "vendorid" } else { k.as_str() };
        let Some(g) = gpsd.get(gk) else { continue };
        let g = if k == "vendorid3" { json!(g.as_str().unwrap_or("").get(..3).unwrap_or("")) } else { g.clone() };
        n += 1;
        // gpsd prints lon/lat with 6 decimals, type 27's 1/10-minute positions with 1.
        let coarse = mine.get("type") == Some(&json!(27)) && (k == "lon" || k == "lat");
        let tolerance = if coarse { 0.05 + 1e-9 } else { 0.6e-6 };
        if !same(&g, v, tolerance) {
            diffs.push(format!("{ctx}: field {k}: gpsd {g}, geostream {v}"));
        }
    }
    n
}

fn supported(t: u64) -> bool {
    matches!(t, 1..=5 | 18 | 19 | 21 | 24 | 27)
}

#[test]
fn gpsd_golden_decode_matches() {
    let input = data::read("gpsd_sample_annotated.aivdm");
    let expected = data::read("gpsd_sample_annotated.aivdm.js.chk.jsonl");
    let ours: Vec<Result<Decoded<'_>, AisError>> = data::messages(&input, DecoderOptions::default());
    // (type, mmsi) of everything we saw, decoded or reported unsupported.
    let key = |r: &Result<Decoded<'_>, AisError>| -> Option<(u64, u64)> {
        match r {
            Ok(d) => Some((u64::from(d.message.header().msg_type), u64::from(d.message.header().mmsi))),
            Err(AisError::Unsupported { header }) => Some((u64::from(header.msg_type), u64::from(header.mmsi))),
            Err(_) => None,
        }
    };
    let mut cursor = 0;
    let mut diffs = Vec::new();
    let mut per_type: BTreeMap<u64, (usize, usize, usize)> = BTreeMap::new(); // (matched, total, fields)
    for (lineno, line) in std::str::from_utf8(&expected).unwrap().lines().enumerate() {
        let g: Map<String, Value> = serde_json::from_str(line).unwrap();
        let t = g["type"].as_u64().unwrap();
        let mmsi = g["mmsi"].as_u64().unwrap();
        let ctx = format!("gpsd line {} (type {t}, mmsi {mmsi})", lineno + 1);
        let entry = per_type.entry(t).or_default();
        entry.1 += 1;
        let before = diffs.len();
        if t == 24 {
            // gpsd prints parts A and B merged into one object.
            let parts: Vec<Map<String, Value>> = ours
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter(|d| matches!(&d.message, Message::StaticDataReport(s) if u64::from(s.header.mmsi) == mmsi))
                .map(|d| gpsd_view(&d.message))
                .collect();
            let mut fields = 0;
            for p in &parts {
                fields += compare(&g, p, &mut diffs, &ctx);
            }
            if !parts.iter().any(|p| p.contains_key("shipname")) || !parts.iter().any(|p| p.contains_key("callsign")) {
                diffs.push(format!("{ctx}: geostream lacks part A or B"));
            }
            entry.2 += fields;
        } else {
            let Some(pos) = ours[cursor..].iter().position(|r| key(r) == Some((t, mmsi))) else {
                diffs.push(format!("{ctx}: no geostream message with this type and mmsi after message {cursor}"));
                continue;
            };
            let found = &ours[cursor + pos];
            cursor += pos + 1;
            match found {
                Ok(d) => {
                    let fields = compare(&g, &gpsd_view(&d.message), &mut diffs, &ctx);
                    if fields < 8 {
                        diffs.push(format!("{ctx}: only {fields} fields compared"));
                    }
                    entry.2 += fields;
                }
                Err(e) if supported(t) => diffs.push(format!("{ctx}: geostream failed: {e}")),
                Err(_) => {} // unsupported type, header (type, mmsi) matched
            }
        }
        if diffs.len() == before {
            entry.0 += 1;
        }
    }
    let summary: Vec<String> = per_type
        .iter()
        .map(|(t, (m, n, f))| {
            if supported(*t) { format!("type {t}: {m}/{n} ({f} fields)") } else { format!("type {t}: {m}/{n} header") }
        })
        .collect();
    println!("gpsd golden: {}", summary.join(", "));
    assert!(diffs.is_empty(), "{} mismatches against gpsd:\n{}", diffs.len(), diffs.join("\n"));
    let supported_total: usize = per_type.iter().filter(|(t, _)| supported(**t)).map(|(_, v)| v.1).sum();
    assert_eq!(supported_total, 23, "gpsd objects of supported types");
}

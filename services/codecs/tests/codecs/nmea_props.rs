//! NMEA codec behaviour: epochs, dates across midnight, tracks, rejections, and property tests.

use geostream_codecs::nmea::{NmeaCodec, NmeaOptions};
use geostream_codecs::{Codec, Outcome, Skip, decode_all};
use geostream_model::ReasonCode;
use proptest::prelude::*;

use crate::nmea_files::{ctx, observations};

fn sentence(body: &str) -> String {
    let cs = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{cs:02X}")
}

fn decode(lines: &[String]) -> Vec<Outcome> {
    decode_all(&mut NmeaCodec::default(), lines.join("\n").as_bytes(), &ctx())
}

#[test]
fn date_carries_across_midnight() {
    let lines = [
        sentence("GPRMC,235959,A,5505.3309,N,03858.5873,E,1.0,90.0,311217,,,A"),
        sentence("GPGGA,000000,5505.3310,N,03858.5874,E,1,08,0.9,100.0,M,14.0,M,,"),
        sentence("GPGGA,000001,5505.3311,N,03858.5875,E,1,08,0.9,100.0,M,14.0,M,,"),
    ];
    let out = decode(&lines);
    let obs = observations(&out);
    let times: Vec<String> = obs.iter().map(|o| o.time.to_string()).collect();
    assert_eq!(
        times,
        ["2017-12-31 23:59:59.0 +00:00:00", "2018-01-01 0:00:00.0 +00:00:00", "2018-01-01 0:00:01.0 +00:00:00"]
    );
    assert_eq!(obs[1].attributes["date_source"], "carried");
}

#[test]
fn no_date_yet_uses_received_date_and_device_is_the_track() {
    let mut c = ctx();
    c.source_attributes.insert("device".into(), "rx-7".into());
    let line = sentence("GNGGA,221319.00,5000.0,N,00400.0,E,1,05,1.2,10.0,M,,M,,");
    let out = decode_all(&mut NmeaCodec::default(), line.as_bytes(), &c);
    let obs = observations(&out);
    // ctx.received is 2023-11-14T22:13:20Z.
    assert_eq!(obs[0].time.to_string(), "2023-11-14 22:13:19.0 +00:00:00");
    assert_eq!(obs[0].attributes["date_source"], "received");
    assert_eq!(obs[0].track.as_ref().unwrap().as_str(), "rx-7");
    assert_eq!(obs[0].attributes["device"], "rx-7");
}

#[test]
fn rejections_and_skips() {
    let lines = vec![
        "$GPGLL,5050.4122,N,00420.8266,E,105153.71,A,A*66".to_owned(),
        "$GPGLL,5050.4122,N,00420.8266,E,105153.71,A,A".to_owned(),
        "garbage".to_owned(),
        "# comment".to_owned(),
        sentence("GPGSV,1,1,00"),
        sentence("PSTI,030,213121.000"),
        "!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A".to_owned(),
        sentence("GPRMC,120000,V,,,,,,,010120,,,N"),
        sentence("GPGGA,120001,0000.0000,N,00000.0000,E,1,04,2.0,0.0,M,,M,,"),
        sentence("GPGGA,120002,9100.0000,N,00000.0000,E,1,04,2.0,0.0,M,,M,,"),
        sentence("GPRMC,120003,A,5000.0,N,00400.0,E,1.0,400.0,010120,,,A"),
    ];
    let out = decode(&lines);
    let rejected: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|o| match o {
            Outcome::Rejected(r) => Some((r.reason.as_str(), r.detail.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        [
            ("checksum", "line 1: NMEA checksum mismatch: computed 0x65, sentence says 0x66"),
            ("checksum", "line 2: NMEA sentence has no '*hh' checksum (not accepted: allow_missing_checksum is off)"),
            ("malformed", "line 3: NMEA sentence: malformed start: not an NMEA sentence (no '$' or '!' start)"),
            ("invalid_coordinates", "line 10: NMEA GGA: coordinates out of range: lat 91, lon 0"),
            ("malformed", "line 11: NMEA RMC: malformed course: outside 0..360 degrees"),
            // The 0,0 epoch ends at finish (rejected lines do not end an epoch).
            ("null_island", "line 9: NMEA fix at exactly 0,0 (no real fix)"),
        ]
    );
    let skips = out.iter().filter(|o| matches!(o, Outcome::Skipped(Skip::NotAPosition))).count();
    assert_eq!(skips, 4);
    assert!(out.iter().any(|o| matches!(o, Outcome::Skipped(Skip::Comment))));
    assert_eq!(ReasonCode::NullIsland.as_str(), "null_island");
}

#[test]
fn missing_checksum_allowed_by_option() {
    let mut c = NmeaCodec::new(NmeaOptions { allow_missing_checksum: true });
    let line = b"$GPRMC,105153.71,A,5050.4122,N,00420.8266,E,0.14,303.60,120319,,,A";
    let out = decode_all(&mut c, line, &ctx());
    assert_eq!(observations(&out).len(), 1);
    assert_eq!(c.name(), "nmea");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_lines_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..90), 0..8)) {
        let mut c = NmeaCodec::default();
        let mut n = 0;
        for l in &lines {
            c.decode(l, &ctx(), &mut |_| n += 1);
        }
        c.finish(&ctx(), &mut |_| n += 1);
        prop_assert!(n >= lines.len());
    }

    #[test]
    fn nmea_like_lines_never_panic(fields in proptest::collection::vec("[0-9A-Z.,*$-]{0,12}", 0..16), kind in "(GGA|RMC|GLL|VTG|GNS|ZDA)", fix in any::<bool>()) {
        let body = format!("GP{kind},{}", fields.join(","));
        let line = if fix { sentence(&body) } else { format!("${body}") };
        let _ = decode(&[line]);
    }

    #[test]
    fn rmc_round_trips_coordinates(lat in -89.999f64..89.999, lon in -179.999f64..179.999, secs in 0u32..86_400) {
        prop_assume!(lat.abs() > 1e-4 || lon.abs() > 1e-4);
        let dm = |v: f64, w: usize| {
            let d = v.abs().trunc();
            format!("{:0w$}{:07.4}", d as u32, (v.abs() - d) * 60.0, w = w)
        };
        let (la, lo) = (dm(lat, 2), dm(lon, 3));
        let body = format!(
            "GPRMC,{:02}{:02}{:02},A,{la},{},{lo},{},1.5,45.0,150623,,,A",
            secs / 3600, secs / 60 % 60, secs % 60,
            if lat < 0.0 { "S" } else { "N" }, if lon < 0.0 { "W" } else { "E" }
        );
        let out = decode(&[sentence(&body)]);
        let obs = observations(&out);
        prop_assert_eq!(obs.len(), 1);
        let geostream_model::geojson::GeometryValue::Point { coordinates: p } = &obs[0].geometry.value else {
            panic!("not a point")
        };
        // 4 decimals of a minute: 1e-4 / 60 degrees.
        prop_assert!((p[1] - lat).abs() < 2e-6 && (p[0] - lon).abs() < 2e-6, "{body} -> {p:?}");
    }
}

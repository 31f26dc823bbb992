//! Property tests: no input panics the decoder; positions survive an encode → decode round trip
//! through a small test-only encoder.

use geostream_codecs::ais::{Decoder, DecoderOptions, Message, Output};
use proptest::prelude::*;

/// Packs (value, width) fields into 6-bit armored characters; returns (payload, fill bits).
fn armor(fields: &[(u64, usize)]) -> (String, u8) {
    let mut bits: Vec<u8> = Vec::new();
    for &(v, w) in fields {
        for i in (0..w).rev() {
            bits.push(((v >> i) & 1) as u8);
        }
    }
    let fill = (6 - bits.len() % 6) % 6;
    bits.extend(std::iter::repeat_n(0, fill));
    let payload = bits
        .chunks(6)
        .map(|c| {
            let v = c.iter().fold(0u8, |a, &b| a << 1 | b);
            let c = if v < 40 { v + 48 } else { v + 56 };
            c as char
        })
        .collect();
    (payload, fill as u8)
}

fn sentence(payload: &str, fill: u8) -> String {
    let body = format!("AIVDM,1,1,,A,{payload},{fill}");
    let cs = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("!{body}*{cs:02X}")
}

fn twos(v: i32, w: usize) -> u64 {
    u64::from(v as u32) & ((1u64 << w) - 1)
}

/// A type 1 sentence; `None` encodes "not available". lon/lat in 1/10000 minute, sog/cog in tenths.
pub fn encode_type1(
    mmsi: u32,
    lon: Option<i32>,
    lat: Option<i32>,
    sog: Option<u32>,
    cog: Option<u32>,
    heading: Option<u32>,
) -> String {
    let (p, fill) = armor(&[
        (1, 6),
        (0, 2),
        (u64::from(mmsi), 30),
        (0, 4),
        (twos(-128, 8), 8),
        (u64::from(sog.unwrap_or(1023)), 10),
        (1, 1),
        (twos(lon.unwrap_or(108_600_000), 28), 28),
        (twos(lat.unwrap_or(54_600_000), 27), 27),
        (u64::from(cog.unwrap_or(3600)), 12),
        (u64::from(heading.unwrap_or(511)), 9),
        (30, 6),
        (0, 2),
        (0, 3),
        (0, 1),
        (0, 19),
    ]);
    sentence(&p, fill)
}

/// A type 27 sentence; lon/lat in 1/10 minute.
fn encode_type27(mmsi: u32, lon: i32, lat: i32, sog: u32, cog: u32) -> String {
    let (p, fill) = armor(&[
        (27, 6),
        (0, 2),
        (u64::from(mmsi), 30),
        (0, 1),
        (0, 1),
        (5, 4),
        (twos(lon, 18), 18),
        (twos(lat, 17), 17),
        (u64::from(sog), 6),
        (u64::from(cog), 9),
        (0, 1),
        (0, 1),
    ]);
    sentence(&p, fill)
}

const ARMOR: &str = "0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVW`abcdefghijklmnopqrstuvw";

fn armored_payload() -> impl Strategy<Value = String> {
    proptest::collection::vec(0usize..64, 0..200)
        .prop_map(|v| v.into_iter().map(|i| ARMOR.as_bytes()[i] as char).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20)) {
        let mut dec = Decoder::new(DecoderOptions { max_pending: 2, max_age_lines: 5, verify_tag_block_checksum: false });
        for l in &lines {
            let _ = dec.push_line(l);
        }
        dec.flush();
        let _ = dec.take_incomplete().count();
        prop_assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn valid_frames_with_arbitrary_payloads_never_panic(
        parts in proptest::collection::vec((armored_payload(), 0u8..6, 1u8..4, 1u8..4, 0u8..3), 1..12),
        tag in any::<bool>(),
    ) {
        let mut dec = Decoder::new(DecoderOptions { max_pending: 3, ..Default::default() });
        for (payload, fill, total, num, seq) in &parts {
            let num = (*num).min(*total);
            let body = format!("AIVDM,{total},{num},{seq},B,{payload},{fill}");
            let cs = body.bytes().fold(0u8, |a, b| a ^ b);
            let line = if tag { format!("\\c:1420030798,s:x*00\\!{body}*{cs:02X},r1,1272412827") } else { format!("!{body}*{cs:02X}") };
            match dec.push_line(line.as_bytes()) {
                Ok(_) => {}
                Err(e) => { let _ = (e.reason(), e.to_string()); }
            }
        }
        dec.flush();
        for e in dec.take_incomplete() {
            prop_assert_eq!(e.reason(), geostream_model::ReasonCode::Incomplete);
        }
    }

    #[test]
    fn type1_round_trip(
        mmsi in 0u32..(1 << 30),
        lon in proptest::option::of(-108_000_000i32..=108_000_000),
        lat in proptest::option::of(-54_000_000i32..=54_000_000),
        sog in proptest::option::of(0u32..1023),
        cog in proptest::option::of(0u32..3600),
        heading in proptest::option::of(0u32..360),
    ) {
        let s = encode_type1(mmsi, lon, lat, sog, cog, heading);
        let out = Decoder::default().push_line(s.as_bytes());
        let Ok(Output::Message(d)) = out else { return Err(TestCaseError::fail(format!("{s}: {out:?}"))) };
        let Message::Position(p) = d.message else { return Err(TestCaseError::fail("not a position")) };
        prop_assert_eq!(p.header.mmsi, mmsi);
        prop_assert_eq!(p.lon, lon.map(|v| f64::from(v) / 600_000.0));
        prop_assert_eq!(p.lat, lat.map(|v| f64::from(v) / 600_000.0));
        prop_assert_eq!(p.sog_knots, sog.map(|v| f64::from(v) / 10.0));
        prop_assert_eq!(p.cog_deg, cog.map(|v| f64::from(v) / 10.0));
        prop_assert_eq!(p.heading_deg, heading.map(|v| v as u16));
        prop_assert_eq!(p.rot, None);
        prop_assert_eq!(p.radio, Some(0));
    }

    #[test]
    fn type27_round_trip(
        mmsi in 0u32..(1 << 30),
        lon in -108_000i32..=108_000,
        lat in -54_000i32..=54_000,
        sog in 0u32..63,
        cog in 0u32..360,
    ) {
        let s = encode_type27(mmsi, lon, lat, sog, cog);
        let Ok(Output::Message(d)) = Decoder::default().push_line(s.as_bytes()) else { return Err(TestCaseError::fail(s)) };
        let Message::LongRange(p) = d.message else { return Err(TestCaseError::fail("not type 27")) };
        prop_assert_eq!(p.lon, Some(f64::from(lon) / 600.0));
        prop_assert_eq!(p.lat, Some(f64::from(lat) / 600.0));
        prop_assert_eq!(p.sog_knots, Some(f64::from(sog)));
        prop_assert_eq!(p.cog_deg, Some(f64::from(cog)));
        prop_assert_eq!(p.nav_status, 5);
    }
}

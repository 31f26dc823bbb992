//! Every AIS sample file decoded end to end; counts pinned and cross-checked against pyais 3.3.1
//! (`tests/pyais/expected_counts.py`, run by hand; its output is quoted next to each expectation).
//!
//! Counting, same as the script: `sentences` = lines that frame as an AIS sentence with a valid
//! checksum; `messages` = complete messages (single sentences plus reassembled groups), whether we
//! decode them or not; `types` = message type from the header of each message whose payload holds
//! at least the 6 type bits. pyais pads short payloads with zeros and decodes them; we report
//! them as `too_short` (malformed) instead, so `decoded + unsupported + too_short` covers every
//! typed message.

use std::collections::BTreeMap;

use geostream_codecs::ais::sentence::{Line, parse_line};
use geostream_codecs::ais::{AisError, DecoderOptions, Output, SkipKind};

use crate::data;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sentences: usize,
    pub messages: usize,
    pub types: BTreeMap<u8, usize>,
    pub decoded: usize,
    pub unsupported: usize,
    pub too_short: usize,
    pub no_type: usize,
    pub other_errors: usize,
    pub skipped: BTreeMap<&'static str, usize>,
}

pub fn count(name: &str, opts: DecoderOptions) -> Counts {
    let bytes = data::read(name);
    let mut c = Counts::default();
    data::decode_all(&bytes, opts, |line, r| {
        let framed = matches!(parse_line(line, opts.verify_tag_block_checksum), Ok(Line::Sentence(_)));
        if framed {
            c.sentences += 1;
        }
        match r {
            Ok(Output::Message(d)) => {
                c.messages += 1;
                c.decoded += 1;
                *c.types.entry(d.message.header().msg_type).or_default() += 1;
            }
            Ok(Output::Fragment | Output::Duplicate) => {}
            Ok(Output::Skipped(k)) => {
                let k = match k {
                    SkipKind::Blank => "blank",
                    SkipKind::Comment => "comment",
                    SkipKind::OtherNmea => "other_nmea",
                    SkipKind::Junk => "junk",
                };
                *c.skipped.entry(k).or_default() += 1;
            }
            Err(AisError::Unsupported { header }) => {
                c.messages += 1;
                c.unsupported += 1;
                *c.types.entry(header.msg_type).or_default() += 1;
            }
            Err(AisError::TooShort { msg_type, bits, .. }) if framed => {
                c.messages += 1;
                if bits >= 6 {
                    c.too_short += 1;
                    *c.types.entry(msg_type).or_default() += 1;
                } else {
                    c.no_type += 1;
                }
            }
            Err(AisError::Armoring { .. }) if framed => {
                c.messages += 1;
                c.other_errors += 1;
            }
            Err(_) => c.other_errors += 1,
        }
    });
    c
}

fn types(pairs: &[(u8, usize)]) -> BTreeMap<u8, usize> {
    pairs.iter().copied().collect()
}

/// Options for the files: the AMSA tag blocks all say `*00`, so tag block checksums are not verified
/// (tested separately in `ais_sentences`).
fn lenient() -> DecoderOptions {
    DecoderOptions { verify_tag_block_checksum: false, ..Default::default() }
}

/// Asserts what pyais 3.3.1 also reports (sentences, messages, types), plus our own breakdown.
#[allow(clippy::too_many_arguments)]
fn check(
    name: &str,
    sentences: usize,
    messages: usize,
    t: &[(u8, usize)],
    decoded: usize,
    unsupported: usize,
    too_short: usize,
    no_type: usize,
) {
    let c = count(name, lenient());
    assert_eq!(
        (c.sentences, c.messages, &c.types),
        (sentences, messages, &types(t)),
        "{name}: sentences, messages, types (pyais 3.3.1 agrees on these)"
    );
    assert_eq!(
        (c.decoded, c.unsupported, c.too_short, c.no_type),
        (decoded, unsupported, too_short, no_type),
        "{name}: decoded, unsupported, too short, empty payload"
    );
    assert_eq!(decoded + unsupported + too_short + no_type, messages, "{name}: every message accounted for");
}

#[test]
fn exactearth_satellite_capture() {
    // pyais: valid_sentences 3972, messages 3972, same types. Type 26 and short payloads included:
    // 6 too-short messages are errors here, never panics.
    check(
        "amsa_risky_exactearth_sat_ais_epochms_1.nmea",
        3972,
        3972,
        &[
            (0, 4),
            (1, 2686),
            (3, 230),
            (4, 35),
            (5, 914),
            (6, 5),
            (7, 3),
            (8, 7),
            (10, 4),
            (11, 2),
            (12, 1),
            (13, 2),
            (14, 5),
            (15, 11),
            (16, 7),
            (17, 1),
            (18, 12),
            (20, 16),
            (21, 14),
            (22, 2),
            (23, 2),
            (24, 2),
            (25, 4),
            (26, 2),
            (27, 1),
        ],
        3892,
        74,
        6,
        0,
    );
    let c = count("amsa_risky_exactearth_sat_ais_epochms_1.nmea", lenient());
    assert_eq!(c.skipped.get("other_nmea"), Some(&3188), "$PGHP lines skipped as other NMEA");
}

#[test]
fn amsa_tag_block_timestamped() {
    // pyais: 100, 100, {1: 75, 3: 25}
    check("amsa_risky_tagblock_c_timestamped.nmea", 100, 100, &[(1, 75), (3, 25)], 100, 0, 0, 0);
}

#[test]
fn gpsd_type6_fid55() {
    // pyais: 1480, 1326, same types.
    check(
        "gpsd_ais_nmea_type6_fid55.nmea",
        1480,
        1326,
        &[
            (1, 573),
            (2, 12),
            (3, 111),
            (4, 30),
            (5, 130),
            (6, 68),
            (7, 2),
            (8, 73),
            (17, 5),
            (18, 110),
            (19, 1),
            (20, 12),
            (21, 133),
            (23, 2),
            (24, 63),
            (27, 1),
        ],
        1164,
        162,
        0,
        0,
    );
}

#[test]
fn gpsd_annotated_sample() {
    // pyais: 118, 102, same types (comment lines skipped, one of which quotes a sentence).
    check(
        "gpsd_sample_annotated.aivdm",
        118,
        102,
        &[
            (1, 4),
            (2, 1),
            (3, 1),
            (4, 4),
            (5, 3),
            (6, 13),
            (7, 3),
            (8, 18),
            (9, 2),
            (10, 2),
            (11, 1),
            (12, 7),
            (13, 1),
            (14, 3),
            (15, 3),
            (16, 2),
            (17, 2),
            (18, 3),
            (19, 1),
            (20, 5),
            (21, 2),
            (22, 3),
            (23, 1),
            (24, 7),
            (25, 3),
            (26, 5),
            (27, 2),
        ],
        28,
        74,
        0,
        0,
    );
}

#[test]
fn libais_type_examples() {
    // pyais: 26, 26, one of each type but 19.
    let t: Vec<(u8, usize)> = (1..=27).filter(|t| *t != 19).map(|t| (t, 1)).collect();
    check("libais_typeexamples.nmea", 26, 26, &t, 9, 17, 0, 0);
}

#[test]
fn libais_uscg_station_epoch() {
    // pyais: 263, 261, same types (type 27 and 23 short payloads: pyais zero-pads, we report too short).
    check(
        "libais_uscg_nais_station_epoch.aivdm",
        263,
        261,
        &[
            (1, 4),
            (2, 1),
            (3, 3),
            (4, 3),
            (5, 2),
            (6, 10),
            (7, 6),
            (8, 13),
            (9, 6),
            (10, 7),
            (11, 7),
            (12, 10),
            (13, 6),
            (14, 12),
            (15, 18),
            (16, 9),
            (17, 7),
            (18, 11),
            (19, 3),
            (20, 13),
            (21, 9),
            (22, 9),
            (23, 13),
            (24, 10),
            (25, 16),
            (26, 17),
            (27, 19),
            (28, 17),
        ],
        58,
        195,
        8,
        0,
    );
}

#[test]
fn pyais_mixed_stream() {
    // pyais: 14, 12, {1: 10, 5: 2}. The line whose sentence lacks its '*' checksum is malformed.
    check("pyais_mixed_gatehouse_pghp.nmea", 14, 12, &[(1, 10), (5, 2)], 12, 0, 0, 0);
    let c = count("pyais_mixed_gatehouse_pghp.nmea", lenient());
    assert_eq!(c.other_errors, 1);
    assert_eq!(c.skipped.get("junk"), Some(&2));
    assert_eq!(c.skipped.get("other_nmea"), Some(&6));
    assert_eq!(c.skipped.get("comment"), Some(&5));
}

#[test]
fn pyais_data_sample() {
    // pyais: 898, 878, same types; pyais fails to decode the 100 empty payloads ("!AIVDM,1,1,,B,,0*25").
    check(
        "pyais_nmea_data_sample.nmea",
        898,
        878,
        &[(1, 667), (3, 76), (4, 6), (15, 7), (18, 19), (20, 1), (24, 2)],
        770,
        8,
        0,
        100,
    );
}

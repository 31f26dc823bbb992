//! Codec throughput on the real sample files in `tests/data` (BRIEF section 6), with reference
//! parsers measured in the same run so the figures can be read as ratios:
//!
//! - `ais/*`: our AIS decoder (with and without normalisation) against the `nmea-parser` crate on
//!   the same lines: every AIVDM/AIVDO line of the AIS samples, minus the lines `nmea-parser`
//!   panics on (found up front with `catch_unwind` and listed on stderr).
//! - `ais/geostream_decode_exactearth`: our codec over the whole exactEarth satellite file,
//!   including the lines that make `nmea-parser` panic.
//! - `geojson/*`: our GeoJSON codec with the USGS mapping against a bare `serde_json::Value` parse
//!   and a `geojson::FeatureCollection` parse of the same document.
//! - `nmea`, `csv`, `gtfs_rt`: our codecs alone.
//!
//! Every benchmark sets `Throughput::Elements` to the number of records (lines, features, rows,
//! vehicles), so criterion reports records per second. `scripts/bench.sh` runs this target and
//! prints the figures as JSON lines.
//!
//! Line formats are framed here the way a line source would hand them over (split on `\n`, `\r`
//! trimmed, no per-line location string), and outcomes are consumed with `black_box` rather than
//! collected, so the figures measure the codec and not `decode_all`'s bookkeeping.

use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geostream_codecs::ais::{AisCodec, Decoder, DecoderOptions};
use geostream_codecs::csv_codec::{CsvCodec, CsvOptions};
use geostream_codecs::geojson_codec::{GeoJsonCodec, GeoJsonOptions};
use geostream_codecs::gtfs_rt::GtfsRtCodec;
use geostream_codecs::nmea::{NmeaCodec, NmeaOptions};
use geostream_codecs::{Codec, Context, Framing, Outcome};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Mapping};
use nmea_parser::NmeaParser;

/// The AIS samples, raw.
const AIS_FILES: &[(&str, &[u8])] = &[
    (
        "amsa_risky_exactearth_sat_ais_epochms_1.nmea",
        include_bytes!("../tests/data/amsa_risky_exactearth_sat_ais_epochms_1.nmea"),
    ),
    ("amsa_risky_tagblock_c_timestamped.nmea", include_bytes!("../tests/data/amsa_risky_tagblock_c_timestamped.nmea")),
    ("gpsd_ais_nmea_type6_fid55.nmea", include_bytes!("../tests/data/gpsd_ais_nmea_type6_fid55.nmea")),
    ("gpsd_sample_annotated.aivdm", include_bytes!("../tests/data/gpsd_sample_annotated.aivdm")),
    ("libais_typeexamples.nmea", include_bytes!("../tests/data/libais_typeexamples.nmea")),
    ("libais_uscg_nais_station_epoch.aivdm", include_bytes!("../tests/data/libais_uscg_nais_station_epoch.aivdm")),
    ("pyais_nmea_data_sample.nmea", include_bytes!("../tests/data/pyais_nmea_data_sample.nmea")),
];
const EXACTEARTH: &[u8] = include_bytes!("../tests/data/amsa_risky_exactearth_sat_ais_epochms_1.nmea");
const USGS: &[u8] = include_bytes!("../tests/data/usgs_all_week_2018-02-07.geojson");
const AERORUST_NMEA1: &[u8] = include_bytes!("../tests/data/aerorust_nmea1_moving_track_2017-03-31.nmea");
const OPENSKY_CSV: &[u8] = include_bytes!("../tests/data/opensky_traffic_quickstart_15min.csv");
const KCM_PB: &[u8] = include_bytes!("../tests/data/gtfs_rt/kcm_king_county_metro_vehicle_positions_1.pb");
const ESRI_FACILITIES: &[u8] = include_bytes!("../tests/data/esri/pyesridump_esri_test_facilities_2015.json");
const COT_SESSION: &[u8] = include_bytes!("../tests/data/cot/freetakserver_session_2020-02-08_887_events.cot.xml");

/// USGS `metadata.generated` (the mapping rejects event times too far after the receive time).
const USGS_GENERATED_MS: i64 = 1_517_968_154_000;
/// The end of the OpenSky 15-minute sample.
const OPENSKY_END_MS: i64 = 1_633_612_501_000;

fn ctx(received_ms: i64) -> Context {
    let t =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000).expect("a valid receive time");
    Context::new(FeedId::new("bench").expect("a valid feed id"), t)
}

fn mapping(v: serde_json::Value) -> Mapping {
    serde_json::from_value(v).expect("a valid mapping")
}

/// Lines as a line source hands them over: split on `\n`, a trailing `\r` removed, and no empty
/// line after a final newline.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Feeds `input` to `codec` as its framing asks and counts the outcomes (consumed, not kept).
fn drive(codec: &mut dyn Codec, input: &[u8], ctx: &Context) -> usize {
    let mut n = 0usize;
    let mut sink = |o: Outcome| {
        black_box(&o);
        n += 1;
    };
    match codec.framing() {
        Framing::Document => codec.decode(input, ctx, &mut sink),
        Framing::Lines => {
            for line in lines(input) {
                codec.decode(line, ctx, &mut sink);
            }
        }
    }
    codec.finish(ctx, &mut sink);
    n
}

/// Whether `nmea-parser` panics on `line` after the lines before it (it keeps multi-part state).
fn reference_panics(parser: &mut NmeaParser, line: &str) -> bool {
    panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = black_box(parser.parse_sentence(line));
    }))
    .is_err()
}

/// The AIS comparison input: every AIVDM/AIVDO line of the samples (as is, with tag blocks and
/// trailing receiver fields, which both parsers skip over) except those `nmea-parser` panics on.
/// Removing a line can change the multi-part state the parser sees later, so the scan repeats
/// until a pass runs clean. Reports the excluded lines on stderr.
fn ais_comparison_lines() -> Vec<String> {
    let mut candidates: Vec<(String, usize, String)> = Vec::new();
    for (name, bytes) in AIS_FILES {
        for (i, line) in lines(bytes).enumerate() {
            let Ok(text) = std::str::from_utf8(line) else { continue };
            if text.contains("VDM,") || text.contains("VDO,") {
                candidates.push((name.to_string(), i + 1, text.to_owned()));
            }
        }
    }
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut excluded: Vec<(String, usize, String)> = Vec::new();
    loop {
        let mut parser = NmeaParser::new();
        let mut panicked = None;
        for (idx, (_, _, text)) in candidates.iter().enumerate() {
            if reference_panics(&mut parser, text) {
                panicked = Some(idx);
                break;
            }
        }
        match panicked {
            Some(idx) => excluded.push(candidates.remove(idx)),
            None => break,
        }
    }
    panic::set_hook(hook);
    eprintln!(
        "ais comparison: {} lines; {} excluded because nmea-parser 0.11 panics on them",
        candidates.len(),
        excluded.len()
    );
    for (name, line_no, text) in &excluded {
        eprintln!("  nmea-parser panic: {name}:{line_no}: {text}");
    }
    candidates.into_iter().map(|(_, _, text)| text).collect()
}

fn ais(c: &mut Criterion) {
    let lines_in = ais_comparison_lines();
    // Far from every file's dates (as in the tests), so only lines without a time use it.
    let received = ctx(1_700_000_000_000);
    let mut g = c.benchmark_group("ais");
    g.throughput(Throughput::Elements(lines_in.len() as u64));
    g.bench_function("geostream_decode", |b| {
        b.iter(|| {
            let mut codec = AisCodec::default();
            let mut n = 0usize;
            for line in &lines_in {
                codec.decode(line.as_bytes(), &received, &mut |o| {
                    black_box(&o);
                    n += 1;
                });
            }
            codec.finish(&received, &mut |o| {
                black_box(&o);
            });
            n
        })
    });
    g.bench_function("geostream_decode_only", |b| {
        b.iter(|| {
            let mut dec = Decoder::new(DecoderOptions::default());
            let mut ok = 0usize;
            for line in &lines_in {
                if let Ok(out) = dec.push_line(line.as_bytes()) {
                    black_box(&out);
                    ok += 1;
                }
            }
            dec.flush();
            dec.take_incomplete().count() + ok
        })
    });
    g.bench_function("nmea_parser_reference", |b| {
        b.iter(|| {
            let mut parser = NmeaParser::new();
            let mut ok = 0usize;
            for line in &lines_in {
                if let Ok(m) = parser.parse_sentence(line) {
                    black_box(&m);
                    ok += 1;
                }
            }
            ok
        })
    });
    let exactearth_lines = lines(EXACTEARTH).count() as u64;
    g.throughput(Throughput::Elements(exactearth_lines));
    g.bench_function("geostream_decode_exactearth", |b| {
        b.iter(|| drive(&mut AisCodec::default(), black_box(EXACTEARTH), &received))
    });
    g.finish();
}

fn usgs_mapping() -> Mapping {
    mapping(serde_json::json!({
        "track": "id", "time": "properties.time", "time_format": "unix_ms",
        "attributes": {"mag": "properties.mag", "place": "properties.place", "kind": "properties.type",
                       "depth_km": "geometry.coordinates[2]", "updated": "properties.updated"}
    }))
}

fn geojson(c: &mut Criterion) {
    let received = ctx(USGS_GENERATED_MS);
    let features = match serde_json::from_slice::<serde_json::Value>(USGS) {
        Ok(v) => v["features"].as_array().map_or(0, Vec::len),
        Err(e) => panic!("USGS sample is not JSON: {e}"),
    };
    assert!(features > 0, "USGS sample has no features");
    let mut g = c.benchmark_group("geojson");
    g.throughput(Throughput::Elements(features as u64));
    g.bench_function("geostream_decode", |b| {
        let mut codec = GeoJsonCodec::new(&usgs_mapping(), GeoJsonOptions::default()).expect("USGS mapping compiles");
        b.iter(|| drive(&mut codec, black_box(USGS), &received))
    });
    g.bench_function("serde_json_reference", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(USGS)).expect("USGS sample is JSON");
            v
        })
    });
    g.bench_function("geojson_crate_reference", |b| {
        b.iter(|| {
            let fc: geojson::FeatureCollection =
                std::str::from_utf8(black_box(USGS)).expect("UTF-8").parse().expect("a FeatureCollection");
            fc
        })
    });
    g.finish();
}

fn nmea(c: &mut Criterion) {
    let received = ctx(1_700_000_000_000);
    let mut g = c.benchmark_group("nmea");
    g.throughput(Throughput::Elements(lines(AERORUST_NMEA1).count() as u64));
    g.bench_function("geostream_decode", |b| {
        b.iter(|| drive(&mut NmeaCodec::new(NmeaOptions::default()), black_box(AERORUST_NMEA1), &received))
    });
    g.finish();
}

fn csv(c: &mut Criterion) {
    let received = ctx(OPENSKY_END_MS);
    let m = mapping(serde_json::json!({
        "track": "icao24", "time": "timestamp", "time_format": "unix_ms", "lon": "longitude", "lat": "latitude",
        "attributes": {"callsign": "callsign", "altitude_m": "altitude", "speed_mps": "groundspeed",
                       "track_deg": "track", "vrate_mps": "vertical_rate", "onground": "onground", "squawk": "squawk"},
        "units": {"altitude_m": "ft", "speed_mps": "knots", "track_deg": "deg", "vrate_mps": "ft/min"}
    }));
    let rows = lines(OPENSKY_CSV).count().saturating_sub(1);
    let mut g = c.benchmark_group("csv");
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("geostream_decode", |b| {
        let mut codec = CsvCodec::new(&m, CsvOptions::default()).expect("OpenSky mapping compiles");
        b.iter(|| drive(&mut codec, black_box(OPENSKY_CSV), &received))
    });
    g.finish();
}

fn gtfs_rt(c: &mut Criterion) {
    let received = ctx(1_700_000_000_000);
    let vehicles = drive(&mut GtfsRtCodec::new(), KCM_PB, &received);
    let mut g = c.benchmark_group("gtfs_rt");
    g.throughput(Throughput::Elements(vehicles as u64));
    g.bench_function("geostream_decode", |b| {
        let mut codec = GtfsRtCodec::new();
        b.iter(|| drive(&mut codec, black_box(KCM_PB), &received))
    });
    g.finish();
}

fn esri_json(c: &mut Criterion) {
    let received = ctx(1_443_398_400_000);
    // The catalog's esri-featureserver-poll mapping on its real sample (838 point features).
    let m = mapping(serde_json::json!({
        "track": "attributes.objectid",
        "attributes": {"facility": "attributes.facility", "quality": "attributes.quality",
                       "description": "attributes.description", "observed_ms": "attributes.observed"}
    }));
    let opts = geostream_codecs::CodecOptions { skip_null_geometry: true, ..Default::default() };
    let build = || geostream_codecs::registry::build(geostream_model::Format::EsriJson, &m, &opts).expect("mapping");
    let features = drive(build().as_mut(), ESRI_FACILITIES, &received);
    let mut g = c.benchmark_group("esri_json");
    g.throughput(Throughput::Elements(features as u64));
    g.bench_function("geostream_decode", |b| {
        let mut codec = build();
        b.iter(|| drive(codec.as_mut(), black_box(ESRI_FACILITIES), &received))
    });
    g.finish();
}

fn cot(c: &mut Criterion) {
    let received = ctx(1_581_200_000_000);
    let opts = geostream_codecs::CodecOptions::default();
    let build =
        || geostream_codecs::registry::build(geostream_model::Format::Cot, &Mapping::default(), &opts).expect("cot");
    let events = drive(build().as_mut(), COT_SESSION, &received);
    let mut g = c.benchmark_group("cot");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("geostream_decode", |b| {
        let mut codec = build();
        b.iter(|| drive(codec.as_mut(), black_box(COT_SESSION), &received))
    });
    g.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, ais, geojson, nmea, csv, gtfs_rt, esri_json, cot);
}
criterion_main!(group::benches);

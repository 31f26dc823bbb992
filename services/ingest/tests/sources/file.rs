//! The file source: resume after a stop mid-file (line and document framing), pacing, a watched
//! folder, and repeated files (passes rebased to the wall clock, a restart mid-pass).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use geostream_ingest::sources::file::{MIN_PASS, PACING_SLACK};
use geostream_model::Observation;
use geostream_model::time::OffsetDateTime;
use serde_json::json;

use crate::common::{Harness, Spooled, decode_expected, sample, spec};

fn nmea_spec(path: &str, replay: serde_json::Value) -> geostream_model::FeedSpec {
    spec(json!({
        "id": "nmea-file", "type": "nmea-file", "format": "nmea",
        "source": {"kind": "file", "path": path, "replay": replay}
    }))
}

/// A paced replay is stopped early, then the feed restarts at full speed: the second run continues
/// exactly after the last committed line, so the spool ends up with exactly what the file holds,
/// no record twice (NMEA assembles fixes across lines, which the resume must not break). A third
/// run finds the file done and ends at once.
#[tokio::test]
async fn a_line_file_resumes_after_the_last_committed_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("track.nmea");
    std::fs::copy(sample("aerorust_nmea1_moving_track_2017-03-31.nmea"), &path).unwrap();
    let path = path.to_str().unwrap().to_owned();
    // The recording spans about 18 minutes; at 200x the first run would take 5 s.
    let paced = nmea_spec(&path, json!(200));
    let expected = decode_expected(&paced, &std::fs::read(&path).unwrap());
    assert_eq!(expected.observations, 993, "the catalog's count");

    let mut h = Harness::new(paced);
    let first = h.start();
    h.wait_for(1, "first paced records").await;
    first.stop().await;
    let after_first = h.pending();
    assert!(
        after_first > 0 && after_first < expected.envelopes() as u64,
        "stopped mid-file: {after_first} of {}",
        expected.envelopes()
    );

    h.respec(nmea_spec(&path, json!("fast")));
    h.start().finished().await.expect("a single file read to its end ends the source");
    assert_eq!(h.pending(), expected.envelopes() as u64);
    h.start().finished().await.expect("a file already read ends the source at once");
    assert_eq!(h.pending(), expected.envelopes() as u64, "nothing read twice");

    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();
}

/// A whole-document format is one payload; its records are committed in parts and a stop between
/// parts resumes at the next record of the unchanged document.
#[tokio::test]
async fn a_document_file_resumes_at_the_next_record() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("quakes.geojson");
    // The feed lists the newest event first; a replay paces forward in time, so the copy holds the
    // same features oldest first (otherwise every record would be due at once).
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample("usgs_all_week_2018-02-07.geojson")).unwrap()).unwrap();
    doc["features"].as_array_mut().unwrap().sort_by_key(|f| f["properties"]["time"].as_i64());
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let doc_spec = |replay: serde_json::Value| {
        spec(json!({
            "id": "quakes", "type": "usgs-file", "format": "geojson",
            "source": {"kind": "file", "path": path.to_str().unwrap(), "replay": replay},
            "mapping": {"track": "id", "time": "properties.time", "time_format": "unix_ms"}
        }))
    };
    // A week of events at 100000x: about 6 s.
    let paced = doc_spec(json!(100_000));
    let expected = decode_expected(&paced, &std::fs::read(&path).unwrap());
    assert_eq!(expected.observations, 1707);

    let mut h = Harness::new(paced);
    let first = h.start();
    h.wait_for(1, "first paced records").await;
    first.stop().await;
    let after_first = h.pending();
    assert!(after_first > 0 && after_first < 1707, "stopped mid-document: {after_first}");
    h.respec(doc_spec(json!("fast")));
    h.start().finished().await.expect("the document is read to its end");
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();
}

/// A folder is read file by file in name order (only names matching the pattern) and watched:
/// a file added later is read too.
#[tokio::test]
async fn a_folder_is_watched_for_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("drop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(sample("aerorust_nmea2_gnss_mixed.nmea"), dir.join("a.nmea")).unwrap();
    std::fs::copy(sample("gpsd_telit-he910.log"), dir.join("b.nmea")).unwrap();
    std::fs::copy(sample("gpsd_ublox-8.log"), dir.join("ignored.log")).unwrap();
    std::fs::copy(sample("gpsd_ublox-8.log"), dir.join(".hidden.nmea")).unwrap();
    let spec = spec(json!({
        "id": "nmea-drop", "type": "nmea-folder", "format": "nmea",
        "source": {"kind": "file", "path": dir.to_str().unwrap(), "pattern": "*.nmea"}
    }));
    let count = |name: &str| decode_expected(&spec, &std::fs::read(sample(name)).unwrap());
    let mut expected = count("aerorust_nmea2_gnss_mixed.nmea");
    expected.add(&count("gpsd_telit-he910.log"));

    let h = Harness::new(spec.clone());
    let running = h.start();
    h.wait_for(expected.envelopes() as u64, "the first two files").await;
    // Written under a hidden name and renamed, as writers should: never read half-written.
    std::fs::copy(sample("gpsd_skytraq-dgps.log"), dir.join(".c.nmea.part")).unwrap();
    std::fs::rename(dir.join(".c.nmea.part"), dir.join("c.nmea")).unwrap();
    expected.add(&count("gpsd_skytraq-dgps.log"));
    h.wait_for(expected.envelopes() as u64, "the file added later").await;
    running.stop().await;
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();
}

/// A repeated file's records: track, longitude (unique per record, to recognise it) and event time
/// in seconds after the first. Two tracks, interleaved, `step` seconds apart.
fn repeat_records(n: usize, step: i64) -> Vec<(&'static str, f64, i64)> {
    (0..n).map(|i| (if i % 2 == 0 { "a" } else { "b" }, 10.0 + i as f64 / 100.0, i as i64 * step)).collect()
}

/// RFC 3339 form of an event time `s` seconds after the recording's start.
fn recorded(s: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(1_714_564_800 + s).unwrap();
    geostream_model::rfc3339::format(t).unwrap()
}

/// The records as JSON Lines, oldest first (a line file is a stream in time order).
fn write_json_lines(path: &Path, records: &[(&str, f64, i64)]) {
    let lines: Vec<String> = records
        .iter()
        .map(|(track, lon, s)| json!({"track": track, "t": recorded(*s), "lon": lon, "lat": 50.0}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn json_lines_repeat_spec(path: &Path, replay: f64) -> geostream_model::FeedSpec {
    spec(json!({
        "id": "loop-lines", "type": "loop-lines", "format": "json", "options": {"lines": true},
        "source": {"kind": "file", "path": path.to_str().unwrap(), "replay": replay, "repeat": true},
        "mapping": {"track": "track", "time": "t", "lon": "lon", "lat": "lat"}
    }))
}

/// The records as a GeoJSON FeatureCollection, newest first.
fn write_geojson_newest_first(path: &Path, records: &[(&str, f64, i64)]) {
    let features: Vec<_> = records
        .iter()
        .rev()
        .map(|(track, lon, s)| {
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, 50.0]},
                   "properties": {"track": track, "time": recorded(*s)}})
        })
        .collect();
    std::fs::write(path, json!({"type": "FeatureCollection", "features": features}).to_string()).unwrap();
}

fn geojson_repeat_spec(path: &Path) -> geostream_model::FeedSpec {
    spec(json!({
        "id": "loop-doc", "type": "loop-doc", "format": "geojson",
        "source": {"kind": "file", "path": path.to_str().unwrap(), "replay": 60, "repeat": true},
        "mapping": {"track": "properties.track", "time": "properties.time"}
    }))
}

/// The wall clock now.
fn wall() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Checks what the spool holds against `records` repeated at `speed`: at least `passes` complete
/// passes, written one after the other, each with every record exactly once, its times rebased
/// (the earliest record on the pass's anchor, the others at their recorded distance divided by the
/// speed, written in time order), anchors at least [`MIN_PASS`] apart and not before the previous
/// pass's end; ids distinct and matching their content across all passes; each track's times never
/// going back; every time inside the run (`before`..`after`).
fn check_passes(
    spooled: &Spooled,
    records: &[(&str, f64, i64)],
    speed: f64,
    passes: usize,
    before: OffsetDateTime,
    after: OffsetDateTime,
) {
    let obs = &spooled.observations;
    assert!(spooled.dead_letters.is_empty(), "{:?}", spooled.dead_letters);
    let n = records.len();
    assert!(obs.len() >= passes * n, "{} records, fewer than {passes} passes of {n}", obs.len());
    let lon = |o: &Observation| serde_json::to_value(&o.geometry).unwrap()["coordinates"][0].as_f64().unwrap();
    let mut ids = HashSet::new();
    let mut last_of_track: HashMap<String, OffsetDateTime> = HashMap::new();
    for o in obs {
        o.validate().unwrap_or_else(|e| panic!("{e}"));
        assert!(ids.insert(o.id), "id {} written twice", o.id);
        assert!(o.time >= before && o.time <= after, "{} is outside the run {before}..{after}", o.time);
        let track = o.track.as_ref().unwrap().as_str().to_owned();
        if let Some(previous) = last_of_track.insert(track.clone(), o.time) {
            assert!(o.time >= previous, "track {track} went back from {previous} to {}", o.time);
        }
    }
    let mut previous: Option<(OffsetDateTime, OffsetDateTime)> = None;
    let min_pass = geostream_model::time::Duration::try_from(MIN_PASS).unwrap();
    for (k, pass) in obs.chunks(n).take(passes).enumerate() {
        let anchor = pass.iter().map(|o| o.time).min().unwrap();
        let end = pass.iter().map(|o| o.time).max().unwrap();
        let mut seen = HashSet::new();
        for o in pass {
            let (track, l, s) = *records.iter().find(|r| (r.1 - lon(o)).abs() < 1e-9).expect("a record of the file");
            assert!(seen.insert(l.to_bits()), "pass {}: record at lon {l} twice", k + 1);
            assert_eq!(o.track.as_ref().unwrap().as_str(), track);
            let offset = geostream_model::time::Duration::seconds_f64(s as f64 / speed);
            assert_eq!(o.time, anchor + offset, "pass {}: record at lon {l} is not rebased", k + 1);
        }
        assert!(pass.windows(2).all(|w| w[0].time <= w[1].time), "pass {}: not in time order", k + 1);
        if let Some((a, e)) = previous {
            assert!(anchor >= a + min_pass, "pass {} anchored {anchor}, under MIN_PASS after {a}", k + 1);
            assert!(anchor >= e, "pass {} anchored {anchor}, before the previous pass ended at {e}", k + 1);
        }
        previous = Some((anchor, end));
    }
}

/// A line file repeated: every pass has all records, rebased onto the wall clock with ids of its
/// own, one pass after the other.
#[tokio::test]
async fn a_repeated_line_file_loops_rebased_to_the_wall_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("loop.jsonl");
    // Two and a half minutes recorded, 2.5 s a pass at 60x: MIN_PASS sets the pace.
    let records = repeat_records(6, 30);
    write_json_lines(&path, &records);
    let h = Harness::new(json_lines_repeat_spec(&path, 60.0));
    // Anchors are cut to whole milliseconds.
    let before = wall() - geostream_model::time::Duration::milliseconds(1);
    let running = h.start();
    h.wait_for(3 * records.len() as u64, "three passes").await;
    running.stop().await;
    // A paced record may go out up to PACING_SLACK before its time.
    let after = wall() + PACING_SLACK;
    assert!(h.file_passes() >= 3, "passes counted: {}", h.file_passes());
    check_passes(&h.into_spooled(), &records, 60.0, 3, before, after);
}

/// A document (GeoJSON, newest first like the USGS feed) repeated: each pass comes out oldest
/// first, rebased so its earliest event is the pass's start.
#[tokio::test]
async fn a_repeated_document_loops_in_time_order() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("loop.geojson");
    let records = repeat_records(6, 30);
    write_geojson_newest_first(&path, &records);
    let h = Harness::new(geojson_repeat_spec(&path));
    let before = wall() - geostream_model::time::Duration::milliseconds(1);
    let running = h.start();
    h.wait_for(3 * records.len() as u64, "three passes").await;
    running.stop().await;
    // A paced record may go out up to PACING_SLACK before its time.
    let after = wall() + PACING_SLACK;
    check_passes(&h.into_spooled(), &records, 60.0, 3, before, after);
}

/// Runs `spec` (a repeated file of `records`, one due a second) until it has written two
/// records, stops it, waits for more records of the pass to fall due, starts it again on the same
/// state, and checks that pass and the next one.
async fn stop_mid_pass_and_restart(spec: geostream_model::FeedSpec, records: &[(&str, f64, i64)]) {
    let h = Harness::new(spec);
    let before = wall() - geostream_model::time::Duration::milliseconds(1);
    let first = h.start();
    h.wait_for(2, "the first records").await;
    first.stop().await;
    let stopped_at = h.pending();
    assert!(stopped_at < records.len() as u64, "stopped mid-pass: {stopped_at} of {}", records.len());
    // Down long enough for records of the pass to fall due meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let second = h.start();
    h.wait_for(2 * records.len() as u64, "the rest of the pass and the next pass").await;
    second.stop().await;
    // A paced record may go out up to PACING_SLACK before its time.
    let after = wall() + PACING_SLACK;
    // Pass 1 counted once although two runs read it, then pass 2 (and perhaps a started pass 3).
    assert!((2..=3).contains(&h.file_passes()), "passes counted: {}", h.file_passes());
    check_passes(&h.into_spooled(), records, 60.0, 2, before, after);
}

/// A repeated line file stopped mid-pass continues that pass after a restart: the records still
/// to come keep the pass's anchor (so its records are all there, once each, with the ids they
/// would have had), the ones that fell due while it was down come at once, and the next pass
/// follows.
#[tokio::test]
async fn a_repeated_line_file_stopped_mid_pass_finishes_that_pass_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("loop.jsonl");
    // One record a second at 60x: a six-second pass to stop in.
    let records = repeat_records(7, 60);
    write_json_lines(&path, &records);
    stop_mid_pass_and_restart(json_lines_repeat_spec(&path, 60.0), &records).await;
}

/// The same for a document, whose checkpoint counts records in time order.
#[tokio::test]
async fn a_repeated_document_stopped_mid_pass_finishes_that_pass_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("loop.geojson");
    let records = repeat_records(7, 60);
    write_geojson_newest_first(&path, &records);
    stop_mid_pass_and_restart(geojson_repeat_spec(&path), &records).await;
}

/// `repeat` loops one file; on a folder it is a configuration error, said when the feed starts.
#[tokio::test]
async fn repeat_on_a_folder_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(json_lines_repeat_spec(tmp.path(), 60.0));
    let e = h.start().finished().await.unwrap_err().to_string();
    assert!(e.contains("source.repeat") && e.contains("is a folder"), "{e}");
}

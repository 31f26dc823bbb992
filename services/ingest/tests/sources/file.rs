//! The file source: resume after a stop mid-file (line and document framing), pacing, and a
//! watched folder.

use serde_json::json;

use crate::common::{Harness, decode_expected, sample, spec};

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

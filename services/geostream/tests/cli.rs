//! The binary as a user runs it: exit codes and messages.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};

fn geostream(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
    cmd.args(args);
    // Start from a clean configuration environment so the developer's shell cannot change results.
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOSTREAM_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_check_lists_every_problem_with_key_and_fix() {
    let out = geostream(
        &["config", "check"],
        &[("GEOSTREAM_TENANT", "Bad_Tenant"), ("GEOSTREAM_KAFKA__BOOTSTRAP", "nohostport")],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("tenant:") && err.contains("fix:"), "{err}");
    assert!(err.contains("kafka.bootstrap:") && err.contains("\"nohostport\""), "{err}");
}

#[test]
fn config_check_accepts_a_valid_config_and_shows_derived_names() {
    let out = geostream(&["config", "check"], &[("GEOSTREAM_TENANT", "acme"), ("GEOSTREAM_TOPIC_PREFIX", "prod.")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prod.acme.observations"), "{text}");
}

#[test]
fn config_print_shows_effective_values_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.toml");
    std::fs::write(
        &file,
        "tenant = \"acme\"\n[elasticsearch]\nurl = \"http://es:9200\"\nusername = \"u\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let out = geostream(
        &["--config", file.to_str().unwrap(), "config", "print"],
        &[("GEOSTREAM_KAFKA__BOOTSTRAP", "k:9092")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bootstrap = \"k:9092\""), "{text}");
    assert!(text.contains("url = \"http://es:9200\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn stages_not_built_yet_say_so_and_fail() {
    for (stage, issue) in [("ingest", "#3"), ("process", "#4"), ("sink", "#5"), ("api", "#5"), ("operator", "#6")] {
        let out = geostream(&[stage], &[("GEOSTREAM_TENANT", "acme")]);
        assert_eq!(out.status.code(), Some(69), "{stage}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("not implemented yet") && err.contains(issue), "{stage}: {err}");
    }
}

#[test]
fn a_stage_with_bad_config_reports_config_first() {
    let out = geostream(&["sink"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("tenant: not set"), "{}", stderr(&out));
}

fn codecs_data(name: &str) -> String {
    format!("{}/../codecs/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn decode_prints_observations_and_a_summary_that_agree() {
    let out =
        geostream(&["decode", "--format", "nmea", &codecs_data("aerorust_nmea1_moving_track_2017-03-31.nmea")], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // The real log has 993 valid RMC fixes (see the codecs' golden tests).
    assert_eq!(lines.len(), 993);
    for line in &lines {
        let obs: geostream_model::Observation = serde_json::from_str(line).unwrap();
        obs.validate().unwrap();
        assert_eq!(obs.feed.as_str(), "decode");
    }
    let err = stderr(&out);
    assert!(err.contains("accepted 993, rejected 0"), "{err}");
    assert!(err.contains("distinct tracks 1"), "{err}");
}

#[test]
fn decode_reports_rejections_by_reason_and_can_fail_on_them() {
    let file = codecs_data("pyais_mixed_gatehouse_pghp.nmea");
    let out = geostream(&["decode", "--format", "ais", "--show-rejects", "1", &file], &[]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("rejected [").count(), 1, "--show-rejects limits the detail lines: {err}");
    assert!(err.contains("rejected 5 (malformed=5)"), "{err}");
    let accepted = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(err.contains(&format!("accepted {accepted},")), "{err}");

    let strict = geostream(&["decode", "--format", "ais", "--fail-on-reject", &file], &[]);
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn decode_usage_errors_say_what_to_do() {
    let out = geostream(&["decode", "/dev/null"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("give --format <name> or --feed <file>"), "{}", stderr(&out));
    let out = geostream(&["decode", "--format", "kml", "/dev/null"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--format"), "{}", stderr(&out));
    // Every format has a decoder; an empty CoT document is a rejection, not a usage error.
    let out = geostream(&["decode", "--format", "cot", "--fail-on-reject", "/dev/null"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("schema=1"), "{}", stderr(&out));
}

#[test]
fn decode_uses_a_feed_files_format_and_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("usgs.yaml");
    std::fs::write(
        &feed,
        "id: usgs-week\ntype: usgs-earthquakes\nsource: {kind: file, path: /dev/null}\nformat: geojson\n\
         mapping:\n  track: id\n  time: properties.time\n  time_format: unix_ms\n  attributes: {mag: properties.mag}\n",
    )
    .unwrap();
    let out = geostream(
        &[
            "decode",
            "--feed",
            feed.to_str().unwrap(),
            "--received",
            "2018-02-08T00:00:00Z",
            &codecs_data("usgs_all_week_2018-02-07.geojson"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("accepted 1707, rejected 0"), "{}", stderr(&out));
    assert!(stderr(&out).contains("distinct tracks 1707"), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["properties"]["feed"], "usgs-week");
    assert_eq!(first["properties"]["track"], "ci37868143");
    assert_eq!(first["properties"]["time"], "2018-02-07T01:26:13.84Z");
}

/// Every catalog entry is a valid feed, and decoding its shipped sample gives exactly the counts
/// the entry promises (so a codec change that alters a real feed's output shows up here).
#[test]
fn every_catalog_entry_validates_and_its_sample_decodes_as_promised() {
    let catalog = format!("{}/../../feeds", env!("CARGO_MANIFEST_DIR"));
    let mut entries: Vec<_> = std::fs::read_dir(&catalog)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    let required = [
        "usgs-earthquakes",
        "ais-nmea-tcp",
        "nmea-gps-tcp",
        "gtfs-rt-vehicle-positions",
        "mqtt-geojson",
        "http-push-json",
        "opensky-states",
        "cap-alerts",
        "gpx-file",
    ];
    let names: Vec<String> = entries.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for r in required {
        assert!(names.iter().any(|n| n == r), "catalog entry {r} missing from feeds/");
    }
    let mut with_samples = 0;
    for path in &entries {
        let entry: geostream_model::CatalogEntry = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        entry.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(path.file_stem().unwrap().to_string_lossy(), entry.name.as_str());
        // The codec for the entry builds (its mapping compiles), sample or not.
        let built = geostream(&["decode", "--catalog", &catalog, "--feed", &entry.name, "/dev/null"], &[]);
        assert!(built.status.success(), "{}: {}", entry.name, stderr(&built));
        let Some(sample) = &entry.sample else { continue };
        with_samples += 1;
        let out = geostream(&["decode", "--catalog", &catalog, "--feed", &entry.name, "--show-rejects", "0"], &[]);
        assert!(out.status.success(), "{}: {}", entry.name, stderr(&out));
        let err = stderr(&out);
        let e = sample.expect;
        assert!(
            err.contains(&format!("accepted {}, rejected {}", e.accepted, e.rejected))
                && err.contains(&format!("distinct tracks {}", e.tracks)),
            "{}: expected {e:?}, got: {err}",
            entry.name
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count() as u64, e.accepted, "{}", entry.name);
    }
    assert!(with_samples >= 9, "only {with_samples} catalog entries have samples");
}

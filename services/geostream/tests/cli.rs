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

//! docker-compose.yml and the Dockerfile, checked without a docker engine (none is available where
//! the suite runs): the stages' environment is real configuration that `geostream config check`
//! accepts and `config print` shows back, each stateful stage has its own named volume at its data
//! directory, published ports are the configured listeners, and the backing services mirror
//! scripts/testenv (versions and host ports), so the test suite runs against either.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    geostream_tests::repo_root()
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v.apply_merge().unwrap();
    v
}

/// The geostream stages: services built from the Dockerfile.
fn stages(c: &Value) -> BTreeMap<String, Value> {
    c["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(k, s)| (k.as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn geostream(args: &[&str], env: &BTreeMap<String, String>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOSTREAM_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    cmd.output().unwrap()
}

/// The default a script under scripts/testenv gives `var` (`VAR="${VAR:-default}"`).
fn testenv_default(var: &str) -> String {
    let needle = format!("{var}=\"${{{var}:-");
    for entry in std::fs::read_dir(root().join("scripts/testenv")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if let Some(i) = text.find(&needle) {
            let rest = &text[i + needle.len()..];
            return rest[..rest.find('}').unwrap()].to_owned();
        }
    }
    panic!("no default for {var} under scripts/testenv");
}

fn container_port(mapping: &str) -> u16 {
    mapping.rsplit(':').next().unwrap().parse().unwrap()
}

fn published(service: &Value) -> Vec<(u16, u16)> {
    service
        .get("ports")
        .and_then(Value::as_sequence)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let p = p.as_str().unwrap();
                    let host: u16 = p.split(':').rev().nth(1).unwrap().parse().unwrap();
                    (host, container_port(p))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_stage_runs_a_real_subcommand_with_a_configuration_that_validates() {
    let c = compose();
    let stages = stages(&c);
    let names: BTreeSet<&str> = stages.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["api", "ingest", "process", "sink"]), "the four long-running stages");
    for (name, s) in &stages {
        let command: Vec<&str> = s["command"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(command, [name.as_str()], "{name}: runs its own subcommand");
        let help = geostream(&[command[0], "--help"], &BTreeMap::new());
        assert!(help.status.success(), "{name}: `geostream {} --help` fails", command[0]);

        let env = env_of(s);
        assert!(env.keys().all(|k| k.starts_with("GEOSTREAM_")), "{name}: only GEOSTREAM_* variables: {env:?}");
        let check = geostream(&["config", "check"], &env);
        assert!(
            check.status.success(),
            "{name}: `geostream config check` refuses its environment:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        // Every variable lands on a key: a misspelt top-level key would be ignored silently.
        let print = geostream(&["config", "print"], &env);
        assert!(print.status.success());
        let effective: toml::Value = toml::from_str(&String::from_utf8_lossy(&print.stdout)).unwrap();
        for (var, value) in &env {
            let path: Vec<String> = var.trim_start_matches("GEOSTREAM_").split("__").map(str::to_lowercase).collect();
            let mut at = &effective;
            for seg in &path {
                at = at.get(seg).unwrap_or_else(|| panic!("{name}: {var} names no configuration key ({seg})"));
            }
            if let Some(s) = at.as_str()
                && !path.contains(&"tokens".to_owned())
            {
                assert_eq!(s, value, "{name}: {var}");
            }
        }
        assert_eq!(env["GEOSTREAM_KAFKA__BOOTSTRAP"], "kafka:9092", "{name}: Kafka's INTERNAL listener");

        // Published ports are exactly the configured listeners (plus nothing else).
        let mut listeners: BTreeSet<u16> = BTreeSet::new();
        for key in ["GEOSTREAM_TELEMETRY__LISTEN", "GEOSTREAM_API__LISTEN", "GEOSTREAM_INGEST__LISTEN"] {
            if let Some(addr) = env.get(key) {
                listeners.insert(container_port(addr));
            }
        }
        let ports: BTreeSet<u16> = published(s).iter().map(|(_, c)| *c).collect();
        assert_eq!(ports, listeners, "{name}: published container ports against configured listeners");
    }
    // No two services publish the same host port.
    let mut hosts = BTreeSet::new();
    for (name, s) in c["services"].as_mapping().unwrap() {
        for (h, _) in published(s) {
            assert!(hosts.insert(h), "{name:?}: host port {h} published twice");
        }
    }
}

#[test]
fn stateful_stages_keep_their_data_on_their_own_named_volume() {
    let c = compose();
    let declared: BTreeSet<String> =
        c["volumes"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    let mut used = BTreeSet::new();
    for (name, s) in stages(&c) {
        let env = env_of(&s);
        let data_dir = &env["GEOSTREAM_DATA_DIR"];
        let mounts: Vec<&str> = s
            .get("volumes")
            .and_then(Value::as_sequence)
            .map(|v| v.iter().map(|m| m.as_str().unwrap()).collect())
            .unwrap_or_default();
        if name == "api" {
            assert!(mounts.is_empty(), "api keeps no state: {mounts:?}");
            continue;
        }
        assert_eq!(mounts.len(), 1, "{name}: one volume");
        let (volume, target) = mounts[0].split_once(':').unwrap();
        assert_eq!(target, data_dir, "{name}: the volume holds the data_dir");
        assert!(declared.contains(volume), "{name}: {volume} is a declared named volume");
        assert!(used.insert(volume.to_owned()), "{name}: {volume} is not shared with another stage");
    }
    assert_eq!(used.len(), 3, "ingest, process and sink");
    // The image's default data_dir and volume are the same directory.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let dir = env_of(&stages(&c)["sink"])["GEOSTREAM_DATA_DIR"].clone();
    assert!(dockerfile.contains(&format!("GEOSTREAM_DATA_DIR={dir}")), "Dockerfile sets the same data_dir");
    assert!(dockerfile.contains(&format!("VOLUME [\"{dir}\"]")), "Dockerfile declares it a volume");
}

#[test]
fn backing_services_mirror_scripts_testenv() {
    let c = compose();
    let svc = &c["services"];
    let tag = |name: &str| svc[name]["image"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    assert_eq!(tag("kafka"), testenv_default("GS_KAFKA_VERSION"), "Kafka version");
    assert_eq!(tag("elasticsearch"), testenv_default("GS_ES_VERSION"), "Elasticsearch version");
    assert_eq!(tag("kibana"), testenv_default("GS_ES_VERSION"), "Kibana matches Elasticsearch");
    assert_eq!(tag("opensearch"), testenv_default("GS_OS_VERSION"), "OpenSearch version");
    let host_port = |name: &str, container: u16| {
        published(&svc[name]).into_iter().find(|(_, c)| *c == container).map(|(h, _)| h.to_string())
    };
    assert_eq!(host_port("kafka", 19092), Some(testenv_default("GS_KAFKA_PORT")));
    assert_eq!(host_port("elasticsearch", 9200), Some(testenv_default("GS_ES_PORT")));
    assert_eq!(host_port("opensearch", 9200), Some(testenv_default("GS_OS_PORT")));
    assert_eq!(host_port("mosquitto", 1883), Some(testenv_default("GS_MQTT_PORT")));
    // Kafka in KRaft mode, with the transaction log settings the processor's transactions need on one node.
    let kenv = env_of(&svc["kafka"]);
    assert_eq!(kenv["KAFKA_PROCESS_ROLES"], "broker,controller");
    assert_eq!(kenv["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"], "1");
    assert_eq!(kenv["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"], "1");
    assert!(kenv["KAFKA_ADVERTISED_LISTENERS"].contains("INTERNAL://kafka:9092"));
    assert!(kenv["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("127.0.0.1:{}", testenv_default("GS_KAFKA_PORT"))));
    assert_eq!(svc["opensearch"]["profiles"][0], "opensearch", "optional");
    assert_eq!(svc["kibana"]["profiles"][0], "kibana", "optional");
}

#[test]
fn the_image_is_multi_stage_small_and_unprivileged() {
    let d = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms.last().unwrap().contains("-slim"), "a slim runtime base: {froms:?}");
    assert!(d.contains("cargo build --release --locked -p geostream"), "builds the one binary, locked");
    let user = d.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    let uid: u32 = user.trim_start_matches("USER ").split(':').next().unwrap().parse().unwrap();
    assert!(uid >= 1000, "runs as an unprivileged numeric user: {user}");
    assert!(d.contains("ENTRYPOINT") && d.contains("/usr/local/bin/geostream"), "the binary is the entrypoint");
    // Every subcommand a compose stage runs is the same image.
    for (name, s) in stages(&compose()) {
        assert_eq!(s["image"], "geostream:local", "{name}");
        assert_eq!(s["build"], ".", "{name}: built from the repository's Dockerfile");
    }
}

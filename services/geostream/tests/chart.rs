//! The chart's rendered configuration is what the binary accepts: for each workload, its
//! ConfigMap file and its container environment (secret references filled with stand-ins) pass
//! `geostream config check`, and the subcommand it runs exists. Catches a chart key the config
//! types do not know (they deny unknown fields) before a pod crash-loops on it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn rendered(helm: &str, extra: &[&str]) -> Vec<Value> {
    let base = ["--set", "tenant=acme", "--set", "api.auth.tokens[0]=t", "--set", "api.auth.adminToken=a"];
    render(helm, "geostream", "acme", &[&base[..], extra].concat())
}

/// `helm template <release> charts/<chart>` in the namespace named like the release, as documents.
fn render(helm: &str, chart: &str, release: &str, values: &[&str]) -> Vec<Value> {
    let chart = geostream_tests::repo_root().join("charts").join(chart);
    let mut args = vec!["template", release, chart.to_str().unwrap(), "--namespace", release];
    args.extend(values);
    let out = Command::new(helm).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn check(docs: &[Value], case: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let toml = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"]["geostream.toml"].as_str().unwrap();
    let file = dir.path().join("geostream.toml");
    std::fs::write(&file, toml).unwrap();
    // The files the config names (tokens, admin token) are mounted from Secrets in the pod.
    let mut checked = 0;
    for w in docs.iter().filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment") {
        let c = &w["spec"]["template"]["spec"]["containers"][0];
        let sub = c["args"][0].as_str().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
        for (k, _) in std::env::vars() {
            if k.starts_with("GEOSTREAM_") {
                cmd.env_remove(k);
            }
        }
        for e in c["env"].as_sequence().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match e["value"].as_str() {
                Some(_) if name == "GEOSTREAM_CONFIG" => file.to_str().unwrap().to_owned(),
                Some(v) => v.to_owned(),
                None => "from-a-secret-or-the-pod".to_owned(),
            };
            cmd.env(name, value);
        }
        let out = cmd.args(["config", "check"]).output().unwrap();
        assert!(
            out.status.success(),
            "{case}: {} {}: the chart's configuration is refused:\n{}\n{toml}",
            w["kind"].as_str().unwrap(),
            w["metadata"]["name"].as_str().unwrap(),
            String::from_utf8_lossy(&out.stderr)
        );
        let help = Command::new(env!("CARGO_BIN_EXE_geostream")).args([sub, "--help"]).output().unwrap();
        assert!(help.status.success(), "{case}: `geostream {sub}` is not a subcommand");
        checked += 1;
    }
    checked
}

#[test]
fn every_workload_of_the_chart_runs_with_a_configuration_the_binary_accepts() {
    let Some(helm) = geostream_tests::service("HELM", "chart configuration") else { return };
    let plain = rendered(&helm, &["--set", "kafka.bootstrap=k:9092", "--set", "elasticsearch.url=http://es:9200"]);
    assert_eq!(check(&plain, "plain"), 4, "ingest, process, sink and api");
    let options = rendered(
        &helm,
        &[
            "--set",
            "kafka.strimzi.enabled=true",
            "--set",
            "elasticsearch.eck.enabled=true",
            "--set",
            "kafka.properties.security\\.protocol=PLAINTEXT",
            "--set",
            "sink.indexReplicas=1",
            "--set",
            "sink.secretsSecret=outs",
            "--set",
            "ingest.secretsSecret=feeds",
            "--set",
            "topicPrefix=prod.",
        ],
    );
    assert_eq!(check(&options, "options"), 4);
    // No search engine: the sink archives to an object store and the API answers from it.
    let archive = rendered(
        &helm,
        &[
            "--set",
            "kafka.bootstrap=k:9092",
            "--set",
            "sink.archive.enabled=true",
            "--set",
            "sink.archive.url=s3://geo/acme",
            "--set",
            "sink.archive.s3.endpoint=http://minio.storage:9000",
            "--set",
            "sink.archive.s3.pathStyle=true",
            "--set",
            "sink.archive.s3.allowHttp=true",
            "--set",
            "sink.archive.s3.existingSecret=archive-credentials",
        ],
    );
    assert_eq!(check(&archive, "archive"), 4);
    // SASL/SCRAM over TLS: the password and the CA from existing Secrets, mounted into every stage.
    let values = sasl_over_tls("acme", "kafka-acme");
    let mut args: Vec<&str> = vec!["--set", "elasticsearch.url=http://es:9200"];
    args.extend(values.iter().map(String::as_str));
    let secure = rendered(&helm, &args);
    assert_eq!(check(&secure, "sasl over tls"), 4);
    assert_kafka_secrets_mounted(&secure, "kafka-acme");
    assert_password_refused(&helm, "geostream", &["--set", "tenant=acme", "--set", "api.auth.tokens[0]=t"]);
}

/// Values for a Kafka with SASL/SCRAM over TLS: the principal `user`, its password in the Secret
/// `secret`, the CA in the Secret `kafka-ca`.
fn sasl_over_tls(user: &str, secret: &str) -> Vec<String> {
    [
        "kafka.bootstrap=k:9093".to_owned(),
        "kafka.properties.security\\.protocol=SASL_SSL".to_owned(),
        "kafka.properties.sasl\\.mechanism=SCRAM-SHA-512".to_owned(),
        format!("kafka.properties.sasl\\.username={user}"),
        format!("kafka.sasl.existingSecret={secret}"),
        "kafka.tls.caSecret=kafka-ca".to_owned(),
    ]
    .into_iter()
    .flat_map(|v| ["--set".to_owned(), v])
    .collect()
}

/// A password in `kafka.properties` would land in the ConfigMap: the chart's schema refuses it.
fn assert_password_refused(helm: &str, chart: &str, values: &[&str]) {
    let path = geostream_tests::repo_root().join("charts").join(chart);
    let out = Command::new(helm)
        .args(["template", "r", path.to_str().unwrap(), "--set", "kafka.bootstrap=k:9093"])
        .args(["--set", "kafka.properties.sasl\\.password=oops"])
        .args(values)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sasl.password"),
        "{chart}: a password in kafka.properties: {stderr}"
    );
}

/// Every workload mounts the SASL password and the CA from their Secrets at the files its
/// configuration names.
fn assert_kafka_secrets_mounted(docs: &[Value], sasl_secret: &str) {
    let toml = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"]["geostream.toml"].as_str().unwrap();
    let cfg: toml::Value = toml::from_str(toml).unwrap();
    let password_file = cfg["kafka"]["sasl_password_file"].as_str().unwrap();
    let ca = cfg["kafka"]["properties"]["ssl.ca.location"].as_str().unwrap();
    assert_eq!(cfg["kafka"]["properties"]["security.protocol"].as_str(), Some("SASL_SSL"));
    let mut workloads = 0;
    for w in docs.iter().filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment") {
        let pod = &w["spec"]["template"]["spec"];
        let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
        let volumes = pod["volumes"].as_sequence().unwrap();
        for (volume, secret, key, file) in
            [("kafka-sasl", sasl_secret, "password", password_file), ("kafka-ca", "kafka-ca", "ca.crt", ca)]
        {
            let v = volumes.iter().find(|v| v["name"] == volume).unwrap_or_else(|| panic!("{volume} in {w:?}"));
            assert_eq!(v["secret"]["secretName"].as_str(), Some(secret));
            assert_eq!(v["secret"]["items"][0]["key"].as_str(), Some(key));
            let m = mounts.iter().find(|m| m["name"] == volume).unwrap();
            let path =
                format!("{}/{}", m["mountPath"].as_str().unwrap(), v["secret"]["items"][0]["path"].as_str().unwrap());
            assert_eq!(path, file, "the config names the file the Secret is mounted as");
        }
        workloads += 1;
    }
    assert!(workloads > 0);
}

/// The operator chart on a SASL/SCRAM + TLS Kafka: its ConfigMap and environment pass `geostream
/// config check` for `geostream operator`, and the password and CA are mounted where they say.
#[test]
fn the_operator_chart_configures_kafka_security_the_binary_accepts() {
    let Some(helm) = geostream_tests::service("HELM", "operator chart configuration") else { return };
    let render = |values: &[&str]| render(&helm, "geostream-operator", "ops", values);
    let plain = render(&["--set", "kafka.bootstrap=k:9092"]);
    assert_eq!(check(&plain, "operator plain"), 1);
    let values = sasl_over_tls("geostream-operator", "kafka-operator");
    let secure = render(&values.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(check(&secure, "operator sasl over tls"), 1);
    assert_kafka_secrets_mounted(&secure, "kafka-operator");
    assert_password_refused(&helm, "geostream-operator", &[]);
}

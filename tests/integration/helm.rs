//! The chart with the real helm: `helm lint --strict`, `helm template`, and the rendered manifests
//! validated offline with `kubernetes-validate --strict` against the Kubernetes schemas.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn validate(validator: &str, manifests: &Path) -> std::process::Output {
    run(validator, &["--strict", manifests.to_str().expect("utf8 path")])
}

#[test]
fn chart_lints_renders_and_validates() {
    let Some(helm) = geostream_tests::service("HELM", "helm chart") else { return };
    let Some(validator) = geostream_tests::service("KUBERNETES_VALIDATE", "helm chart") else { return };
    let chart = geostream_tests::repo_root().join("charts").join("geostream");
    let chart = chart.to_str().expect("utf8 path");
    let values = [
        "--set",
        "tenant=acme-ports",
        "--set",
        "kafka.bootstrap=kafka.acme:9092",
        "--set",
        "ingest.secretsSecret=acme-feed-secrets",
        "--set",
        "process.replicas=3",
    ];

    let mut lint = vec!["lint", "--strict", chart];
    lint.extend(values);
    let out = run(&helm, &lint);
    assert!(out.status.success(), "helm lint --strict failed:\n{}", text(&out));

    let mut template = vec!["template", "acme", chart, "--namespace", "acme"];
    template.extend(values);
    let out = run(&helm, &template);
    assert!(out.status.success(), "helm template failed:\n{}", text(&out));
    let rendered = String::from_utf8(out.stdout).expect("utf8");

    let dir = geostream_tests::report_dir().join(geostream_tests::unique("helm"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = validate(&validator, &file);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the chart:\n{}", text(&out));

    // The rendered configuration must be the binary's config format, with the tenant's values.
    let mut kinds = Vec::new();
    let mut config_toml = None;
    let mut ingest = None;
    let mut process = None;
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v = serde_yaml::Value::deserialize(doc).expect("yaml");
        if v.is_null() {
            continue;
        }
        kinds.push(v["kind"].as_str().unwrap_or_default().to_owned());
        if v["kind"] == "ConfigMap" {
            config_toml = v["data"]["geostream.toml"].as_str().map(str::to_owned);
        }
        if v["kind"] == "StatefulSet" {
            match v["metadata"]["name"].as_str() {
                Some("acme-geostream-ingest") => ingest = Some(v),
                Some("acme-geostream-process") => process = Some(v),
                other => panic!("unexpected StatefulSet {other:?}"),
            }
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["ConfigMap", "Service", "Service", "ServiceAccount", "StatefulSet", "StatefulSet"]);
    let config: toml::Table = config_toml.expect("geostream.toml in the ConfigMap").parse().expect("valid TOML");
    assert_eq!(config["tenant"].as_str(), Some("acme-ports"));
    assert_eq!(config["kafka"]["bootstrap"].as_str(), Some("kafka.acme:9092"));
    assert_eq!(config["ingest"]["secrets_dir"].as_str(), Some("/var/run/secrets/geostream"));
    assert!(config["ingest"]["spool_max_bytes"].as_integer().is_some_and(|b| b > 0));
    assert_eq!(config["process"]["lateness_s"].as_integer(), Some(60));
    assert_eq!(config["process"]["partitions"].as_integer(), config["ingest"]["partitions"].as_integer());

    // Processors: the replicas asked for, each its own volume, and its pod name as its instance
    // name (the transactional id must survive a restart of the pod).
    let sts = process.expect("the process StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str(), Some("data"));
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("process"));
    let instance = c["env"].as_sequence().expect("env").iter().find(|e| e["name"] == "GEOSTREAM_PROCESS__INSTANCE");
    assert_eq!(instance.expect("instance env")["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.name"));

    // Ingest: one replica on its own volume, non-root with a read-only root filesystem, its spool
    // on the volume, probes on the telemetry port, the feed secrets mounted where the config says.
    let sts = ingest.expect("the ingest StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str(), Some("data"));
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("ingest"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    let mounts: Vec<&str> =
        c["volumeMounts"].as_sequence().expect("mounts").iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&"/var/lib/geostream") && mounts.contains(&"/var/run/secrets/geostream"), "{mounts:?}");
    assert_eq!(pod["volumes"][1]["secret"]["secretName"].as_str(), Some("acme-feed-secrets"));

    // Stages can be left out of a release (e.g. a tenant fed only by another tenant's topics).
    let mut off = vec!["template", "acme", chart, "--set", "ingest.enabled=false", "--set", "process.enabled=false"];
    off.extend(values);
    let out = run(&helm, &off);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kind: StatefulSet"));

    // The values schema refuses a tenant that is not a DNS label, and a missing tenant.
    let out = run(&helm, &["template", "x", chart, "--set", "tenant=Acme_Ports", "--set", "kafka.bootstrap=k:9092"]);
    assert!(!out.status.success(), "an invalid tenant rendered:\n{}", text(&out));
    assert!(text(&out).contains("tenant"), "{}", text(&out));
    let out = run(&helm, &["template", "x", chart, "--set", "kafka.bootstrap=k:9092"]);
    assert!(!out.status.success(), "a release without a tenant rendered");

    // And the validator is not a rubber stamp: an unknown field in a Deployment fails --strict.
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: 1\n  selectr: {}\n  template:\n    spec:\n      containers: []\n",
    )
    .expect("write");
    let out = validate(&validator, &broken);
    assert!(!out.status.success(), "kubernetes-validate accepted a broken manifest:\n{}", text(&out));
}

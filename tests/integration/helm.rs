//! The tenant chart with the real helm: `helm lint --strict`, `helm template` validated offline with
//! `kubernetes-validate --strict`, what each option renders, what the chart refuses, and two
//! tenants installed into two namespaces on the real kube-apiserver (which validates every object
//! server-side) and uninstalled without leaving anything behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn validate(validator: &str, manifests: &Path) -> std::process::Output {
    run(validator, &["--strict", manifests.to_str().expect("utf8 path")])
}

fn chart() -> String {
    geostream_tests::repo_root().join("charts").join("geostream").to_str().expect("utf8 path").to_owned()
}

/// The values of a complete tenant: every stage on, tokens given.
const BASE: &[&str] = &[
    "--set",
    "tenant=acme-ports",
    "--set",
    "kafka.bootstrap=kafka.acme:9092",
    "--set",
    "elasticsearch.url=http://es.acme:9200",
    "--set",
    "api.auth.tokens[0]=read-token-1",
    "--set",
    "api.auth.adminToken=admin-token-1",
];

fn template(helm: &str, extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", "acme", chart.as_str(), "--namespace", "acme"];
    args.extend(BASE);
    args.extend(extra);
    let out = run(helm, &args);
    if out.status.success() { Ok(String::from_utf8(out.stdout).expect("utf8")) } else { Err(text(&out)) }
}

fn docs(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).expect("yaml"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut k = BTreeMap::new();
    for d in docs {
        *k.entry(d["kind"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    k
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_sequence()
        .map_or(vec![], |e| e.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect())
}

#[test]
fn chart_lints_renders_and_validates() {
    let Some(helm) = geostream_tests::service("HELM", "helm chart") else { return };
    let Some(validator) = geostream_tests::service("KUBERNETES_VALIDATE", "helm chart") else { return };
    let chart = chart();
    let extra = ["--set", "ingest.secretsSecret=acme-feed-secrets", "--set", "process.replicas=3"];

    let mut lint = vec!["lint", "--strict", chart.as_str()];
    lint.extend(BASE);
    lint.extend(extra);
    let out = run(&helm, &lint);
    assert!(out.status.success(), "helm lint --strict failed:\n{}", text(&out));

    let rendered = template(&helm, &extra).expect("helm template");
    let dir = geostream_tests::report_dir().join(geostream_tests::unique("helm"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = validate(&validator, &file);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the chart:\n{}", text(&out));

    let d = docs(&rendered);
    assert_eq!(
        kinds(&d),
        BTreeMap::from([
            ("ConfigMap".to_owned(), 1),
            ("Deployment".to_owned(), 1),
            ("NetworkPolicy".to_owned(), 5),
            ("PodDisruptionBudget".to_owned(), 2),
            ("Secret".to_owned(), 1),
            ("Service".to_owned(), 4),
            ("ServiceAccount".to_owned(), 1),
            ("StatefulSet".to_owned(), 3),
        ]),
        "process (3 replicas) and api (2) get PDBs; single-pod ingest and sink do not"
    );

    // The rendered configuration must be the binary's config format, with the tenant's values.
    let config: toml::Table = find(&d, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"]
        .as_str()
        .expect("geostream.toml")
        .parse()
        .expect("valid TOML");
    assert_eq!(config["tenant"].as_str(), Some("acme-ports"));
    assert_eq!(config["kafka"]["bootstrap"].as_str(), Some("kafka.acme:9092"));
    assert_eq!(config["elasticsearch"]["url"].as_str(), Some("http://es.acme:9200"));
    assert_eq!(config["ingest"]["secrets_dir"].as_str(), Some("/var/run/secrets/geostream"));
    assert!(config["ingest"]["spool_max_bytes"].as_integer().is_some_and(|b| b > 0));
    assert_eq!(config["process"]["lateness_s"].as_integer(), Some(60));
    assert_eq!(config["process"]["partitions"].as_integer(), config["ingest"]["partitions"].as_integer());
    assert_eq!(config["api"]["tokens_file"].as_str(), Some("/var/run/secrets/geostream-api/tokens"));
    assert_eq!(config["api"]["admin_token_file"].as_str(), Some("/var/run/secrets/geostream-api/admin-token"));

    // Processors: the replicas asked for, each its own volume, and its pod name as its instance
    // name (the transactional id must survive a restart of the pod).
    let sts = find(&d, "StatefulSet", "acme-geostream-process");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str(), Some("data"));
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("process"));
    let instance = c["env"].as_sequence().expect("env").iter().find(|e| e["name"] == "GEOSTREAM_PROCESS__INSTANCE");
    assert_eq!(instance.expect("instance env")["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.name"));
    let spread = sts["spec"]["template"]["spec"]["topologySpreadConstraints"].as_sequence().expect("spread");
    assert_eq!(spread.len(), 2, "over hostnames and zones");
    assert_eq!(spread[0]["whenUnsatisfiable"], "ScheduleAnyway");

    // Ingest: one replica on its own volume, its spool on the volume, the feed secrets mounted.
    let sts = find(&d, "StatefulSet", "acme-geostream-ingest");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1));
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("ingest"));
    let mounts: Vec<&str> =
        c["volumeMounts"].as_sequence().expect("mounts").iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&"/var/lib/geostream") && mounts.contains(&"/var/run/secrets/geostream"), "{mounts:?}");
    assert_eq!(pod["volumes"][1]["secret"]["secretName"].as_str(), Some("acme-feed-secrets"));

    // Every workload: non-root, read-only root filesystem, no privilege escalation, probes on the
    // telemetry port, its own volume for the stateful ones.
    for (kind, name, stateful) in [
        ("StatefulSet", "acme-geostream-ingest", true),
        ("StatefulSet", "acme-geostream-process", true),
        ("StatefulSet", "acme-geostream-sink", true),
        ("Deployment", "acme-geostream-api", false),
    ] {
        let w = find(&d, kind, name);
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{name}");
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false), "{name}");
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"].as_bool(), Some(false), "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"), "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"), "{name}");
        assert_eq!(w["spec"]["volumeClaimTemplates"].is_sequence(), stateful, "{name}");
        if stateful {
            assert_eq!(w["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Retain", "{name}");
        }
    }

    // The API: a Deployment behind a Service, its tokens from the chart's Secret as files the
    // config names; the sink likewise runs its own subcommand on its own volume.
    let api = find(&d, "Deployment", "acme-geostream-api");
    let pod = &api["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["args"][0], "api");
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "acme-geostream-api-auth");
    let secret = find(&d, "Secret", "acme-geostream-api-auth");
    assert_eq!(secret["stringData"]["tokens"].as_str(), Some("acme-ports read-token-1\n"));
    assert_eq!(secret["stringData"]["admin-token"].as_str(), Some("admin-token-1"));
    assert_eq!(find(&d, "Service", "acme-geostream-api")["spec"]["ports"][0]["port"].as_u64(), Some(8080));
    assert_eq!(
        find(&d, "StatefulSet", "acme-geostream-sink")["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "sink"
    );

    // Network policies: a default deny over every pod of the release, then explicit allows.
    let deny = find(&d, "NetworkPolicy", "acme-geostream-default-deny");
    assert_eq!(deny["spec"]["policyTypes"], serde_yaml::from_str::<Value>("[Ingress, Egress]").unwrap());
    assert!(deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none(), "deny allows nothing");
    let stages = find(&d, "NetworkPolicy", "acme-geostream-stages");
    let egress_ports: Vec<u64> = stages["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap().iter().map(|p| p["port"].as_u64().unwrap()))
        .collect();
    assert_eq!(egress_ports, [53, 53, 9092, 9093, 9200], "DNS, Kafka, the search engine");
    let api_np = find(&d, "NetworkPolicy", "acme-geostream-api");
    assert_eq!(api_np["spec"]["ingress"][0]["ports"][0]["port"].as_u64(), Some(8080));

    // Options: existing secrets, ingress, quota, ServiceMonitor; each renders what it says.
    let rendered = template(
        &helm,
        &[
            "--set",
            "elasticsearch.existingSecret=es-cred",
            "--set",
            "elasticsearch.username=geo",
            "--set",
            "api.auth.existingSecret=acme-api-tokens",
            "--set",
            "api.auth.existingSecretHasAdminToken=false",
            "--set",
            "api.ingress.enabled=true",
            "--set",
            "api.ingress.host=geo.acme.example",
            "--set",
            "namespaceResources.quota.requests\\.storage=500Gi",
            "--set",
            "namespaceResources.limitRange.default.memory=512Mi",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "networkPolicy.enabled=false",
        ],
    )
    .expect("options render");
    let o = docs(&rendered);
    let k = kinds(&o);
    assert_eq!((k.get("Secret"), k.get("NetworkPolicy")), (None, None), "no token Secret, no policies: {k:?}");
    assert_eq!((k["Ingress"], k["ResourceQuota"], k["LimitRange"], k["ServiceMonitor"]), (1, 1, 1, 1));
    let api = find(&o, "Deployment", "acme-geostream-api");
    assert_eq!(api["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"], "acme-api-tokens");
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    assert!(env_names(c).contains(&"GEOSTREAM_ELASTICSEARCH__PASSWORD".to_owned()), "{:?}", env_names(c));
    let pw = c["env"].as_sequence().unwrap().iter().find(|e| e["name"] == "GEOSTREAM_ELASTICSEARCH__PASSWORD").unwrap();
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "es-cred");
    let config: toml::Table =
        find(&o, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"].as_str().unwrap().parse().unwrap();
    assert!(config["api"].get("admin_token_file").is_none(), "no admin token, no writes");
    assert_eq!(config["elasticsearch"]["username"].as_str(), Some("geo"));
    assert!(!rendered.contains("password ="), "no password in the ConfigMap");
    let file = dir.join("options.yaml");
    let core: Vec<String> =
        o.iter().filter(|d| d["kind"] != "ServiceMonitor").map(|d| serde_yaml::to_string(d).unwrap()).collect();
    std::fs::write(&file, core.join("---\n")).unwrap();
    let out = validate(&validator, &file);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the options:\n{}", text(&out));

    // Strimzi and ECK: the tenant's own clusters, and every stage pointed at them.
    let rendered = template(&helm, &["--set", "kafka.strimzi.enabled=true", "--set", "elasticsearch.eck.enabled=true"])
        .expect("operators render");
    let o = docs(&rendered);
    let k = kinds(&o);
    assert_eq!((k["Kafka"], k["KafkaNodePool"], k["Elasticsearch"]), (1, 1, 1));
    let config: toml::Table =
        find(&o, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"].as_str().unwrap().parse().unwrap();
    assert_eq!(config["kafka"]["bootstrap"].as_str(), Some("acme-kafka-kafka-bootstrap.acme.svc:9092"));
    assert_eq!(config["elasticsearch"]["url"].as_str(), Some("http://acme-es-es-http.acme.svc:9200"));
    let kafka = find(&o, "Kafka", "acme-kafka");
    assert_eq!(kafka["spec"]["kafka"]["config"]["transaction.state.log.replication.factor"].as_u64(), Some(3));
    let pool = find(&o, "KafkaNodePool", "acme-kafka-pool");
    assert_eq!(pool["metadata"]["labels"]["strimzi.io/cluster"], "acme-kafka");
    let sink = find(&o, "StatefulSet", "acme-geostream-sink");
    let pw = sink["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GEOSTREAM_ELASTICSEARCH__PASSWORD")
        .expect("the ECK password");
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "acme-es-es-elastic-user");

    // No search engine: the archive on an object store, written by the sink and read by the API,
    // with its credentials mounted in both and an egress policy to the store.
    let archive_args = [
        "--set",
        "elasticsearch.url=",
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
    ];
    let rendered = template(&helm, &archive_args).expect("archive");
    let file = dir.join("archive.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = validate(&validator, &file);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the archive render:\n{}", text(&out));
    let a = docs(&rendered);
    let toml = find(&a, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"].as_str().unwrap();
    assert!(toml.contains("[archive]\nenabled = true\nurl = \"s3://geo/acme\""), "{toml}");
    assert!(
        toml.contains("secret_access_key_file = \"/var/run/secrets/geostream-archive/secret-access-key\""),
        "{toml}"
    );
    assert!(!toml.contains("[elasticsearch]"), "{toml}");
    for (kind, name) in [("StatefulSet", "acme-geostream-sink"), ("Deployment", "acme-geostream-api")] {
        let spec = &find(&a, kind, name)["spec"]["template"]["spec"];
        assert!(
            spec["volumes"].as_sequence().unwrap().iter().any(|v| v["secret"]["secretName"] == "archive-credentials"),
            "{name} lacks the archive credentials"
        );
    }
    let np = find(&a, "NetworkPolicy", "acme-geostream-archive");
    assert_eq!(
        np["spec"]["podSelector"]["matchExpressions"][0]["values"],
        serde_yaml::from_str::<Value>("[sink, api]").unwrap()
    );
    let ports: Vec<i64> =
        np["spec"]["egress"][0]["ports"].as_sequence().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
    assert_eq!(ports, [443, 9000]);
    // The API serving HTTPS from an existing TLS Secret: both files in its config, mounted as a
    // directory (so renewals appear), the Service marked https; valid for the API server.
    let tls_args = ["--set", "api.tls.existingSecret=api-tls"];
    let rendered = template(&helm, &tls_args).expect("api tls");
    let file = dir.join("api-tls.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = validate(&validator, &file);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the API TLS render:\n{}", text(&out));
    let t = docs(&rendered);
    let toml = find(&t, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"].as_str().unwrap();
    assert!(
        toml.contains("tls_cert_file = \"/var/run/secrets/geostream-api-tls/tls.crt\"\ntls_key_file = \"/var/run/secrets/geostream-api-tls/tls.key\""),
        "{toml}"
    );
    let spec = &find(&t, "Deployment", "acme-geostream-api")["spec"]["template"]["spec"];
    assert!(spec["volumes"].as_sequence().unwrap().iter().any(|v| v["secret"]["secretName"] == "api-tls"));
    let mount =
        spec["containers"][0]["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["name"] == "tls").unwrap();
    assert_eq!(mount["mountPath"], "/var/run/secrets/geostream-api-tls");
    assert!(mount.get("subPath").is_none(), "a subPath mount never sees a renewed certificate");
    assert_eq!(find(&t, "Service", "acme-geostream-api")["spec"]["ports"][0]["appProtocol"], "https");
    let plain = docs(&template(&helm, &[]).expect("default"));
    let toml = find(&plain, "ConfigMap", "acme-geostream-config")["data"]["geostream.toml"].as_str().unwrap();
    assert!(!toml.contains("tls_cert_file"), "{toml}");

    // With a search engine the API keeps to it: no store credentials, no store egress.
    let with_es = docs(&template(&helm, &archive_args[2..]).expect("archive beside the engine"));
    let api = &find(&with_es, "Deployment", "acme-geostream-api")["spec"]["template"]["spec"];
    assert!(!serde_yaml::to_string(api).unwrap().contains("archive-credentials"));
    let np = find(&with_es, "NetworkPolicy", "acme-geostream-archive");
    assert_eq!(
        np["spec"]["podSelector"]["matchExpressions"][0]["values"],
        serde_yaml::from_str::<Value>("[sink]").unwrap()
    );

    // Stages can be left out of a release (e.g. a tenant fed only by another tenant's topics).
    let off = template(
        &helm,
        &[
            "--set",
            "ingest.enabled=false",
            "--set",
            "process.enabled=false",
            "--set",
            "sink.enabled=false",
            "--set",
            "api.enabled=false",
        ],
    )
    .expect("stages off");
    assert!(!off.contains("kind: StatefulSet") && !off.contains("kind: Deployment"));

    // What the chart refuses, each with a message naming the value.
    let chart = chart.as_str();
    let refused = |args: &[&str], says: &str| {
        let out = run(&helm, args);
        assert!(!out.status.success(), "rendered: {args:?}");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    };
    refused(&["template", "x", chart, "--set", "tenant=Acme_Ports", "--set", "kafka.bootstrap=k:9092"], "tenant");
    refused(&["template", "x", chart, "--set", "kafka.bootstrap=k:9092"], "tenant");
    refused(
        &["template", "x", chart, "--set", "tenant=a", "--set", "elasticsearch.url=http://e:9200"],
        "kafka.bootstrap",
    );
    refused(
        &[
            "template",
            "x",
            chart,
            "--set",
            "tenant=a",
            "--set",
            "kafka.bootstrap=k:9092",
            "--set",
            "elasticsearch.url=http://e:9200",
        ],
        "api.auth.tokens",
    );
    refused(
        &["template", "x", chart, "--set", "tenant=a", "--set", "kafka.bootstrap=k:9092", "--set", "api.enabled=false"],
        "sink.enabled needs",
    );
    refused(
        &[
            "template",
            "x",
            chart,
            "--set",
            "tenant=a",
            "--set",
            "kafka.bootstrap=k:9092",
            "--set",
            "sink.enabled=false",
            "--set",
            "api.auth.tokens[0]=t",
        ],
        "api.enabled needs",
    );
    refused(
        &["template", "x", chart, "--set", "tenant=a", "--set", "kafka.bootstrap=k:9092", "--set", "ingest.storag=1Gi"],
        "storag",
    );
    let archive_on_volume = [
        "template",
        "x",
        chart,
        "--set",
        "tenant=a",
        "--set",
        "kafka.bootstrap=k:9092",
        "--set",
        "api.auth.tokens[0]=t",
        "--set",
        "sink.archive.enabled=true",
    ];
    refused(&archive_on_volume, "set sink.archive.url = s3://bucket/prefix");
    let mut two_sinks = archive_on_volume.to_vec();
    two_sinks.extend(["--set", "api.enabled=false", "--set", "sink.replicas=2"]);
    refused(&two_sinks, "sink.replicas > 1");

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

/// Objects of the release in its namespace, as `kind/name`.
fn release_objects(kubectl: &str, kubeconfig: &str, ns: &str, release: &str) -> Vec<String> {
    let out = run(
        kubectl,
        &[
            "--kubeconfig",
            kubeconfig,
            "-n",
            ns,
            "get",
            "statefulsets,deployments,services,configmaps,secrets,serviceaccounts,networkpolicies,poddisruptionbudgets,resourcequotas,limitranges",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ],
    );
    assert!(out.status.success(), "kubectl get: {}", text(&out));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

#[test]
fn two_tenants_install_into_two_namespaces_and_uninstall_cleanly() {
    let Some(helm) = geostream_tests::service("HELM", "helm install") else { return };
    let Some(kubectl) = geostream_tests::service("KUBECTL", "helm install") else { return };
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "helm install") else { return };
    let chart = chart();
    let run_id = geostream_tests::unique("t");
    let tenants: Vec<(String, String)> =
        ["north", "south"].iter().map(|t| (format!("{t}-{run_id}"), format!("{t}-ports"))).collect();
    for (ns, tenant) in &tenants {
        let out = run(
            &helm,
            &[
                "--kubeconfig",
                &kubeconfig,
                "install",
                "geo",
                &chart,
                "--namespace",
                ns,
                "--create-namespace",
                "--set",
                &format!("tenant={tenant}"),
                "--set",
                &format!("kafka.bootstrap=kafka.{ns}:9092"),
                "--set",
                &format!("elasticsearch.url=http://es.{ns}:9200"),
                "--set",
                &format!("api.auth.tokens[0]=token-of-{tenant}"),
                "--set",
                "process.replicas=2",
                "--set",
                "namespaceResources.quota.requests\\.storage=200Gi",
            ],
        );
        assert!(out.status.success(), "helm install into {ns} (validated by the apiserver):\n{}", text(&out));
    }
    // Each namespace holds exactly its release's objects, with its tenant's configuration.
    for (ns, tenant) in &tenants {
        let objects = release_objects(&kubectl, &kubeconfig, ns, "geo");
        let want = [
            "configmap/geo-geostream-config",
            "deployment.apps/geo-geostream-api",
            "networkpolicy.networking.k8s.io/geo-geostream-api",
            "networkpolicy.networking.k8s.io/geo-geostream-default-deny",
            "networkpolicy.networking.k8s.io/geo-geostream-ingest",
            "networkpolicy.networking.k8s.io/geo-geostream-sink",
            "networkpolicy.networking.k8s.io/geo-geostream-stages",
            "poddisruptionbudget.policy/geo-geostream-api",
            "poddisruptionbudget.policy/geo-geostream-process",
            "resourcequota/geo-geostream",
            "secret/geo-geostream-api-auth",
            "service/geo-geostream-api",
            "service/geo-geostream-ingest",
            "service/geo-geostream-process",
            "service/geo-geostream-sink",
            "serviceaccount/geo-geostream",
            "statefulset.apps/geo-geostream-ingest",
            "statefulset.apps/geo-geostream-process",
            "statefulset.apps/geo-geostream-sink",
        ];
        assert_eq!(objects, want, "{ns}");
        let out = run(
            &kubectl,
            &[
                "--kubeconfig",
                &kubeconfig,
                "-n",
                ns,
                "get",
                "configmap",
                "geo-geostream-config",
                "-o",
                "jsonpath={.data.geostream\\.toml}",
            ],
        );
        let config: toml::Table = String::from_utf8_lossy(&out.stdout).parse().expect("stored TOML");
        assert_eq!(config["tenant"].as_str(), Some(tenant.as_str()), "{ns}");
        assert_eq!(config["kafka"]["bootstrap"].as_str(), Some(format!("kafka.{ns}:9092").as_str()));
    }
    for (ns, _) in &tenants {
        let out = run(&helm, &["--kubeconfig", &kubeconfig, "uninstall", "geo", "--namespace", ns, "--wait"]);
        assert!(out.status.success(), "helm uninstall in {ns}:\n{}", text(&out));
        assert_eq!(release_objects(&kubectl, &kubeconfig, ns, "geo"), Vec::<String>::new(), "{ns}: left behind");
        let out = run(&kubectl, &["--kubeconfig", &kubeconfig, "delete", "namespace", ns, "--wait=false"]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

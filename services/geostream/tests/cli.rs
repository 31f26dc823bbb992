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
fn a_demo_without_its_catalog_says_where_to_run_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = geostream(&["demo", "--catalog", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("demo.yaml") && err.contains("--catalog"), "{err}");
    let out = geostream(&["demo", "--speed", "0"], &[("GEOSTREAM_CATALOG", "/x")]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("--speed 0"), "{}", stderr(&out));
}

#[test]
fn operator_config_problems_name_the_key_and_crdgen_prints_every_crd() {
    let out =
        geostream(&["operator"], &[("GEOSTREAM_TENANT", "acme"), ("GEOSTREAM_OPERATOR__USAGE_SOURCE", "prometheus")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("operator.prometheus_url"), "{}", stderr(&out));
    let out = geostream(
        &["operator"],
        &[("GEOSTREAM_TENANT", "acme"), ("GEOSTREAM_OPERATOR__CATALOG_DIR", "/nonexistent/catalog")],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/catalog"), "{}", stderr(&out));

    let out = geostream(&["crdgen"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap();
            v["spec"]["names"]["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["SensorFeed", "GeofenceSet", "VolumeAutoscalePolicy", "SnapshotSchedule"]);
}

#[test]
fn api_without_a_search_engine_url_or_with_an_unreadable_tokens_file_names_the_key() {
    let out = geostream(&["api"], &[("GEOSTREAM_TENANT", "acme")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("elasticsearch.url") && !err.contains("not implemented"), "{err}");
    let out = geostream(
        &["api"],
        &[
            ("GEOSTREAM_TENANT", "acme"),
            ("GEOSTREAM_ELASTICSEARCH__URL", "http://127.0.0.1:1"),
            ("GEOSTREAM_API__TOKENS_FILE", "/nonexistent/tokens"),
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("api.tokens_file"), "{}", stderr(&out));
}

#[test]
fn openapi_prints_the_api_document_without_configuration() {
    let out = geostream(&["openapi"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/v1/{tenant}/latest"]["get"].is_object(), "{doc}");
    assert!(doc["paths"]["/ogc/{tenant}/collections/{collectionId}/items"]["get"].is_object());
}

#[test]
fn sink_without_a_search_engine_url_names_the_key() {
    let out = geostream(&["sink"], &[("GEOSTREAM_TENANT", "acme")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("elasticsearch.url") && err.contains("GEOSTREAM_ELASTICSEARCH__URL"), "{err}");
}

#[test]
fn a_stage_with_bad_config_reports_config_first() {
    let out = geostream(&["sink"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("tenant: not set"), "{}", stderr(&out));
}

fn codecs_data(name: &str) -> String {
    geostream_tests::package_dir().join("../codecs/tests/data").join(name).to_string_lossy().into_owned()
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
    let catalog = geostream_tests::package_dir().join("../../feeds").to_string_lossy().into_owned();
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

/// Kafka from `scripts/testenv.sh`, by the workspace's missing-service rule.
fn kafka(test: &str) -> Option<String> {
    geostream_tests::service("KAFKA_BOOTSTRAP", test)
}

/// A failed assertion must not leave the ingest process running.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let status = c.wait();
            // A failed test shows what the process said: "not ready" alone does not tell an exit
            // from a hang.
            if std::thread::panicking() {
                let mut err = String::new();
                if let Some(mut pipe) = c.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                let tail: Vec<&str> = err.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!("--- the process ({status:?}); the end of its stderr:\n{}", tail.join("\n"));
            }
        }
    }
}

/// Starts the binary with a clean configuration environment plus `env`; stderr is kept for the
/// test, stdout dropped.
fn start(args: &[&str], env: &[(&str, &str)]) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOSTREAM_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    KillOnDrop(Some(child))
}

/// Stops a started child with SIGTERM (as Kubernetes does) and returns what it wrote.
fn sigterm(child: &mut KillOnDrop) -> Output {
    signal(child, "TERM")
}

/// Sends `sig` (`TERM`, `INT` for a Ctrl-C) to a started child and returns what it wrote when it
/// has exited.
fn signal(child: &mut KillOnDrop, sig: &str) -> Output {
    let child = child.0.take().unwrap();
    assert!(Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap().success());
    geostream_tests::wait_exit(child, &format!("geostream after SIG{sig}"))
}

/// Waits (bounded by attempts, 10 minutes' worth) for a started child to exit by itself.
fn exited(child: &mut KillOnDrop) -> Output {
    for _ in 0..6000 {
        if child.0.as_mut().unwrap().try_wait().unwrap().is_some() {
            return child.0.take().unwrap().wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the process did not exit by itself");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sends the request `make` builds until the status is not in `skip` (0 = no connection); processes
/// pick registry changes up a moment after they are written. Bounded by attempts, not by time.
fn request_until(
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    skip: &[u16],
    attempts: usize,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut last = (0, String::new());
        for _ in 0..attempts {
            match make(&http).send().await {
                Ok(r) => {
                    last = (r.status().as_u16(), r.text().await.unwrap_or_default());
                    if !skip.contains(&last.0) {
                        return last;
                    }
                }
                Err(e) => last = (0, e.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        last
    })
}

fn post_until(url: &str, token: &str, body: &str, skip: &[u16]) -> (u16, String) {
    request_until(|h| h.post(url).bearer_auth(token).body(body.to_owned()), skip, 300)
}

/// Registers the NMEA push feed `gps` (token from the secret `gps-token`) that the feed tests use.
fn register_gps_push_feed(env: &[(&str, &str)]) -> Output {
    geostream(
        &[
            "feeds",
            "register",
            "--type",
            "http-push-json",
            "--id",
            "gps",
            "--set",
            "source.token_ref=gps-token",
            "--set",
            "format=nmea",
            "--set",
            "mapping={}",
        ],
        env,
    )
}

#[test]
fn feeds_cli_and_the_ingest_process_work_together_on_kafka() {
    let Some(bootstrap) = kafka("feeds cli + ingest") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("cli{:x}", nanos & 0xffff_ffff);
    let data = tempfile::tempdir().unwrap();
    let (push_port, metrics_port) = (free_port(), free_port());
    let push_listen = format!("127.0.0.1:{push_port}");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let catalog = geostream_tests::package_dir().join("../../feeds").to_string_lossy().into_owned();
    let env: Vec<(&str, &str)> = vec![
        ("GEOSTREAM_TENANT", &tenant),
        ("GEOSTREAM_KAFKA__BOOTSTRAP", &bootstrap),
        ("GEOSTREAM_DATA_DIR", data.path().to_str().unwrap()),
        ("GEOSTREAM_INGEST__LISTEN", &push_listen),
        ("GEOSTREAM_TELEMETRY__LISTEN", &metrics_listen),
        ("GEOSTREAM_SECRET_GPS_TOKEN", "tok-123"),
        ("GEOSTREAM_CATALOG", &catalog),
    ];

    // Validation errors name the field and the fix, before anything is written.
    let bad = geostream(&["feeds", "register", "--type", "nmea-gps-tcp", "--set", "source.address=nohost"], &env);
    assert_eq!(bad.status.code(), Some(65), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("source.address") && stderr(&bad).contains("fix: --set"), "{}", stderr(&bad));

    let reg = register_gps_push_feed(&env);
    assert!(reg.status.success(), "{}", stderr(&reg));
    assert!(stdout(&reg).contains("registered feed gps"), "{}", stdout(&reg));
    let again = geostream(&["feeds", "register", "--type", "http-push-json", "--id", "gps"], &env);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("--replace"), "{}", stderr(&again));

    let list = geostream(&["feeds", "list"], &env);
    assert!(list.status.success(), "{}", stderr(&list));
    let table = stdout(&list);
    assert!(
        table.lines().any(|l| l.starts_with("gps ") && l.contains("http_push") && l.contains("enabled")),
        "{table}"
    );

    let mut child = start(&["ingest"], &env);

    let url = format!("http://{push_listen}/v1/push/{tenant}/gps");
    let nmea = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\n$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\n";
    // Until the process listens the connection is refused (0); until it read the registry, 404.
    let (status, body) = post_until(&url, "tok-123", nmea, &[0, 404]);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"accepted\":1"), "{body}");

    let pause = geostream(&["feeds", "pause", "gps"], &env);
    assert!(pause.status.success(), "{}", stderr(&pause));
    assert!(stdout(&pause).contains("paused feed gps (version 2)"), "{}", stdout(&pause));
    let (status, body) = post_until(&url, "tok-123", nmea, &[202]);
    assert_eq!(status, 404, "paused feeds are not served: {body}");
    let show = geostream(&["feeds", "show", "gps"], &env);
    assert!(stdout(&show).contains("enabled: false"), "{}", stdout(&show));

    let delete = geostream(&["feeds", "delete", "gps"], &env);
    assert!(delete.status.success(), "{}", stderr(&delete));
    let gone = geostream(&["feeds", "show", "gps"], &env);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("not registered"), "{}", stderr(&gone));

    // SIGTERM: a clean stop with exit status 0.
    let out = sigterm(&mut child);
    assert!(out.status.success(), "ingest exit: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest stopped"));
}

fn get_until(url: &str, skip: &[u16]) -> (u16, String) {
    request_until(|h| h.get(url), skip, 600)
}

#[test]
fn the_sink_process_installs_templates_becomes_ready_and_stops_on_sigterm() {
    let Some(bootstrap) = kafka("sink process") else { return };
    let Some(es) = geostream_tests::service("ELASTICSEARCH_URL", "sink process") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("clisink{:x}", nanos & 0xffff_ffff);
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let mut child = start(
        &["sink"],
        &[
            ("GEOSTREAM_TENANT", tenant.as_str()),
            ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("GEOSTREAM_ELASTICSEARCH__URL", es.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
            ("GEOSTREAM_SINK__LINGER_MS", "10"),
        ],
    );
    // Refused until telemetry listens, 503 until the templates are installed.
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("elasticsearch 8."), "readiness names the engine: {body}");
    let (status, template) = get_until(&format!("{es}/_index_template/geostream-{tenant}-latest"), &[0]);
    assert_eq!(status, 200, "{template}");
    assert!(template.contains(&format!("geostream-{tenant}-latest")), "{template}");
    let (_, metrics) = get_until(&format!("http://{metrics_listen}/metrics"), &[0]);
    assert!(metrics.contains("geostream_sink_templates_installed{"), "{metrics}");

    let out = sigterm(&mut child);
    assert!(out.status.success(), "sink exit: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = http.delete(format!("{es}/_index_template/geostream-{tenant}-{kind}")).send().await;
        }
    });
}

#[test]
fn the_sink_process_runs_configured_outputs_beside_the_sink_and_stops_both_on_sigterm() {
    let Some(bootstrap) = kafka("sink with outputs") else { return };
    let Some(es) = geostream_tests::service("ELASTICSEARCH_URL", "sink with outputs") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("clioutputs{:x}", nanos & 0xffff_ffff);
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("geostream.toml");
    std::fs::write(
        &config,
        format!(
            "[[outputs]]\nname = \"ops\"\n[outputs.filter]\nkinds = [\"enter\"]\n[outputs.webhook]\n\
             url = \"http://127.0.0.1:{}/hook\"\nsecret_ref = \"ops-key\"\n",
            free_port()
        ),
    )
    .unwrap();
    let mut child = start(
        &["--config", config.to_str().unwrap(), "sink"],
        &[
            ("GEOSTREAM_TENANT", tenant.as_str()),
            ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("GEOSTREAM_ELASTICSEARCH__URL", es.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
            ("GEOSTREAM_SECRET_OPS_KEY", "k3y"),
        ],
    );
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("geostream-{tenant}-outputs")), "readiness names the outputs' group: {body}");
    let (_, metrics) = get_until(&format!("http://{metrics_listen}/metrics"), &[0]);
    assert!(
        metrics.contains(r#"geostream_outputs_sent_total{stage="sink""#) && metrics.contains(r#"output="ops"}"#),
        "{metrics}"
    );

    let out = sigterm(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sink exit: {:?}\n{stderr}", out.status);
    assert!(stderr.contains("outputs stopped") && stderr.contains("sink stopped"), "{stderr}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = http.delete(format!("{es}/_index_template/geostream-{tenant}-{kind}")).send().await;
        }
    });
}

#[test]
fn the_sink_archives_alone_without_a_search_engine_and_the_api_answers_from_the_archive_and_kafka() {
    let Some(bootstrap) = kafka("archive-only sink process") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("cliarchive{:x}", nanos & 0xffff_ffff);
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let topic = format!("{tenant}.observations");
    rt.block_on(async {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
        let t = rdkafka::admin::NewTopic::new(&topic, 1, rdkafka::admin::TopicReplication::Fixed(1));
        for r in admin.create_topics(&[t], &rdkafka::admin::AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
        let t0 = geostream_model::time::OffsetDateTime::now_utc();
        produce_positions(plain(&bootstrap), &topic, 0..50, t0).await;
    });
    let archive_url = format!("file://{}", dir.path().display());
    let mut child = start(
        &["sink"],
        &[
            ("GEOSTREAM_TENANT", tenant.as_str()),
            ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
            ("GEOSTREAM_ARCHIVE__ENABLED", "true"),
            ("GEOSTREAM_ARCHIVE__URL", archive_url.as_str()),
            ("GEOSTREAM_ARCHIVE__FLUSH_MAX_AGE_S", "1"),
        ],
    );
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("geostream-{tenant}-archive")), "readiness names the archive's group: {body}");
    // The progress object is the archive's own record of what it holds.
    let next = archive_progress(&dir.path().join(&tenant), 50);
    assert_eq!(next, 50, "the archive did not cover the topic");
    let (_, metrics) = get_until(&format!("http://{metrics_listen}/metrics"), &[0]);
    assert!(
        metrics.lines().any(|l| l.starts_with("geostream_archive_records_total{")
            && l.contains(r#"kind="observations""#)
            && l.ends_with(" 50")),
        "{metrics}"
    );
    let out = sigterm(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sink exit: {:?}\n{stderr}", out.status);
    assert!(stderr.contains("archive stopped") && !stderr.contains("sink stopped"), "{stderr}");
    let files = walk(&dir.path().join(&tenant).join("observations"));
    assert!(!files.is_empty() && files.iter().all(|f| f.extension().is_some_and(|e| e == "parquet")), "{files:?}");

    // `geostream api` with no search engine answers from the archive plus a live layer: ten more
    // positions that only Kafka holds must show up beside the archived fifty.
    let t0 = geostream_model::time::OffsetDateTime::now_utc();
    rt.block_on(produce_positions(plain(&bootstrap), &topic, 50..60, t0 + geostream_model::time::Duration::hours(1)));
    let api_listen = format!("127.0.0.1:{}", free_port());
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{tenant} reader-token\n")).unwrap();
    let mut child = start(
        &["api"],
        &[
            ("GEOSTREAM_TENANT", tenant.as_str()),
            ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
            ("GEOSTREAM_API__LISTEN", api_listen.as_str()),
            ("GEOSTREAM_API__TOKENS_FILE", tokens.to_str().unwrap()),
            ("GEOSTREAM_ARCHIVE__URL", archive_url.as_str()),
        ],
    );
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = request_until(
        |h| h.get(format!("http://{api_listen}/v1/{tenant}/tracks/v0")).bearer_auth("reader-token"),
        &[0],
        600,
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let features = page["features"].as_array().unwrap();
    assert_eq!(features.len(), 12, "10 archived and 2 live positions of v0: {body}");
    let (status, body) = request_until(
        |h| h.get(format!("http://{api_listen}/v1/{tenant}/latest")).bearer_auth("reader-token"),
        &[0],
        600,
    );
    assert_eq!(status, 200, "{body}");
    let latest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let latest = latest["features"].as_array().unwrap();
    assert_eq!(latest.len(), 5, "{body}");
    let newest = t0 + geostream_model::time::Duration::hours(1);
    for f in latest {
        let time = geostream_model::time::OffsetDateTime::parse(
            f["properties"]["time"].as_str().unwrap(),
            &geostream_model::time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(time > newest, "the latest position of each track is a live one: {f}");
    }
    let out = sigterm(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "api exit: {:?}\n{stderr}", out.status);
    assert!(stderr.contains("answering from the archive"), "{stderr}");
}

/// Positions `n` of five tracks `v0`..`v4`, one second apart from `t0`, into `topic`.
async fn produce_positions(
    client: rdkafka::ClientConfig,
    topic: &str,
    n: std::ops::Range<i64>,
    t0: geostream_model::time::OffsetDateTime,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let p: FutureProducer = client.create().unwrap();
    for i in n {
        let o = geostream_model::Observation::try_new(
            geostream_model::FeedId::new("f").unwrap(),
            Some(geostream_model::TrackId::new(format!("v{}", i % 5)).unwrap()),
            t0 + geostream_model::time::Duration::seconds(i),
            geostream_model::time::OffsetDateTime::now_utc(),
            geostream_model::geojson::Geometry::new_point([10.0 + i as f64 * 0.01, 63.0]),
            Default::default(),
        )
        .unwrap();
        let payload = serde_json::to_vec(&o).unwrap();
        p.send(FutureRecord::to(topic).key("k").payload(&payload), std::time::Duration::from_secs(30)).await.unwrap();
    }
}

/// The archive's progress on partition 0 of a tenant's observations (`next_offset` of its progress
/// object under `tenant_dir`), once it reaches `want` or after about a minute.
fn archive_progress(tenant_dir: &std::path::Path, want: i64) -> i64 {
    let progress = tenant_dir.join("_progress/observations/p00000.json");
    let mut next = 0;
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&progress) {
            next = serde_json::from_str::<serde_json::Value>(&text).unwrap()["next_offset"].as_i64().unwrap();
            if next >= want {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    next
}

fn plain(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn config_check_lists_the_outputs_with_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("geostream.toml");
    std::fs::write(
        &config,
        "tenant = \"acme\"\n[[outputs]]\nname = \"ops\"\n[outputs.filter]\nkinds = [\"gap\"]\n\
         [outputs.webhook]\nurl = \"https://ops.example/h\"\nsecret_ref = \"k\"\n",
    )
    .unwrap();
    let out = geostream(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("outputs (group geostream-acme-outputs):"), "{text}");
    assert!(
        text.contains("ops: webhook POST https://ops.example/h; kinds gap; dead-lettered after 8 attempts"),
        "{text}"
    );
}

#[test]
fn a_missing_output_secret_stops_the_sink_with_a_config_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("geostream.toml");
    std::fs::write(
        &config,
        "tenant = \"acme\"\n[elasticsearch]\nurl = \"http://127.0.0.1:1\"\n[[outputs]]\nname = \"ops\"\n\
         [outputs.webhook]\nurl = \"http://127.0.0.1:1/hook\"\nsecret_ref = \"not-set-anywhere-ops\"\n",
    )
    .unwrap();
    let out =
        geostream(&["--config", config.to_str().unwrap(), "sink"], &[("GEOSTREAM_TELEMETRY__LISTEN", "127.0.0.1:0")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("GEOSTREAM_SECRET_NOT_SET_ANYWHERE_OPS") && stderr.contains("output ops"), "{stderr}");
}

#[test]
fn analyze_runs_the_analytics_over_decoded_observations() {
    let decoded = geostream(
        &[
            "decode",
            "--format",
            "ais",
            "--received",
            "2012-02-01T00:00:00Z",
            &codecs_data("amsa_risky_exactearth_sat_ais_epochms_1.nmea"),
        ],
        &[],
    );
    assert!(decoded.status.success(), "{}", stderr(&decoded));
    let dir = tempfile::tempdir().unwrap();
    let observations = dir.path().join("obs.geojsonl");
    std::fs::write(&observations, &decoded.stdout).unwrap();
    let n_obs = String::from_utf8_lossy(&decoded.stdout).lines().count();
    let spec = dir.path().join("analytics.yaml");
    std::fs::write(
        &spec,
        "- id: motion\n  analytic: {kind: motion, max_speed_mps: 40}\n\
         - id: density\n  analytic: {kind: bins, cells: {kind: h3, resolution: 5}, window_s: 300, properties: [sog_mps]}\n",
    )
    .unwrap();
    let out = geostream(&["analyze", "--analytics", spec.to_str().unwrap(), observations.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut binned = 0u64;
    let mut ids = std::collections::HashSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(ids.insert(v["id"].as_str().unwrap().to_owned()), "ids are unique: {line}");
        match v["properties"]["analytic"].as_str() {
            Some("density") => {
                let a: geostream_model::Aggregate = serde_json::from_value(v).unwrap();
                a.validate().unwrap();
                binned += a.count;
            }
            Some("motion") => {
                let e: geostream_model::Event = serde_json::from_value(v).unwrap();
                e.validate().unwrap();
                assert!(["stop", "moving", "jump"].contains(&e.kind.as_str()), "{line}");
            }
            other => panic!("unexpected analytic {other:?}"),
        }
    }
    assert_eq!(binned, n_obs as u64, "every observation lands in exactly one tumbling window");
    assert!(stderr(&out).contains(&format!("analyze: {n_obs} observations")), "{}", stderr(&out));
    // The same input gives the same output, ids included.
    let again = geostream(&["analyze", "--analytics", spec.to_str().unwrap(), observations.to_str().unwrap()], &[]);
    assert_eq!(again.stdout, out.stdout);

    std::fs::write(&spec, "- id: g\n  analytic: {kind: gaps, threshold_s: 0}\n").unwrap();
    let bad = geostream(&["analyze", "--analytics", spec.to_str().unwrap(), observations.to_str().unwrap()], &[]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(stderr(&bad).contains("threshold_s"), "{}", stderr(&bad));
}

#[test]
fn analyze_with_fences_runs_geofence_and_join_analytics() {
    let decoded = geostream(
        &[
            "decode",
            "--format",
            "ais",
            "--received",
            "2012-02-01T00:00:00Z",
            &codecs_data("amsa_risky_exactearth_sat_ais_epochms_1.nmea"),
        ],
        &[],
    );
    assert!(decoded.status.success(), "{}", stderr(&decoded));
    let dir = tempfile::tempdir().unwrap();
    let observations = dir.path().join("obs.geojsonl");
    std::fs::write(&observations, &decoded.stdout).unwrap();
    let n_obs = String::from_utf8_lossy(&decoded.stdout).lines().count();

    // The real port limits carry no fence id: refused, naming the feature.
    let ports = geostream_tests::package_dir().join("../analytics/tests/data/amsa_australian_port_limits.geojson");
    let spec = dir.path().join("analytics.yaml");
    std::fs::write(
        &spec,
        "- id: ports\n  analytic: {kind: geofence}\n\
         - id: zones\n  analytic: {kind: join, properties: [abbrev]}\n",
    )
    .unwrap();
    let args = |fences: &str| {
        vec![
            "analyze".to_owned(),
            "--analytics".to_owned(),
            spec.to_str().unwrap().to_owned(),
            "--fences".to_owned(),
            fences.to_owned(),
            observations.to_str().unwrap().to_owned(),
        ]
    };
    let run = |fences: &str| {
        let a = args(fences);
        geostream(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let out = run(ports.to_str().unwrap());
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("feature 0") && stderr(&out).contains("fence id"), "{}", stderr(&out));

    // With ids from the port names.
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&ports).unwrap()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (i, f) in doc["features"].as_array_mut().unwrap().iter_mut().enumerate() {
        let name = f["properties"]["port"].as_str().unwrap().to_owned();
        let slug: String =
            name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let id = format!("{slug}-{i}");
        ids.insert(id.clone());
        f["properties"]["id"] = id.into();
        f["properties"]["name"] = name.into();
    }
    let fences = dir.path().join("ports.geojson");
    std::fs::write(&fences, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = run(fences.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut joined, mut joined_fences, mut entered) =
        (0, std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["properties"]["analytic"].as_str() {
            Some("ports") => {
                let e: geostream_model::Event = serde_json::from_value(v).unwrap();
                e.validate().unwrap();
                assert!(["enter", "exit"].contains(&e.kind.as_str()), "{line}");
                let f = e.fence.unwrap().id.to_string();
                assert!(ids.contains(&f), "{f}");
                if e.kind.as_str() == "enter" {
                    entered.insert(f);
                }
            }
            _ => {
                let o: geostream_model::Observation = serde_json::from_value(v).unwrap();
                o.validate().unwrap();
                joined += 1;
                for z in o.attributes["fences"].as_array().unwrap() {
                    let id = z["id"].as_str().unwrap().to_owned();
                    assert!(ids.contains(&id), "{id}");
                    assert_eq!(z["properties"].as_object().unwrap().keys().collect::<Vec<_>>(), ["abbrev"], "{z}");
                    joined_fences.insert(id);
                }
            }
        }
    }
    assert_eq!(joined, n_obs, "join emits every observation, in a fence or not");
    assert!(!entered.is_empty(), "the sample passes through port limits");
    assert_eq!(entered, joined_fences, "a fence is entered iff some observation was joined with it");
    assert!(stderr(&out).contains(&format!("{n_obs} joined")), "{}", stderr(&out));

    // An invalid fence (a bow tie) is refused by name; so is a SQL analytic naming an unknown column,
    // before any input is read.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "- id: bowtie\n  name: Bow tie\n  geometry: {type: Polygon, coordinates: [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}\n",
    )
    .unwrap();
    let out = run(bad.to_str().unwrap());
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("\"bowtie\""), "{}", stderr(&out));
    std::fs::write(&spec, "- id: q\n  analytic: {kind: sql, query: 'select nosuch from observations', window_s: 60}\n")
        .unwrap();
    let out = run(fences.to_str().unwrap());
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("nosuch") && stderr(&out).contains('q'), "{}", stderr(&out));
}

#[test]
fn analyze_takes_a_yaml_list_of_fence_specs() {
    use geostream_model::time::OffsetDateTime;
    let dir = tempfile::tempdir().unwrap();
    let fences = dir.path().join("fences.yaml");
    std::fs::write(
        &fences,
        "- id: berth\n  version: 2\n  name: Berth 7\n  properties: {operator: acme}\n  \
         geometry: {type: Polygon, coordinates: [[[0,0],[1,0],[1,1],[0,1],[0,0]]]}\n",
    )
    .unwrap();
    let spec = dir.path().join("analytics.json");
    std::fs::write(
        &spec,
        r#"[{"id": "g", "analytic": {"kind": "geofence", "copy_properties": true}},
            {"id": "j", "analytic": {"kind": "join", "properties": ["operator"]}}]"#,
    )
    .unwrap();
    let mut lines = String::new();
    for (s, lon) in [(0, -0.5), (60, 0.5), (120, 1.5)] {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap();
        let o = geostream_model::Observation::try_new(
            "buoys".parse().unwrap(),
            Some("b1".parse().unwrap()),
            t,
            t,
            geostream_model::geojson::Geometry::new_point([lon, 0.5]),
            Default::default(),
        )
        .unwrap();
        lines.push_str(&serde_json::to_string(&o).unwrap());
        lines.push('\n');
    }
    let input = dir.path().join("obs.geojsonl");
    std::fs::write(&input, lines).unwrap();
    let out = geostream(
        &[
            "analyze",
            "--analytics",
            spec.to_str().unwrap(),
            "--fences",
            fences.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut events = Vec::new();
    let mut joined = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["properties"]["analytic"] == "g" {
            events.push(format!(
                "{}:{}",
                v["properties"]["kind"].as_str().unwrap(),
                v["properties"]["fence"]["version"]
            ));
            assert_eq!(v["properties"]["fence_properties"]["operator"], "acme", "{line}");
        } else {
            joined.push(v["properties"]["fences"].as_array().unwrap().len());
        }
    }
    assert_eq!(events, ["enter:2", "exit:2"]);
    assert_eq!(joined, [0, 1, 0], "every observation, with the fences containing it");
}

#[test]
fn the_api_process_reads_its_tokens_file_answers_and_stops_on_sigterm() {
    let Some(bootstrap) = kafka("api process") else { return };
    let Some(es) = geostream_tests::service("ELASTICSEARCH_URL", "api process") else { return };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# tenant token\nacme t-acme\nother t-other\n").unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, "t-admin\n").unwrap();
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let api_listen = format!("127.0.0.1:{}", free_port());
    let mut child = start(
        &["api"],
        &[
            ("GEOSTREAM_TENANT", "acme"),
            ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("GEOSTREAM_ELASTICSEARCH__URL", es.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
            ("GEOSTREAM_API__LISTEN", api_listen.as_str()),
            ("GEOSTREAM_API__TOKENS_FILE", tokens.to_str().unwrap()),
            ("GEOSTREAM_API__ADMIN_TOKEN_FILE", admin.to_str().unwrap()),
        ],
    );
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let url = format!("http://{api_listen}/ogc/acme/conformance");
    let (status, _) = request_until(|h| h.get(&url).bearer_auth("t-acme"), &[0], 100);
    assert_eq!(status, 200);
    let (status, body) = request_until(|h| h.get(&url).bearer_auth("t-other"), &[0], 100);
    assert_eq!(status, 403, "{body}");
    let (status, _) = request_until(|h| h.get(&url).bearer_auth("t-admin"), &[0], 100);
    assert_eq!(status, 200, "the admin token from its file reads too");
    let (status, _) = request_until(|h| h.get(&url), &[0], 100);
    assert_eq!(status, 401);

    let out = sigterm(&mut child);
    assert!(out.status.success(), "api exit: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api stopped"));
}

#[test]
fn analytics_and_fences_apply_is_declarative_on_kafka() {
    let Some(bootstrap) = kafka("registry apply") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("cliapply{:x}", nanos & 0xffff_ffff);
    let env = [("GEOSTREAM_TENANT", tenant.as_str()), ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("analytics.yaml");
    let write = |threshold: u64, extra: bool| {
        let mut text = format!("- id: gaps\n  analytic: {{kind: gaps, threshold_s: {threshold}}}\n");
        if extra {
            text.push_str("- id: motion\n  analytic: {kind: motion}\n");
        }
        std::fs::write(&file, text).unwrap();
    };
    let apply = |args: &[&str]| {
        let mut all = vec!["analytics", "apply", file.to_str().unwrap()];
        all.extend_from_slice(args);
        geostream(&all, &env)
    };

    write(60, true);
    let out = apply(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("would write 2 change(s)"), "{}", stdout(&out));
    let out = apply(&[]);
    assert!(stdout(&out).contains("added analytic gaps (version 1)"), "{}", stdout(&out));
    let out = apply(&[]);
    assert!(stdout(&out).contains("wrote 0 change(s)") && stdout(&out).contains("2 unchanged"), "{}", stdout(&out));

    write(120, false);
    let out = apply(&["--prune"]);
    let text = stdout(&out);
    assert!(text.contains("updated analytic gaps (version 2)") && text.contains("deleted analytic motion"), "{text}");
    let list = stdout(&geostream(&["analytics", "list", "--json"], &env));
    let specs: Vec<serde_json::Value> = list.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(specs.len(), 1, "{list}");
    assert_eq!(specs[0]["analytic"]["threshold_s"], 120);
    assert_eq!(specs[0]["version"], 2);

    // A bad spec writes nothing and exits 65; an unknown id cannot be deleted.
    write(0, false);
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("threshold_s"), "{}", stderr(&out));
    assert_eq!(stdout(&geostream(&["analytics", "list", "--json"], &env)).lines().count(), 1);
    assert_eq!(geostream(&["fences", "delete", "nowhere"], &env).status.code(), Some(1));
    let out = geostream(&["analytics", "delete", "gaps"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&geostream(&["analytics", "list"], &env)).contains("no analytics registered"));
}

/// Every secret the configuration can hold, as distinctive values a log line could not contain
/// by accident.
const SECRETS: [&str; 5] =
    ["es-pass-7f3a91", "s3-secret-9b1c44", "tok-read-4d2e07", "tok-admin-8a7f52", "kafka-pass-3c5d18"];

/// Stops a child with SIGTERM and returns everything it wrote.
fn terminate(child: &mut KillOnDrop) -> String {
    let out = sigterm(child);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} printed the secret {s:?}:\n{text}");
    }
}

#[test]
fn secrets_never_reach_the_output_or_the_logs_even_at_trace_level() {
    let Some(bootstrap) = kafka("secrets in logs") else { return };
    let Some(es) = geostream_tests::service("ELASTICSEARCH_URL", "secrets in logs") else { return };
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tenant = format!("clisecret{:x}", nanos & 0xffff_ffff);
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{tenant} {}\n", SECRETS[2])).unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, SECRETS[3]).unwrap();
    let config = dir.path().join("g.toml");
    // Trace level everywhere: HTTP clients, servers and Kafka log what they do at their finest.
    std::fs::write(
        &config,
        format!(
            "tenant = \"{tenant}\"\n[log]\nlevel = \"trace\"\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n[kafka.properties]\n\"sasl.password\" = \"{}\"\n\
             [elasticsearch]\nurl = \"{es}\"\nusername = \"elastic\"\npassword = \"{}\"\n\
             [archive]\nenabled = true\nurl = \"s3://bucket/geo\"\n\
             [archive.s3]\nendpoint = \"http://127.0.0.1:1\"\nallow_http = true\npath_style = true\n\
             access_key_id = \"key\"\nsecret_access_key = \"{}\"\n\
             [api]\ntokens_file = \"{}\"\nadmin_token_file = \"{}\"\n",
            SECRETS[4],
            SECRETS[0],
            SECRETS[1],
            tokens.display(),
            admin.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // What the CLI prints about its configuration.
    for args in [&["config", "print"][..], &["config", "check"]] {
        let mut all = vec!["--config", config];
        all.extend(args);
        let out = geostream(&all, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_no_secret(&format!("geostream {args:?}"), &text);
        if args[1] == "print" {
            assert!(text.matches("<redacted>").count() >= 3, "{text}");
        }
    }

    // The sink (search engine and archive with their credentials), running until it wrote.
    let metrics = format!("127.0.0.1:{}", free_port());
    // Logs go to stderr, which `start` keeps.
    let spawn = |sub: &str, env: &[(&str, &str)]| start(&["--config", config, sub], env);
    let mut sink = spawn("sink", &[("GEOSTREAM_TELEMETRY__LISTEN", metrics.as_str())]);
    let (status, body) = get_until(&format!("http://{metrics}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let logs = terminate(&mut sink);
    assert!(logs.contains("TRACE") && logs.contains("index templates installed"), "{logs}");
    // The check can fail: the same run's logs do show what is not secret.
    assert!(logs.contains(&tenant) && logs.contains("127.0.0.1"), "{logs}");
    eprintln!("geostream sink wrote {} log lines", logs.lines().count());
    assert_no_secret("geostream sink", &logs);

    // The API, with requests carrying the right, a wrong and the admin token.
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut api =
        spawn("api", &[("GEOSTREAM_TELEMETRY__LISTEN", metrics.as_str()), ("GEOSTREAM_API__LISTEN", listen.as_str())]);
    let (status, body) = get_until(&format!("http://{metrics}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let latest = format!("http://{listen}/v1/{tenant}/latest");
    let (status, _) = request_until(|h| h.get(&latest).bearer_auth(SECRETS[2]), &[0], 300);
    assert_eq!(status, 200);
    let (status, _) = request_until(|h| h.get(&latest).bearer_auth(format!("{}x", SECRETS[3])), &[0], 300);
    assert_eq!(status, 401);
    let (status, _) =
        request_until(|h| h.get(format!("http://{listen}/v1/{tenant}/fences")).bearer_auth(SECRETS[3]), &[0], 300);
    assert_eq!(status, 200);
    let logs = terminate(&mut api);
    assert!(logs.contains("TRACE") && logs.contains(&tenant), "{logs}");
    eprintln!("geostream api wrote {} log lines", logs.lines().count());
    assert_no_secret("geostream api", &logs);
}

#[test]
fn kafka_acls_prints_commands_or_json_for_the_configured_tenant_and_refuses_a_bad_principal() {
    let env =
        [("GEOSTREAM_TENANT", "acme"), ("GEOSTREAM_TOPIC_PREFIX", "prod."), ("GEOSTREAM_KAFKA__BOOTSTRAP", "k1:9093")];
    let out = geostream(&["kafka", "acls", "--principal", "User:acme"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("kafka-acls.sh ")).collect();
    assert!(commands.len() >= 5, "{text}");
    assert!(commands.iter().all(|c| c.contains("--bootstrap-server k1:9093 --command-config admin.properties --add")));
    assert!(text.contains("--topic prod.acme. --resource-pattern-type prefixed"), "{text}");
    assert!(text.contains("--group geostream-acme-process --resource-pattern-type literal"), "{text}");
    assert!(text.contains("--transactional-id prod.acme.process. --resource-pattern-type prefixed"), "{text}");

    let out = geostream(&["kafka", "acls", "--principal", "User:acme", "--format", "json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bindings = json.as_array().unwrap();
    assert_eq!(bindings.len(), commands.len());
    assert!(bindings.iter().all(|b| b["principal"] == "User:acme" && b["permission"] == "ALLOW"), "{json}");

    // The operator's: the three registry topics and their readers, literally, and nothing else.
    let out = geostream(&["kafka", "acls", "--operator", "--principal", "User:geostream-operator"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("kafka-acls.sh ")).collect();
    assert_eq!(commands.len(), 6, "{text}");
    for kind in ["feeds", "fences", "analytics"] {
        assert!(text.contains(&format!("--topic prod.acme.{kind} --resource-pattern-type literal")), "{text}");
        assert!(text.contains(&format!("--group prod.acme.{kind}.reader --resource-pattern-type literal")), "{text}");
    }
    assert!(!text.contains("prefixed") && !text.contains("observations"), "{text}");

    let out = geostream(&["kafka", "acls", "--principal", "acme"], &env);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("User:<name>"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_kafka_password_file_stops_a_stage_with_a_config_exit_code() {
    let out = geostream(
        &["process"],
        &[("GEOSTREAM_TENANT", "acme"), ("GEOSTREAM_KAFKA__SASL_PASSWORD_FILE", "/nonexistent/kafka-password")],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("kafka.sasl_password_file") && stderr(&out).contains("/nonexistent/kafka-password"));
}

/// Registers `user` on the secure broker and applies the ACLs `geostream kafka acls` prints for the
/// configured tenant, line by line as an operator would.
fn apply_printed_acls(kafka: &geostream_tests::SecureKafka, config: &str, user: &str) {
    let out = geostream(&["--config", config, "kafka", "acls", "--principal", &format!("User:{user}")], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("kafka-acls.sh ")).collect();
    assert!(lines.len() >= 5, "{text}");
    for line in lines {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words[3..5], ["--command-config", "admin.properties"], "{line}");
        kafka.kafka_acls(&words[5..]);
    }
}

/// The feeds CLI and `geostream ingest` as one tenant on the SASL/SCRAM + TLS broker with ACLs
/// enforced, the password in a file: the feed registers, a pushed record reaches the tenant's
/// observations topic in Kafka (not just the spool), nothing is refused, and the password appears
/// in no output or log even at trace level.
#[test]
fn feeds_and_ingest_run_on_sasl_scram_over_tls_with_the_printed_acls_and_never_log_the_password() {
    let Some(kafka) = geostream_tests::SecureKafka::from_env("ingest over SASL_SSL") else { return };
    let t = SecureTenant::new(&kafka, "clisasl", "trace", "");
    let (tenant, password, config_path) = (t.tenant.clone(), t.password.clone(), t.config());
    let config = config_path.as_str();

    let data = tempfile::tempdir().unwrap();
    let push_listen = format!("127.0.0.1:{}", free_port());
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let catalog = geostream_tests::package_dir().join("../../feeds").to_string_lossy().into_owned();
    let env: Vec<(&str, &str)> = vec![
        ("GEOSTREAM_CONFIG", config),
        ("GEOSTREAM_DATA_DIR", data.path().to_str().unwrap()),
        ("GEOSTREAM_INGEST__LISTEN", &push_listen),
        ("GEOSTREAM_TELEMETRY__LISTEN", &metrics_listen),
        ("GEOSTREAM_SECRET_GPS_TOKEN", "tok-123"),
        ("GEOSTREAM_CATALOG", &catalog),
    ];
    let reg = register_gps_push_feed(&env);
    assert!(reg.status.success(), "{}", stderr(&reg));
    let printed = format!("{}{}", stdout(&reg), stderr(&reg));
    assert!(!printed.contains(&password), "feeds register printed the password:\n{printed}");

    let mut child = start(&["ingest"], &env);
    let url = format!("http://{push_listen}/v1/push/{tenant}/gps");
    let nmea = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\n";
    let (status, body) = post_until(&url, "tok-123", nmea, &[0, 404]);
    assert_eq!(status, 202, "{body}");

    // In Kafka, read as the tenant: a 202 alone could mean the record waits in the spool.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut cfg = rdkafka::ClientConfig::new();
    for (k, v) in kafka.client_properties(&tenant, &password) {
        cfg.set(k, v);
    }
    let topic = format!("{tenant}.observations");
    let reader: BaseConsumer = cfg.set("group.id", format!("{topic}.reader")).create().unwrap();
    let timeout = std::time::Duration::from_secs(10);
    let md = reader.fetch_metadata(Some(&topic), timeout).unwrap();
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    assert!(!partitions.is_empty(), "ingest created {topic}");
    let mut end = 0;
    for _ in 0..600 {
        end = partitions.iter().map(|p| reader.fetch_watermarks(&topic, *p, timeout).map(|w| w.1).unwrap_or(0)).sum();
        if end > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let logs = terminate(&mut child);
    assert_eq!(end, 1, "the pushed record is in {topic}:\n{logs}");
    assert!(logs.contains("TRACE"), "trace logging was on");
    for refused in ["uthorization", "uthentication failed"] {
        assert!(!logs.contains(refused), "ingest was refused something ({refused}):\n{logs}");
    }
    assert!(!logs.contains(&password), "ingest logged the SASL password:\n{logs}");
}

/// A fresh tenant on the SASL/SCRAM + TLS broker: its SCRAM user, its password in a file (as a
/// mounted secret), a configuration naming both (log level `level`, then `extra` TOML), and exactly
/// the ACLs `geostream kafka acls` prints for it, applied.
struct SecureTenant {
    tenant: String,
    password: String,
    dir: tempfile::TempDir,
}

impl SecureTenant {
    fn new(kafka: &geostream_tests::SecureKafka, prefix: &str, level: &str, extra: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let tenant = format!("{prefix}{:x}", nanos & 0xffff_ffff);
        let password = format!("sasl-pw-{:x}", nanos);
        kafka.create_user(&tenant, &password);
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("kafka-password");
        std::fs::write(&secret, format!("{password}\n")).unwrap();
        std::fs::write(
            dir.path().join("g.toml"),
            format!(
                "tenant = \"{tenant}\"\n[log]\nlevel = \"{level}\"\n[kafka]\nbootstrap = \"{}\"\nsasl_password_file = \"{}\"\n\
                 [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
                 \"sasl.username\" = \"{tenant}\"\n\"ssl.ca.location\" = \"{}\"\n{extra}",
                kafka.bootstrap,
                secret.display(),
                kafka.ca
            ),
        )
        .unwrap();
        let t = SecureTenant { tenant, password, dir };
        apply_printed_acls(kafka, &t.config(), &t.tenant);
        t
    }

    /// The configuration file's path.
    fn config(&self) -> String {
        self.dir.path().join("g.toml").to_str().unwrap().to_owned()
    }
}

/// Accepts webhook POSTs on a free port and sends each body to the channel (answers 204). A
/// plain listener: the test only needs the bodies.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                    let mut w = &conn;
                    if w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// `geostream sink` (with its event outputs and the archive) and `geostream api` (on the search
/// engine, then on the archive) as one tenant on the SASL/SCRAM + TLS broker with ACLs enforced,
/// holding exactly the ACLs `geostream kafka acls` printed and the password in a file. Each stage
/// must do its work through its own group and topics: the sink indexes every observation, the
/// archive covers the topic, the webhook gets every event, the API registers and lists a fence,
/// reads dead letters for feed status, pushes a new observation live, and answers from the
/// archive plus its live layer. Nothing is refused, and the password is in no log.
#[test]
fn sink_outputs_archive_and_api_run_on_sasl_scram_over_tls_with_the_printed_acls() {
    let Some(kafka) = geostream_tests::SecureKafka::from_env("sink and api over SASL_SSL") else { return };
    let Some(es) = geostream_tests::service("ELASTICSEARCH_URL", "sink and api over SASL_SSL") else { return };
    let (hook_port, hooks) = webhook_receiver();
    // At info: the archive API's DataFusion plans at debug fill the piped stderr, which the test
    // reads only at exit, and the child blocks on its log writes.
    let t = SecureTenant::new(
        &kafka,
        "sinksasl",
        "info",
        &format!(
            "[[outputs]]\nname = \"ops\"\n[outputs.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
             secret_ref = \"ops-key\"\n"
        ),
    );
    let (tenant, password, config_path, dir) = (t.tenant.clone(), t.password.clone(), t.config(), &t.dir);
    let config = config_path.as_str();

    // Input as the tenant itself: 50 positions of five tracks, three events, one dead letter.
    let props = kafka.client_properties(&tenant, &password);
    let client = || {
        let mut c = rdkafka::ClientConfig::new();
        for (k, v) in &props {
            c.set(k, v);
        }
        c
    };
    let topic = |kind: &str| format!("{tenant}.{kind}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t0 = geostream_model::time::OffsetDateTime::now_utc() - geostream_model::time::Duration::minutes(5);
    let event_ids: std::collections::BTreeSet<String> = rt.block_on(async {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = client().create().unwrap();
        let names = [topic("observations"), topic("events"), topic("deadletter")];
        let new: Vec<_> = names
            .iter()
            .map(|t| rdkafka::admin::NewTopic::new(t, 1, rdkafka::admin::TopicReplication::Fixed(1)))
            .collect();
        for r in admin.create_topics(&new, &rdkafka::admin::AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
        produce_positions(client(), &topic("observations"), 0..50, t0).await;
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer = client().create().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..3 {
            let e = geostream_model::Event::builder(
                geostream_model::AnalyticId::new("silence").unwrap(),
                geostream_model::EventKind::Gap,
                t0 + geostream_model::time::Duration::seconds(i),
            )
            .feed(geostream_model::FeedId::new("f").unwrap())
            .track(geostream_model::TrackId::new(format!("v{i}")).unwrap())
            .geometry(geostream_model::geojson::Geometry::new_point([10.0, 63.0]))
            .build();
            ids.insert(e.id.to_string());
            let payload = serde_json::to_vec(&e).unwrap();
            let key = format!("v{i}");
            p.send(FutureRecord::to(&topic("events")).key(&key).payload(&payload), std::time::Duration::from_secs(30))
                .await
                .unwrap();
        }
        let dl = geostream_model::DeadLetter::new(
            b"not json".to_vec(),
            geostream_model::Stage::Ingest,
            geostream_model::ReasonCode::Malformed,
            "a test dead letter",
            geostream_model::time::OffsetDateTime::now_utc(),
        )
        .with_feed("f");
        let payload = serde_json::to_vec(&dl).unwrap();
        p.send(FutureRecord::to(&topic("deadletter")).key("f").payload(&payload), std::time::Duration::from_secs(30))
            .await
            .unwrap();
        ids
    });

    let archive_url = format!("file://{}", dir.path().join("archive").display());
    let sink_metrics = format!("127.0.0.1:{}", free_port());
    let mut sink = start(
        &["--config", config, "sink"],
        &[
            ("GEOSTREAM_ELASTICSEARCH__URL", es.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", sink_metrics.as_str()),
            ("GEOSTREAM_SINK__LINGER_MS", "10"),
            ("GEOSTREAM_SINK__INDEX_REPLICAS", "0"),
            ("GEOSTREAM_ARCHIVE__ENABLED", "true"),
            ("GEOSTREAM_ARCHIVE__URL", archive_url.as_str()),
            ("GEOSTREAM_ARCHIVE__FLUSH_MAX_AGE_S", "1"),
            ("GEOSTREAM_SECRET_OPS_KEY", "k3y"),
        ],
    );
    let (status, body) = get_until(&format!("http://{sink_metrics}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < event_ids.len() {
        let body = hooks.recv_timeout(std::time::Duration::from_secs(60)).expect("the webhook got every event");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        delivered.insert(v["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(delivered, event_ids, "the outputs delivered exactly the tenant's events");
    let next = archive_progress(&dir.path().join("archive").join(&tenant), 50);
    assert_eq!(next, 50, "the archive covered the tenant's observations");

    // The API on the search engine, with a reader and an admin token.
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{tenant} reader-token\n")).unwrap();
    let admin_token = dir.path().join("admin");
    std::fs::write(&admin_token, "admin-token\n").unwrap();
    let api_listen = format!("127.0.0.1:{}", free_port());
    let api_metrics = format!("127.0.0.1:{}", free_port());
    let mut api_proc = start(
        &["--config", config, "api"],
        &[
            ("GEOSTREAM_ELASTICSEARCH__URL", es.as_str()),
            ("GEOSTREAM_TELEMETRY__LISTEN", api_metrics.as_str()),
            ("GEOSTREAM_API__LISTEN", api_listen.as_str()),
            ("GEOSTREAM_API__TOKENS_FILE", tokens.to_str().unwrap()),
            ("GEOSTREAM_API__ADMIN_TOKEN_FILE", admin_token.to_str().unwrap()),
        ],
    );
    let (status, body) = get_until(&format!("http://{api_metrics}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let api = |path: &str| format!("http://{api_listen}/v1/{tenant}/{path}");
    let mut positions = 0;
    for _ in 0..600 {
        let (status, body) = request_until(|h| h.get(api("tracks/v0")).bearer_auth("reader-token"), &[0], 600);
        assert_eq!(status, 200, "{body}");
        positions = serde_json::from_str::<serde_json::Value>(&body).unwrap()["features"].as_array().unwrap().len();
        if positions == 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(positions, 10, "the sink indexed all ten positions of v0");
    let fence = serde_json::json!({"id": "yard", "name": "Yard", "geometry": {"type": "Polygon",
        "coordinates": [[[10.0, 62.9], [10.6, 62.9], [10.6, 63.1], [10.0, 63.1], [10.0, 62.9]]]}});
    let (status, body) =
        request_until(|h| h.put(api("fences/yard")).bearer_auth("admin-token").json(&fence), &[0], 600);
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = request_until(|h| h.get(api("fences")).bearer_auth("reader-token"), &[0], 600);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"yard\""), "the registry lists the fence: {body}");
    let (status, body) = request_until(|h| h.get(api("feed-status?minutes=60")).bearer_auth("reader-token"), &[0], 600);
    assert_eq!(status, 200, "{body}");
    let feed_status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let feed = feed_status["feeds"].as_array().unwrap().iter().find(|f| f["feed"] == "f").cloned();
    assert_eq!(feed.as_ref().map(|f| f["errors"].clone()), Some(serde_json::json!(1)), "{body}");

    // Live push: a position produced after the client connected arrives on the stream.
    let newest = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut live = http.get(api("live?kind=observations")).bearer_auth("reader-token").send().await.unwrap();
        assert_eq!(live.status().as_u16(), 200);
        // The stream starts at the end once its consumer is assigned, which the client cannot
        // see: a new position of v0 every few seconds until one arrives.
        let mut seen = String::new();
        for i in 0..20 {
            produce_positions(client(), &topic("observations"), 50 + 5 * i..51 + 5 * i, t0).await;
            while let Ok(Ok(Some(chunk))) = tokio::time::timeout(std::time::Duration::from_secs(3), live.chunk()).await
            {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("\"v0\"") {
                    return seen;
                }
            }
        }
        seen
    });
    assert!(newest.contains("\"v0\""), "the live stream pushed the new position: {newest}");
    let api_logs = terminate(&mut api_proc);

    // The API on the archive, with its live layer from Kafka (its own group).
    let api_listen2 = format!("127.0.0.1:{}", free_port());
    let api_metrics2 = format!("127.0.0.1:{}", free_port());
    let mut local = start(
        &["--config", config, "api"],
        &[
            ("GEOSTREAM_TELEMETRY__LISTEN", api_metrics2.as_str()),
            ("GEOSTREAM_API__LISTEN", api_listen2.as_str()),
            ("GEOSTREAM_API__TOKENS_FILE", tokens.to_str().unwrap()),
            ("GEOSTREAM_ARCHIVE__URL", archive_url.as_str()),
        ],
    );
    let (status, body) = get_until(&format!("http://{api_metrics2}/readyz"), &[0, 503]);
    if status != 200 {
        panic!("the archive API is not ready: {body}\n{}", terminate(&mut local));
    }
    let (status, body) = request_until(
        |h| h.get(format!("http://{api_listen2}/v1/{tenant}/latest")).bearer_auth("reader-token"),
        &[0],
        600,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["features"].as_array().unwrap().len(), 5);
    let local_logs = terminate(&mut local);
    let sink_logs = terminate(&mut sink);

    for (stage, logs) in [("sink", &sink_logs), ("api", &api_logs), ("archive api", &local_logs)] {
        for refused in ["uthorization", "uthentication failed"] {
            assert!(!logs.contains(refused), "{stage} was refused something ({refused}):\n{logs}");
        }
        assert!(!logs.contains(&password), "{stage} logged the SASL password");
    }
    assert!(sink_logs.contains("sink stopped") && sink_logs.contains("outputs stopped"), "{sink_logs}");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let _ = http.delete(format!("{es}/geostream-{tenant}-*")).send().await;
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = http.delete(format!("{es}/_index_template/geostream-{tenant}-{kind}")).send().await;
        }
    });
}

/// `geostream standalone` alone (no Kafka, no search engine): the embedded broker, ingest, the
/// processor, the archive and the API in one process. A feed registered with the CLI against it
/// (the real GPX activity, 988 points) comes out of the API as one track of 988 positions, with the
/// analytics' events and aggregates; a restart on the same data directory keeps exactly those, and
/// the file is not read again.
#[test]
fn standalone_runs_every_stage_on_its_embedded_broker_and_a_restart_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sample = dir.path().join("activity.gpx");
    std::fs::copy(
        geostream_tests::repo_root().join("services/codecs/tests/data/gpx/georust_garmin-activity.gpx"),
        &sample,
    )
    .unwrap();
    let tenant = "solo";
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let api_listen = format!("127.0.0.1:{}", free_port());
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let ingest_listen = format!("127.0.0.1:{}", free_port());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{tenant} solo-token\n")).unwrap();
    let env = [
        ("GEOSTREAM_TENANT", tenant),
        ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
        ("GEOSTREAM_API__LISTEN", api_listen.as_str()),
        ("GEOSTREAM_API__TOKENS_FILE", tokens.to_str().unwrap()),
        ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
        ("GEOSTREAM_INGEST__LISTEN", ingest_listen.as_str()),
        ("GEOSTREAM_ARCHIVE__FLUSH_MAX_AGE_S", "1"),
        ("GEOSTREAM_PROCESS__COMMIT_INTERVAL_MS", "200"),
    ];
    let data_arg = data.to_str().unwrap();
    let mut child = start(&["standalone", "--data-dir", data_arg], &env);
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");

    // The CLI reaches the embedded broker at kafka.bootstrap, as it would a cluster. Fences and
    // analytics first: the processor applies them from the records that follow.
    // A fence around where the ride starts: its first point is an `enter`.
    let fences = dir.path().join("fences.geojson");
    std::fs::write(
        &fences,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"start"},
            "geometry":{"type":"Polygon","coordinates":[[[-121.98,37.23],[-121.96,37.23],[-121.96,37.25],[-121.98,37.25],[-121.98,37.23]]]}}]}"#,
    )
    .unwrap();
    let out = geostream(&["fences", "apply", fences.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let analytics = dir.path().join("analytics.yaml");
    std::fs::write(
        &analytics,
        "- {id: zones, analytic: {kind: geofence}}\n\
         - {id: bins, analytic: {kind: bins, cells: {kind: geohash, precision: 6}, window_s: 300}}\n",
    )
    .unwrap();
    let out = geostream(&["analytics", "apply", analytics.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));

    let catalog: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(geostream_tests::repo_root().join("feeds/gpx-file.yaml")).unwrap(),
    )
    .unwrap();
    let mut feed = serde_json::to_value(&catalog["feed"]).unwrap();
    feed["id"] = serde_json::json!("bike");
    feed["source"] = serde_json::json!({"kind": "file", "path": sample});
    let spec = dir.path().join("feed.json");
    std::fs::write(&spec, serde_json::to_vec(&feed).unwrap()).unwrap();
    let out = geostream(&["feeds", "register", "--file", spec.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let get = |path: &str| {
        let (status, body) =
            request_until(|h| h.get(format!("http://{api_listen}{path}")).bearer_auth("solo-token"), &[0], 600);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let count = |v: &serde_json::Value| v["features"].as_array().map_or(0, Vec::len);
    // Track ids are free text ("casual stroll#0" here): one path segment, percent-encoded.
    let track_path = |track: &str| {
        let mut url = reqwest::Url::parse(&format!("http://{api_listen}/v1/{tenant}/tracks")).unwrap();
        url.path_segments_mut().unwrap().push(track);
        format!("{}?limit=2000", url.path())
    };
    // Wait (bounded by attempts) until the archive or the live layer shows the whole track.
    let mut track = String::new();
    let mut positions = 0;
    for _ in 0..600 {
        let latest = get(&format!("/v1/{tenant}/latest"));
        if let Some(t) = latest["features"][0]["properties"]["track"].as_str() {
            track = t.to_owned();
            positions = count(&get(&track_path(&track)));
            if positions >= 988 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(positions, 988, "every point of the activity, once, as track {track:?}");
    // The processor's output is complete when it has consumed all 988 observations and the API
    // shows as many events and aggregates as it produced, twice in a row (its counters move with
    // each committed transaction).
    let produced = || {
        let (_, metrics) = get_until(&format!("http://{metrics_listen}/metrics"), &[0]);
        // The sum over the series of `metric` whose labels contain `label` (absent: 0).
        let sum = |metric: &str, label: &str| -> usize {
            metrics
                .lines()
                .filter(|l| l.starts_with(metric) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as usize
        };
        (
            sum("geostream_process_records_total{", ""),
            sum("geostream_process_produced_total{", r#"name="events""#),
            sum("geostream_process_produced_total{", r#"name="aggregates""#),
            sum("geostream_process_replayed_total{", ""),
        )
    };
    let (mut events, mut aggregates, mut settled) = (0, 0, 0);
    for _ in 0..600 {
        let (records, made_events, made_aggregates, _) = produced();
        events = count(&get(&format!("/v1/{tenant}/events?limit=1000")));
        aggregates = count(&get(&format!("/v1/{tenant}/aggregates")));
        let complete = records == 988 && events == made_events && aggregates == made_aggregates;
        settled = if complete { settled + 1 } else { 0 };
        if settled == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        settled,
        2,
        "the API shows what the processor produced: {:?} vs {events} events, {aggregates} aggregates",
        produced()
    );
    assert!(events > 0 && aggregates > 0, "the processor's output: {events} events, {aggregates} aggregates");
    let out = sigterm(&mut child);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "standalone exit: {:?}\n{log}", out.status);

    // Same data directory: everything is still there once, and nothing is read or derived again.
    let mut child = start(&["standalone", "--data-dir", data_arg], &env);
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    // Give ingest the time to (wrongly) read the file again before counting.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(count(&get(&track_path(&track))), 988, "after the restart");
    assert_eq!(count(&get(&format!("/v1/{tenant}/events?limit=1000"))), events, "events after the restart");
    assert_eq!(count(&get(&format!("/v1/{tenant}/aggregates"))), aggregates, "aggregates after the restart");
    // It reads again only what waited in its reorder buffer (the last `lateness_s` of the ride),
    // from the state it committed, and derives nothing from it a second time.
    let (records, made_events, made_aggregates, replayed) = produced();
    assert!(replayed > 0, "the reorder buffer is read again from the input");
    assert_eq!(
        (records - replayed, made_events, made_aggregates),
        (0, 0, 0),
        "the restarted processor read nothing new and derived nothing again ({replayed} replayed)"
    );
    let out = sigterm(&mut child);
    assert!(out.status.success(), "standalone exit: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// Runs `geostream demo` as a newcomer would (nothing but the binary, the repository's `feeds/`
/// and the built dashboard), stopping by itself with `--exit-after`.
fn run_demo(data: &std::path::Path, exit_after: &str, env: &[(&str, &str)], log: &std::path::Path) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOSTREAM_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["demo", "--data-dir", data.to_str().unwrap(), "--exit-after", exit_after, "--status-every-s", "5"])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        // A file, not a pipe: nobody reads stderr while the demo runs, and a full pipe would stall it.
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .map(|c| KillOnDrop(Some(c)))
        .unwrap()
}

/// `geostream demo`, end to end on its embedded broker: the sample feeds of every kind come out of
/// the API with events and aggregates, the dashboard shows them moving in a real browser, and the
/// demo stops by itself with a summary. A second run on the same data directory continues the
/// replay: the GPS receiver's track (one fix a second in the sample) is then exactly the sample's
/// first N fixes, each once, rebased at the replay speed, with none lost or repeated across the
/// restart.
#[test]
fn demo_shows_live_samples_with_events_and_a_restart_loses_and_repeats_nothing() {
    let chromium = geostream_tests::service("GEOSTREAM_CHROMIUM", "demo dashboard");
    let root = geostream_tests::repo_root();
    if chromium.is_some() {
        let built = Command::new(root.join("scripts/dashboard.sh")).status().unwrap();
        assert!(built.success(), "scripts/dashboard.sh failed");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let api_listen = format!("127.0.0.1:{}", free_port());
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let ingest_listen = format!("127.0.0.1:{}", free_port());
    let catalog = root.join("feeds");
    let dashboard = root.join("web/dist");
    let env = [
        ("GEOSTREAM_KAFKA__BOOTSTRAP", bootstrap.as_str()),
        ("GEOSTREAM_API__LISTEN", api_listen.as_str()),
        ("GEOSTREAM_TELEMETRY__LISTEN", metrics_listen.as_str()),
        ("GEOSTREAM_INGEST__LISTEN", ingest_listen.as_str()),
        ("GEOSTREAM_ARCHIVE__FLUSH_MAX_AGE_S", "1"),
        ("GEOSTREAM_CATALOG", catalog.to_str().unwrap()),
        ("GEOSTREAM_API__DASHBOARD_DIR", dashboard.to_str().unwrap()),
    ];
    // The first two runs end with a signal once checked (a slow machine must not see the demo gone
    // mid-check); their --exit-after only bounds a test that failed to stop them.
    let log1 = dir.path().join("demo-1.log");
    let mut first = run_demo(&data, "30m", &env, &log1);
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    // The demo made the tenant's read token and keeps it in the data directory.
    let tokens = std::fs::read_to_string(data.join("demo-api-tokens")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("demo-api-tokens")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is the owner's alone");
    let token = tokens.split_whitespace().nth(1).unwrap().to_owned();
    let get = |path: &str| -> serde_json::Value {
        let (status, body) =
            request_until(|h| h.get(format!("http://{api_listen}{path}")).bearer_auth(&token), &[0], 600);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let features = |v: &serde_json::Value| v["features"].as_array().cloned().unwrap_or_default();
    let feeds = ["ais-nmea-tcp", "opensky-csv-file", "gtfs-rt-vehicle-positions", "nmea-gps-tcp", "usgs-earthquakes"];

    // Every feed on the map (latest position per track), events and aggregates: bounded by attempts.
    let (mut seen_feeds, mut events, mut aggregates) = (std::collections::BTreeSet::new(), 0, 0);
    for _ in 0..600 {
        seen_feeds = features(&get("/v1/demo/latest?limit=9999"))
            .iter()
            .filter_map(|f| f["properties"]["feed"].as_str().map(str::to_owned))
            .collect();
        events = features(&get("/v1/demo/events?limit=100")).len();
        aggregates = features(&get("/v1/demo/aggregates")).len();
        if seen_feeds.len() == feeds.len() && events > 0 && aggregates > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(seen_feeds, feeds.iter().map(|f| f.to_string()).collect(), "feeds with positions");
    assert!(events > 0 && aggregates > 0, "{events} events, {aggregates} aggregates");

    if let Some(chromium) = &chromium {
        let screenshot = geostream_tests::report_dir().join("demo-dashboard.png");
        let out = Command::new("node")
            .arg(root.join("web/tests/demo.mjs"))
            .current_dir(root.join("web"))
            .env("GEOSTREAM_URL", format!("http://{api_listen}"))
            .env("GEOSTREAM_TOKEN", &token)
            .env("GEOSTREAM_TENANT", "demo")
            .env("GEOSTREAM_CHROMIUM", chromium)
            .env("GEOSTREAM_SCREENSHOT", &screenshot)
            .output()
            .unwrap();
        let said = stdout(&out);
        let last = said.lines().last().unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("browser said {said:?} ({e}); {}", stderr(&out)));
        assert_eq!(v["stage"], "done", "{v}\n{}", stderr(&out));
        assert!(v["live_points"].as_u64().unwrap() >= 20, "{v}");
        assert!(v["live_features"].as_u64().unwrap() >= v["at_live"]["live_features"].as_u64().unwrap() + 50, "{v}");
        assert!(v["events"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["fences"], 218, "the demo's fences drawn: {v}");
        assert!(v["feeds"].as_array().unwrap().len() >= 4, "feed panel: {v}");
        assert_eq!(v["external_requests"], serde_json::json!([]), "{v}");
        assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    }

    // Ctrl-C: a clean stop with the summary.
    let out = signal(&mut first, "INT");
    let log = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(out.status.success(), "first run: {:?}\n{log}", out.status);
    let summary = stdout(&out);
    assert!(summary.starts_with("geostream demo ran"), "{summary}");
    // The GPS receiver's replay speed, from the summary's table (`nmea-gps-tcp  4x ...`).
    let speed: i64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("nmea-gps-tcp"))
        .and_then(|rest| rest.split_whitespace().next()?.strip_suffix('x')?.parse().ok())
        .unwrap_or_else(|| panic!("no speed for nmea-gps-tcp in the summary:\n{summary}"));
    for feed in feeds {
        assert!(summary.contains(feed), "{feed} in the summary:\n{summary}");
    }
    assert!(log.contains("dashboard  http://"), "the dashboard's address is printed:\n{log}");
    assert!(log.contains("registry   227 change(s) written, 0 unchanged"), "{log}");

    // Second run on the same directory: the registrations stand, the replay goes on.
    let log2 = dir.path().join("demo-2.log");
    let mut second = run_demo(&data, "30m", &env, &log2);
    let (status, body) = get_until(&format!("http://{metrics_listen}/readyz"), &[0, 503]);
    assert_eq!(status, 200, "{body}");
    let decoded = geostream(&["decode", "--feed", "nmea-gps-tcp"], &[("GEOSTREAM_CATALOG", catalog.to_str().unwrap())]);
    assert!(decoded.status.success(), "{}", stderr(&decoded));
    let rfc = &geostream_model::time::format_description::well_known::Rfc3339;
    let parse = |s: &str| geostream_model::time::OffsetDateTime::parse(s, rfc).unwrap();
    let sample: Vec<_> = stdout(&decoded)
        .lines()
        .map(|l| parse(serde_json::from_str::<serde_json::Value>(l).unwrap()["properties"]["time"].as_str().unwrap()))
        .collect();
    let track_times = || -> Vec<geostream_model::time::OffsetDateTime> {
        let mut t: Vec<_> = features(&get("/v1/demo/tracks/nmea-gps-tcp?limit=2000"))
            .iter()
            .map(|f| parse(f["properties"]["time"].as_str().unwrap()))
            .collect();
        t.sort();
        t
    };
    // Wait (bounded) until the second run has added fixes well past the first run's.
    let mut times = track_times();
    let after_first = times.len();
    for _ in 0..600 {
        if times.len() >= after_first + 40 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        times = track_times();
    }
    assert!(
        times.len() >= after_first + 40,
        "the second run goes on: {after_first} then {}\n{}",
        times.len(),
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    assert!(times.len() < sample.len(), "still in the first pass: {} fixes", times.len());
    // Exactly the sample's first fixes, once each: offset k from the first is the sample's offset k
    // divided by the speed (to the nanosecond).
    for (k, t) in times.iter().enumerate() {
        let rebased = (*t - times[0]) * speed as i32;
        assert_eq!(rebased, sample[k] - sample[0], "fix {k} of {}: {t}", times.len());
    }
    let out = sigterm(&mut second);
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(out.status.success(), "second run: {:?}\n{log}", out.status);
    // 218 fences, 4 analytics and 5 feeds, none written again.
    assert!(log.contains("registry   0 change(s) written, 227 unchanged"), "{log}");

    // --exit-after alone ends a run, with the summary.
    let log3 = dir.path().join("demo-3.log");
    let mut third = run_demo(&data, "5s", &env, &log3);
    let out = exited(&mut third);
    let log = std::fs::read_to_string(&log3).unwrap_or_default();
    assert!(out.status.success(), "third run: {:?}\n{log}", out.status);
    assert!(stdout(&out).starts_with("geostream demo ran"), "{}", stdout(&out));
}

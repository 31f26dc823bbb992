//! The ingest stage end to end on real Kafka: feeds registered on `<tenant>.feeds` start, pause,
//! resume and stop live; pushed records land in `<tenant>.observations` and `<tenant>.deadletter`
//! and are counted one by one; and a Kafka outage (with an ingest restart in the middle of it) loses
//! and duplicates nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use geostream_ingest::registry::RegistryClient;
use geostream_ingest::stage::{IngestSettings, IngestStage};
use geostream_model::{DeadLetter, FeedId, FeedSpec, Naming, Observation, TenantId, TopicKind};
use geostream_telemetry::Telemetry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

fn props(bootstrap: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.to_owned())])
}

fn settings(tenant: &TenantId, bootstrap: &str, data_dir: &Path, secrets: Option<PathBuf>) -> IngestSettings {
    IngestSettings {
        tenant: tenant.clone(),
        naming: Naming::new("").unwrap(),
        kafka: props(bootstrap),
        data_dir: data_dir.to_path_buf(),
        push_listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 64 * 1024 * 1024,
        spool_max_bytes: 256 * 1024 * 1024,
        spool_segment_bytes: 8 * 1024 * 1024,
        partitions: 3,
        replication: None,
        secrets_dir: secrets,
        max_in_flight: 20_000,
    }
}

fn push_spec(id: &str, format: &str, extra: serde_json::Value) -> FeedSpec {
    let mut v =
        json!({"id": id, "type": "http-push-json", "source": {"kind": "http_push"}, "format": format, "version": 1});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

/// POSTs until the feed is there (feeds start asynchronously after the registry record is read)
/// or `want_found` is false and it is gone; returns the final answer. Bounded by attempts, not time.
async fn push_when(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &[u8],
    want_found: bool,
) -> (u16, serde_json::Value) {
    for _ in 0..300 {
        let mut req = http.post(url).body(body.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("push request");
        let status = resp.status().as_u16();
        let value: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if (status != 404) == want_found {
            return (status, value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url}: the feed never became {}", if want_found { "available" } else { "unavailable" });
}

/// Every record on `topic` from the beginning to its current end.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", geostream_tests::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).unwrap();
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut done = HashSet::new();
    let mut out = Vec::new();
    let mut idle = 0;
    while done.len() < partitions.len() {
        match consumer.poll(Duration::from_secs(1)) {
            None => {
                idle += 1;
                assert!(idle < 60, "no records or end-of-partition from {topic} for 60 polls");
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                idle = 0;
                out.push((m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec()));
            }
        }
    }
    out
}

/// Waits (bounded by attempts) until the stage's spool is empty, i.e. Kafka acknowledged everything.
async fn drained(stage: &IngestStage) {
    for _ in 0..1200 {
        if stage.pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the spool still holds {} records after 1200 checks", stage.pending());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_records_reach_kafka_and_feeds_follow_the_registry_live() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "ingest push to kafka") else { return };
    let tenant: TenantId = geostream_tests::unique("ing").parse().unwrap();
    let naming = Naming::new("").unwrap();
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("planes-token"), "t0ken-planes\n").unwrap();
    let telemetry = Telemetry::new("ingest", tenant.as_str());
    let stage = IngestStage::start(settings(&tenant, &bootstrap, data.path(), Some(secrets.path().into())), &telemetry)
        .await
        .unwrap();
    let base = format!("http://{}/v1/push/{tenant}", stage.push_addr);
    let registry = RegistryClient::new(props(&bootstrap), naming.topic(&tenant, TopicKind::Feeds));
    registry.ensure_topic().await.unwrap();

    // The catalog's push feed with its real sample: OpenSky aircraft states as JSON records.
    let entry: geostream_model::CatalogEntry = serde_yaml::from_str(
        &std::fs::read_to_string(geostream_tests::repo_root().join("feeds/http-push-json.yaml")).unwrap(),
    )
    .unwrap();
    let mut planes = entry.feed.clone();
    planes.id = FeedId::new("planes").unwrap();
    planes.version = 1;
    planes.source = geostream_model::Source::HttpPush { token_ref: Some("planes-token".into()), max_body_bytes: None };
    registry.put(&planes.id, Some(&planes)).await.unwrap();
    let sample = std::fs::read(
        geostream_tests::repo_root().join("services/codecs/tests/data/traffic_opensky_calfire_2020-09.json"),
    )
    .unwrap();
    let expected = entry.sample.as_ref().unwrap().expect;

    let http = reqwest::Client::new();
    let url = format!("{base}/planes");
    let (status, _) = push_when(&http, &url, None, b"[]", true).await;
    assert_eq!(status, 401, "no token");
    let (status, _) = push_when(&http, &url, Some("wrong"), b"[]", true).await;
    assert_eq!(status, 401, "wrong token");
    let (status, body) = push_when(&http, &url, Some("t0ken-planes"), &sample, true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], expected.accepted, "{body}");

    // Bad records in a second request: dead letters with reasons, and 202 because they are durable.
    let bad = br#"[{"icao24":"abc123","timestamp":1600000000000,"longitude":500,"latitude":10},{"icao24":"abc124"}]"#;
    let (status, body) = push_when(&http, &url, Some("t0ken-planes"), bad, true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
    let rejected: u64 = body["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(rejected, 2, "{body}");

    // Over the per-feed body limit: 413, nothing stored.
    let mut small = planes.clone();
    small.version = 2;
    small.source =
        geostream_model::Source::HttpPush { token_ref: Some("planes-token".into()), max_body_bytes: Some(1000) };
    registry.put(&small.id, Some(&small)).await.unwrap();
    let mut status = 0;
    for _ in 0..300 {
        // The push listener may reset a connection while the feed restarts with its new limit.
        let Ok(resp) = http.post(&url).bearer_auth("t0ken-planes").body(sample.clone()).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        status = resp.status().as_u16();
        if status == 413 {
            break;
        }
        // Until the restarted feed is up, the old limit applies and the records are accepted
        // again; they carry the same deterministic ids, which the count below accounts for.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 413, "body limit of the reconfigured feed");

    // Pause: the feed disappears from the receiver; resume: it is back; delete: gone.
    let mut paused = small.clone();
    paused.version = 3;
    paused.enabled = false;
    registry.put(&paused.id, Some(&paused)).await.unwrap();
    let (status, body) = push_when(&http, &url, Some("t0ken-planes"), b"[]", false).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("planes"), "{body}");
    let mut resumed = paused.clone();
    resumed.version = 4;
    resumed.enabled = true;
    registry.put(&resumed.id, Some(&resumed)).await.unwrap();
    let (status, _) = push_when(&http, &url, Some("t0ken-planes"), b"[]", true).await;
    assert_eq!(status, 202);
    registry.put(&resumed.id, None).await.unwrap();
    let (status, _) = push_when(&http, &url, Some("t0ken-planes"), b"[]", false).await;
    assert_eq!(status, 404);
    let (status, body) =
        push_when(&http, &format!("http://{}/v1/push/other/planes", stage.push_addr), None, b"[]", false).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("not served here"), "{body}");

    drained(&stage).await;
    let metrics = telemetry.encode().unwrap();
    stage.shutdown().await;

    let observations = read_topic(&bootstrap, &naming.topic(&tenant, TopicKind::Observations));
    let mut ids = HashSet::new();
    let mut tracks = HashSet::new();
    for (key, value) in &observations {
        let o: Observation = serde_json::from_slice(value).unwrap();
        assert_eq!(o.feed.as_str(), "planes");
        assert_eq!(key.as_deref(), Some(o.kafka_key().as_bytes()), "keyed by track");
        ids.insert(o.id);
        tracks.insert(o.track.clone());
    }
    assert_eq!(ids.len() as u64, expected.accepted, "every accepted observation is on the topic");
    assert_eq!(tracks.len() as u64, expected.tracks);
    assert_eq!(
        observations.len() % ids.len(),
        0,
        "records appear once per accepted request (the sample may have been accepted again while the feed restarted)"
    );
    let dead = read_topic(&bootstrap, &naming.topic(&tenant, TopicKind::Deadletter));
    assert_eq!(dead.len(), 2);
    let reasons: HashSet<String> =
        dead.iter().map(|(_, v)| serde_json::from_slice::<DeadLetter>(v).unwrap().reason.as_str().to_owned()).collect();
    assert!(reasons.contains("invalid_coordinates"), "{reasons:?}");
    assert!(metrics.contains("geostream_ingest_accepted_total{"), "{metrics}");
    assert!(metrics.contains("feed=\"planes\""), "{metrics}");
}

/// A broker of the test's own (ports and data dir apart from the shared one), so stopping it does
/// not disturb other tests.
struct PrivateKafka {
    run_dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
}

impl PrivateKafka {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn new() -> Self {
        Self { run_dir: tempfile::tempdir().unwrap(), port: Self::free_port(), controller_port: Self::free_port() }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn testenv(&self, action: &str) {
        Self::testenv_at(self.run_dir.path(), self.port, self.controller_port, action);
    }

    fn testenv_at(run_dir: &Path, port: u16, controller_port: u16, action: &str) {
        let out = Command::new(geostream_tests::repo_root().join("scripts/testenv.sh"))
            .args([action, "kafka"])
            .env("GEOSTREAM_RUN", run_dir)
            .env("GS_KAFKA_PORT", port.to_string())
            .env("GS_KAFKA_CONTROLLER_PORT", controller_port.to_string())
            .output()
            .expect("scripts/testenv.sh runs");
        assert!(
            out.status.success(),
            "testenv.sh {action} kafka failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = Command::new(geostream_tests::repo_root().join("scripts/testenv.sh"))
            .args(["down", "kafka"])
            .env("GEOSTREAM_RUN", self.run_dir.path())
            .output();
    }
}

const PER_BATCH: usize = 250;

async fn post_batches(
    http: &reqwest::Client,
    tenant: &TenantId,
    stage: &IngestStage,
    n: usize,
    accepted: &mut u64,
    next: &mut usize,
) {
    let url = format!("http://{}/v1/push/{tenant}/sensors", stage.push_addr);
    for _ in 0..n {
        let body = batch(*next, PER_BATCH);
        *next += PER_BATCH;
        let (status, resp) = push_when(http, &url, None, &body, true).await;
        assert_eq!(status, 202, "{resp}");
        *accepted += resp["accepted"].as_u64().unwrap();
    }
}

fn batch(from: usize, n: usize) -> Vec<u8> {
    let features: Vec<serde_json::Value> = (from..from + n)
        .map(|i| {
            json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-122.0 + (i % 1000) as f64 * 1e-3, 37.0 + (i / 1000) as f64 * 1e-3]},
                "properties": {"track": format!("v{}", i % 50), "time": format!("2024-05-01T12:{:02}:{:02}Z", (i / 60) % 60, i % 60), "seq": i}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_and_ingest_restart_lose_and_duplicate_nothing() {
    // The shared broker must be there (CI fails without it); the outage itself uses a private one.
    let Some(_) = geostream_tests::service("KAFKA_BOOTSTRAP", "ingest kafka outage") else { return };
    let kafka = PrivateKafka::new();
    kafka.testenv("up");
    let bootstrap = kafka.bootstrap();
    let tenant: TenantId = geostream_tests::unique("outage").parse().unwrap();
    let naming = Naming::new("").unwrap();
    let data = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::new("ingest", tenant.as_str());
    let registry = RegistryClient::new(props(&bootstrap), naming.topic(&tenant, TopicKind::Feeds));
    registry.ensure_topic().await.unwrap();
    let spec = push_spec(
        "sensors",
        "geojson",
        json!({"mapping": {"track": "properties.track", "time": "properties.time", "attributes": {"seq": "properties.seq"}}}),
    );
    registry.put(&spec.id, Some(&spec)).await.unwrap();

    let http = reqwest::Client::new();
    let mut accepted = 0u64;
    let mut stage = IngestStage::start(settings(&tenant, &bootstrap, data.path(), None), &telemetry).await.unwrap();
    // Records stream in continuously while Kafka goes away under them: some are in flight in the
    // producer at that instant. Ingest keeps answering 202 from its spool throughout.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sender = {
        let (http, tenant, addr, progress) = (http.clone(), tenant.clone(), stage.push_addr, progress.clone());
        tokio::spawn(async move {
            let url = format!("http://{addr}/v1/push/{tenant}/sensors");
            let mut accepted = 0;
            for b in 0..16 {
                let (status, resp) = push_when(&http, &url, None, &batch(b * PER_BATCH, PER_BATCH), true).await;
                assert_eq!(status, 202, "{resp}");
                accepted += resp["accepted"].as_u64().unwrap();
                progress.store(b as u64 + 1, std::sync::atomic::Ordering::SeqCst);
            }
            accepted
        })
    };
    for _ in 0..6000 {
        if progress.load(std::sync::atomic::Ordering::SeqCst) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking({
        let run = kafka.run_dir.path().to_path_buf();
        let (port, cport) = (kafka.port, kafka.controller_port);
        move || PrivateKafka::testenv_at(&run, port, cport, "down")
    })
    .await
    .unwrap();
    accepted += sender.await.unwrap();
    let mut next_seq = 16 * PER_BATCH;
    post_batches(&http, &tenant, &stage, 4, &mut accepted, &mut next_seq).await;
    assert!(stage.pending() > 0, "with Kafka down the records wait in the spool");

    // Ingest itself restarts during the outage: the spool and the registry snapshot survive.
    stage.shutdown().await;
    stage = IngestStage::start(settings(&tenant, &bootstrap, data.path(), None), &telemetry).await.unwrap();
    assert!(stage.pending() > 0, "spooled records survived the restart");
    post_batches(&http, &tenant, &stage, 6, &mut accepted, &mut next_seq).await;

    kafka.testenv("up");
    post_batches(&http, &tenant, &stage, 6, &mut accepted, &mut next_seq).await;
    drained(&stage).await;
    stage.shutdown().await;

    assert_eq!(accepted, (32 * PER_BATCH) as u64);
    assert_eq!(next_seq, 32 * PER_BATCH);
    let records = read_topic(&bootstrap, &naming.topic(&tenant, TopicKind::Observations));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (_, v) in &records {
        let o: Observation = serde_json::from_slice(v).unwrap();
        let seq = o.attributes["seq"].as_u64().unwrap();
        *seen.entry(seq).or_default() += 1;
    }
    let missing: Vec<usize> = (0..32 * PER_BATCH).filter(|s| !seen.contains_key(&(*s as u64))).collect();
    let duplicated: Vec<(&u64, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "{} records lost, first {:?}", missing.len(), &missing[..missing.len().min(10)]);
    assert!(
        duplicated.is_empty(),
        "{} records duplicated, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(records.len(), 32 * PER_BATCH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_kafka_wrote_without_the_spool_knowing_are_not_sent_again() {
    use geostream_ingest::durable::{DrainConfig, Drainer, Durable, DurableConfig};
    use geostream_ingest::metrics::IngestMetrics;
    use geostream_ingest::pipeline::{Batch, FeedPipeline, Route};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "ingest read-back") else { return };
    let tenant: TenantId = geostream_tests::unique("readback").parse().unwrap();
    let naming = Naming::new("").unwrap();
    let observations = naming.topic(&tenant, TopicKind::Observations);
    let deadletter = naming.topic(&tenant, TopicKind::Deadletter);
    geostream_ingest::registry::ensure_topics(
        &props(&bootstrap),
        &[(observations.clone(), 3, false), (deadletter.clone(), 1, false)],
        None,
    )
    .await
    .unwrap();

    // 300 observations and 2 dead letters in the spool, as a source would have written them.
    let spec = push_spec(
        "sensors",
        "geojson",
        json!({"mapping": {"track": "properties.track", "time": "properties.time", "attributes": {"seq": "properties.seq"}}}),
    );
    let mut pipeline = FeedPipeline::new(&spec).unwrap();
    let mut spooled = Batch::default();
    let ctx = pipeline.context(time::OffsetDateTime::now_utc(), "test");
    pipeline.decode_payload(&batch(0, 300), &ctx, &mut spooled);
    pipeline.decode_payload(b"{broken", &ctx, &mut spooled);
    pipeline.decode_payload(b"[1,2]", &ctx, &mut spooled);
    assert_eq!(spooled.len(), 302);
    let dir = tempfile::tempdir().unwrap();
    let metrics = IngestMetrics::default();
    let config = DurableConfig { dir: dir.path().join("spool"), max_bytes: 64 << 20, segment_bytes: 1 << 20 };
    let (durable, drain) = Durable::open(&config, metrics.clone()).unwrap();
    durable.write(&spooled.envelopes).await.unwrap();

    // A previous producer wrote every third of them (and one dead letter) before it lost contact:
    // Kafka has them, the spool does not know.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let mut written_before = 0;
    for (i, env) in spooled.envelopes.iter().enumerate() {
        if i % 3 != 0 && i != 300 {
            continue;
        }
        let topic = if env.route == Route::Observations { &observations } else { &deadletter };
        producer
            .send(FutureRecord::to(topic).key(&env.key).payload(&env.value), Duration::from_secs(30))
            .await
            .unwrap();
        written_before += 1;
    }

    let cancel = tokio_util::sync::CancellationToken::new();
    let drainer = Drainer::new(
        drain,
        DrainConfig {
            properties: props(&bootstrap),
            observations_topic: observations.clone(),
            deadletter_topic: deadletter.clone(),
            max_in_flight: 1000,
        },
        None,
    );
    let task = tokio::spawn(drainer.run(cancel.clone()));
    for _ in 0..1200 {
        if durable.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(durable.pending(), 0, "the drainer emptied the spool");
    cancel.cancel();
    task.await.unwrap();

    assert_eq!(metrics.already_in_kafka.get(), written_before);
    let obs = read_topic(&bootstrap, &observations);
    let distinct: HashSet<&Vec<u8>> = obs.iter().map(|(_, v)| v).collect();
    assert_eq!((obs.len(), distinct.len()), (300, 300), "every observation exactly once");
    assert_eq!(read_topic(&bootstrap, &deadletter).len(), 2, "every dead letter exactly once");
}

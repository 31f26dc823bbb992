//! `ingest_vs_producer_perf`: records per second the ingest stage delivers to Kafka, against
//! Kafka's own `ProducerPerformance` tool sending the same records to the same broker in the same
//! run (issue 8: "Ingest to Kafka: Kafka's own ProducerPerformance against the same broker").
//!
//! Data: the real OpenSky CSV sample (21,413 rows) as four fleets (each row once per fleet, with
//! the track id suffixed and the longitude shifted), 85,652 records.
//!
//! - `ingest_vs_producer_perf/ingest`: the real `IngestStage` (default settings: spool with fsync
//!   per group, idempotent producer with `acks=all`, `linger.ms=5`, lz4) is started on a fresh
//!   tenant and data directory; the clock runs from the feed's registration (a `file` feed over
//!   the CSV, replayed as fast as it goes) until the stage's `produced_total` for the observations
//!   topic counts every record. So it covers reading the file, decoding and normalising each row,
//!   the spool on disk, and producing.
//! - `ingest_vs_producer_perf/producer_perf`: `org.apache.kafka.tools.ProducerPerformance` from the
//!   broker's own distribution (`KAFKA_LIB`, run by `KAFKA_JAVA`) sends as many records, each a
//!   payload from a file holding exactly the JSON values ingest produces, to a fresh topic with the
//!   same partitions, with the drainer's producer settings (`acks=all`, `enable.idempotence=true`,
//!   `linger.ms=5`, `compression.type=lz4`). Its own records/s figure is used (the JVM's start is
//!   not counted against it).
//!
//! Flat sampling, one run per sample, ten samples. Needs KAFKA_BOOTSTRAP, KAFKA_LIB and KAFKA_JAVA
//! (`./scripts/testenv.sh env`); `scripts/bench.sh` sets them and prints the ratio.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geostream_benches::{metric, runtime, service, unique_tenant};
use geostream_codecs::{CodecOptions, Context, Outcome, decode_all};
use geostream_ingest::registry::RegistryClient;
use geostream_ingest::stage::{IngestSettings, IngestStage};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedSpec, Naming, TopicKind};
use geostream_telemetry::Telemetry;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::json;

/// Fleets made from the sample: 21,413 × 4 records.
const FLEETS: usize = 4;
/// Partitions of both topics (ingest's default is 6; three keep the broker's work the same size
/// as the other benches').
const PARTITIONS: i32 = 3;

struct Setup {
    bootstrap: String,
    java: String,
    lib: String,
    dir: tempfile::TempDir,
    payloads: PathBuf,
    spec: serde_json::Value,
    records: usize,
}

fn repo_file(rel: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    root.join("..").join(rel)
}

impl Setup {
    fn new() -> Setup {
        let bootstrap = service("KAFKA_BOOTSTRAP");
        let lib = service("KAFKA_LIB");
        let java = service("KAFKA_JAVA");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sample =
            std::fs::read_to_string(repo_file("services/codecs/tests/data/opensky_traffic_quickstart_15min.csv"))
                .expect("the OpenSky sample");
        let mut lines = sample.lines();
        let header = lines.next().expect("a header row");
        let cols: Vec<&str> = header.split(',').collect();
        let col = |name: &str| cols.iter().position(|c| *c == name).expect("a sample column");
        let (icao, lon) = (col("icao24"), col("longitude"));
        let mut csv = format!("{header}\n");
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            for k in 0..FLEETS {
                let mut f: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
                f[icao] = format!("{}f{k}", fields[icao]);
                if let Ok(x) = fields[lon].parse::<f64>() {
                    f[lon] = format!("{:.10}", x + 0.5 * k as f64);
                }
                csv.push_str(&f.join(","));
                csv.push('\n');
            }
        }
        let csv_path = dir.path().join("fleets.csv");
        std::fs::write(&csv_path, &csv).expect("the CSV written");

        // The catalog's OpenSky CSV feed over that file, replayed as fast as it goes.
        let entry: serde_json::Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo_file("feeds/opensky-csv-file.yaml")).expect("the catalog entry"),
        )
        .expect("the catalog entry parses");
        let mut spec = entry["feed"].clone();
        spec["id"] = json!("fleets");
        spec["source"] = json!({"kind": "file", "path": csv_path, "replay": "fast"});
        let feed: FeedSpec = serde_json::from_value(spec.clone()).expect("a valid feed spec");

        // The values ingest produces, for the reference's payload file.
        let mut codec = geostream_codecs::build(feed.format, &feed.mapping, &CodecOptions::default()).expect("codec");
        let ctx = Context::new(feed.id.clone(), OffsetDateTime::now_utc());
        let mut payloads = String::new();
        let mut records = 0;
        for o in decode_all(codec.as_mut(), csv.as_bytes(), &ctx) {
            if let Outcome::Observation(o) = o {
                payloads.push_str(&serde_json::to_string(&*o).expect("JSON"));
                payloads.push('\n');
                records += 1;
            }
        }
        assert_eq!(records, 21_413 * FLEETS, "every row decodes");
        let payloads_path = dir.path().join("payloads.jsonl");
        std::fs::write(&payloads_path, payloads).expect("payloads written");
        eprintln!("ingest_vs_producer_perf: {records} records of the OpenSky sample as {FLEETS} fleets");
        Setup { bootstrap, java, lib, dir, payloads: payloads_path, spec, records }
    }

    fn kafka(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("bootstrap.servers".to_owned(), self.bootstrap.clone())])
    }

    async fn ingest_once(&self) -> Duration {
        let tenant = unique_tenant("bench-ingest");
        let naming = Naming::default();
        let data = self.dir.path().join(tenant.as_str());
        let settings = IngestSettings {
            tenant: tenant.clone(),
            naming: naming.clone(),
            kafka: self.kafka(),
            data_dir: data.clone(),
            push_listen: "127.0.0.1:0".parse().expect("an address"),
            max_body_bytes: 16 * 1024 * 1024,
            spool_max_bytes: 2 * 1024 * 1024 * 1024,
            spool_segment_bytes: 64 * 1024 * 1024,
            partitions: PARTITIONS,
            replication: None,
            secrets_dir: None,
            max_in_flight: 50_000,
        };
        let telemetry = Telemetry::new("ingest", tenant.as_str());
        let stage = IngestStage::start(settings, &telemetry).await.expect("ingest starts");
        let topic = naming.topic(&tenant, TopicKind::Observations);
        let produced = || {
            let text = telemetry.encode().expect("metrics");
            metric(&text, "geostream_ingest_produced_total{", &format!("topic=\"{topic}\""))
        };
        let registry = RegistryClient::new(self.kafka(), naming.topic(&tenant, TopicKind::Feeds));
        let feed: FeedSpec = serde_json::from_value(self.spec.clone()).expect("feed spec");
        let started = Instant::now();
        registry.put(&feed.id, Some(&feed)).await.expect("feed registered");
        let deadline = Instant::now() + Duration::from_secs(600);
        while produced() < self.records as u64 {
            assert!(Instant::now() < deadline, "ingest delivered {} of {} records", produced(), self.records);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        stage.shutdown().await;
        self.delete_topics(&[
            topic,
            naming.topic(&tenant, TopicKind::Feeds),
            naming.topic(&tenant, TopicKind::Deadletter),
        ])
        .await;
        let _ = std::fs::remove_dir_all(&data);
        elapsed
    }

    async fn delete_topics(&self, topics: &[String]) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("admin client");
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    }

    /// One ProducerPerformance run; the time its own records/s figure implies for our count.
    async fn producer_perf_once(&self) -> Duration {
        let topic = format!("{}.observations", unique_tenant("bench-perf"));
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("admin client");
        let new = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
        for r in admin.create_topics([&new], &AdminOptions::new()).await.expect("topic created") {
            r.expect("topic created");
        }
        let out = tokio::task::block_in_place(|| {
            Command::new(&self.java)
                .arg("-cp")
                .arg(format!("{}/*", self.lib))
                .arg("org.apache.kafka.tools.ProducerPerformance")
                .args(["--topic", &topic, "--num-records", &self.records.to_string(), "--throughput", "-1"])
                .arg("--payload-file")
                .arg(&self.payloads)
                .args(["--producer-props", &format!("bootstrap.servers={}", self.bootstrap)])
                .args(["acks=all", "enable.idempotence=true", "linger.ms=5", "compression.type=lz4"])
                .output()
                .expect("ProducerPerformance runs")
        });
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ProducerPerformance: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
        self.delete_topics(&[topic]).await;
        // The summary line: "<n> records sent, <rate> records/sec (<x> MB/sec), ...".
        let summary = text.lines().rev().find(|l| l.contains("records sent")).expect("a summary line");
        let sent: f64 = summary.split_whitespace().next().and_then(|v| v.parse().ok()).expect("a record count");
        assert_eq!(sent as usize, self.records, "{summary}");
        let per_s: f64 = summary
            .split(", ")
            .nth(1)
            .and_then(|p| p.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no records/sec in {summary:?}"));
        Duration::from_secs_f64(self.records as f64 / per_s)
    }
}

fn ingest_vs_producer_perf(c: &mut Criterion) {
    let rt = runtime();
    let setup = Setup::new();
    let mut g = c.benchmark_group("ingest_vs_producer_perf");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).throughput(Throughput::Elements(setup.records as u64));
    g.bench_function("ingest", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += setup.ingest_once().await;
                }
                total
            })
        })
    });
    g.bench_function("producer_perf", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += setup.producer_perf_once().await;
                }
                total
            })
        })
    });
    g.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, ingest_vs_producer_perf);
}
criterion_main!(group::benches);

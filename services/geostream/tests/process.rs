//! `geostream process` as operators run it, on real Kafka: real AIS observations go through the
//! processor while it is killed with SIGKILL (restarting once from its volume and once on a fresh
//! volume under another name, so from the state topic), or while a second processor joins and
//! leaves the group. A `read_committed` reader must then find every event, aggregate and `late`
//! dead letter exactly once (counted by id), and exactly the ones the analytics core computes
//! when run cleanly over the same partitions in the test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{EngineConfig, Output};
use geostream_analytics::spec::AnalyticSpec;
use geostream_codecs::{CodecOptions, Context, Outcome, decode_all};
use geostream_model::time::OffsetDateTime;
use geostream_model::{
    Aggregate, DeadLetter, Event, FeedId, FenceSpec, Format, Mapping, Naming, Observation, Stage, TenantId, TopicKind,
};
use geostream_processor::task::{Accepted, Committed, PartitionTask};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const LATENESS_S: u64 = 2;

fn kafka(test: &str) -> Option<String> {
    geostream_tests::service("KAFKA_BOOTSTRAP", test)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn analytics() -> Vec<AnalyticSpec> {
    serde_json::from_value(serde_json::json!([
        {"id": "motion", "analytic": {"kind": "motion", "max_speed_mps": 40.0}},
        {"id": "gaps", "analytic": {"kind": "gaps", "threshold_s": 120}},
        {"id": "bins", "analytic": {"kind": "bins", "cells": {"kind": "geohash", "precision": 3},
         "window_s": 60, "properties": ["sog_mps"]}},
        {"id": "fences", "analytic": {"kind": "geofence", "cross": true, "dwell_s": 60}},
        {"id": "zones", "analytic": {"kind": "join", "properties": ["zone"]}},
        {"id": "close", "analytic": {"kind": "near", "distance_m": 20000.0}},
        {"id": "per-cell", "analytic": {"kind": "sql", "window_s": 180, "query":
         "SELECT st_geohash(st_point(lon, lat), 2) AS cell, feed, count(*) AS count, avg(attr_f64(attributes, 'sog_mps')) AS sog_mps FROM observations GROUP BY cell, feed"}}
    ]))
    .unwrap()
}

/// Circles of 25 km around every 40th of the first 2,000 positions, so tracks enter and leave them.
fn fences(input: &[Observation]) -> Vec<FenceSpec> {
    input
        .iter()
        .take(2000)
        .step_by(40)
        .enumerate()
        .filter_map(|(i, o)| {
            let geostream_model::geojson::GeometryValue::Point { coordinates } = &o.geometry.value else { return None };
            serde_json::from_value(serde_json::json!({
                "id": format!("zone-{i}"), "version": 1, "name": format!("zone {i}"),
                "geometry": {"type": "Circle", "center": [coordinates[0], coordinates[1]], "radius_m": 25000.0},
                "properties": {"zone": i}
            }))
            .ok()
        })
        .collect()
}

/// Real satellite AIS positions (the order of the capture, which is not event-time order, so some
/// records are late on purpose).
fn observations(n: usize) -> Vec<Observation> {
    let path =
        geostream_tests::repo_root().join("services/codecs/tests/data/amsa_risky_exactearth_sat_ais_epochms_1.nmea");
    let bytes = std::fs::read(&path).unwrap();
    let mut codec = geostream_codecs::build(Format::Ais, &Mapping::default(), &CodecOptions::default()).unwrap();
    let ctx = Context::new(FeedId::new("sat-ais").unwrap(), OffsetDateTime::now_utc());
    let mut seen = BTreeSet::new();
    let out: Vec<Observation> = decode_all(codec.as_mut(), &bytes, &ctx)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) if o.track.is_some() => Some(*o),
            _ => None,
        })
        .filter(|o| seen.insert(o.id))
        .take(n)
        .collect();
    assert_eq!(out.len(), n, "the sample has fewer than {n} distinct tracked observations");
    out
}

/// Copies of some observations ten minutes older, sent after everything else: late by any
/// watermark, so they must end up as `late` dead letters (the capture itself is nearly in order).
fn stragglers(input: &[Observation]) -> Vec<Observation> {
    input
        .iter()
        .step_by(97)
        .map(|o| {
            let t = o.time - geostream_model::time::Duration::minutes(10);
            Observation::try_new(
                o.feed.clone(),
                o.track.clone(),
                t,
                o.received,
                o.geometry.clone(),
                o.attributes.clone(),
            )
            .unwrap()
        })
        .collect()
}

fn topic(tenant: &TenantId, kind: TopicKind) -> String {
    Naming::default().topic(tenant, kind)
}

/// The processor's input topic and its two compacted registries (analytics, fences).
async fn create_input_topics(admin: &AdminClient<DefaultClientContext>, tenant: &TenantId) {
    let (obs, registry, fence_topic) =
        (topic(tenant, TopicKind::Observations), topic(tenant, TopicKind::Analytics), topic(tenant, TopicKind::Fences));
    let new = [
        NewTopic::new(&obs, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&registry, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
        NewTopic::new(&fence_topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    ];
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

/// Topics and the analytics registry, before any processor starts.
fn prepare(bootstrap: &str, tenant: &TenantId, fences: &[FenceSpec]) {
    rt().block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
        create_input_topics(&admin, tenant).await;
        let (registry, fence_topic) = (topic(tenant, TopicKind::Analytics), topic(tenant, TopicKind::Fences));
        let p = producer(bootstrap);
        for spec in analytics() {
            let v = serde_json::to_vec(&spec).unwrap();
            p.send(FutureRecord::to(&registry).key(spec.id.as_str()).payload(&v), Duration::from_secs(30))
                .await
                .unwrap();
        }
        for f in fences {
            let v = serde_json::to_vec(f).unwrap();
            p.send(FutureRecord::to(&fence_topic).key(f.id.as_str()).payload(&v), Duration::from_secs(30))
                .await
                .unwrap();
        }
    });
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").create().unwrap()
}

/// Appends observations to the input, keyed by track like ingest does.
fn produce(bootstrap: &str, tenant: &TenantId, input: &[Observation]) {
    let obs = topic(tenant, TopicKind::Observations);
    let p = producer(bootstrap);
    rt().block_on(async {
        let sends: Vec<_> = input
            .iter()
            .map(|o| {
                let v = serde_json::to_vec(o).unwrap();
                let key = o.kafka_key().into_owned();
                let (p, obs) = (p.clone(), obs.clone());
                async move {
                    p.send(FutureRecord::to(&obs).key(&key).payload(&v), Duration::from_secs(30)).await.unwrap();
                }
            })
            .collect();
        futures::future::join_all(sends).await;
    });
}

/// Every record of every partition of `topic`, in offset order (`read_committed`).
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<(i64, Vec<u8>)>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "geostream-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = parts.iter().map(|p| (*p, Vec::new())).collect();
    let mut at_end = BTreeSet::new();
    let mut idle = 0;
    while at_end.len() < parts.len() {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.entry(m.partition()).or_default().push((m.offset(), m.payload().unwrap_or_default().to_vec()));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                idle += 1;
                assert!(idle < 240, "{topic}: no end of partition reported");
            }
        }
    }
    out
}

/// What the processor must produce: the pure core run cleanly per partition over the records as
/// Kafka holds them. Events by id; aggregates by (id, version); `late` dead letters by source.
struct Expected {
    /// Of the aggregates, how many the SQL analytic made.
    sql: usize,
    /// Events by kind.
    kinds: BTreeMap<String, usize>,
    /// Enriched observations by id.
    enriched: BTreeSet<String>,
    /// Observations still waiting for the watermark at the end (the last `LATENESS_S` of each partition).
    buffered: usize,
    events: BTreeSet<String>,
    aggregates: BTreeSet<(String, u32)>,
    late: BTreeSet<String>,
}

fn expected(bootstrap: &str, tenant: &TenantId, fences: &[FenceSpec]) -> Expected {
    let obs_topic = topic(tenant, TopicKind::Observations);
    let specs = analytics();
    let index = Arc::new(FenceIndex::build(fences).unwrap());
    let mut e = Expected {
        sql: 0,
        kinds: BTreeMap::new(),
        enriched: BTreeSet::new(),
        buffered: 0,
        events: BTreeSet::new(),
        aggregates: BTreeSet::new(),
        late: BTreeSet::new(),
    };
    for (p, records) in read_all(bootstrap, &obs_topic) {
        let sql = geostream_sql::runner();
        let config = EngineConfig { specs: &specs, fences: Arc::clone(&index), sql: Some(&*sql) };
        let mut task = PartitionTask::new(p, i128::from(LATENESS_S) * 1_000_000_000, -1, config).unwrap();
        let mut outs = Vec::new();
        for (offset, value) in records {
            let o: Observation = serde_json::from_slice(&value).unwrap();
            if let Accepted::Late { .. } = task.accept(offset, o) {
                e.late.insert(format!("{obs_topic}/{p}/{offset}"));
            }
            outs.extend(task.release());
        }
        e.buffered += task.buffered();
        for o in outs {
            match o {
                Output::Event(ev) => {
                    *e.kinds.entry(ev.kind.as_str().to_owned()).or_default() += 1;
                    e.events.insert(ev.id.to_string());
                }
                Output::Joined(o) => {
                    e.enriched.insert(o.id.to_string());
                }
                Output::Aggregate(mut a) => {
                    e.sql += usize::from(a.kind.as_str() == "sql");
                    a.shard = Some(u32::try_from(p).unwrap());
                    a.refresh_id();
                    e.aggregates.insert((a.id.to_string(), a.version));
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }
    e
}

/// Reads the outputs and checks each is there exactly once and they are exactly the expected ones.
fn check_exactly_once(bootstrap: &str, tenant: &TenantId, want: &Expected) {
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    for (_, records) in read_all(bootstrap, &topic(tenant, TopicKind::Events)) {
        for (_, v) in records {
            let ev: Event = serde_json::from_slice(&v).unwrap();
            *events.entry(ev.id.to_string()).or_default() += 1;
        }
    }
    let twice: Vec<_> = events.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} events committed more than once, e.g. {:?}", twice.len(), twice.first());
    let got: BTreeSet<String> = events.into_keys().collect();
    assert_eq!(got.len(), want.events.len(), "event count");
    assert!(got == want.events, "events differ from the clean run");

    let mut aggs: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for (_, records) in read_all(bootstrap, &topic(tenant, TopicKind::Aggregates)) {
        for (_, v) in records {
            let a: Aggregate = serde_json::from_slice(&v).unwrap();
            *aggs.entry((a.id.to_string(), a.version)).or_default() += 1;
        }
    }
    let twice: Vec<_> = aggs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} aggregates committed more than once, e.g. {:?}", twice.len(), twice.first());
    let got: BTreeSet<(String, u32)> = aggs.into_keys().collect();
    assert_eq!(got.len(), want.aggregates.len(), "aggregate count");
    assert!(got == want.aggregates, "aggregates differ from the clean run");

    let mut late: BTreeMap<String, usize> = BTreeMap::new();
    for (_, records) in read_all(bootstrap, &topic(tenant, TopicKind::Deadletter)) {
        for (_, v) in records {
            let d: DeadLetter = serde_json::from_slice(&v).unwrap();
            assert_eq!(d.stage, Stage::Process);
            assert_eq!(d.reason.as_str(), "late", "{}", d.detail);
            *late.entry(d.source.unwrap_or_default()).or_default() += 1;
        }
    }
    assert!(late.values().all(|n| *n == 1), "a late record dead-lettered twice");
    let mut enriched: BTreeMap<String, usize> = BTreeMap::new();
    for (_, records) in read_all(bootstrap, &topic(tenant, TopicKind::Enriched)) {
        for (_, v) in records {
            let o: Observation = serde_json::from_slice(&v).unwrap();
            assert!(o.attributes["fences"].is_array(), "a joined observation names its fences");
            *enriched.entry(o.id.to_string()).or_default() += 1;
        }
    }
    assert!(enriched.values().all(|n| *n == 1), "an observation enriched twice");
    let got: BTreeSet<String> = enriched.into_keys().collect();
    assert!(got == want.enriched, "enriched: {} committed, {} expected", got.len(), want.enriched.len());

    let got: BTreeSet<String> = late.into_keys().collect();
    assert!(got == want.late, "late dead letters: {} committed, {} expected", got.len(), want.late.len());
}

/// Reads the processor group's committed offsets and the input's end offsets.
struct Progress {
    consumer: BaseConsumer,
    topic: String,
}

impl Progress {
    fn new(bootstrap: &str, tenant: &TenantId) -> Self {
        let group = Naming::default().consumer_group(tenant, Stage::Process);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        Self { consumer, topic: topic(tenant, TopicKind::Observations) }
    }

    /// (sum of committed offsets, sum of end offsets).
    fn now(&self) -> (i64, i64) {
        let mut tpl = TopicPartitionList::new();
        let mut end = 0;
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
            end += self.consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(10)).unwrap().1;
        }
        let committed = self.consumer.committed_offsets(tpl, Duration::from_secs(30)).unwrap();
        let done = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                // The committed offset is where reading resumes (the oldest record still waiting
                // for the watermark); how far the processor has read is in the metadata.
                Offset::Offset(n) => Committed::parse(n, e.metadata()).position(),
                _ => 0,
            })
            .sum();
        (done, end)
    }

    /// Polls until `until` says stop; bounded by attempts, not by time.
    fn wait_for(&self, what: &str, until: impl Fn(i64, i64) -> bool) -> (i64, i64) {
        let mut last = (0, 0);
        for _ in 0..6000 {
            last = self.now();
            if until(last.0, last.1) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what}: never reached; committed {} of {}", last.0, last.1);
    }
}

struct Proc(Option<Child>, String);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Proc {
    fn start(config: &Path, data: &Path, instance: &str) -> Proc {
        Self::start_with(config, data, instance, &[])
    }

    fn start_with(config: &Path, data: &Path, instance: &str, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geostream"));
        for (k, _) in std::env::vars() {
            if k.starts_with("GEOSTREAM_") {
                cmd.env_remove(k);
            }
        }
        let listen =
            format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = cmd
            .args(["--config", config.to_str().unwrap(), "process"])
            .env("GEOSTREAM_DATA_DIR", data)
            .env("GEOSTREAM_PROCESS__INSTANCE", instance)
            .env("GEOSTREAM_TELEMETRY__LISTEN", &listen)
            .env("GEOSTREAM_LOG__LEVEL", "warn,geostream_processor=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Proc(Some(child), listen)
    }

    /// A gauge from the process's `/metrics`, once it answers.
    fn gauge(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.1);
        let text = rt().block_on(async { reqwest::get(&url).await.ok()?.text().await.ok() })?;
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// SIGKILL: no shutdown path runs.
    fn kill9(mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM: leaves the group after its batch.
    fn terminate(mut self) {
        let c = self.0.take().unwrap();
        assert!(Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success());
        let out = geostream_tests::wait_exit(c, "processor after SIGTERM");
        assert!(out.status.success(), "processor exit: {:?}", out.status);
    }
}

fn config_file(dir: &Path, bootstrap: &str, tenant: &TenantId) -> std::path::PathBuf {
    let path = dir.join("geostream.toml");
    std::fs::write(
        &path,
        format!(
            "tenant = \"{tenant}\"\n[kafka]\nbootstrap = \"{bootstrap}\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             [process]\nlateness_s = {LATENESS_S}\ncommit_interval_ms = 100\nmax_batch_records = 50\n\
             partitions = {PARTITIONS}\ntransaction_timeout_ms = 10000\n"
        ),
    )
    .unwrap();
    path
}

fn tenant(prefix: &str) -> TenantId {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    TenantId::new(format!("{prefix}{:x}", nanos & 0xffff_ffff)).unwrap()
}

#[test]
fn kill_9_mid_stream_commits_every_result_exactly_once() {
    let Some(bootstrap) = kafka("process kill -9") else { return };
    let tenant = tenant("prockill");
    let input = observations(2900);
    let zones = fences(&input);
    prepare(&bootstrap, &tenant, &zones);
    let late = stragglers(&input);
    let total = (input.len() + late.len()) as i64;
    let (head, tail) = input.split_at(1000);
    produce(&bootstrap, &tenant, head);
    let progress = Progress::new(&bootstrap, &tenant);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &bootstrap, &tenant);
    let (vol_a, vol_b) = (dir.path().join("a"), dir.path().join("b"));

    // 1. The fault injector kills the process inside its fifth transaction, after that
    //    transaction's outputs reached the broker.
    let mut p = Proc::start_with(&cfg, &vol_a, "p0", &[("GEOSTREAM_FAULT_ABORT_IN_TRANSACTION", "5")]);
    let status = geostream_tests::wait_exit(p.0.take().unwrap(), "the processor with the fault injector").status;
    assert!(!status.success(), "the fault injector ends the process: {status:?}");
    let (done, _) = progress.now();
    assert!(done > 0 && done < total, "four transactions committed before the crash ({done} of {total})");

    // 2. Same volume and name: aborts its own open transaction, restores from the volume, and is
    //    killed with SIGKILL while the rest of the input is still arriving.
    let p = Proc::start(&cfg, &vol_a, "p0");
    std::thread::scope(|s| {
        let feeder = s.spawn(|| {
            for chunk in tail.chunks(50) {
                produce(&bootstrap, &tenant, chunk);
                std::thread::sleep(Duration::from_millis(20));
            }
            produce(&bootstrap, &tenant, &late);
        });
        let (done, _) = progress.wait_for("progress after the restart", |d, _| d > done);
        p.kill9();
        assert!(done < total, "killed mid-stream ({done} of {total})");
        feeder.join().unwrap();
    });

    // 3. A fresh volume under another name: the state comes from the state topic, once the
    //    killed instance's open transaction timed out.
    let p = Proc::start(&cfg, &vol_b, "p1");
    progress.wait_for("the end of the input", |d, e| d == e && e == total);
    let replayed = p.gauge("geostream_process_replayed_total").unwrap_or(0.0);
    assert!(replayed > 0.0, "the restored partitions read their reorder buffers again from the input");
    p.terminate();

    let want = expected(&bootstrap, &tenant, &zones);
    eprintln!(
        "clean run: {} events {:?}, {} aggregates ({} sql), {} enriched, {} late",
        want.events.len(),
        want.kinds,
        want.aggregates.len(),
        want.sql,
        want.enriched.len(),
        want.late.len()
    );
    for kind in ["enter", "exit", "cross", "dwell", "near", "gap", "stop"] {
        assert!(want.kinds.get(kind).is_some_and(|n| *n > 0), "the input produces {kind} events: {:?}", want.kinds);
    }
    assert_eq!(want.enriched.len() + want.buffered, input.len(), "join enriches every on-time observation");
    assert!(want.events.len() > 50 && want.aggregates.len() > 50, "a test input that produces results");
    assert!(want.sql > 5, "the SQL analytic produced per-cell rows");
    assert_eq!(want.late.len(), late.len(), "the stragglers and only they are late");
    check_exactly_once(&bootstrap, &tenant, &want);
}

#[test]
fn rebalance_from_one_to_two_to_one_processor_commits_every_result_exactly_once() {
    let Some(bootstrap) = kafka("process rebalance") else { return };
    let tenant = tenant("procreb");
    let input = observations(2900);
    let phases: Vec<&[Observation]> = input.chunks(1000).collect();
    let zones = fences(&input);
    prepare(&bootstrap, &tenant, &zones);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &bootstrap, &tenant);
    let progress = Progress::new(&bootstrap, &tenant);
    let caught_up = |what: &str| progress.wait_for(what, |d, e| d == e && e > 0);

    let a = Proc::start(&cfg, &dir.path().join("a"), "a");
    produce(&bootstrap, &tenant, phases[0]);
    caught_up("phase 1 with one processor");

    let b = Proc::start(&cfg, &dir.path().join("b"), "b");
    let mut assigned = 0.0;
    for _ in 0..3000 {
        assigned = b.gauge("geostream_process_assigned_partitions").unwrap_or(0.0);
        if assigned > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(assigned > 0.0, "the second processor never got a partition");
    produce(&bootstrap, &tenant, phases[1]);
    caught_up("phase 2 with two processors");
    let b_checkpoints = std::fs::read_dir(dir.path().join("b/process")).map(|d| d.count()).unwrap_or(0);
    assert!(b_checkpoints > 0, "the second processor committed state for its partitions");
    b.terminate();

    // The first takes the partitions back with the state the second committed.
    produce(&bootstrap, &tenant, phases[2]);
    produce(&bootstrap, &tenant, &stragglers(&input));
    caught_up("phase 3 with one processor again");
    a.terminate();
    check_exactly_once(&bootstrap, &tenant, &expected(&bootstrap, &tenant, &zones));
}

/// `geostream process` as one tenant on the SASL/SCRAM + TLS broker with ACLs enforced, holding
/// exactly the ACLs `geostream kafka acls` printed for it (applied as printed) and its password in
/// a mounted-secret file: it creates its topics, reads its registries, consumes in its group and
/// commits every input offset in its transactions, with events to show for it. Proves the ACL set
/// is sufficient for the stage, where the integration tests prove it keeps other tenants out.
#[test]
fn the_processor_runs_on_sasl_scram_over_tls_with_only_its_tenants_acls() {
    let Some(kafka) = geostream_tests::SecureKafka::from_env("process over SASL_SSL") else { return };
    let tenant = tenant("procsecure");
    let user = tenant.to_string();
    let password = format!("pw-{}", geostream_tests::unique("scram"));
    kafka.create_user(&user, &password);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("kafka-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let cfg = dir.path().join("geostream.toml");
    std::fs::write(
        &cfg,
        format!(
            "tenant = \"{tenant}\"\n[kafka]\nbootstrap = \"{}\"\nsasl_password_file = \"{}\"\n[kafka.properties]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{user}\"\n\
             \"ssl.ca.location\" = \"{}\"\n\"session.timeout.ms\" = \"6000\"\n\
             [process]\nlateness_s = {LATENESS_S}\ncommit_interval_ms = 100\nmax_batch_records = 50\n\
             partitions = {PARTITIONS}\ntransaction_timeout_ms = 10000\n",
            kafka.bootstrap,
            secret.display(),
            kafka.ca
        ),
    )
    .unwrap();

    // The ACLs as an operator gets them, applied line by line.
    let out = Command::new(env!("CARGO_BIN_EXE_geostream"))
        .args(["--config", cfg.to_str().unwrap(), "kafka", "acls", "--principal", &format!("User:{user}")])
        .env_remove("GEOSTREAM_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut applied = 0;
    for line in text.lines().filter(|l| l.starts_with("kafka-acls.sh ")) {
        assert!(!line.contains('\''), "names need no quoting here: {line}");
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words[1..5], ["--bootstrap-server", &kafka.bootstrap, "--command-config", "admin.properties"]);
        kafka.kafka_acls(&words[5..]);
        applied += 1;
    }
    assert!(applied >= 5, "{text}");

    // Registries and input as the tenant itself (its own credentials and ACLs).
    let props = kafka.client_properties(&user, &password);
    let client = || {
        let mut c = ClientConfig::new();
        for (k, v) in &props {
            c.set(k, v);
        }
        c
    };
    let input = observations(600);
    let zones = fences(&input);
    let geofence: AnalyticSpec = serde_json::from_value(
        serde_json::json!({"id": "fences", "analytic": {"kind": "geofence", "cross": true, "dwell_s": 60}}),
    )
    .unwrap();
    let obs = topic(&tenant, TopicKind::Observations);
    rt().block_on(async {
        let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
        create_input_topics(&admin, &tenant).await;
        let p: FutureProducer = client().set("enable.idempotence", "true").create().unwrap();
        let send = |t: String, k: String, v: Vec<u8>| {
            let p = p.clone();
            async move { p.send(FutureRecord::to(&t).key(&k).payload(&v), Duration::from_secs(30)).await.unwrap() }
        };
        send(topic(&tenant, TopicKind::Analytics), "fences".into(), serde_json::to_vec(&geofence).unwrap()).await;
        for f in &zones {
            send(topic(&tenant, TopicKind::Fences), f.id.to_string(), serde_json::to_vec(f).unwrap()).await;
        }
        for o in &input {
            send(obs.clone(), o.kafka_key().into_owned(), serde_json::to_vec(o).unwrap()).await;
        }
    });

    let p = Proc::start(&cfg, &dir.path().join("vol"), "p0");
    let progress: BaseConsumer = client()
        .set("group.id", Naming::default().consumer_group(&tenant, Stage::Process))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut end = 0;
    let mut tpl = TopicPartitionList::new();
    for part in 0..PARTITIONS {
        tpl.add_partition(&obs, part);
        end += progress.fetch_watermarks(&obs, part, Duration::from_secs(10)).unwrap().1;
    }
    assert_eq!(end, input.len() as i64);
    let mut done = 0;
    for _ in 0..3000 {
        let committed = progress.committed_offsets(tpl.clone(), Duration::from_secs(30)).unwrap();
        done = committed
            .elements()
            .iter()
            .map(|e| if let Offset::Offset(n) = e.offset() { Committed::parse(n, e.metadata()).position() } else { 0 })
            .sum();
        if done == end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    p.terminate();
    assert_eq!(done, end, "the processor committed every input offset in its transactions");

    // Its events, read back as the tenant.
    let events = topic(&tenant, TopicKind::Events);
    let reader: BaseConsumer = client()
        .set("group.id", format!("{events}.reader"))
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = reader.fetch_metadata(Some(&events), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    for part in &parts {
        tpl.add_partition_offset(&events, *part, Offset::Beginning).unwrap();
    }
    reader.assign(&tpl).unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let (mut at_end, mut idle) = (BTreeSet::new(), 0);
    while at_end.len() < parts.len() {
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let e: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
                *kinds.entry(e.kind.to_string()).or_default() += 1;
            }
            Some(Err(KafkaError::PartitionEOF(part))) => {
                at_end.insert(part);
            }
            Some(Err(e)) => panic!("reading {events} as the tenant: {e}"),
            None => {
                idle += 1;
                assert!(idle < 240, "{events}: no end of partition reported");
            }
        }
    }
    eprintln!("events over SASL_SSL: {kinds:?}");
    assert!(kinds.get("enter").is_some_and(|n| *n > 0), "geofence events came out: {kinds:?}");
}

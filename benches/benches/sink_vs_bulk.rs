//! `sink_vs_bulk`: documents per second of the sink stage against a raw `_bulk` loader sending the
//! same documents to the same Elasticsearch in the same run (BRIEF section 6: the sink should reach
//! at least 80% of the loader).
//!
//! Both sides write every distinct tracked observation of the real samples (about 24,000; see
//! `geostream_benches::observations`) into a fresh set of indices of their own tenant, with the
//! sink's templates and index settings, in batches of the sink's default size.
//!
//! - `sink_vs_bulk/sink`: the records sit on Kafka and the real `SinkStage` (default settings)
//!   drains them. The sink is started and has written one warm-up record first, so its consumer
//!   group is joined, its templates installed and its indices exist. The records are produced in
//!   one Kafka transaction and become visible together when it commits (the sink reads
//!   committed records only); the clock runs from that commit until the sink's
//!   `written_total{kind="observations"}` counts every record. Each record is then in two indices
//!   (its daily observations index and `latest`), exactly what the loader writes.
//! - `sink_vs_bulk/raw_bulk`: the same items (built by the sink's `document::items`, so the same
//!   bodies, ids, operations and indices) in NDJSON bodies built beforehand, one `POST /_bulk` at
//!   a time as the sink does, checking each answer's `errors` flag; the clock runs from the first
//!   request to the last answer. Also after one warm-up record.
//!
//! Each iteration uses a new tenant (fresh indices and topics) and checks the index counts after
//! the clock stops. Timed with `iter_custom` (only the part above is measured) and flat sampling:
//! one run per sample, ten samples, a few minutes in all.
//!
//! Needs KAFKA_BOOTSTRAP and ELASTICSEARCH_URL (`./scripts/testenv.sh env`); `scripts/bench.sh`
//! sets them and prints the ratio.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geostream_benches::{Engine, INDEX, metric, observations, runtime, service, unique_tenant};
use geostream_model::{Naming, Observation, TenantId, TopicKind};
use geostream_sink::stage::{SinkSettings, SinkStage};
use geostream_telemetry::Telemetry;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// The sink's default `sink.batch_max_records` (services/geostream/src/config.rs); the loader uses
/// the same number of records per request.
const BATCH_RECORDS: usize = 5000;

struct Setup {
    bootstrap: String,
    /// librdkafka properties of the sink.
    kafka: BTreeMap<String, String>,
    engine: Engine,
    /// Kafka key and value of each measured record.
    records: Vec<(String, Vec<u8>)>,
    /// A record outside the measured set, written first by both sides.
    warmup: (String, Vec<u8>),
    /// `max_in_flight` of the sink.
    in_flight: usize,
}

fn encode(o: &Observation) -> (String, Vec<u8>) {
    (o.kafka_key().into_owned(), serde_json::to_vec(o).expect("an observation encodes"))
}

impl Setup {
    fn new() -> Setup {
        let bootstrap = service("KAFKA_BOOTSTRAP");
        let url = service("ELASTICSEARCH_URL");
        // Extra librdkafka properties for the sink's clients, `key=value,key=value`, to compare
        // consumer settings (e.g. the prefetch bounds of docs/sink.md) in the same conditions.
        let mut kafka = BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]);
        for kv in std::env::var("BENCH_SINK_KAFKA").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("BENCH_SINK_KAFKA: {kv} is not key=value"));
            kafka.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let mut obs = observations();
        let warmup = encode(&obs.pop().expect("the samples have observations"));
        let records: Vec<(String, Vec<u8>)> = obs.iter().map(encode).collect();
        // `sink.max_in_flight`'s default unless BENCH_SINK_IN_FLIGHT says otherwise.
        let in_flight = std::env::var("BENCH_SINK_IN_FLIGHT")
            .map(|v| v.parse().expect("BENCH_SINK_IN_FLIGHT: a positive number"))
            .unwrap_or(2);
        eprintln!(
            "sink_vs_bulk: {} records from the real samples, batches of {BATCH_RECORDS}, {in_flight} in flight",
            records.len()
        );
        Setup { bootstrap, kafka, engine: Engine::new(&url), records, warmup, in_flight }
    }

    /// The sink's production defaults (`[sink]` in the config) with this run's addresses.
    fn sink_settings(&self, tenant: &TenantId) -> SinkSettings {
        SinkSettings {
            tenant: tenant.clone(),
            naming: Naming::default(),
            kafka: self.kafka.clone(),
            url: self.engine.url.clone(),
            username: None,
            password: None,
            batch_max_records: BATCH_RECORDS,
            batch_max_bytes: 8 * 1024 * 1024,
            linger: Duration::from_millis(200),
            max_in_flight: self.in_flight,
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            index: INDEX,
        }
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("a Kafka admin client")
    }

    fn topics(tenant: &TenantId) -> Vec<String> {
        [TopicKind::Observations, TopicKind::Events, TopicKind::Aggregates, TopicKind::Deadletter]
            .iter()
            .map(|k| Naming::default().topic(tenant, *k))
            .collect()
    }

    async fn create_topics(&self, tenant: &TenantId) {
        let names = Self::topics(tenant);
        // Three observation partitions, as the integration tests use: the sink reads them as one stream.
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| NewTopic::new(n, if i == 0 { 3 } else { 1 }, TopicReplication::Fixed(1)))
            .collect();
        for r in self.admin().create_topics(&new, &AdminOptions::new()).await.expect("topics created") {
            r.unwrap_or_else(|(t, e)| panic!("topic {t}: {e}"));
        }
    }

    async fn delete_topics(&self, tenant: &TenantId) {
        let names = Self::topics(tenant);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = self.admin().delete_topics(&refs, &AdminOptions::new()).await;
    }

    async fn count(&self, tenant: &TenantId) -> u64 {
        self.engine.count(&format!("geostream-{tenant}-observations-*")).await
    }

    /// One run of the sink; returns the time from the transaction's commit to the last write.
    async fn sink_once(&self) -> Duration {
        let tenant = unique_tenant("bench-sink");
        self.create_topics(&tenant).await;
        let topic = Naming::default().topic(&tenant, TopicKind::Observations);
        let telemetry = Telemetry::new("sink", tenant.as_str());
        let stage = SinkStage::start(self.sink_settings(&tenant), &telemetry).await.expect("the sink starts");
        let written = || {
            let text = telemetry.encode().expect("metrics encode");
            metric(&text, "geostream_sink_written_total{", "kind=\"observations\"")
        };

        let plain: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("a producer");
        let (key, value) = &self.warmup;
        plain
            .send(FutureRecord::to(&topic).key(key).payload(value), Timeout::After(Duration::from_secs(30)))
            .await
            .expect("warm-up record produced");
        wait_for(|| written() >= 1, "the sink to write the warm-up record").await;

        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("transactional.id", tenant.as_str())
            .set("linger.ms", "20")
            .create()
            .expect("a transactional producer");
        let tx_timeout = Duration::from_secs(60);
        tokio::task::block_in_place(|| producer.init_transactions(tx_timeout)).expect("transactions initialised");
        producer.begin_transaction().expect("transaction begun");
        let sends = self.records.iter().map(|(key, value)| {
            producer.send(FutureRecord::to(&topic).key(key).payload(value), Timeout::After(Duration::from_secs(60)))
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).expect("record produced");
        }
        let started = Instant::now();
        tokio::task::block_in_place(|| producer.commit_transaction(tx_timeout)).expect("transaction committed");
        let want = self.records.len() as u64 + 1;
        wait_for(|| written() >= want, "the sink to write every record").await;
        let elapsed = started.elapsed();

        stage.shutdown().await;
        let stored = self.count(&tenant).await;
        assert_eq!(stored, want, "sink: observations stored");
        self.engine.cleanup(&tenant).await;
        self.delete_topics(&tenant).await;
        elapsed
    }

    /// One run of the raw loader; returns the time from the first request to the last answer.
    async fn bulk_once(&self) -> Duration {
        let tenant = unique_tenant("bench-bulk");
        self.engine.install_templates(&tenant).await;
        for body in Engine::bulk_bodies(&tenant, std::slice::from_ref(&self.warmup.1), BATCH_RECORDS) {
            self.engine.bulk(body).await;
        }
        let values: Vec<Vec<u8>> = self.records.iter().map(|(_, v)| v.clone()).collect();
        let bodies = Engine::bulk_bodies(&tenant, &values, BATCH_RECORDS);
        let started = Instant::now();
        for body in bodies {
            self.engine.bulk(body).await;
        }
        let elapsed = started.elapsed();
        assert_eq!(self.count(&tenant).await, self.records.len() as u64 + 1, "raw bulk: observations stored");
        self.engine.cleanup(&tenant).await;
        elapsed
    }
}

/// Polls `done` (cheap: an in-process metrics read) until it holds; bounded so a stuck sink fails
/// the bench instead of hanging it.
async fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn sink_vs_bulk(c: &mut Criterion) {
    let rt = runtime();
    // Decoded here (cheap) for the element count; the services are only needed by a run.
    let setup = Setup::new();
    let mut g = c.benchmark_group("sink_vs_bulk");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).throughput(Throughput::Elements(setup.records.len() as u64));
    g.bench_function("sink", |b| {
        b.iter_custom(|iters| rt.block_on(async { sum((0..iters).map(|_| setup.sink_once())).await }))
    });
    g.bench_function("raw_bulk", |b| {
        b.iter_custom(|iters| rt.block_on(async { sum((0..iters).map(|_| setup.bulk_once())).await }))
    });
    g.finish();
}

/// Runs the iterations one after another and adds up their measured times.
async fn sum<F: Future<Output = Duration>>(runs: impl Iterator<Item = F>) -> Duration {
    let mut total = Duration::ZERO;
    for run in runs {
        total += run.await;
    }
    total
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, sink_vs_bulk);
}
criterion_main!(group::benches);

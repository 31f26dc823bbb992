//! The sink stage on real Kafka and real Elasticsearch and OpenSearch: real AIS observations (plus
//! malformed records, an event and a corrected aggregate) are consumed until the sink's committed
//! offsets reach the end of its topics, then counted in the engine: every distinct observation
//! exactly once, one `latest` document per track holding its newest position (an older one
//! produced last does not replace it), the malformed records in the dead-letter topic with their
//! reason, a document that does not fit the mapping dead-lettered as `mapping`, and producing the
//! same records again adds nothing. A second test stops the sink mid-stream and restarts it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use geostream_codecs::{CodecOptions, Context, Outcome, decode_all};
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, DeadLetter, Event, EventKind, FeedId, Format, Mapping, Naming, Observation,
    ReasonCode, Stage, TenantId, TopicKind, TrackId, Window,
};
use geostream_sink::stage::{SinkSettings, SinkStage};
use geostream_sink::templates::IndexSettings;
use geostream_telemetry::Telemetry;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use serde_json::{Value, json};

const SAMPLE: &str = "amsa_risky_exactearth_sat_ais_epochms_1.nmea";

/// The first `n` distinct observations with a track decoded from the real AIS capture.
pub(crate) fn sample(n: usize) -> Vec<Observation> {
    let path = geostream_tests::repo_root().join("services/codecs/tests/data").join(SAMPLE);
    let bytes = std::fs::read(&path).unwrap();
    let mut codec = geostream_codecs::build(Format::Ais, &Mapping::default(), &CodecOptions::default()).unwrap();
    let ctx = Context::new(FeedId::new("amsa-sat").unwrap(), OffsetDateTime::now_utc());
    let mut seen = HashSet::new();
    let out: Vec<Observation> = decode_all(codec.as_mut(), &bytes, &ctx)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) if o.track.is_some() => Some(*o),
            _ => None,
        })
        .filter(|o| seen.insert(o.id))
        .take(n)
        .collect();
    assert_eq!(out.len(), n, "{SAMPLE} has fewer than {n} distinct tracked observations");
    out
}

pub(crate) fn settings(tenant: &TenantId, bootstrap: &str, url: &str, batch: usize) -> SinkSettings {
    SinkSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.to_owned())]),
        url: url.to_owned(),
        username: None,
        password: None,
        batch_max_records: batch,
        batch_max_bytes: 4 * 1024 * 1024,
        linger: Duration::from_millis(20),
        max_in_flight: 2,
        max_backoff: Duration::from_secs(2),
        request_timeout: Duration::from_secs(60),
        index: IndexSettings { replicas: Some(0) },
    }
}

pub(crate) fn topic(tenant: &TenantId, kind: TopicKind) -> String {
    Naming::default().topic(tenant, kind)
}

pub(crate) async fn create_topics(bootstrap: &str, tenant: &TenantId) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let names: Vec<(String, i32)> = vec![
        (topic(tenant, TopicKind::Observations), 3),
        (topic(tenant, TopicKind::Events), 1),
        (topic(tenant, TopicKind::Aggregates), 1),
        (topic(tenant, TopicKind::Deadletter), 1),
    ];
    let new: Vec<NewTopic<'_>> = names.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

pub(crate) fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").create().unwrap()
}

pub(crate) async fn produce(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    p.send(FutureRecord::to(topic).key(key).payload(payload), Timeout::After(Duration::from_secs(30))).await.unwrap();
}

pub(crate) async fn produce_observations(p: &FutureProducer, tenant: &TenantId, obs: &[Observation]) {
    let t = topic(tenant, TopicKind::Observations);
    for o in obs {
        produce(p, &t, &o.kafka_key(), &serde_json::to_vec(o).unwrap()).await;
    }
}

/// Waits (bounded by checks, not time) until the sink's group has committed the end of each topic.
pub(crate) async fn caught_up(bootstrap: &str, tenant: &TenantId, topics: &[TopicKind]) {
    let group = Naming::default().consumer_group(tenant, Stage::Sink);
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", &group).create().unwrap();
    let mut behind = Vec::new();
    for _ in 0..900 {
        behind.clear();
        for kind in topics {
            let name = topic(tenant, *kind);
            let md = consumer.fetch_metadata(Some(&name), Duration::from_secs(10)).unwrap();
            let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
            let mut tpl = TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition(&name, *p);
            }
            let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
            for p in &parts {
                let (_, high) = consumer.fetch_watermarks(&name, *p, Duration::from_secs(10)).unwrap();
                let at = match committed.find_partition(&name, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                if at < high {
                    behind.push(format!("{name}/{p}: {at} < {high}"));
                }
            }
        }
        if behind.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the sink's committed offsets never reached the end: {behind:?}");
}

/// Every record on `topic` from the beginning to its current end.
pub(crate) fn read_topic(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", geostream_tests::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    for _ in 0..600 {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
        }
    }
    panic!("{topic}: no end of partition after 600 polls");
}

pub(crate) struct Search {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
}

impl Search {
    pub(crate) async fn get(&self, path: &str) -> Value {
        let resp = self.http.get(format!("{}/{path}", self.url)).send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// Makes everything written so far visible to search (the engines refresh once a second).
    pub(crate) async fn refresh(&self, index: &str) {
        let r = self.http.post(format!("{}/{index}/_refresh", self.url)).send().await.unwrap();
        assert!(r.status().is_success(), "refresh {index}: {}", r.status());
    }

    pub(crate) async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        self.get(&format!("{index}/_count")).await["count"].as_u64().unwrap()
    }

    pub(crate) async fn all(&self, index: &str) -> Vec<Value> {
        self.refresh(index).await;
        let body = self.get(&format!("{index}/_search?size=10000")).await;
        body["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_source"].clone()).collect()
    }

    /// Removes the test's indices and templates (best effort; names are unique per run anyway).
    pub(crate) async fn cleanup(&self, tenant: &TenantId) {
        let _ = self.http.delete(format!("{}/geostream-{tenant}-*", self.url)).send().await;
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = self.http.delete(format!("{}/_index_template/geostream-{tenant}-{kind}", self.url)).send().await;
        }
    }
}

pub(crate) fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// The newest event time per track.
pub(crate) fn newest(obs: &[Observation]) -> HashMap<String, OffsetDateTime> {
    let mut m: HashMap<String, OffsetDateTime> = HashMap::new();
    for o in obs {
        let track = o.track.as_ref().unwrap().as_str().to_owned();
        let e = m.entry(track).or_insert(o.time);
        *e = (*e).max(o.time);
    }
    m
}

async fn exactly_once_on(engine: &str, var: &str, bootstrap: &str) {
    let Some(url) = geostream_tests::service(var, &format!("sink on {engine}")) else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique(&format!("sink-{}", &engine[..2])).parse().unwrap();
    create_topics(bootstrap, &tenant).await;
    let p = producer(bootstrap);

    let mut obs = sample(400);
    // An older position of the track with the newest observation, produced after everything else:
    // `latest` must keep the newer one.
    let newest_before = newest(&obs);
    let (late_track, late_newest) =
        newest_before.iter().max_by_key(|(_, t)| **t).map(|(k, t)| (k.clone(), *t)).unwrap();
    let older = Observation::try_new(
        FeedId::new("amsa-sat").unwrap(),
        Some(TrackId::new(&late_track).unwrap()),
        late_newest - Duration::from_secs(3600),
        OffsetDateTime::now_utc(),
        Geometry::new_point([151.2, -33.9]),
        Default::default(),
    )
    .unwrap();
    // Two observations of one new track whose attribute `probe` has conflicting types: the first
    // fixes it as a number, the second cannot be indexed (a mapping dead letter). Same key, so
    // Kafka keeps their order.
    let t0 = obs[0].time;
    let conflicting: Vec<Observation> = [json!(1.5), json!("not a number")]
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Observation::try_new(
                FeedId::new("probe").unwrap(),
                Some(TrackId::new("mapping-probe").unwrap()),
                t0 + Duration::from_secs(i as u64),
                t0,
                Geometry::new_point([10.0, 60.0]),
                serde_json::Map::from_iter([("probe".to_owned(), v)]),
            )
            .unwrap()
        })
        .collect();
    let obs_topic = topic(&tenant, TopicKind::Observations);
    produce_observations(&p, &tenant, &obs).await;
    for o in &conflicting {
        produce(&p, &obs_topic, "mapping-probe", &serde_json::to_vec(o).unwrap()).await;
    }
    let malformed: [&[u8]; 3] =
        [b"$GPRMC,not json", br#"{"type":"FeatureCollection","features":[]}"#, br#"{"type":"Feature","id":"nope"}"#];
    for m in malformed {
        produce(&p, &obs_topic, "junk", m).await;
    }
    produce(&p, &obs_topic, &late_track, &serde_json::to_vec(&older).unwrap()).await;

    let t = obs[0].time;
    let event = Event::builder(AnalyticId::new("harbour").unwrap(), EventKind::Enter, t)
        .geometry(Geometry::new_point([151.2, -33.86]))
        .track(TrackId::new(&late_track).unwrap())
        .build();
    let events_topic = topic(&tenant, TopicKind::Events);
    produce(&p, &events_topic, &late_track, &serde_json::to_vec(&event).unwrap()).await;
    // An aggregate and its correction, the correction produced first: version 2 must stay.
    let window = Window::new(t, t + Duration::from_secs(300)).unwrap();
    let mut v1 = Aggregate::new(AggregateKind::Bin, AnalyticId::new("bins").unwrap(), window, "8/231/157");
    v1.count = 10;
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.count = 12;
    let agg_topic = topic(&tenant, TopicKind::Aggregates);
    produce(&p, &agg_topic, "8/231/157", &serde_json::to_vec(&v2).unwrap()).await;
    produce(&p, &agg_topic, "8/231/157", &serde_json::to_vec(&v1).unwrap()).await;

    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = SinkStage::start(settings(&tenant, bootstrap, &url, 100), &telemetry).await.unwrap();
    let all_topics = [TopicKind::Observations, TopicKind::Events, TopicKind::Aggregates];
    caught_up(bootstrap, &tenant, &all_topics).await;
    assert!(telemetry.health().report().ready, "{engine}: {:?}", telemetry.health().report());

    // Every observations partition was committed to its end, so its lag settles at 0 (the gauge is
    // set just after the commit the test saw, hence the bounded wait).
    let lag_prefix = "geostream_sink_consumer_lag{";
    let lag_topic = format!("topic=\"{obs_topic}\"");
    let mut lags = Vec::new();
    for _ in 0..100 {
        let metrics = telemetry.encode().unwrap();
        lags = metrics
            .lines()
            .filter(|l| l.starts_with(lag_prefix) && l.contains(&lag_topic))
            .map(str::to_owned)
            .collect();
        if lags.len() == 3 && lags.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lags.len(), 3, "{engine}: one lag series per partition: {lags:?}\n{}", telemetry.encode().unwrap());
    assert!(lags.iter().all(|l| l.ends_with(" 0")), "{engine}: {lags:?}");

    let observations = format!("geostream-{tenant}-observations-*");
    let latest = format!("geostream-{tenant}-latest");
    // 400 sample observations, the older one, and the first probe; the second probe is dead-lettered.
    let expected = obs.len() as u64 + 2;
    assert_eq!(search.count(&observations).await, expected, "{engine}: observations");
    let mut want = newest_before.clone();
    want.insert("mapping-probe".into(), conflicting[0].time);
    let docs = search.all(&latest).await;
    assert_eq!(docs.len(), want.len(), "{engine}: one latest document per track");
    for d in &docs {
        let track = d["properties"]["track"].as_str().unwrap();
        assert_eq!(parse_time(&d["properties"]["time"]), want[track], "{engine}: latest of {track}: {d}");
    }
    assert_eq!(search.count(&format!("geostream-{tenant}-events")).await, 1, "{engine}: events");
    let aggs = search.all(&format!("geostream-{tenant}-aggregates")).await;
    assert_eq!(aggs.len(), 1, "{engine}: aggregates");
    assert_eq!(
        (aggs[0]["properties"]["version"].clone(), aggs[0]["properties"]["count"].clone()),
        (json!(2), json!(12))
    );

    // Geometry is a geo_shape exactly where the engine has one.
    let mapping = search.get(&format!("{latest}/_mapping")).await;
    let geometry = &mapping[&latest]["mappings"]["properties"]["geometry"];
    let shape_expected = if engine == "opensearch" { json!("geo_shape") } else { json!("object") };
    assert_eq!(geometry.get("type").cloned().unwrap_or(json!("object")), shape_expected, "{engine}: {geometry}");

    let dead: Vec<DeadLetter> = read_topic(bootstrap, &topic(&tenant, TopicKind::Deadletter))
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    // Partitions interleave in a batch, so dead letters are compared as a set, not in order.
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["malformed", "malformed", "malformed", "mapping"], "{engine}: {dead:?}");
    for d in &dead {
        assert_eq!(d.stage, Stage::Sink, "{engine}");
        assert!(d.source.as_deref().is_some_and(|s| s.starts_with(&obs_topic)), "{engine}: {:?}", d.source);
    }
    let mut raws: Vec<&[u8]> = dead.iter().filter(|d| d.reason == ReasonCode::Malformed).map(|d| &d.raw[..]).collect();
    raws.sort_unstable();
    let mut want_raws = malformed.to_vec();
    want_raws.sort_unstable();
    assert_eq!(raws, want_raws, "{engine}: dead letters keep the raw bytes");
    let mapping_dl = dead.iter().find(|d| d.reason == ReasonCode::Mapping).unwrap();
    assert_eq!(mapping_dl.feed.as_deref(), Some("probe"));
    assert!(
        mapping_dl.detail.contains("probe"),
        "{engine}: the engine's reason names the field: {}",
        mapping_dl.detail
    );
    assert_eq!(mapping_dl.raw, serde_json::to_vec(&conflicting[1]).unwrap());

    // The same records again: nothing new anywhere.
    obs.push(older);
    produce_observations(&p, &tenant, &obs).await;
    produce(&p, &events_topic, &late_track, &serde_json::to_vec(&event).unwrap()).await;
    caught_up(bootstrap, &tenant, &all_topics).await;
    assert_eq!(search.count(&observations).await, expected, "{engine}: observations after redelivery");
    assert_eq!(search.count(&latest).await, want.len() as u64, "{engine}: latest after redelivery");
    assert_eq!(search.count(&format!("geostream-{tenant}-events")).await, 1, "{engine}: events after redelivery");
    let metrics = telemetry.encode().unwrap();
    let dup_line = format!("geostream_sink_duplicates_total{{stage=\"sink\",tenant=\"{tenant}\"}} {}", obs.len() + 1);
    assert!(metrics.contains(&dup_line), "{engine}: expected `{dup_line}` in\n{metrics}");
    stage.shutdown().await;
    search.cleanup(&tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_exactly_once_to_elasticsearch_and_opensearch() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink exactly once") else { return };
    exactly_once_on("elasticsearch", "ELASTICSEARCH_URL", &bootstrap).await;
    exactly_once_on("opensearch", "OPENSEARCH_URL", &bootstrap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_stopped_mid_stream_and_restarted_keeps_totals_exact() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink restart") else { return };
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", "sink restart") else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique("sink-rs").parse().unwrap();
    create_topics(bootstrap.as_str(), &tenant).await;
    let obs = sample(1500);
    produce_observations(&producer(&bootstrap), &tenant, &obs).await;

    let telemetry = Telemetry::new("sink", tenant.as_str());
    let first = SinkStage::start(settings(&tenant, &bootstrap, &url, 50), &telemetry).await.unwrap();
    for _ in 0..3000 {
        if first.batches() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(first.batches() >= 3, "the first sink never committed three batches");
    first.shutdown().await;
    let (at, end) = committed_and_end(&bootstrap, &tenant, TopicKind::Observations);
    assert!(at >= 150, "three batches of 50 were committed before the stop, yet only {at}");
    eprintln!("first sink stopped with {at} of {end} records committed");

    let telemetry = Telemetry::new("sink", tenant.as_str());
    let second = SinkStage::start(settings(&tenant, &bootstrap, &url, 50), &telemetry).await.unwrap();
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    second.shutdown().await;
    assert_eq!(search.count(&format!("geostream-{tenant}-observations-*")).await, obs.len() as u64);
    assert_eq!(search.count(&format!("geostream-{tenant}-latest")).await, newest(&obs).len() as u64);
    search.cleanup(&tenant).await;
}

/// A TCP forwarder in front of the engine that can be taken away and brought back, standing in for
/// an engine outage (the engine itself is shared with the other tests and must stay up).
struct Outage {
    port: u16,
    target: String,
    running: Option<(tokio::task::JoinHandle<()>, Connections)>,
}

/// The forwarded connections, so an outage can cut them.
type Connections = std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>;

impl Outage {
    /// Reserves a port nothing listens on: the engine starts "down".
    fn new(engine_url: &str) -> Outage {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = engine_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Outage { port, target, running: None }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let conns: Connections = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let target = self.target.clone();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                c.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.running = Some((accept, conns));
    }

    /// Stops listening and cuts every open connection.
    async fn down(&mut self) {
        if let Some((accept, conns)) = self.running.take() {
            accept.abort();
            let _ = accept.await;
            conns.lock().unwrap().abort_all();
        }
    }
}

/// What the sink's group has committed on `topic`, summed over partitions, and the topic's end.
pub(crate) fn committed_and_end(bootstrap: &str, tenant: &TenantId, kind: TopicKind) -> (i64, i64) {
    let name = topic(tenant, kind);
    let group = Naming::default().consumer_group(tenant, Stage::Sink);
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", &group).create().unwrap();
    let md = consumer.fetch_metadata(Some(&name), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition(&name, *p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let (mut at, mut end) = (0, 0);
    for p in &parts {
        end += consumer.fetch_watermarks(&name, *p, Duration::from_secs(10)).unwrap().1;
        if let Some(Offset::Offset(o)) = committed.find_partition(&name, *p).map(|e| e.offset()) {
            at += o;
        }
    }
    (at, end)
}

/// The value of an unlabelled sink counter in the telemetry text.
pub(crate) fn counter(telemetry: &Telemetry, name: &str) -> u64 {
    let text = telemetry.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("geostream_sink_{name}_total{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The value of an unlabelled sink gauge in the telemetry text.
fn gauge(telemetry: &Telemetry, name: &str) -> u64 {
    let text = telemetry.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("geostream_sink_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_waits_out_an_engine_outage_and_loses_nothing() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink outage") else { return };
    let Some(url) = geostream_tests::service("OPENSEARCH_URL", "sink outage") else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique("sink-out").parse().unwrap();
    create_topics(&bootstrap, &tenant).await;
    let p = producer(&bootstrap);
    let obs = sample(1500);
    produce_observations(&p, &tenant, &obs[..300]).await;

    // Down at start: no templates, not ready, nothing committed.
    let mut engine = Outage::new(&url);
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = SinkStage::start(settings(&tenant, &bootstrap, &engine.url(), 100), &telemetry).await.unwrap();
    for _ in 0..200 {
        if telemetry.health().report().checks.get("templates").is_some_and(|c| c.detail.contains("no answer")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = telemetry.health().report();
    assert!(!report.ready, "{report:?}");
    assert!(report.checks["templates"].detail.contains("no answer"), "{report:?}");
    assert_eq!(committed_and_end(&bootstrap, &tenant, TopicKind::Observations).0, 0);

    engine.up().await;
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    assert!(telemetry.health().report().ready);
    assert_eq!(search.count(&format!("geostream-{tenant}-observations-*")).await, 300);

    // Down mid-stream: bulk requests fail and are retried, the new records stay uncommitted, and
    // while records keep coming the sink holds no more than `max_in_flight` + 1 batches (those it
    // writes and the next; its prefetch queue is bounded by librdkafka's settings, see docs/sink.md).
    engine.down().await;
    let errors_before = counter(&telemetry, "request_errors");
    let (mut held_records, mut held_bytes) = (0, 0);
    let mut sample_held = || {
        held_records = held_records.max(gauge(&telemetry, "held_records"));
        held_bytes = held_bytes.max(gauge(&telemetry, "held_bytes"));
    };
    for chunk in obs[300..].chunks(100) {
        produce_observations(&p, &tenant, chunk).await;
        sample_held();
    }
    for _ in 0..600 {
        sample_held();
        if counter(&telemetry, "request_errors") > errors_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counter(&telemetry, "request_errors") > errors_before + 2,
        "bulk requests did not fail while the engine was away"
    );
    let (at, end) = committed_and_end(&bootstrap, &tenant, TopicKind::Observations);
    assert!(at < end, "offsets were committed while the engine was away: {at} of {end}");
    let batch = settings(&tenant, &bootstrap, &url, 100);
    // The batches in flight plus the one being read.
    let most = batch.max_in_flight as u64 + 1;
    assert!(held_records > 0, "the failing batch is held: {held_records}");
    assert!(
        held_records <= most * batch.batch_max_records as u64,
        "held {held_records} records, more than {most} batches"
    );
    assert!(held_bytes > 0 && held_bytes <= most * batch.batch_max_bytes as u64, "held {held_bytes} bytes");
    assert!(
        end - at > (most * batch.batch_max_records as u64) as i64,
        "more records arrived than {most} batches: {at} of {end}"
    );

    engine.up().await;
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    assert_eq!(search.count(&format!("geostream-{tenant}-observations-*")).await, obs.len() as u64);
    assert_eq!(search.count(&format!("geostream-{tenant}-latest")).await, newest(&obs).len() as u64);
    stage.shutdown().await;
    engine.down().await;
    search.cleanup(&tenant).await;
}

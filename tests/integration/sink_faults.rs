//! The sink against faults the real Elasticsearch cannot produce on demand, injected by the
//! [`FaultProxy`] test double between the sink and the real engine: a storm of whole-request 429s
//! (with and without `Retry-After`, which the client reads) and 503s, partial bulk failures (chosen items 429/503), and
//! mapping errors on chosen documents. Each time every produced record ends up in the index
//! exactly once (compared by id with what was produced) or, for the mapping errors, on the
//! dead-letter topic with the engine's error; the sink's retry and dead-letter metrics equal what
//! the proxy injected; and no offset is committed while the first batch is unsettled.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use geostream_model::{DeadLetter, Observation, ReasonCode, Stage, TenantId, TopicKind};
use geostream_sink::stage::{SinkSettings, SinkStage};
use geostream_telemetry::Telemetry;

use crate::faultproxy::{BulkFault, FaultProxy, ItemFault};
use crate::sink::{
    Search, caught_up, committed_and_end, counter, create_topics, newest, parse_time, produce_observations, producer,
    read_topic, sample, settings, topic,
};

/// The test settings with a short backoff cap, so a scripted storm passes in seconds.
fn fault_settings(tenant: &TenantId, bootstrap: &str, proxy: &FaultProxy) -> SinkSettings {
    let mut s = settings(tenant, bootstrap, proxy.url(), 100);
    s.max_backoff = Duration::from_millis(400);
    s
}

/// Every `_id` in the tenant's observation indices.
async fn stored_ids(search: &Search, tenant: &TenantId) -> Vec<String> {
    let index = format!("geostream-{tenant}-observations-*");
    search.refresh(&index).await;
    let body = search.get(&format!("{index}/_search?size=10000&_source=false")).await;
    body["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_id"].as_str().unwrap().to_owned()).collect()
}

/// Each of `want` stored once and nothing else; `latest` holds each track's newest position.
async fn exactly_once(search: &Search, tenant: &TenantId, want: &[Observation], what: &str) {
    let ids = stored_ids(search, tenant).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{what}: an id is stored twice");
    let produced: HashSet<String> = want.iter().map(|o| o.id.to_string()).collect();
    assert_eq!(distinct.len(), produced.len(), "{what}: stored {} of {} records", ids.len(), produced.len());
    assert!(ids.iter().all(|id| produced.contains(id)), "{what}: an id that was not produced is stored");
    let newest = newest(want);
    let docs = search.all(&format!("geostream-{tenant}-latest")).await;
    assert_eq!(docs.len(), newest.len(), "{what}: one latest document per track");
    for d in &docs {
        let track = d["properties"]["track"].as_str().unwrap();
        assert_eq!(parse_time(&d["properties"]["time"]), newest[track], "{what}: latest of {track}");
    }
}

/// While scripted faults remain, nothing may be committed: every bulk request so far was faulted,
/// so the first batch is unsettled. The committed offsets are read before the script, so a script
/// still non-empty afterwards was non-empty when they were read. Returns once the script is spent.
async fn nothing_committed_while_faults_remain(bootstrap: &str, tenant: &TenantId, proxy: &FaultProxy, what: &str) {
    for checked in 0..1200 {
        let (at, end) = committed_and_end(bootstrap, tenant, TopicKind::Observations);
        if proxy.remaining() == 0 {
            assert!(checked > 0, "{what}: the script was spent before the first check");
            return;
        }
        assert_eq!(at, 0, "{what}: {at} of {end} offsets committed while the batch was failing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: the sink never used up the scripted faults: {} left, {:?}", proxy.remaining(), proxy.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_rides_out_a_429_storm_and_stores_each_record_once() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink 429 storm") else { return };
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", "sink 429 storm") else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique("sink-storm").parse().unwrap();
    create_topics(&bootstrap, &tenant).await;
    let obs = sample(600);
    produce_observations(&producer(&bootstrap), &tenant, &obs).await;

    let proxy = FaultProxy::start(&url).await;
    let reject = |status, retry_after| BulkFault::Reject { status, retry_after };
    proxy.script(
        std::iter::repeat_n(reject(429, Some(1)), 3)
            .chain(std::iter::repeat_n(reject(429, None), 3))
            .chain(std::iter::repeat_n(reject(503, None), 2)),
    );
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = SinkStage::start(fault_settings(&tenant, &bootstrap, &proxy), &telemetry).await.unwrap();
    nothing_committed_while_faults_remain(&bootstrap, &tenant, &proxy, "storm").await;
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    stage.shutdown().await;

    exactly_once(&search, &tenant, &obs, "after the storm").await;
    let counts = proxy.counts();
    assert_eq!(counts.rejected, BTreeMap::from([(429, 6), (503, 2)]), "{counts:?}");
    assert!(counts.failed_items.is_empty(), "{counts:?}");
    assert_eq!(counter(&telemetry, "request_errors"), 8, "every rejected request was counted and sent again");
    assert_eq!(counter(&telemetry, "retries"), 0, "no item failed on its own");
    assert_eq!(counter(&telemetry, "duplicates"), 0, "a rejected request stored nothing");
    search.cleanup(&tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_resends_only_the_failed_items_of_partial_bulk_failures() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink partial failures") else { return };
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", "sink partial failures") else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique("sink-part").parse().unwrap();
    create_topics(&bootstrap, &tenant).await;
    let obs = sample(600);
    produce_observations(&producer(&bootstrap), &tenant, &obs).await;

    let proxy = FaultProxy::start(&url).await;
    let items = |every, fault| BulkFault::Items { every, fault };
    // Each scripted request fails at least its first item, so the first batch stays unsettled
    // until the script is spent.
    proxy.script([
        items(3, ItemFault::too_many_requests()),
        items(2, ItemFault::unavailable()),
        items(1, ItemFault::too_many_requests()),
        items(4, ItemFault::unavailable()),
    ]);
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = SinkStage::start(fault_settings(&tenant, &bootstrap, &proxy), &telemetry).await.unwrap();
    nothing_committed_while_faults_remain(&bootstrap, &tenant, &proxy, "partial failures").await;
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    stage.shutdown().await;

    exactly_once(&search, &tenant, &obs, "after partial failures").await;
    let counts = proxy.counts();
    assert!(counts.rejected.is_empty(), "{counts:?}");
    let injected: u64 = counts.failed_items.values().sum();
    assert!(counts.failed_items[&429] > 0 && counts.failed_items[&503] > 0, "{counts:?}");
    assert_eq!(counter(&telemetry, "retries"), injected, "each injected item failure is one retry: {counts:?}");
    assert_eq!(counter(&telemetry, "request_errors"), 0);
    assert_eq!(counter(&telemetry, "duplicates"), 0, "failed items were not stored, so no retry met its own write");
    search.cleanup(&tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_dead_letters_items_the_engine_refuses_as_mapping_errors() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "sink mapping errors") else { return };
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", "sink mapping errors") else { return };
    let search = Search { http: reqwest::Client::new(), url: url.clone() };
    let tenant: TenantId = geostream_tests::unique("sink-map").parse().unwrap();
    create_topics(&bootstrap, &tenant).await;
    let obs = sample(300);
    produce_observations(&producer(&bootstrap), &tenant, &obs).await;

    let proxy = FaultProxy::start(&url).await;
    let refused: Vec<&Observation> = obs.iter().step_by(61).collect();
    let reason = "failed to parse field [properties.speed] of type [float] [injected by FaultProxy]";
    proxy.fail_ids(refused.iter().map(|o| o.id.to_string()), "-observations-", &ItemFault::mapping(reason));
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = SinkStage::start(fault_settings(&tenant, &bootstrap, &proxy), &telemetry).await.unwrap();
    caught_up(&bootstrap, &tenant, &[TopicKind::Observations]).await;
    stage.shutdown().await;

    let refused_ids: HashSet<String> = refused.iter().map(|o| o.id.to_string()).collect();
    let stored: Vec<Observation> = obs.iter().filter(|o| !refused_ids.contains(&o.id.to_string())).cloned().collect();
    let ids: HashSet<String> = stored_ids(&search, &tenant).await.into_iter().collect();
    assert_eq!(ids, stored.iter().map(|o| o.id.to_string()).collect(), "every record but the refused ones, once");
    let counts = proxy.counts();
    assert_eq!(counts.failed_items, BTreeMap::from([(400, refused.len() as u64)]), "{counts:?}");

    let dead: Vec<DeadLetter> = read_topic(&bootstrap, &topic(&tenant, TopicKind::Deadletter))
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(dead.len(), refused.len(), "one dead letter per refused record: {dead:?}");
    let mut raws: Vec<Vec<u8>> = dead.iter().map(|d| d.raw.clone()).collect();
    raws.sort_unstable();
    let mut want_raws: Vec<Vec<u8>> = refused.iter().map(|o| serde_json::to_vec(o).unwrap()).collect();
    want_raws.sort_unstable();
    assert_eq!(raws, want_raws, "the dead letters keep the refused records' bytes");
    for d in &dead {
        assert_eq!((d.reason, d.stage), (ReasonCode::Mapping, Stage::Sink), "{d:?}");
        assert!(d.detail.contains("400 mapper_parsing_exception") && d.detail.contains(reason), "{}", d.detail);
        assert_eq!(d.feed.as_deref(), Some("amsa-sat"));
    }
    let metrics = telemetry.encode().unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("geostream_sink_dead_letters_total{") && l.contains("reason=\"mapping\""))
        .unwrap_or_else(|| panic!("no mapping dead-letter count in\n{metrics}"));
    assert!(line.ends_with(&format!(" {}", refused.len())), "{line}");
    search.cleanup(&tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_client_reads_retry_after_of_a_rejected_bulk_request() {
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", "sink Retry-After") else { return };
    let proxy = FaultProxy::start(&url).await;
    proxy.script([
        BulkFault::Reject { status: 429, retry_after: Some(7) },
        BulkFault::Reject { status: 503, retry_after: None },
        BulkFault::Reject { status: 503, retry_after: Some(2) },
    ]);
    let client = geostream_sink::client::SearchClient::new(proxy.url(), None, None, Duration::from_secs(30)).unwrap();
    let body = b"{\"index\":{\"_index\":\"never-written\"}}\n{}\n".to_vec();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = client.bulk(body.clone()).await.unwrap_err();
        assert!(geostream_model::Classify::retryable(&e), "{e}");
        seen.push(e.retry_after());
    }
    assert_eq!(seen, [Some(Duration::from_secs(7)), None, Some(Duration::from_secs(2))]);
    assert_eq!(proxy.remaining(), 0);
}

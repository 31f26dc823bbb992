//! Event outputs on real Kafka and Mosquitto with a real HTTP receiver: events produced to a
//! tenant's events topic reach a webhook (signature verified with the shared key, the first
//! requests answered 500 and 429, one event refused with 400), an MQTT subscriber on the rendered
//! topics and a Kafka topic, each exactly as its filter says; the refused event is on the
//! dead-letter topic with its reason and source, and the metrics count every retry. A second
//! test stops the outputs while a batch is being retried and starts them again: every event
//! arrives, and only the batch in flight arrives twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::{
    AnalyticId, DeadLetter, Event, EventKind, FeedId, FenceId, Naming, ReasonCode, Stage, TenantId, TopicKind, TrackId,
};
use geostream_outputs::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use geostream_outputs::spec::{
    FilterConfig, KafkaOutputConfig, MqttConfig, OutputConfig, WebhookConfig, validate as validate_outputs,
};
use geostream_outputs::stage::consumer_group;
use geostream_outputs::{OutputsSettings, OutputsStage};
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
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};

const KEY: &str = "shared-hmac-key-for-the-test";

/// A webhook receiver: verifies each signature, answers 500 to the first `fail_first` requests
/// (the last of them 429 with `Retry-After: 1`), 500 to everything while `down`, 400 to
/// `reject`, and counts accepted deliveries by event id.
#[derive(Default)]
struct Receiver {
    fail_first: usize,
    reject: Option<String>,
    down: AtomicBool,
    /// Goes `down` once this many deliveries were accepted (0: never).
    down_after: AtomicUsize,
    requests: AtomicUsize,
    bad_signatures: AtomicUsize,
    refused: AtomicUsize,
    /// Event id → accepted deliveries.
    accepted: Mutex<HashMap<String, usize>>,
    /// Event ids in arrival order (accepted only).
    order: Mutex<Vec<String>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if verify(KEY.as_bytes(), &header(TIMESTAMP_HEADER), &header(SIGNATURE_HEADER), &body, now, 300).is_err() {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let event: Event = serde_json::from_slice(&body).unwrap();
    assert_eq!(header(EVENT_ID_HEADER), event.id.to_string());
    if n + 1 < r.fail_first {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "warming up").into_response();
    }
    if n + 1 == r.fail_first {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
    }
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let id = event.id.to_string();
    let limit = r.down_after.load(Ordering::SeqCst);
    if limit > 0 && r.order.lock().unwrap().len() >= limit {
        r.down.store(true, Ordering::SeqCst);
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if r.reject.as_deref() == Some(id.as_str()) {
        return (StatusCode::BAD_REQUEST, "fence port-a is unknown to this receiver").into_response();
    }
    *r.accepted.lock().unwrap().entry(id.clone()).or_default() += 1;
    r.order.lock().unwrap().push(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn serve(receiver: Arc<Receiver>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Real-looking events: geofence enter/exit on two fences, gaps, dwells and stops of six
/// vessels, one retracted enter and one retracted gap.
fn events(n: usize) -> Vec<Event> {
    let t0 = OffsetDateTime::now_utc() - geostream_model::time::Duration::minutes(30);
    let analytic = AnalyticId::new("harbour-watch").unwrap();
    let kinds = [EventKind::Enter, EventKind::Exit, EventKind::Gap, EventKind::Dwell, EventKind::Stop];
    (0..n)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let t = t0 + geostream_model::time::Duration::seconds(i as i64);
            let mut b = Event::builder(analytic.clone(), kind, t)
                .feed(FeedId::new("ais-norway").unwrap())
                .track(TrackId::new(format!("25712345{}", i % 6)).unwrap())
                .geometry(Geometry::new_point([10.39 + i as f64 * 1e-3, 63.43]));
            if matches!(kind, EventKind::Enter | EventKind::Exit | EventKind::Dwell) {
                let fence = if i % 3 == 0 { "port-b" } else { "port-a" };
                b = b.fence(FenceId::new(fence).unwrap(), 2);
            }
            if kind == EventKind::Dwell {
                b = b.attribute("dwell_s", 600 + i as i64);
            }
            if i == 10 || i == 12 {
                b = b.attribute("retracted", true);
            }
            b.build()
        })
        .collect()
}

async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let new: Vec<NewTopic<'_>> = topics.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

async fn produce_events(bootstrap: &str, topic: &str, events: &[Event]) {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").create().unwrap();
    for e in events {
        let key = e.track.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default();
        let payload = serde_json::to_vec(e).unwrap();
        p.send(FutureRecord::to(topic).key(&key).payload(&payload), Timeout::After(Duration::from_secs(30)))
            .await
            .unwrap();
    }
}

/// Waits until the outputs' group committed the end of every partition of `topic`.
async fn caught_up(bootstrap: &str, group: &str, topic: &str) {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut behind = Vec::new();
    for _ in 0..600 {
        behind.clear();
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition(topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        for p in &parts {
            let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap();
            let at = match committed.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            if at < high {
                behind.push(format!("{topic}/{p}: {at} < {high}"));
            }
        }
        if behind.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the outputs' committed offsets never reached the end: {behind:?}");
}

/// The group's committed offset on partition 0 of `topic` (0 when none).
fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    match committed.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => 0,
    }
}

/// Every record value on partition 0 of `topic`.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
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
            Some(Ok(m)) => out.push((m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec())),
        }
    }
    panic!("{topic}: no end of partition after 600 polls");
}

fn webhook(name: &str, url: &str, kinds: &[&str]) -> OutputConfig {
    OutputConfig {
        name: name.into(),
        filter: FilterConfig { kinds: kinds.iter().map(|k| (*k).to_owned()).collect(), ..FilterConfig::default() },
        max_attempts: Some(20),
        max_backoff_ms: 200,
        webhook: Some(WebhookConfig {
            url: url.into(),
            secret_ref: "outputs-test-hook-key".into(),
            timeout_ms: 5_000,
            headers: BTreeMap::new(),
        }),
        mqtt: None,
        kafka: None,
    }
}

fn settings(tenant: &TenantId, bootstrap: &str, outputs: &[OutputConfig], batch: usize) -> OutputsSettings {
    let secrets = tempfile::tempdir().unwrap().keep();
    std::fs::write(secrets.join("outputs-test-hook-key"), format!("{KEY}\n")).unwrap();
    OutputsSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.to_owned())]),
        outputs: validate_outputs(outputs).unwrap(),
        secrets_dir: Some(secrets),
        batch_max_records: batch,
        linger: Duration::from_millis(20),
    }
}

fn ids<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeSet<String> {
    events.into_iter().map(|e| e.id.to_string()).collect()
}

fn mqtt_options(url: &str, client_id: &str) -> MqttOptions {
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap();
    let mut o = MqttOptions::new(client_id, host, port.trim_end_matches('/').parse().unwrap());
    o.set_keep_alive(Duration::from_secs(10)).set_clean_session(true).set_max_packet_size(1 << 20, 1 << 20);
    o
}

#[tokio::test]
async fn events_reach_webhook_mqtt_and_kafka_as_routed_with_retries_and_a_dead_letter() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "outputs") else { return };
    let Some(mqtt_url) = geostream_tests::service("MQTT_URL", "outputs") else { return };
    let tenant = TenantId::new(geostream_tests::unique("out")).unwrap();
    let naming = Naming::default();
    let events_topic = naming.topic(&tenant, TopicKind::Events);
    let dl_topic = naming.topic(&tenant, TopicKind::Deadletter);
    let copy_topic = format!("{tenant}.alerts-copy");
    create_topics(&bootstrap, &[(&events_topic, 2), (&dl_topic, 1), (&copy_topic, 1)]).await;

    let all = events(60);
    let enter_exit: Vec<&Event> = all.iter().filter(|e| matches!(e.kind, EventKind::Enter | EventKind::Exit)).collect();
    let rejected = enter_exit[3];
    let receiver = Arc::new(Receiver { fail_first: 4, reject: Some(rejected.id.to_string()), ..Receiver::default() });
    let addr = serve(Arc::clone(&receiver)).await;

    // MQTT: gaps only, no retractions, on geostream-test/<unique>/<tenant>/<kind>/<track>.
    let prefix = geostream_tests::unique("geostream-test");
    let (sub, mut sub_loop) = AsyncClient::new(mqtt_options(&mqtt_url, &geostream_tests::unique("sub")), 1000);
    sub.subscribe(format!("{prefix}/#"), QoS::AtLeastOnce).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub_loop.poll()).await.unwrap().unwrap() {
            rumqttc::Event::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    let received = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok(ev) = sub_loop.poll().await {
            if let rumqttc::Event::Incoming(Packet::Publish(p)) = ev {
                sink.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });

    let mut mqtt = webhook("mq", "http://unused", &["gap"]);
    mqtt.webhook = None;
    mqtt.filter.retracted = false;
    mqtt.mqtt = Some(MqttConfig {
        url: mqtt_url.clone(),
        topic: format!("{prefix}/{{tenant}}/{{kind}}/{{track}}"),
        qos: 1,
        retain: false,
        client_id: None,
        username: None,
        password_ref: None,
        ca_file: None,
        timeout_ms: 5_000,
    });
    // Kafka: events of fence port-a (enter, exit and dwell there), keyed as consumed.
    let mut kafka = webhook("kf", "http://unused", &[]);
    kafka.webhook = None;
    kafka.filter.fences = vec!["port-a".into()];
    // Named explicitly, as another cluster would be (here the same one).
    kafka.kafka = Some(KafkaOutputConfig {
        topic: copy_topic.clone(),
        bootstrap: Some(bootstrap.clone()),
        properties: BTreeMap::from([("linger.ms".to_owned(), "5".to_owned())]),
    });
    let outputs = vec![webhook("hook", &format!("http://{addr}/hook"), &["enter", "exit"]), mqtt, kafka];

    produce_events(&bootstrap, &events_topic, &all).await;
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(settings(&tenant, &bootstrap, &outputs, 16), &telemetry).await.unwrap();
    caught_up(&bootstrap, &consumer_group(&naming, &tenant), &events_topic).await;
    let m = stage.metrics().clone();

    // Webhook: every enter/exit (retraction included) once, except the refused one.
    let want_hook = ids(enter_exit.iter().copied().filter(|e| e.id != rejected.id));
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), want_hook);
    assert!(accepted.values().all(|n| *n == 1), "one run without restarts delivers once: {accepted:?}");
    assert!(want_hook.contains(&all[10].id.to_string()), "the retracted enter is delivered to the webhook");
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(receiver.refused.load(Ordering::SeqCst), 4);
    assert_eq!(m.sent_of("hook"), want_hook.len() as u64);
    assert_eq!(m.retries_of("hook"), 4, "three 500s and one 429, each retried once");
    assert_eq!(m.failed_of("hook", "server_error"), 3);
    assert_eq!(m.failed_of("hook", "throttled"), 1);
    assert_eq!(m.failed_of("hook", "rejected"), 1);
    assert_eq!(m.dead_letters_of("hook", "rejected"), 1);
    // Per-partition order holds at the receiver (events are keyed by track, so per track).
    let order = receiver.order.lock().unwrap().clone();
    let by_id: HashMap<String, &Event> = all.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut last_per_track: HashMap<String, OffsetDateTime> = HashMap::new();
    for id in &order {
        let e = by_id[id];
        let track = e.track.as_ref().unwrap().to_string();
        if let Some(prev) = last_per_track.insert(track.clone(), e.time) {
            assert!(prev < e.time, "track {track} delivered out of order");
        }
    }

    // The refused event is a dead letter naming the output, with the status and body.
    let dls: Vec<DeadLetter> =
        read_topic(&bootstrap, &dl_topic).into_iter().map(|(_, v)| serde_json::from_slice(&v).unwrap()).collect();
    assert_eq!(dls.len(), 1, "{dls:?}");
    let dl = &dls[0];
    assert_eq!((dl.reason, dl.stage, dl.source.as_deref()), (ReasonCode::Rejected, Stage::Sink, Some("hook")));
    assert!(dl.detail.contains("400") && dl.detail.contains("unknown to this receiver"), "{}", dl.detail);
    assert_eq!(dl.feed.as_deref(), Some("ais-norway"));
    let back: Event = serde_json::from_slice(&dl.raw).unwrap();
    assert_eq!(back.id, rejected.id);

    // MQTT: every non-retracted gap on its rendered topic, once.
    let want_mqtt: BTreeMap<String, String> = all
        .iter()
        .filter(|e| e.kind == EventKind::Gap && e.attributes.get("retracted").is_none())
        .map(|e| (e.id.to_string(), format!("{prefix}/{tenant}/gap/{}", e.track.as_ref().unwrap())))
        .collect();
    assert!(all.iter().any(|e| e.kind == EventKind::Gap && e.attributes.contains_key("retracted")));
    for _ in 0..100 {
        if received.lock().unwrap().len() >= want_mqtt.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<(String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(topic, payload)| (serde_json::from_slice::<Event>(payload).unwrap().id.to_string(), topic.clone()))
        .collect();
    assert_eq!(got.len(), want_mqtt.len(), "{got:?}");
    assert_eq!(got.into_iter().collect::<BTreeMap<_, _>>(), want_mqtt);
    assert_eq!(m.sent_of("mq"), want_mqtt.len() as u64);

    // Kafka: every event of fence port-a, once, with its key and bytes unchanged.
    let copies = read_topic(&bootstrap, &copy_topic);
    let want_kafka: Vec<&Event> =
        all.iter().filter(|e| e.fence.as_ref().is_some_and(|f| f.id.as_str() == "port-a")).collect();
    assert_eq!(copies.len(), want_kafka.len());
    let got: BTreeSet<String> = copies
        .iter()
        .map(|(k, v)| {
            let e: Event = serde_json::from_slice(v).unwrap();
            assert_eq!(k.as_deref(), Some(e.track.as_ref().unwrap().as_str().as_bytes()));
            assert_eq!(v, &serde_json::to_vec(by_id[&e.id.to_string()]).unwrap());
            e.id.to_string()
        })
        .collect();
    assert_eq!(got, ids(want_kafka.iter().copied()));
    assert_eq!(m.sent_of("kf"), want_kafka.len() as u64);
    assert_eq!(m.routed_of("kf"), want_kafka.len() as u64);

    let text = telemetry.encode().unwrap();
    assert!(text.contains(r#"geostream_outputs_retries_total{stage="sink",tenant=""#), "{text}");
    assert!(text.contains(r#"output="hook"} 4"#), "{text}");
    // The events are half an hour old: the lag says so.
    let lag: f64 = m.event_lag.get_or_create(&geostream_outputs::metrics::OutputLabel { output: "hook".into() }).get();
    assert!((1700.0..4000.0).contains(&lag), "event lag {lag}");
    let lags: Vec<&str> = text.lines().filter(|l| l.starts_with("geostream_outputs_consumer_lag{")).collect();
    assert_eq!(lags.len(), 2, "{text}");
    assert!(lags.iter().all(|l| l.ends_with(" 0")), "{lags:?}");
    stage.shutdown().await;
}

#[tokio::test]
async fn a_restart_mid_stream_loses_nothing_and_repeats_only_the_batch_in_flight() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "outputs restart") else { return };
    let tenant = TenantId::new(geostream_tests::unique("outr")).unwrap();
    let naming = Naming::default();
    let events_topic = naming.topic(&tenant, TopicKind::Events);
    create_topics(&bootstrap, &[(&events_topic, 1), (&naming.topic(&tenant, TopicKind::Deadletter), 1)]).await;
    let all = events(200);
    produce_events(&bootstrap, &events_topic, &all).await;
    let receiver = Arc::new(Receiver::default());
    let addr = serve(Arc::clone(&receiver)).await;
    let mut hook = webhook("hook", &format!("http://{addr}/hook"), &[]);
    hook.max_attempts = Some(0);
    const BATCH: usize = 20;

    // The receiver goes down after 70 deliveries: the outputs stop while that batch is retried.
    receiver.down_after.store(70, Ordering::SeqCst);
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(settings(&tenant, &bootstrap, &[hook.clone()], BATCH), &telemetry).await.unwrap();
    for _ in 0..500 {
        if receiver.refused.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(receiver.refused.load(Ordering::SeqCst) >= 2, "the receiver went down mid-stream");
    stage.shutdown().await;
    let first_run = receiver.order.lock().unwrap().len();
    assert_eq!(first_run, 70);
    let committed = committed_offset(&bootstrap, &consumer_group(&naming, &tenant), &events_topic);
    assert!((70 - BATCH as i64..70).contains(&committed), "committed {committed}: up to the batch in flight");
    receiver.down_after.store(0, Ordering::SeqCst);
    receiver.down.store(false, Ordering::SeqCst);

    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(settings(&tenant, &bootstrap, &[hook], BATCH), &telemetry).await.unwrap();
    caught_up(&bootstrap, &consumer_group(&naming, &tenant), &events_topic).await;
    stage.shutdown().await;

    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), ids(&all), "every event delivered");
    let repeated: BTreeSet<usize> =
        all.iter().enumerate().filter(|(_, e)| accepted[&e.id.to_string()] > 1).map(|(i, _)| i).collect();
    assert!(accepted.values().all(|n| *n <= 2), "{accepted:?}");
    eprintln!(
        "restart: {first_run} delivered before the stop, committed {committed}, {} delivered twice",
        repeated.len()
    );
    // Exactly the part of the batch in flight that was delivered before the stop comes again.
    let want: BTreeSet<usize> = (committed as usize..70).collect();
    assert_eq!(repeated, want);
    assert!(repeated.len() < BATCH);
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_dead_letters_each_event_after_max_attempts_in_order() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "outputs max attempts") else { return };
    let tenant = TenantId::new(geostream_tests::unique("outm")).unwrap();
    let naming = Naming::default();
    let events_topic = naming.topic(&tenant, TopicKind::Events);
    let dl_topic = naming.topic(&tenant, TopicKind::Deadletter);
    create_topics(&bootstrap, &[(&events_topic, 1), (&dl_topic, 1)]).await;
    let all = events(5);
    produce_events(&bootstrap, &events_topic, &all).await;
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    let addr = serve(Arc::clone(&receiver)).await;
    let mut hook = webhook("hook", &format!("http://{addr}/hook"), &[]);
    hook.max_attempts = Some(3);
    hook.max_backoff_ms = 50;

    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(settings(&tenant, &bootstrap, &[hook], 100), &telemetry).await.unwrap();
    caught_up(&bootstrap, &consumer_group(&naming, &tenant), &events_topic).await;
    let m = stage.metrics().clone();
    stage.shutdown().await;

    assert_eq!(receiver.refused.load(Ordering::SeqCst), 15, "three attempts per event");
    assert_eq!(m.failed_of("hook", "server_error"), 15);
    assert_eq!(m.retries_of("hook"), 10);
    assert_eq!(m.dead_letters_of("hook", "rejected"), 5);
    assert_eq!(m.sent_of("hook"), 0);
    let dls: Vec<DeadLetter> =
        read_topic(&bootstrap, &dl_topic).into_iter().map(|(_, v)| serde_json::from_slice(&v).unwrap()).collect();
    let got: Vec<String> =
        dls.iter().map(|d| serde_json::from_slice::<Event>(&d.raw).unwrap().id.to_string()).collect();
    let want: Vec<String> = all.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want, "one dead letter per event, in event order");
    for d in &dls {
        assert_eq!((d.reason, d.source.as_deref()), (ReasonCode::Rejected, Some("hook")));
        assert!(d.detail.contains("answered 503") && d.detail.contains("attempt 3"), "{}", d.detail);
    }
}

/// A TCP forwarder that can cut every connection and refuse new ones until it is restored.
struct Forwarder {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Forwarder {
    async fn start(upstream: SocketAddr) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (c, g) = (Arc::clone(&cut), Arc::clone(&generation));
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let mut gone = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = gone.changed() => {}
                    }
                });
            }
        });
        Forwarder { addr, cut, generation }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn mqtt_over_tls_with_a_password_survives_a_cut_connection_without_losing_an_event() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "outputs mqtt tls") else { return };
    let Some(mqtt_url) = geostream_tests::service("MQTT_URL", "outputs mqtt tls") else { return };
    let Some(mqtts_url) = geostream_tests::service("MQTTS_URL", "outputs mqtt tls") else { return };
    let Some(ca_file) = geostream_tests::service("MQTT_CA_FILE", "outputs mqtt tls") else { return };
    let Some(user) = geostream_tests::service("MQTT_USERNAME", "outputs mqtt tls") else { return };
    let Some(password_file) = geostream_tests::service("MQTT_PASSWORD_FILE", "outputs mqtt tls") else { return };
    let tenant = TenantId::new(geostream_tests::unique("outt")).unwrap();
    let naming = Naming::default();
    let events_topic = naming.topic(&tenant, TopicKind::Events);
    create_topics(&bootstrap, &[(&events_topic, 1), (&naming.topic(&tenant, TopicKind::Deadletter), 1)]).await;

    let port: u16 = mqtts_url.rsplit_once(':').unwrap().1.trim_end_matches('/').parse().unwrap();
    let forwarder = Forwarder::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let prefix = geostream_tests::unique("geostream-tls");
    let (sub, mut sub_loop) = AsyncClient::new(mqtt_options(&mqtt_url, &geostream_tests::unique("sub")), 1000);
    sub.subscribe(format!("{prefix}/#"), QoS::AtLeastOnce).await.unwrap();
    loop {
        if let rumqttc::Event::Incoming(Packet::SubAck(_)) =
            tokio::time::timeout(Duration::from_secs(10), sub_loop.poll()).await.unwrap().unwrap()
        {
            break;
        }
    }
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok(ev) = sub_loop.poll().await {
            if let rumqttc::Event::Incoming(Packet::Publish(p)) = ev {
                sink.lock().unwrap().push(serde_json::from_slice::<Event>(&p.payload).unwrap().id.to_string());
            }
        }
    });
    let wait_for = |n: usize| {
        let received = Arc::clone(&received);
        async move {
            for _ in 0..300 {
                if received.lock().unwrap().iter().collect::<BTreeSet<_>>().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("only {} distinct events arrived, {n} expected", received.lock().unwrap().len());
        }
    };

    let mut out = webhook("tls", "http://unused", &[]);
    out.webhook = None;
    out.max_backoff_ms = 300;
    out.mqtt = Some(MqttConfig {
        url: format!("mqtts://localhost:{}", forwarder.addr.port()),
        topic: format!("{prefix}/{{kind}}/{{id}}"),
        qos: 1,
        retain: false,
        client_id: None,
        username: Some(user),
        password_ref: Some("outputs-test-mqtt-pass".into()),
        ca_file: Some(ca_file.into()),
        timeout_ms: 1_000,
    });
    let mut s = settings(&tenant, &bootstrap, &[out], 20);
    let password = std::fs::read_to_string(&password_file).unwrap();
    std::fs::write(s.secrets_dir.as_mut().unwrap().join("outputs-test-mqtt-pass"), password).unwrap();

    let all = events(200);
    let (first, second) = all.split_at(100);
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(s, &telemetry).await.unwrap();
    produce_events(&bootstrap, &events_topic, first).await;
    wait_for(100).await;
    // The broker connection drops and stays unreachable while the second half is produced.
    forwarder.cut();
    produce_events(&bootstrap, &events_topic, second).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let during = received.lock().unwrap().len();
    assert_eq!(during, 100, "nothing can arrive while the connection is cut");
    forwarder.restore();
    wait_for(200).await;
    caught_up(&bootstrap, &consumer_group(&naming, &tenant), &events_topic).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = stage.metrics().clone();
    stage.shutdown().await;

    let got = received.lock().unwrap().clone();
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(distinct, ids(&all), "every event arrived");
    let duplicates = got.len() - distinct.len();
    let retries = m.retries_of("tls");
    eprintln!("mqtt cut: {} deliveries, {duplicates} duplicates, {retries} retries", got.len());
    assert!(retries >= 1, "the cut made attempts fail");
    assert!(duplicates as u64 <= retries, "a duplicate needs a retry: {duplicates} > {retries}");
    assert_eq!(m.sent_of("tls"), 200);
    assert_eq!(m.failed_of("tls", "timeout") + m.failed_of("tls", "broker"), retries);
}

#[tokio::test]
async fn events_of_aborted_transactions_are_never_delivered() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "outputs read committed") else { return };
    let tenant = TenantId::new(geostream_tests::unique("outx")).unwrap();
    let naming = Naming::default();
    let events_topic = naming.topic(&tenant, TopicKind::Events);
    create_topics(&bootstrap, &[(&events_topic, 1), (&naming.topic(&tenant, TopicKind::Deadletter), 1)]).await;
    let all = events(30);
    // As the processor writes them: in transactions; the middle one is aborted.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", geostream_tests::unique("outputs-test-tx"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    for (i, chunk) in all.chunks(10).enumerate() {
        producer.begin_transaction().unwrap();
        for e in chunk {
            let payload = serde_json::to_vec(e).unwrap();
            let key = e.track.as_ref().unwrap().as_str().to_owned();
            producer.send(BaseRecord::to(&events_topic).key(&key).payload(&payload)).unwrap();
        }
        // Delivery reports are served by polling; abort needs them in.
        producer.flush(Duration::from_secs(30)).unwrap();
        if i == 1 {
            producer.abort_transaction(Duration::from_secs(30)).unwrap();
        } else {
            producer.commit_transaction(Duration::from_secs(30)).unwrap();
        }
    }
    let receiver = Arc::new(Receiver::default());
    let addr = serve(Arc::clone(&receiver)).await;
    let hook = webhook("hook", &format!("http://{addr}/hook"), &[]);
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let stage = OutputsStage::start(settings(&tenant, &bootstrap, &[hook], 100), &telemetry).await.unwrap();
    caught_up(&bootstrap, &consumer_group(&naming, &tenant), &events_topic).await;
    let m = stage.metrics().clone();
    stage.shutdown().await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    let want = ids(all[..10].iter().chain(&all[20..]));
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(m.sent_of("hook"), 20);
    let text = telemetry.encode().unwrap();
    let lags: Vec<&str> = text.lines().filter(|l| l.starts_with("geostream_outputs_consumer_lag{")).collect();
    assert!(lags.len() == 1 && lags[0].ends_with(" 0"), "transaction markers are not lag: {lags:?}");
}

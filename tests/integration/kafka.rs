//! Apache Kafka: observations go in with an idempotent producer keyed by track and come back out
//! through a consumer group, every one counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use geostream_model::{FeedId, Naming, Observation, RecordId, TenantId, TopicKind, TrackId};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TRACKS: usize = 12;
const PER_TRACK: usize = 250;
const PARTITIONS: i32 = 4;

fn observations(feed: &FeedId) -> Vec<Observation> {
    let t0 = time::macros::datetime!(2024-05-01 12:00:00 UTC);
    let mut out = Vec::new();
    for track in 0..TRACKS {
        for i in 0..PER_TRACK {
            let lon = 151.2 + track as f64 * 0.01 + i as f64 * 1e-4;
            let lat = -33.85 - i as f64 * 1e-4;
            let mut attrs = serde_json::Map::new();
            attrs.insert("sog_mps".into(), serde_json::json!(i as f64 * 0.1));
            let t = t0 + time::Duration::seconds(i as i64);
            out.push(
                Observation::try_new(
                    feed.clone(),
                    Some(TrackId::new(format!("{:09}", 503_000_000 + track)).expect("track id")),
                    t,
                    t + time::Duration::milliseconds(250),
                    geojson::Geometry::new_point([lon, lat]),
                    attrs,
                )
                .expect("valid observation"),
            );
        }
    }
    out
}

#[tokio::test]
async fn observations_round_trip_through_kafka_with_a_consumer_group() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "kafka round trip") else { return };
    let tenant: TenantId = geostream_tests::unique("smoke").parse().expect("tenant");
    let topic = Naming::new("").expect("naming").topic(&tenant, TopicKind::Observations);

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for r in created {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");

    let feed: FeedId = "ais-sydney".parse().expect("feed id");
    let sent = observations(&feed);
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    let deliveries: Vec<_> = sent
        .iter()
        .map(|o| {
            let payload = serde_json::to_vec(o).expect("serialize");
            let key = o.kafka_key().into_owned();
            let producer = producer.clone();
            let topic = topic.clone();
            async move {
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                let delivered = producer.send(record, Duration::from_secs(30)).await;
                (key, delivered)
            }
        })
        .collect();
    for (key, delivered) in futures::future::join_all(deliveries).await {
        let (partition, _offset) =
            delivered.map(|d| (d.partition, d.offset)).unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
        let previous = partition_of_key.insert(key.clone(), partition);
        assert!(previous.is_none_or(|p| p == partition), "key {key} landed on two partitions");
    }
    assert_eq!(partition_of_key.len(), TRACKS);

    let group = format!("{}-readers", tenant.as_str());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");

    let mut received: BTreeMap<RecordId, Observation> = BTreeMap::new();
    let mut per_track_times: HashMap<String, Vec<time::OffsetDateTime>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while received.len() < sent.len() {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} records arrived", received.len(), sent.len()))
            .expect("consume");
        let key = std::str::from_utf8(msg.key().expect("key")).expect("utf8 key").to_owned();
        assert_eq!(partition_of_key[&key], msg.partition(), "consumer saw key {key} on another partition");
        let payload = msg.payload().expect("payload");
        // Any Kafka tool can read the records: the payload is plain GeoJSON.
        let feature: geojson::Feature = serde_json::from_slice(payload).expect("payload is a GeoJSON Feature");
        assert!(feature.geometry.is_some());
        let obs: Observation = serde_json::from_slice(payload).expect("payload is an Observation");
        assert_eq!(obs.track.as_ref().map(|t| t.as_str()), Some(key.as_str()));
        obs.validate().expect("a consumed observation is valid and its id matches its content");
        per_track_times.entry(key).or_default().push(obs.time);
        let dup = received.insert(obs.id, obs);
        assert!(dup.is_none(), "a record was delivered twice");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    let expected: BTreeMap<RecordId, Observation> = sent.into_iter().map(|o| (o.id, o)).collect();
    assert_eq!(received, expected, "every record comes back byte-for-byte equal");
    for (track, times) in per_track_times {
        assert!(times.windows(2).all(|w| w[0] < w[1]), "track {track} arrived out of order within its partition");
    }
    let unique_ids: HashSet<&RecordId> = received.keys().collect();
    assert_eq!(unique_ids.len(), TRACKS * PER_TRACK);

    // The group's committed offsets add up to the number of records: nothing left unread.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!("partition {} has no committed offset: {other:?}", e.partition()),
        })
        .sum();
    assert_eq!(total as usize, TRACKS * PER_TRACK);

    admin.delete_topics(&[&topic], &AdminOptions::new()).await.expect("delete topic");
}

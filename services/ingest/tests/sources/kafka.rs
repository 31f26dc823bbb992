//! The Kafka source against a real broker: every message value a payload, offsets committed after
//! the spool has the records, so a restart continues exactly where the first run stopped.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::common::{Expected, Harness, decode_expected, sample, service, spec, unique};

async fn produce(bootstrap: &str, topic: &str, features: &[Value]) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("acks", "all").create().unwrap();
    for f in features {
        let key = f["id"].as_str().unwrap();
        let value = serde_json::to_vec(f).unwrap();
        producer
            .send(FutureRecord::to(topic).key(key).payload(&value), Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic} at {bootstrap}: {e}"));
    }
}

#[tokio::test]
async fn kafka_offsets_follow_the_spool_across_a_restart() {
    let Some(bootstrap) = service("KAFKA_BOOTSTRAP", "kafka source") else { return };
    let topic = unique("gs-src-quakes");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let doc: Value =
        serde_json::from_slice(&std::fs::read(sample("usgs_all_week_2018-02-07.geojson")).unwrap()).unwrap();
    let features = doc["features"].as_array().unwrap().clone();
    let spec = spec(json!({
        "id": "quakes-kafka", "type": "kafka-geojson", "format": "geojson",
        "source": {"kind": "kafka", "bootstrap": bootstrap, "topic": topic,
                   "properties": {"session.timeout.ms": "10000"}},
        "mapping": {"track": "id", "time": "properties.time", "time_format": "unix_ms"}
    }));
    let mut expected = Expected::default();
    for f in &features {
        expected.add(&decode_expected(&spec, &serde_json::to_vec(f).unwrap()));
    }
    assert_eq!(expected.observations, 1707);

    let (first_part, second_part) = features.split_at(1000);
    produce(&bootstrap, &topic, first_part).await;
    let h = Harness::new(spec);
    let first = h.start();
    h.wait_for(1000, "first 1000 messages").await;
    first.stop().await;
    assert_eq!(h.pending(), 1000);

    produce(&bootstrap, &topic, second_part).await;
    let second = h.start();
    h.wait_for(1707, "the rest after a restart").await;
    second.stop().await;

    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected, "the restart read neither less nor more");
    spooled.assert_no_duplicates();
}

//! Mosquitto: QoS 1 publish and subscribe over MQTT 3.1.1, every message counted and in order.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const MESSAGES: usize = 200;

fn options(url: &str, client_id: &str) -> MqttOptions {
    let rest = url.strip_prefix("mqtt://").unwrap_or_else(|| panic!("MQTT_URL {url:?} must start with mqtt://"));
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    let port: u16 = port.trim_end_matches('/').parse().unwrap_or_else(|_| panic!("bad port in MQTT_URL {url:?}"));
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_clean_session(true);
    o
}

#[tokio::test]
async fn publish_and_receive_every_message_with_qos1() {
    let Some(url) = geostream_tests::service("MQTT_URL", "mqtt round trip") else { return };
    let prefix = geostream_tests::unique("geostream/smoke");
    let filter = format!("{prefix}/+/position");

    let (sub, mut sub_loop) = AsyncClient::new(options(&url, &geostream_tests::unique("sub")), 1000);
    sub.subscribe(&filter, QoS::AtLeastOnce).await.expect("subscribe");
    // Wait for the SUBACK so no publish can race ahead of the subscription.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                assert!(
                    ack.return_codes.iter().all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                    "{ack:?}"
                );
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber connection to {url}: {e}"),
            Err(_) => panic!("no SUBACK from {url} within 10s"),
        }
    }

    let (publisher, mut pub_loop) = AsyncClient::new(options(&url, &geostream_tests::unique("pub")), 1000);
    let pub_task = tokio::spawn(async move {
        let mut acked = 0usize;
        while acked < MESSAGES {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection: {e}"),
            }
        }
        acked
    });
    for i in 0..MESSAGES {
        let device = format!("dev{}", i % 4);
        let payload = serde_json::to_vec(&serde_json::json!({"seq": i, "lon": 151.2 + i as f64 * 1e-4, "lat": -33.86}))
            .expect("json");
        publisher
            .publish(format!("{prefix}/{device}/position"), QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }

    let mut seen = [false; MESSAGES];
    let mut last_seq_per_device = std::collections::HashMap::<String, i64>::new();
    let mut count = 0usize;
    while count < MESSAGES {
        let Ok(polled) = tokio::time::timeout(Duration::from_secs(30), sub_loop.poll()).await else {
            panic!("only {count} of {MESSAGES} messages arrived");
        };
        let event = polled.expect("subscriber poll");
        if let Event::Incoming(Packet::Publish(p)) = event {
            let device = p.topic.split('/').rev().nth(1).expect("device level in topic").to_owned();
            let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("json payload");
            let seq = v["seq"].as_i64().expect("seq");
            assert!(!seen[seq as usize], "message {seq} delivered twice");
            seen[seq as usize] = true;
            let last = last_seq_per_device.insert(device.clone(), seq).unwrap_or(-1);
            assert!(seq > last, "messages from {device} out of order: {seq} after {last}");
            count += 1;
        }
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(pub_task.await.expect("publisher task"), MESSAGES, "every QoS 1 publish was acknowledged");
    publisher.disconnect().await.ok();
    sub.disconnect().await.ok();
}

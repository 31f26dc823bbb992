//! The MQTT source against Mosquitto, over 3.1.1 and 5: topic captures, and messages published
//! while the source is stopped arriving after its restart (the persistent session).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Expected, Harness, PATIENCE, decode_expected, sample, service, spec, unique};

/// (host, port) of `MQTT_URL`.
fn broker(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("mqtt://").unwrap_or_else(|| panic!("MQTT_URL {url:?} must start with mqtt://"));
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    (host.to_owned(), port.parse().unwrap_or_else(|_| panic!("bad port in MQTT_URL {url:?}")))
}

/// USGS features, one GeoJSON Feature per message, with the network and event id in the topic.
fn messages(prefix: &str, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>, String, String)> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(sample("usgs_all_week_2018-02-07.geojson")).unwrap()).unwrap();
    doc["features"].as_array().unwrap()[range]
        .iter()
        .map(|f| {
            let id = f["id"].as_str().unwrap().to_owned();
            let net = f["properties"]["net"].as_str().unwrap().to_owned();
            (format!("{prefix}/{net}/{id}"), serde_json::to_vec(f).unwrap(), net, id)
        })
        .collect()
}

/// Publishes with QoS 1 and returns once the broker acknowledged every message.
async fn publish(url: &str, protocol: &str, msgs: &[(String, Vec<u8>, String, String)]) {
    let (host, port) = broker(url);
    let id = unique("gs-test-pub");
    if protocol == "5" {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let (client, mut el) = AsyncClient::new(MqttOptions::new(id, host, port), 10_000);
        for (topic, payload, ..) in msgs {
            client.publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
        }
        let mut acked = 0;
        while acked < msgs.len() {
            match tokio::time::timeout(PATIENCE, el.poll()).await.expect("publisher progresses") {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection to {url}: {e}"),
            }
        }
        client.disconnect().await.unwrap();
    } else {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let (client, mut el) = AsyncClient::new(MqttOptions::new(id, host, port), 10_000);
        for (topic, payload, ..) in msgs {
            client.publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
        }
        let mut acked = 0;
        while acked < msgs.len() {
            match tokio::time::timeout(PATIENCE, el.poll()).await.expect("publisher progresses") {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection to {url}: {e}"),
            }
        }
        client.disconnect().await.unwrap();
    }
}

/// Ends the broker's session of `client_id` (a clean-session connect), so test runs leave none.
async fn forget_session(url: &str, client_id: &str) {
    let (host, port) = broker(url);
    let mut o = rumqttc::MqttOptions::new(client_id, host, port);
    o.set_clean_session(true);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let _ = tokio::time::timeout(Duration::from_secs(10), el.poll()).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), el.poll()).await;
}

/// Waits until the source's SUBACK arrived (it records the subscribed filters then).
async fn wait_subscribed(h: &Harness) {
    let file = h.handle.state_dir.join("mqtt-subscriptions.json");
    let start = std::time::Instant::now();
    while !file.exists() {
        assert!(start.elapsed() < PATIENCE, "the mqtt source never subscribed ({} missing)", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn session_survives_a_restart(protocol: &str) {
    let Some(url) = service("MQTT_URL", &format!("mqtt {protocol} source")) else { return };
    let prefix = unique("gs-src").replace('-', "_");
    let client_id = unique("gs-ingest-test");
    let spec = spec(json!({
        "id": "quakes-mqtt", "type": "mqtt-geojson", "format": "geojson",
        "source": {
            "kind": "mqtt", "url": url, "topics": [format!("{prefix}/+/+")], "qos": 1,
            "protocol": protocol, "client_id": client_id,
            "username": "ingest", "password_ref": "mqtt-pass",
            "topic_template": format!("{prefix}/{{network}}/{{quake}}"), "track_from_topic": "quake"
        },
        // No track in the mapping: the track comes from the topic.
        "mapping": {"time": "properties.time", "time_format": "unix_ms", "attributes": {"mag": "properties.mag"}}
    }));
    let before = messages(&prefix, 0..150);
    let while_stopped = messages(&prefix, 150..200);
    let mut expected = Expected::default();
    for (_, payload, ..) in before.iter().chain(&while_stopped) {
        expected.add(&decode_expected(&spec, payload));
    }
    assert_eq!(expected.observations, 200);

    let h = Harness::new(spec);
    h.secret("mqtt-pass", "not-checked-by-the-test-broker");
    let first = h.start();
    wait_subscribed(&h).await;
    publish(&url, protocol, &before).await;
    h.wait_for(before.len() as u64, "messages while running").await;
    first.stop().await;

    // Queued by the broker for the stopped source's session.
    publish(&url, protocol, &while_stopped).await;
    let second = h.start();
    h.wait_for(expected.envelopes() as u64, "messages published while stopped").await;
    second.stop().await;
    forget_session(&url, &client_id).await;

    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected, "every message once: acked only after commit, none lost");
    spooled.assert_no_duplicates();
    let sent: BTreeMap<String, String> =
        before.iter().chain(&while_stopped).map(|(_, _, net, id)| (id.clone(), net.clone())).collect();
    for obs in &spooled.observations {
        let track = obs.track.as_ref().expect("track from the topic").as_str().to_owned();
        let net = sent.get(&track).unwrap_or_else(|| panic!("unexpected track {track}"));
        assert_eq!(obs.attributes.get("network"), Some(&Value::String(net.clone())), "topic capture as attribute");
        assert!(obs.attributes.contains_key("mag"));
    }
    let first_dead_or_obs = spooled.observations.len();
    assert_eq!(first_dead_or_obs, sent.len(), "one observation per distinct quake");
}

#[tokio::test]
async fn mqtt_311_session_survives_a_restart() {
    session_survives_a_restart("3.1.1").await;
}

#[tokio::test]
async fn mqtt_5_session_survives_a_restart() {
    session_survives_a_restart("5").await;
}

/// The TLS listener of the test broker (`MQTTS_URL`) with its CA and password (testenv makes both).
fn tls_broker(test: &str) -> Option<(String, String, String)> {
    let url = service("MQTTS_URL", test)?;
    let ca = service("MQTT_CA_FILE", test)?;
    let password_file = service("MQTT_PASSWORD_FILE", test)?;
    let password = std::fs::read_to_string(&password_file)
        .unwrap_or_else(|e| panic!("{test}: {password_file} (MQTT_PASSWORD_FILE) unreadable: {e}"));
    Some((url, ca, password.trim().to_owned()))
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_password_delivers_and_a_wrong_password_is_refused() {
    let Some(plain) = service("MQTT_URL", "mqtt tls source") else { return };
    let Some((url, ca, password)) = tls_broker("mqtt tls source") else { return };
    let prefix = unique("gs-tls").replace('-', "_");
    let client_id = unique("gs-ingest-tls");
    let make = |client: &str| {
        spec(json!({
            "id": "quakes-tls", "type": "mqtt-geojson", "format": "geojson",
            "source": {
                "kind": "mqtt", "url": url, "topics": [format!("{prefix}/+/+")], "qos": 1,
                "client_id": client, "ca_file": ca, "username": "geostream", "password_ref": "mqtt-pass",
                "topic_template": format!("{prefix}/{{network}}/{{quake}}"), "track_from_topic": "quake"
            },
            "mapping": {"time": "properties.time", "time_format": "unix_ms"}
        }))
    };
    let msgs = messages(&prefix, 0..40);
    let mut expected = Expected::default();
    for (_, payload, ..) in &msgs {
        expected.add(&decode_expected(&make(&client_id), payload));
    }

    // The right password over TLS: everything published on the plain listener arrives.
    let h = Harness::new(make(&client_id));
    h.secret("mqtt-pass", &password);
    let running = h.start();
    wait_subscribed(&h).await;
    publish(&plain, "3.1.1", &msgs).await;
    h.wait_for(expected.envelopes() as u64, "messages over TLS").await;
    running.stop().await;
    assert_eq!(h.source_errors(), 0, "the TLS handshake and the login succeeded first time");
    let spooled = h.into_spooled();
    assert_eq!(spooled.counts(), expected);
    spooled.assert_no_duplicates();

    // A wrong password: the broker refuses the connection, the source counts it and keeps trying,
    // and nothing is written.
    let bad = Harness::new(make(&unique("gs-ingest-badpw")));
    bad.secret("mqtt-pass", "not-the-password");
    let running = bad.start();
    let start = std::time::Instant::now();
    while bad.source_errors() < 2 {
        assert!(start.elapsed() < PATIENCE, "a refused login was never counted as a source error");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    assert_eq!(bad.pending(), 0);
    forget_session(&plain, &client_id).await;
}

//! The `mqtt` source: subscribe to a broker over MQTT 3.1.1 or 5, plain or TLS (`mqtts://`).
//!
//! Delivery: acknowledgements are manual. A QoS 1/2 message is acknowledged (PUBACK / PUBREC) only
//! once the batch it was decoded into is durable, and the session is persistent (clean session off,
//! a stable client id, and for MQTT 5 a session expiry of [`SESSION_EXPIRY_S`]), so the broker
//! redelivers what was not acknowledged and queues messages while ingest is down. A redelivered
//! message yields the same observation ids, so at-least-once never shows as duplicates downstream.
//!
//! Two tasks: one polls the client's event loop without pause (keepalives, reconnects with backoff,
//! subscriptions on every connect) and forwards publishes over a channel; the other takes every
//! publish already queued (up to [`BATCH_MAX_UNITS`]), decodes, commits, and acknowledges. So
//! keepalives go on while a batch is being fsynced.
//!
//! `topic_template` turns topic levels into source attributes ([`TopicTemplate`]); the pipeline
//! turns the `track_from_topic` capture into the track of records that carry none. Because the
//! broker keeps the session's subscriptions, the filters subscribed last time are remembered in
//! the feed's state directory and those no longer in the spec are unsubscribed; messages that still
//! arrive on a topic outside the spec's filters (queued before that) are acknowledged and dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geostream_model::{MqttProtocol, Source, topic_template_captures};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BATCH_MAX_UNITS, commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::pipeline::Batch;
use geostream_model::backoff::Backoff;

/// Seconds an MQTT 5 broker keeps the session (and queues messages) after ingest disconnects: a
/// week covers any planned outage without leaving sessions of deleted feeds around forever.
pub const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

/// Largest message accepted. MQTT 5 brokers are told and drop larger ones for this client; an
/// MQTT 3.1.1 broker cannot be told, and a larger message there fails the connection (logged).
const MAX_PACKET_BYTES: usize = 32 * 1024 * 1024;

/// Keepalive interval (rumqttc's v5 client refuses less than 5 s).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// How long the event loop gets to send the last acks and the DISCONNECT when the feed stops.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Seconds to wait for TCP, TLS and CONNACK.
const CONNECT_TIMEOUT_S: u64 = 10;

/// Unacknowledged QoS 1/2 messages an MQTT 5 broker may have in flight to us: lets a batch be
/// large (the broker still applies its own limit, 20 by default in Mosquitto).
const RECEIVE_MAXIMUM: u16 = 1000;

/// Client requests (acks, subscriptions) that can wait for the event loop. The MQTT packet id is
/// 16 bits, so no more acks than this can ever be owed: sending an ack never blocks for long.
const REQUEST_CAPACITY: usize = 65_536;

/// Publishes forwarded from the event loop to the batcher before the event loop waits.
const FORWARD_CAPACITY: usize = 4096;

/// Name of the file (in the feed's state directory) with the filters subscribed last time.
const SUBSCRIPTIONS_FILE: &str = "mqtt-subscriptions.json";

/// A broker address from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// Port; 1883 or 8883 when the URL has none.
    pub port: u16,
}

/// Parses a broker URL; the problem as text for a config error.
pub fn parse_broker_url(url: &str) -> Result<Broker, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL like mqtt://host:1883"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(format!("{url:?} has scheme {other:?}; use mqtt:// or mqtts://")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("{url:?} has credentials in it; use source.username and source.password_ref"));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{url:?}: unexpected {after:?} after the IPv6 host")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{url:?} has port {p:?}; ports are 1 to 65535")),
        },
    };
    Ok(Broker { tls, host: host.to_owned(), port })
}

/// One level of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    /// `+`: any one level, not captured.
    Any,
    /// `#`: this level and everything below it (also nothing), not captured.
    Rest,
}

/// A compiled `topic_template` (syntax in `geostream_model::Source::Mqtt`): `fleet/{device}/+/#`
/// matches `fleet/d7/gps/raw` with `device = d7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    levels: Vec<Level>,
}

impl TopicTemplate {
    /// Compiles a template; the problem as text (the model's validation wording).
    pub fn parse(template: &str) -> Result<Self, String> {
        topic_template_captures(template)?;
        let levels = template
            .split('/')
            .map(|l| match l {
                "+" => Level::Any,
                "#" => Level::Rest,
                _ => match l.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    Some(name) => Level::Capture(name.to_owned()),
                    None => Level::Literal(l.to_owned()),
                },
            })
            .collect();
        Ok(Self { levels })
    }

    /// The captures of `topic`, or `None` when the topic does not have the template's shape. With
    /// MQTT's rule for filters, a template starting with a wildcard or capture does not match a
    /// `$` topic (`$SYS/...`), and an empty level captures nothing.
    pub fn captures<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Literal(_))) {
            return None;
        }
        let mut out = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            if *level == Level::Rest {
                return Some(out);
            }
            let part = parts.next()?;
            match level {
                Level::Literal(l) if l != part => return None,
                Level::Capture(name) if !part.is_empty() => out.push((name.as_str(), part)),
                _ => {}
            }
        }
        parts.next().is_none().then_some(out)
    }
}

/// Whether `topic` matches the subscription `filter` (`+`, `#`, `$share/<group>/` prefixes).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/").and_then(|f| f.split_once('/')) {
        Some((_group, f)) => f,
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// A received publish of either protocol.
enum Inbound {
    V311(rumqttc::Publish),
    V5(m5::Publish),
}

impl Inbound {
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Inbound::V311(p) => std::borrow::Cow::Borrowed(p.topic.as_str()),
            Inbound::V5(p) => String::from_utf8_lossy(&p.topic),
        }
    }

    fn payload(&self) -> &Bytes {
        match self {
            Inbound::V311(p) => &p.payload,
            Inbound::V5(p) => &p.payload,
        }
    }
}

/// The client handle of either protocol, for acknowledgements.
enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    /// Queues a DISCONNECT behind everything already queued (the session stays at the broker).
    fn disconnect(&self) {
        let queued = match self {
            Client::V311(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        };
        if !queued {
            tracing::debug!("mqtt: the event loop is gone; no DISCONNECT sent");
        }
    }

    async fn ack(&self, msg: &Inbound) -> bool {
        match (self, msg) {
            (Client::V311(c), Inbound::V311(p)) => c.ack(p).await.is_ok(),
            (Client::V5(c), Inbound::V5(p)) => c.ack(p).await.is_ok(),
            _ => false,
        }
    }
}

/// What both event-loop drivers share.
struct Session {
    handle: FeedHandle,
    topics: Vec<String>,
    qos: u8,
    state_file: PathBuf,
    /// Stops the event loop; the batcher fires it once its last acks are queued.
    stop: CancellationToken,
    forward: mpsc::Sender<Inbound>,
}

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::Mqtt {
        url,
        topics,
        qos,
        protocol,
        client_id,
        username,
        password_ref,
        ca_file,
        topic_template,
        track_from_topic: _, // applied by the pipeline
    } = &handle.spec.source
    else {
        return Err(handle.config_error("not an mqtt source"));
    };
    let broker = parse_broker_url(url).map_err(|p| handle.config_error(format!("source.url: {p}")))?;
    if topics.is_empty() {
        return Err(handle.config_error("source.topics is empty; subscribe to at least one topic"));
    }
    if *qos > 2 {
        return Err(handle.config_error(format!("source.qos is {qos}; MQTT QoS is 0, 1 or 2")));
    }
    let template = topic_template
        .as_deref()
        .map(TopicTemplate::parse)
        .transpose()
        .map_err(|p| handle.config_error(format!("source.topic_template: {p}")))?;
    let client_id =
        client_id.clone().unwrap_or_else(|| format!("geostream-{}-{}", handle.tenant.as_str(), handle.id()));
    if client_id.trim().is_empty() {
        // rumqttc panics on a persistent session without a client id; refuse it here.
        return Err(handle.config_error("source.client_id is empty; a persistent session needs a stable id"));
    }
    let credentials = match (username, password_ref) {
        (Some(user), Some(secret)) => Some((user.clone(), handle.secret(secret)?)),
        (Some(user), None) => Some((user.clone(), String::new())),
        (None, Some(_)) => return Err(handle.config_error("source.password_ref is set without source.username")),
        (None, None) => None,
    };
    let transport = if broker.tls {
        Some(Transport::tls_with_config(tls_config(ca_file.as_deref()).map_err(|p| handle.config_error(p))?))
    } else if ca_file.is_some() {
        return Err(handle.config_error("source.ca_file is set but source.url is not mqtts://; TLS needs mqtts://"));
    } else {
        None
    };
    let mut pipeline = handle.pipeline()?;

    let (forward, mut inbound) = mpsc::channel(FORWARD_CAPACITY);
    let stop = CancellationToken::new();
    let session = Session {
        handle: handle.clone(),
        topics: topics.clone(),
        qos: *qos,
        state_file: handle.state_dir.join(SUBSCRIPTIONS_FILE),
        stop: stop.clone(),
        forward,
    };
    tracing::info!(
        feed = %handle.id(), host = %broker.host, port = broker.port, tls = broker.tls, %client_id,
        protocol = ?protocol, topics = ?topics, qos, "mqtt: starting"
    );
    let (client, driver) = match protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, broker.host.clone(), broker.port);
            o.set_keep_alive(KEEPALIVE)
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
                .set_request_channel_capacity(REQUEST_CAPACITY);
            if let Some((u, p)) = &credentials {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            let mut net = rumqttc::NetworkOptions::new();
            net.set_connection_timeout(CONNECT_TIMEOUT_S);
            eventloop.set_network_options(net);
            let c = client.clone();
            (Client::V311(client), tokio::spawn(async move { drive_v311(eventloop, c, session).await }))
        }
        MqttProtocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, broker.host.clone(), broker.port);
            o.set_keep_alive(KEEPALIVE)
                .set_clean_start(false)
                .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
                .set_receive_maximum(Some(RECEIVE_MAXIMUM))
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
                .set_manual_acks(true)
                .set_connection_timeout(CONNECT_TIMEOUT_S)
                .set_request_channel_capacity(REQUEST_CAPACITY);
            if let Some((u, p)) = &credentials {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, REQUEST_CAPACITY);
            let c = client.clone();
            (Client::V5(client), tokio::spawn(async move { drive_v5(eventloop, c, session).await }))
        }
    };

    let id = handle.id().to_owned();
    let mut result = Ok(());
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            m = inbound.recv() => m,
        };
        let Some(first) = first else {
            if !cancel.is_cancelled() {
                result = Err(handle.io_error("mqtt event loop", "stopped unexpectedly"));
            }
            break;
        };
        let mut messages = vec![first];
        while messages.len() < BATCH_MAX_UNITS {
            match inbound.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        let received = now();
        for msg in &messages {
            let topic = msg.topic();
            if !topics.iter().any(|f| filter_matches(f, &topic)) {
                tracing::debug!(feed = %id, %topic, "mqtt: message on a topic no longer subscribed; dropped");
                continue;
            }
            let mut ctx = pipeline.context(received, format!("mqtt topic {topic}"));
            if let Some(captures) = template.as_ref().and_then(|t| t.captures(&topic)) {
                for (name, value) in captures {
                    ctx.source_attributes.insert(name.to_owned(), Value::String(value.to_owned()));
                }
            }
            pipeline.decode_payload(msg.payload(), &ctx, &mut batch);
        }
        match commit(&handle, &batch, &cancel).await {
            Ok(true) => {}
            // Not durable: not acknowledged, so the broker delivers these again.
            Ok(false) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        for msg in &messages {
            if !client.ack(msg).await {
                break;
            }
        }
    }
    if result.is_ok() {
        // What the codec still holds (an NMEA epoch) came from messages already acknowledged.
        let mut batch = Batch::default();
        pipeline.finish(&pipeline.context(now(), "mqtt"), &mut batch);
        if let Err(e) = commit(&handle, &batch, &cancel).await {
            result = Err(e);
        }
    }
    // The DISCONNECT queues behind the acks, so the event loop sends them first and then ends.
    client.disconnect();
    stop.cancel();
    drop(inbound);
    let mut driver = driver;
    match tokio::time::timeout(DISCONNECT_TIMEOUT, &mut driver).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(feed = %id, error = %e, "mqtt: event loop task failed"),
        Err(_) => {
            // A broker that stopped answering: what was not acknowledged is delivered again.
            tracing::warn!(feed = %id, "mqtt: no clean disconnect in time; closing the connection");
            driver.abort();
        }
    }
    handle.metrics.set_up(&id, false);
    result
}

/// The rustls configuration (ring provider): the CA file's certificates, or the web roots. The
/// problem as text for a config error.
fn tls_config(ca_file: Option<&str>) -> Result<TlsConfiguration, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let iter = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("source.ca_file {path}: cannot be read as PEM: {e}"))?;
            for cert in iter {
                let cert = cert.map_err(|e| format!("source.ca_file {path}: bad PEM certificate: {e}"))?;
                roots.add(cert).map_err(|e| format!("source.ca_file {path}: unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("source.ca_file {path}: holds no CERTIFICATE block"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

impl Session {
    fn id(&self) -> &str {
        self.handle.id()
    }

    fn connected(&self, session_present: bool) {
        tracing::info!(feed = %self.id(), session_present, "mqtt: connected");
        self.handle.metrics.set_up(self.id(), true);
    }

    /// Filters subscribed by an earlier run that the spec no longer has.
    fn stale_filters(&self) -> Vec<String> {
        read_filters(&self.state_file).into_iter().filter(|f| !self.topics.contains(f)).collect()
    }

    fn subscribed(&self) {
        if let Err(e) = write_filters(&self.state_file, &self.topics) {
            // Only costs an unsubscribe of filters dropped from the spec later.
            tracing::warn!(feed = %self.id(), file = %self.state_file.display(), error = %e, "mqtt: subscriptions not saved");
        }
    }

    fn refused(&self, filter: Option<&String>, why: &str) {
        self.handle.metrics.source_error(self.id());
        tracing::error!(
            feed = %self.id(), filter = filter.map_or("?", String::as_str), reason = why,
            "mqtt: the broker refused the subscription (check the broker's ACL for this client)"
        );
    }

    /// Logs and counts a connection failure and waits before the next attempt; `false` if stopped.
    async fn failed(&self, error: &(dyn std::fmt::Display + Sync), backoff: &mut Backoff) -> bool {
        self.handle.metrics.source_error(self.id());
        let delay = backoff.next_delay();
        tracing::warn!(
            feed = %self.id(), error = %error, failures = backoff.failures(), retry_in_ms = delay.as_millis() as u64,
            "mqtt: connection failed; reconnecting"
        );
        sleep_or_cancel(delay, &self.stop).await
    }

    /// Hands a publish to the batcher (dropped, unacknowledged, once stopping).
    async fn forward(&self, msg: Inbound) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            _ = self.forward.send(msg) => {}
        }
    }
}

fn qos_v311(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        2 => rumqttc::QoS::ExactlyOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        2 => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
        _ => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

async fn drive_v311(mut eventloop: rumqttc::EventLoop, client: rumqttc::AsyncClient, s: Session) {
    use rumqttc::{ConnectionError, Event, Packet, StateError, SubscribeFilter, SubscribeReasonCode};
    let mut backoff = backoff();
    let mut connected = false;
    loop {
        // rumqttc's poll is not cancel-safe once connected (a dropped poll can leave half a packet
        // on the wire), so a connected loop ends only when the broker closes the connection after
        // the DISCONNECT the batcher queues behind its acks. Connecting and backing off can be
        // dropped at any point.
        let event = if connected {
            eventloop.poll().await
        } else {
            tokio::select! {
                () = s.stop.cancelled() => break,
                e = eventloop.poll() => e,
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                s.connected(ack.session_present);
                backoff.reset();
                for stale in s.stale_filters() {
                    let _ = client.try_unsubscribe(stale);
                }
                let filters = s.topics.iter().map(|t| SubscribeFilter::new(t.clone(), qos_v311(s.qos)));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(feed = %s.id(), error = %e, "mqtt: subscribe could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.iter().all(|c| matches!(c, SubscribeReasonCode::Success(_))) {
                    s.subscribed();
                }
                for (i, code) in ack.return_codes.iter().enumerate() {
                    if matches!(code, SubscribeReasonCode::Failure) {
                        s.refused(s.topics.get(i), "failure (0x80)");
                    }
                }
            }
            // Once stopping, a publish is dropped unacknowledged: the broker delivers it again.
            Ok(Event::Incoming(Packet::Publish(p))) => s.forward(Inbound::V311(p)).await,
            // Closing now could reset the connection before the broker has read the acks sent
            // just before (a publish arriving at a closed socket makes the kernel answer with a
            // reset, and the broker then drops what it had not read yet). So the broker closes:
            // polling goes on until it has, which ends in an error below.
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {}
            Ok(_) => {}
            Err(e) => {
                connected = false;
                if s.stop.is_cancelled() {
                    break;
                }
                if let ConnectionError::MqttState(StateError::Unsolicited(pkid)) = &e {
                    // A PUBREL for a QoS 2 message whose PUBREC went out on a connection that
                    // died: rumqttc forgot the packet id on reconnect and would fail on the
                    // broker's retransmission forever. Completing it ourselves ends the loop.
                    eventloop.pending.push_back(rumqttc::Request::PubComp(rumqttc::PubComp::new(*pkid)));
                }
                if !s.failed(&e, &mut backoff).await {
                    break;
                }
            }
        }
    }
}

async fn drive_v5(mut eventloop: rumqttc::v5::EventLoop, client: rumqttc::v5::AsyncClient, s: Session) {
    use m5::{Filter, Packet, RetainForwardRule, SubscribeReasonCode};
    use rumqttc::v5::{ConnectionError, Event, StateError};
    let mut backoff = backoff();
    let mut connected = false;
    loop {
        // rumqttc's poll is not cancel-safe once connected (a dropped poll can leave half a packet
        // on the wire), so a connected loop ends only when the broker closes the connection after
        // the DISCONNECT the batcher queues behind its acks. Connecting and backing off can be
        // dropped at any point.
        let event = if connected {
            eventloop.poll().await
        } else {
            tokio::select! {
                () = s.stop.cancelled() => break,
                e = eventloop.poll() => e,
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                s.connected(ack.session_present);
                backoff.reset();
                for stale in s.stale_filters() {
                    let _ = client.try_unsubscribe(stale);
                }
                let filters = s.topics.iter().map(|t| {
                    let mut f = Filter::new(t.clone(), qos_v5(s.qos));
                    // Re-subscribing on every connect must not replay retained messages each time.
                    f.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
                    f
                });
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(feed = %s.id(), error = %e, "mqtt: subscribe could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.iter().all(|c| matches!(c, SubscribeReasonCode::Success(_))) {
                    s.subscribed();
                }
                for (i, code) in ack.return_codes.iter().enumerate() {
                    if !matches!(code, SubscribeReasonCode::Success(_)) {
                        s.refused(s.topics.get(i), &format!("{code:?}"));
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => s.forward(Inbound::V5(p)).await,
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {}
            Ok(_) => {}
            Err(e) => {
                connected = false;
                if s.stop.is_cancelled() {
                    break;
                }
                if let ConnectionError::MqttState(StateError::Unsolicited(pkid)) = &e {
                    // See drive_v311: complete a QoS 2 exchange rumqttc forgot on reconnect.
                    eventloop.pending.push_back(rumqttc::v5::Request::PubComp(m5::PubComp::new(*pkid, None)));
                }
                if !s.failed(&e, &mut backoff).await {
                    break;
                }
            }
        }
    }
}

fn read_filters(path: &Path) -> Vec<String> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_filters(path: &Path, filters: &[String]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(filters).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caps(template: &str, topic: &str) -> Option<Vec<(String, String)>> {
        let t = TopicTemplate::parse(template).unwrap();
        t.captures(topic).map(|v| v.into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
    }

    fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect())
    }

    #[test]
    fn template_captures_named_levels_only() {
        assert_eq!(caps("fleet/{device_id}/position", "fleet/d7/position"), pairs(&[("device_id", "d7")]));
        assert_eq!(caps("{org}/{site}/x", "acme/berlin/x"), pairs(&[("org", "acme"), ("site", "berlin")]));
        assert_eq!(caps("a/+/{id}", "a/anything/42"), pairs(&[("id", "42")]), "+ matches without capture");
        assert_eq!(caps("a/b", "a/b"), pairs(&[]), "literal template, no captures");
    }

    #[test]
    fn template_needs_the_exact_shape() {
        assert_eq!(caps("fleet/{d}/position", "fleet/d7/speed"), None, "literal differs");
        assert_eq!(caps("fleet/{d}/position", "fleet/d7"), None, "topic too short");
        assert_eq!(caps("fleet/{d}/position", "fleet/d7/position/extra"), None, "topic too long");
        assert_eq!(caps("fleet/{d}", "Fleet/d7"), None, "levels are case-sensitive");
        assert_eq!(caps("fleet/{d}", "fleet/d7/"), None, "a trailing slash is an extra (empty) level");
    }

    #[test]
    fn hash_matches_the_rest_including_nothing() {
        assert_eq!(caps("fleet/{d}/#", "fleet/d7/gps/raw/x"), pairs(&[("d", "d7")]));
        assert_eq!(caps("fleet/{d}/#", "fleet/d7"), pairs(&[("d", "d7")]), "# also matches the parent level");
        assert_eq!(caps("#", "any/thing"), pairs(&[]));
        assert_eq!(caps("fleet/{d}/#", "other/d7/x"), None);
    }

    #[test]
    fn empty_levels_capture_nothing_and_dollar_topics_need_a_literal_first_level() {
        assert_eq!(caps("fleet/{d}/pos", "fleet//pos"), pairs(&[]), "matches, but an empty id is no attribute");
        assert_eq!(caps("{first}/x", "$SYS/x"), None);
        assert_eq!(caps("+/x", "$SYS/x"), None);
        assert_eq!(caps("#", "$SYS/broker/uptime"), None);
        assert_eq!(caps("$SYS/{what}", "$SYS/uptime"), pairs(&[("what", "uptime")]));
    }

    #[test]
    fn invalid_templates_are_refused_with_the_models_reason() {
        for bad in ["", "a/{b", "a/x{b}", "a/{}/c", "a/#/c", "a/b+", "{x}/{x}"] {
            assert!(TopicTemplate::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(TopicTemplate::parse("a/{b}/+/#").is_ok());
    }

    #[test]
    fn subscription_filters_match_like_a_broker() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/c"));
        assert!(filter_matches("a/+/c", "a/x/c"));
        assert!(!filter_matches("a/+", "a/x/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/x/y"));
        assert!(!filter_matches("a/#", "b/x"));
        assert!(filter_matches("#", "x"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(filter_matches("$share/g1/fleet/+", "fleet/d1"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }

    #[test]
    fn broker_urls() {
        let b = |tls, host: &str, port| Broker { tls, host: host.to_owned(), port };
        assert_eq!(parse_broker_url("mqtt://broker:1884").unwrap(), b(false, "broker", 1884));
        assert_eq!(parse_broker_url("mqtts://broker.example.com").unwrap(), b(true, "broker.example.com", 8883));
        assert_eq!(parse_broker_url("MQTT://h/").unwrap(), b(false, "h", 1883));
        assert_eq!(parse_broker_url("mqtt://[::1]:11883").unwrap(), b(false, "::1", 11883));
        assert_eq!(parse_broker_url("mqtts://[fe80::1]").unwrap(), b(true, "fe80::1", 8883));
        for (bad, why) in [
            ("broker:1883", "not a URL"),
            ("http://b:1", "use mqtt://"),
            ("mqtt://u:p@b:1883", "credentials"),
            ("mqtt://:1883", "no host"),
            ("mqtt://b:0", "ports are"),
            ("mqtt://b:99999", "ports are"),
            ("mqtt://[::1", "unclosed"),
        ] {
            let e = parse_broker_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_uses_the_web_roots_or_a_ca_file_and_names_the_file_when_it_is_unusable() {
        assert!(matches!(tls_config(None).unwrap(), TlsConfiguration::Rustls(_)));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = tls_config(missing.to_str()).err().unwrap();
        assert!(e.contains("missing.pem") && e.contains("cannot be read"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(empty.to_str()).err().unwrap();
        assert!(e.contains("holds no CERTIFICATE block"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let e = tls_config(bad.to_str()).err().unwrap();
        assert!(e.contains("bad.pem"), "{e}");
    }

    #[test]
    fn remembered_filters_round_trip_and_missing_or_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(SUBSCRIPTIONS_FILE);
        assert!(read_filters(&path).is_empty());
        write_filters(&path, &["a/#".to_owned(), "b/+".to_owned()]).unwrap();
        assert_eq!(read_filters(&path), ["a/#", "b/+"]);
        std::fs::write(&path, "{oops").unwrap();
        assert!(read_filters(&path).is_empty());
    }
}

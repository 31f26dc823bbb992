//! The MQTT output: each event published to a topic rendered from a template, at QoS 0 or 1.
//!
//! rumqttc reports a publish only as a packet id (`Outgoing::Publish`) and its `PubAck`, so the
//! event loop task below maps them back to our requests: requests leave in order, so the n-th
//! outgoing publish is the n-th request. On a connection error rumqttc moves what was in flight
//! and what waited in its request channel into a pending list, which a clean session then
//! drops; the task counts those as lost (the sender publishes them again), and requests made
//! after the error keep their place in the count.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use geostream_model::TenantId;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request, TlsConfiguration, Transport,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::OutputError;
use crate::render::TopicTemplate;
use crate::retry::{FailReason, Failure, Outcome};
use crate::secrets::Secrets;
use crate::spec::{MqttTarget, OutputName};
use crate::stage::Item;

const KEEPALIVE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT_S: u64 = 10;
const RECONNECT_WAIT: Duration = Duration::from_secs(1);
const REQUEST_CAPACITY: usize = 1024;

#[derive(Default)]
struct Ledger {
    /// Publish requests handed to the client so far.
    requested: u64,
    /// Publish requests the event loop wrote out or dropped so far.
    sent: u64,
    /// Packet id → request number, for QoS 1 publishes awaiting their PubAck.
    inflight: HashMap<u16, u64>,
    /// Finished requests: true = delivered, false = lost with the connection.
    done: HashMap<u64, bool>,
    /// Requests whose sender stopped waiting (timed out); their result is discarded.
    abandoned: HashSet<u64>,
    last_error: Option<String>,
}

impl Ledger {
    fn finish(&mut self, seq: u64, delivered: bool) {
        if !self.abandoned.remove(&seq) {
            self.done.insert(seq, delivered);
        }
    }
}

struct Shared {
    ledger: Mutex<Ledger>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Publishes events of one output.
pub struct MqttSender {
    client: AsyncClient,
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
    stop: CancellationToken,
    tenant: TenantId,
    topic: TopicTemplate,
    qos: QoS,
    retain: bool,
    timeout: Duration,
}

impl MqttSender {
    /// Creates the client and starts its event loop (which connects in the background).
    pub fn new(
        name: &OutputName,
        tenant: &TenantId,
        target: &MqttTarget,
        secrets: &Secrets,
    ) -> Result<Self, OutputError> {
        let config = |problem: String| OutputError::Config { output: name.to_string(), problem };
        let client_id = target.client_id.clone().unwrap_or_else(|| format!("geostream-{tenant}-outputs-{name}"));
        let mut o = MqttOptions::new(client_id, target.broker.host.clone(), target.broker.port);
        // A clean session: what a lost connection dropped is published again by the sender, so
        // the broker must not also replay an old session.
        o.set_keep_alive(KEEPALIVE).set_clean_session(true).set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some(user) = &target.username {
            let password = match &target.password_ref {
                Some(r) => secrets.get(r).map_err(config)?,
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if target.broker.tls {
            let tls = tls_config(target.ca_file.as_deref()).map_err(config)?;
            o.set_transport(Transport::tls_with_config(tls));
        }
        let (client, mut eventloop) = AsyncClient::new(o, REQUEST_CAPACITY);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(CONNECT_TIMEOUT_S);
        eventloop.set_network_options(net);
        let shared = Arc::new(Shared { ledger: Mutex::new(Ledger::default()), changed: Notify::new() });
        let stop = CancellationToken::new();
        let driver = tokio::spawn(drive(eventloop, Arc::clone(&shared), stop.clone(), name.to_string()));
        Ok(Self {
            client,
            shared,
            driver: Some(driver),
            stop,
            tenant: tenant.clone(),
            topic: target.topic.clone(),
            qos: if target.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce },
            retain: target.retain,
            timeout: target.timeout,
        })
    }

    /// The topic `item` goes to.
    pub fn topic_for(&self, item: &Item) -> String {
        self.topic.render(&self.tenant, &item.event)
    }

    /// One attempt: publish and wait for the PubAck (QoS 1) or for the packet to be written (QoS 0).
    pub async fn send(&self, item: &Item) -> Outcome {
        let topic = self.topic_for(item);
        let fail = |reason, detail: String| Outcome::Failed(Failure { reason, detail, retry_after: None });
        let seq = {
            let mut l = self.shared.lock();
            // Under the lock, so the request number and the channel order agree.
            if let Err(e) = self.client.try_publish(topic.as_str(), self.qos, self.retain, item.raw.to_vec()) {
                return fail(FailReason::Broker, format!("publish to {topic}: {e}"));
            }
            l.requested += 1;
            l.requested - 1
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let notified = self.shared.changed.notified();
            {
                let mut l = self.shared.lock();
                match l.done.remove(&seq) {
                    Some(true) => return Outcome::Delivered,
                    Some(false) => {
                        let why = l.last_error.clone().unwrap_or_default();
                        return fail(
                            FailReason::Broker,
                            format!("publish to {topic}: connection lost before the ack ({why})"),
                        );
                    }
                    None => {}
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut l = self.shared.lock();
                if let Some(delivered) = l.done.remove(&seq) {
                    if delivered {
                        return Outcome::Delivered;
                    }
                } else {
                    l.abandoned.insert(seq);
                }
                let why = l.last_error.clone().map(|e| format!(" (last error: {e})")).unwrap_or_default();
                return fail(
                    FailReason::Timeout,
                    format!("publish to {topic}: no acknowledgement in {:?}{why}", self.timeout),
                );
            }
        }
    }

    /// Disconnects and stops the event loop.
    pub async fn close(mut self) {
        let _ = self.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stop.cancel();
        if let Some(d) = self.driver.take() {
            let _ = d.await;
        }
    }
}

impl Drop for MqttSender {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn drive(mut eventloop: EventLoop, shared: Arc<Shared>, stop: CancellationToken, output: String) {
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => return,
            p = eventloop.poll() => p,
        };
        match polled {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut l = shared.lock();
                let seq = l.sent;
                l.sent += 1;
                if pkid == 0 {
                    l.finish(seq, true);
                } else {
                    l.inflight.insert(pkid, seq);
                }
                drop(l);
                shared.changed.notify_waiters();
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut l = shared.lock();
                if let Some(seq) = l.inflight.remove(&ack.pkid) {
                    l.finish(seq, true);
                }
                drop(l);
                shared.changed.notify_waiters();
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(output = %output, "mqtt output connected");
                shared.lock().last_error = None;
            }
            Ok(_) => {}
            Err(e) => {
                {
                    let mut l = shared.lock();
                    // What rumqttc just moved to its pending list: the publishes in flight (known
                    // to us by packet id) and, after them, requests that had not left yet.
                    let pending_publishes =
                        eventloop.pending.iter().filter(|r| matches!(r, Request::Publish(_))).count() as u64;
                    let inflight: Vec<u64> = l.inflight.drain().map(|(_, seq)| seq).collect();
                    let unsent = pending_publishes.saturating_sub(inflight.len() as u64);
                    for seq in inflight {
                        l.finish(seq, false);
                    }
                    for _ in 0..unsent {
                        let seq = l.sent;
                        l.sent += 1;
                        l.finish(seq, false);
                    }
                    // Dropped here as a clean session would; the senders publish them again.
                    eventloop.pending.clear();
                    l.last_error = Some(e.to_string());
                }
                shared.changed.notify_waiters();
                tracing::warn!(output = %output, error = %e, "mqtt output disconnected; reconnecting");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RECONNECT_WAIT) => {}
                }
            }
        }
    }
}

/// rustls with the ring provider: the CA file's certificates, or the web PKI roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<TlsConfiguration, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let shown = path.display();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("mqtt.ca_file {shown}: cannot be read as PEM: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("mqtt.ca_file {shown}: bad PEM certificate: {e}"))?;
                roots.add(cert).map_err(|e| format!("mqtt.ca_file {shown}: unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("mqtt.ca_file {shown}: holds no CERTIFICATE block"));
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

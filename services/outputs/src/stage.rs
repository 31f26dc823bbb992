//! The Kafka loop: events from `<tenant>.events` (read committed, consumer group
//! `geostream-<tenant>-outputs`) to every output whose filter matches.
//!
//! One batch is in flight at a time. All outputs work on it concurrently, each in event order:
//! webhooks and MQTT one event at a time (the next is not sent before the previous settled),
//! Kafka all at once through its idempotent producer. An event settles when delivered or
//! dead-lettered; the batch's offsets are committed only when every output settled every
//! event routed to it. A crash or stop before the commit redelivers the batch, so receivers see
//! at least once; duplicates are confined to the batch in flight.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geostream_kafka::Kept;
use geostream_model::backoff::Backoff;
use geostream_model::time::OffsetDateTime;
use geostream_model::{DeadLetter, Event, Naming, ReasonCode, Stage, TenantId, TopicKind};
use geostream_telemetry::{Health, Telemetry};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::OutputError;
use crate::kafka::KafkaSender;
use crate::metrics::{OutputLabel, OutputMetrics, OutputReasonLabel, PartitionLabel};
use crate::mqtt::MqttSender;
use crate::retry::{Outcome, Step, decide};
use crate::secrets::Secrets;
use crate::spec::{OutputSpec, Target};
use crate::webhook::WebhookSender;

/// First wait of a retry; doubles per failure up to the output's `max_backoff`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// With no events for this long, offsets that only moved past transaction markers are committed.
const IDLE_COMMIT: Duration = Duration::from_secs(1);

/// Timeout of producing a dead letter (retried until it succeeds or the stage stops).
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the outputs need, already validated by the binary's config.
#[derive(Debug, Clone)]
pub struct OutputsSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic naming.
    pub naming: Naming,
    /// librdkafka properties of the pipeline's cluster, including `bootstrap.servers`.
    pub kafka: BTreeMap<String, String>,
    /// The outputs.
    pub outputs: Vec<OutputSpec>,
    /// Directory of secret files (`GEOSTREAM_SECRET_<NAME>` variables are the fallback).
    pub secrets_dir: Option<PathBuf>,
    /// Most events per batch: also the most a crash can redeliver.
    pub batch_max_records: usize,
    /// How long a batch waits for more events after its first one.
    pub linger: Duration,
}

/// An event as consumed, shared by the outputs it is routed to.
#[derive(Debug)]
pub struct Item {
    /// The parsed event (routing, topics, metrics).
    pub event: Event,
    /// The record value as consumed: what is delivered, byte for byte.
    pub raw: Vec<u8>,
    /// The record key (the Kafka output keeps it).
    pub key: Option<Vec<u8>>,
    /// `topic/partition/offset`, for logs and dead-letter details.
    pub position: String,
}

enum Sender {
    Webhook(WebhookSender),
    Mqtt(MqttSender),
    Kafka(KafkaSender),
}

struct Output {
    spec: OutputSpec,
    sender: Sender,
}

/// The running loop; [`OutputsStage::shutdown`] stops it.
pub struct OutputsStage {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    batches: Arc<AtomicU64>,
    metrics: OutputMetrics,
}

impl OutputsStage {
    /// Resolves secrets, creates the clients (MQTT connects in the background) and starts the loop.
    pub async fn start(settings: OutputsSettings, telemetry: &Telemetry) -> Result<OutputsStage, OutputError> {
        let metrics = OutputMetrics::default();
        telemetry.with_registry(|r| metrics.register(r));
        let health = telemetry.health().clone();
        health.set("outputs", false, "not subscribed yet");
        let secrets = Secrets::new(settings.secrets_dir.clone());
        let mut outputs = Vec::with_capacity(settings.outputs.len());
        for spec in &settings.outputs {
            let sender = match &spec.target {
                Target::Webhook(t) => Sender::Webhook(WebhookSender::new(&spec.name, t, &secrets)?),
                Target::Mqtt(t) => Sender::Mqtt(MqttSender::new(&spec.name, &settings.tenant, t, &secrets)?),
                Target::Kafka(t) => Sender::Kafka(KafkaSender::new(&spec.name, t, &settings.kafka)?),
            };
            // Series exist from the start, so a dashboard shows 0 rather than nothing.
            let label = OutputLabel { output: spec.name.to_string() };
            drop(metrics.sent.get_or_create(&label));
            drop(metrics.retries.get_or_create(&label));
            drop(metrics.routed.get_or_create(&label));
            drop(metrics.pending.get_or_create(&label));
            outputs.push(Output { spec: spec.clone(), sender });
        }
        let mut consumer_cfg = client_config(&settings.kafka);
        consumer_cfg
            .set("group.id", consumer_group(&settings.naming, &settings.tenant))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer<Kept> = geostream_kafka::create(&consumer_cfg, ())
            .map_err(|source| OutputError::Kafka { what: "events consumer", source })?;
        let mut producer_cfg = client_config(&settings.kafka);
        producer_cfg.set("enable.idempotence", "true").set("acks", "all");
        let producer: FutureProducer<Kept> = geostream_kafka::create(&producer_cfg, ())
            .map_err(|source| OutputError::Kafka { what: "dead-letter producer", source })?;
        let cancel = CancellationToken::new();
        let batches = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            deadletter_topic: settings.naming.topic(&settings.tenant, TopicKind::Deadletter),
            settings,
            outputs,
            consumer: Arc::new(consumer),
            producer,
            metrics: metrics.clone(),
            health,
            cancel: cancel.clone(),
            batches: Arc::clone(&batches),
            committed: Mutex::new(BTreeMap::new()),
        };
        let task = tokio::spawn(worker.run());
        Ok(OutputsStage { cancel, task, batches, metrics })
    }

    /// Batches settled and committed so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// The delivery metrics (also registered in the telemetry registry).
    pub fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    /// Stops taking events. The batch in hand is finished if it needs no retry wait; otherwise
    /// it stays uncommitted and is delivered again on the next start.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "outputs task ended abnormally");
        }
        tracing::info!("outputs stopped");
    }
}

/// `geostream-<tenant>-outputs`: a group of its own, so the outputs' progress is independent of
/// the sink's (a down webhook must not hold back indexing, nor the reverse).
pub fn consumer_group(naming: &Naming, tenant: &TenantId) -> String {
    // The sink's group with its stage name replaced keeps the shared `geostream-<tenant>-` form.
    let sink = naming.consumer_group(tenant, Stage::Sink);
    let base = sink.strip_suffix(Stage::Sink.as_str()).unwrap_or(&sink);
    format!("{base}outputs")
}

/// Runs the outputs until `shutdown` resolves.
pub async fn run(
    settings: OutputsSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), OutputError> {
    let stage = OutputsStage::start(settings, telemetry).await?;
    shutdown.await;
    stage.shutdown().await;
    Ok(())
}

fn client_config(props: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in props {
        cfg.set(k, v);
    }
    cfg
}

struct Worker {
    settings: OutputsSettings,
    outputs: Vec<Output>,
    consumer: Arc<StreamConsumer<Kept>>,
    producer: FutureProducer<Kept>,
    deadletter_topic: String,
    metrics: OutputMetrics,
    health: Health,
    cancel: CancellationToken,
    batches: Arc<AtomicU64>,
    /// The offsets this worker committed last, per partition.
    committed: Mutex<BTreeMap<(String, i32), i64>>,
}

/// The batch was abandoned because the stage is stopping; its offsets stay uncommitted.
struct Cancelled;

impl Worker {
    async fn pause(&self, d: Duration) -> Result<(), Cancelled> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn run(mut self) {
        let topic = self.settings.naming.topic(&self.settings.tenant, TopicKind::Events);
        let group = consumer_group(&self.settings.naming, &self.settings.tenant);
        match self.consumer.subscribe(&[topic.as_str()]) {
            Ok(()) => {
                self.health.set("outputs", true, format!("subscribed to {topic} as {group}"));
                tracing::info!(%topic, %group, outputs = self.outputs.len(), "outputs consuming");
                while !self.cancel.is_cancelled() {
                    let batch = self.collect().await;
                    if batch.is_empty() {
                        if !self.cancel.is_cancelled() && self.commit_skipped().await.is_err() {
                            break;
                        }
                        continue;
                    }
                    if self.settle(&batch).await.is_err() {
                        tracing::info!(
                            records = batch.len(),
                            "outputs stopping with a batch unsettled; it is delivered again on the next start"
                        );
                        break;
                    }
                    if self.commit(&batch).await.is_err() {
                        break;
                    }
                    self.batches.fetch_add(1, Ordering::Relaxed);
                }
                self.consumer.unsubscribe();
            }
            Err(e) => {
                tracing::error!(error = %e, %topic, "outputs could not subscribe");
                self.health.set("outputs", false, format!("subscribe failed: {e}"));
            }
        }
        for o in self.outputs.drain(..) {
            if let Sender::Mqtt(m) = o.sender {
                m.close().await;
            }
        }
    }

    /// Waits for a first record, then takes more until the batch is full or the linger ends.
    async fn collect(&self) -> Vec<OwnedMessage> {
        let s = &self.settings;
        let mut batch = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let idle = tokio::time::Instant::now() + IDLE_COMMIT;
        while batch.len() < s.batch_max_records.max(1) {
            // An empty batch returns after a quiet second, so offsets that only passed transaction
            // markers still get committed (and lag reads 0 at rest).
            let linger = tokio::time::sleep_until(deadline.unwrap_or(idle));
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = linger => break,
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        batch.push(m.detach());
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + s.linger);
                    }
                    Err(e) => {
                        // A missing topic (no events yet) or a broker hiccup; the consumer recovers.
                        tracing::debug!(error = %e, "kafka consumer error");
                        if batch.is_empty() && self.pause(Duration::from_millis(200)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        self.metrics.records.inc_by(batch.len() as u64);
        batch
    }

    /// Delivers the batch to every output until each routed event is delivered or dead-lettered.
    async fn settle(&self, batch: &[OwnedMessage]) -> Result<(), Cancelled> {
        let mut items = Vec::with_capacity(batch.len());
        for m in batch {
            let position = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
            let raw = m.payload().unwrap_or_default();
            match serde_json::from_slice::<Event>(raw) {
                Ok(event) => {
                    items.push(Arc::new(Item { event, raw: raw.to_vec(), key: m.key().map(<[u8]>::to_vec), position }))
                }
                Err(e) => {
                    // The sink reads the same topic and dead-letters it as `malformed`.
                    self.metrics.malformed.inc();
                    tracing::warn!(%position, error = %e, "record on the events topic is not an event; not delivered");
                }
            }
        }
        let work = self.outputs.iter().map(|o| {
            let routed: Vec<Arc<Item>> = items.iter().filter(|it| o.spec.filter.matches(&it.event)).cloned().collect();
            self.settle_output(o, routed)
        });
        let results = futures::future::join_all(work).await;
        if results.iter().any(Result::is_err) { Err(Cancelled) } else { Ok(()) }
    }

    async fn settle_output(&self, out: &Output, items: Vec<Arc<Item>>) -> Result<(), Cancelled> {
        let name = out.spec.name.as_str();
        let label = OutputLabel { output: name.to_owned() };
        let reason_label = |reason: &str| OutputReasonLabel { output: name.to_owned(), reason: reason.to_owned() };
        self.metrics.routed.get_or_create(&label).inc_by(items.len() as u64);
        let pending = self.metrics.pending.get_or_create(&label).clone();
        pending.set(items.len() as i64);
        let mut queue: VecDeque<(Arc<Item>, u32)> = items.into_iter().map(|i| (i, 0)).collect();
        let mut backoff = Backoff::new(BACKOFF_BASE, out.spec.max_backoff);
        while !queue.is_empty() {
            // One at a time keeps a webhook's or topic's order; Kafka's idempotent producer keeps
            // the order of everything sent at once.
            let n = if matches!(out.sender, Sender::Kafka(_)) { queue.len() } else { 1 };
            let round: Vec<(Arc<Item>, u32)> = queue.drain(..n).collect();
            let outcomes = match &out.sender {
                Sender::Webhook(w) => vec![w.send(&round[0].0).await],
                Sender::Mqtt(m) => vec![m.send(&round[0].0).await],
                Sender::Kafka(k) => {
                    let refs: Vec<&Item> = round.iter().map(|(i, _)| i.as_ref()).collect();
                    k.send_all(&refs).await
                }
            };
            let draw = if outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))) {
                backoff.next_delay()
            } else {
                backoff.reset();
                Duration::ZERO
            };
            let mut wait = Duration::ZERO;
            let mut again = Vec::new();
            for ((item, attempts), outcome) in round.into_iter().zip(outcomes) {
                let attempts = attempts + 1;
                let step = decide(&outcome, attempts, out.spec.max_attempts, draw, out.spec.max_backoff);
                match (&outcome, step) {
                    (_, Step::Done) => {
                        self.metrics.sent.get_or_create(&label).inc();
                        let now = OffsetDateTime::now_utc();
                        let t = item.event.time;
                        self.metrics.last_event_time.get_or_create(&label).set(unix_seconds(t));
                        self.metrics.event_lag.get_or_create(&label).set((now - t).as_seconds_f64().max(0.0));
                        pending.dec();
                    }
                    (Outcome::Failed(f), Step::Retry(w)) => {
                        self.metrics.failed.get_or_create(&reason_label(f.reason.as_str())).inc();
                        self.metrics.retries.get_or_create(&label).inc();
                        tracing::warn!(output = name, event = %item.event.id, position = %item.position, attempts,
                            reason = f.reason.as_str(), detail = %f.detail, retry_in_ms = w.as_millis() as u64,
                            "event not delivered yet");
                        wait = wait.max(w);
                        again.push((item, attempts));
                    }
                    (Outcome::Failed(f), Step::DeadLetter) => {
                        self.metrics.failed.get_or_create(&reason_label(f.reason.as_str())).inc();
                        let detail = format!("{} (attempt {attempts}; record {})", f.detail, item.position);
                        tracing::error!(output = name, event = %item.event.id, %detail, "event dead-lettered");
                        self.dead_letter(name, &item, detail).await?;
                        self.metrics.dead_letters.get_or_create(&reason_label(ReasonCode::Rejected.as_str())).inc();
                        pending.dec();
                    }
                    (Outcome::Delivered, _) => {
                        // `decide` answers Done for every delivery; kept total without a panic.
                        pending.dec();
                    }
                }
            }
            for entry in again.into_iter().rev() {
                queue.push_front(entry);
            }
            if !wait.is_zero() {
                self.pause(wait).await?;
            }
        }
        Ok(())
    }

    /// Writes the dead letter (stage `sink`, reason `rejected`, source = the output) and waits for
    /// Kafka's ack, retrying until it is stored or the stage stops.
    async fn dead_letter(&self, output: &str, item: &Item, detail: String) -> Result<(), Cancelled> {
        let mut dl =
            DeadLetter::new(item.raw.clone(), Stage::Sink, ReasonCode::Rejected, detail, OffsetDateTime::now_utc())
                .with_source(output);
        if let Some(feed) = &item.event.feed {
            dl = dl.with_feed(feed.as_str());
        }
        let payload = match serde_json::to_vec(&dl) {
            Ok(p) => p,
            Err(e) => {
                // Plain strings and bytes cannot fail to encode; if they did, keep the batch uncommitted.
                tracing::error!(error = %e, "dead letter could not be encoded; the batch stays uncommitted");
                return Err(Cancelled);
            }
        };
        let mut backoff = Backoff::new(BACKOFF_BASE, Duration::from_secs(30));
        loop {
            let mut record = FutureRecord::to(&self.deadletter_topic).payload(&payload);
            if let Some(k) = &item.key {
                record = record.key(k);
            }
            match self.producer.send(record, Timeout::After(DEAD_LETTER_TIMEOUT)).await {
                Ok(_) => return Ok(()),
                Err((e, _)) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, topic = %self.deadletter_topic, retry_in_ms = wait.as_millis() as u64,
                        "dead letter not stored yet");
                    self.pause(wait).await?;
                }
            }
        }
    }

    /// Commits the next offset of every partition in the batch; a failed commit only means
    /// redelivery, so it is retried a few times and then logged.
    async fn commit(&self, batch: &[OwnedMessage]) -> Result<(), Cancelled> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next.entry((m.topic().to_owned(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        // The consumer's position can be past the last record when a transaction marker followed
        // it; everything before the position was handed to this batch or was a marker.
        for (key, position) in self.positions() {
            if let Some(e) = next.get_mut(&key) {
                *e = (*e).max(position);
            }
        }
        self.commit_offsets(next).await
    }

    /// Commits partitions whose position moved without records (transaction markers, aborted
    /// records skipped by read_committed) since the last commit.
    async fn commit_skipped(&self) -> Result<(), Cancelled> {
        let ahead: BTreeMap<(String, i32), i64> = {
            let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
            self.positions().into_iter().filter(|(k, pos)| committed.get(k).is_none_or(|c| pos > c)).collect()
        };
        if ahead.is_empty() { Ok(()) } else { self.commit_offsets(ahead).await }
    }

    /// The consumer's position (next offset to hand out) per assigned partition that has one.
    fn positions(&self) -> Vec<((String, i32), i64)> {
        let Ok(list) = self.consumer.position() else { return Vec::new() };
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    async fn commit_offsets(&self, next: BTreeMap<(String, i32), i64>) -> Result<(), Cancelled> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::error!(error = %e, %topic, partition, "offset not committable");
            }
        }
        for attempt in 1..=3u64 {
            let consumer = Arc::clone(&self.consumer);
            let list = tpl.clone();
            match tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await {
                Ok(Ok(())) => {
                    self.committed.lock().unwrap_or_else(|p| p.into_inner()).extend(next.clone());
                    self.publish_lag(next).await;
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, attempt, "offset commit failed; the batch may be delivered again")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "offset commit task failed"),
            }
            self.pause(Duration::from_millis(200 * attempt)).await?;
        }
        Ok(())
    }

    /// Sets the consumer lag of each partition just committed (end minus committed offset).
    async fn publish_lag(&self, committed: BTreeMap<(String, i32), i64>) {
        let consumer = Arc::clone(&self.consumer);
        let ends = tokio::task::spawn_blocking(move || {
            committed
                .into_iter()
                .filter_map(|((topic, partition), offset)| {
                    let (_, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)).ok()?;
                    Some((topic, partition, (high - offset).max(0)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in ends {
            self.metrics.consumer_lag.get_or_create(&PartitionLabel { topic, partition }).set(lag);
        }
    }
}

fn unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_group_is_the_tenants_own_and_not_the_sinks() {
        let tenant = TenantId::new("acme-ports").unwrap();
        let n = Naming::default();
        assert_eq!(consumer_group(&n, &tenant), "geostream-acme-ports-outputs");
        assert_ne!(consumer_group(&n, &tenant), n.consumer_group(&tenant, Stage::Sink));
    }
}

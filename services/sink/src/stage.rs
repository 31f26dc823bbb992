//! `geostream sink`: the Kafka loop around the pure core.
//!
//! Start-up: identify the engine and install the templates (retrying while the engine is away),
//! then join the consumer group. Each batch (by count, bytes or linger) becomes one bulk request;
//! items answered 429/5xx are sent again after a jittered backoff until each is settled;
//! records that cannot be written are produced to the dead-letter topic and awaited; only then
//! are the batch's offsets committed. Up to `max_in_flight` batches are written at once and the
//! next is read from Kafka meanwhile, so the engine does not wait for the consumer between
//! requests; offsets are still committed batch by batch in the order the batches were read. Two
//! batches in flight may carry the same document (a track's `latest`, an aggregate's versions):
//! external versions make the order in which the engine applies them irrelevant. A crash anywhere
//! before the commit redelivers the batch, which the deterministic `_id`s and external versions
//! make harmless.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use geostream_kafka::Kept;
use geostream_model::time::OffsetDateTime;
use geostream_model::{Classify, DeadLetter, Naming, ReasonCode, Stage, TenantId, TopicKind};
use geostream_telemetry::{Health, Telemetry};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bulk::{BatchState, parse_response};
use crate::client::{ClientError, SearchClient};
use crate::document::{Unwritable, items};
use crate::metrics::{KindLabel, PartitionLabel, ReasonLabel, SinkMetrics};
use crate::templates::{IndexSettings, templates};
use geostream_model::backoff::Backoff;

/// Everything `geostream sink` needs, already validated by the binary's config.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic and index naming.
    pub naming: Naming,
    /// librdkafka properties, including `bootstrap.servers`.
    pub kafka: BTreeMap<String, String>,
    /// Engine base URL.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// Most records per batch.
    pub batch_max_records: usize,
    /// Most bytes (Kafka values) per batch.
    pub batch_max_bytes: usize,
    /// How long a batch waits for more records after its first one.
    pub linger: Duration,
    /// Most bulk requests in flight at once (at least 1).
    pub max_in_flight: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Timeout of one HTTP request to the engine.
    pub request_timeout: Duration,
    /// Index settings for the templates.
    pub index: IndexSettings,
}

/// Why the stage could not run.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The engine client could not be built (configuration).
    #[error("sink: {0}")]
    Client(#[from] ClientError),
    /// A Kafka client could not be created (configuration).
    #[error("sink: Kafka {what}: {source}")]
    Kafka {
        /// Which client or call.
        what: &'static str,
        /// The error.
        source: KafkaError,
    },
}

/// The running stage; [`SinkStage::shutdown`] stops it after the batch in hand is settled.
pub struct SinkStage {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    batches: Arc<AtomicU64>,
}

impl SinkStage {
    /// Creates the clients (no network yet) and starts the loop in the background.
    pub async fn start(settings: SinkSettings, telemetry: &Telemetry) -> Result<SinkStage, StageError> {
        let metrics = SinkMetrics::default();
        telemetry.with_registry(|r| metrics.register(r));
        let health = telemetry.health().clone();
        health.set("templates", false, "not installed yet");
        let client = SearchClient::new(
            &settings.url,
            settings.username.as_deref(),
            settings.password.as_deref(),
            settings.request_timeout,
        )?;
        let consumer: StreamConsumer<Kept> =
            geostream_kafka::create(&client_config(&consumer_properties(&settings)), ())
                .map_err(|source| StageError::Kafka { what: "consumer", source })?;
        let mut producer_cfg = client_config(&settings.kafka);
        producer_cfg.set("enable.idempotence", "true").set("acks", "all");
        let producer: FutureProducer<Kept> = geostream_kafka::create(&producer_cfg, ())
            .map_err(|source| StageError::Kafka { what: "dead-letter producer", source })?;
        let cancel = CancellationToken::new();
        let batches = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            deadletter_topic: settings.naming.topic(&settings.tenant, TopicKind::Deadletter),
            settings,
            client,
            consumer: Arc::new(consumer),
            producer,
            metrics,
            health,
            cancel: cancel.clone(),
            batches: Arc::clone(&batches),
            lag: Arc::default(),
        };
        let task = tokio::spawn(worker.run());
        Ok(SinkStage { cancel, task, batches })
    }

    /// Batches settled and committed so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Stops taking records, settles and commits the batch in hand (unless the engine or Kafka
    /// is away: then it is left uncommitted and redelivered on the next start), and leaves the group.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "sink task ended abnormally");
        }
        tracing::info!("sink stopped");
    }
}

/// Runs the stage until `shutdown` resolves.
pub async fn run(
    settings: SinkSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StageError> {
    let stage = SinkStage::start(settings, telemetry).await?;
    shutdown.await;
    tracing::info!("sink shutting down");
    stage.shutdown().await;
    Ok(())
}

/// The consumer's librdkafka properties: the configured ones, the group and commit rules the
/// sink depends on (these win), and bounds on librdkafka's prefetch queue unless the configuration
/// sets its own. librdkafka's defaults let the queue grow to 64 MiB or 100,000 records per
/// partition while the sink waits for the engine; bounded to about one batch, the memory held is
/// the batch in hand plus one batch prefetched (plus one fetch response, which librdkafka may let
/// overshoot), and the next batch is still ready as soon as the last one is committed.
///
/// A queue that low is over its bound after every fetch, and librdkafka then postpones that
/// partition's next fetch by `fetch.queue.backoff.ms` (default 1 s) even when the sink drains the
/// queue a moment later: measured in `sink_vs_bulk`, the sink sat idle for most of that second
/// after each batch. The sink sets it to 10 ms, which only costs a queue-length check per
/// partition every 10 ms while the queue is full.
pub fn consumer_properties(settings: &SinkSettings) -> BTreeMap<String, String> {
    let mut props = settings.kafka.clone();
    let batch_kbytes = settings.batch_max_bytes.div_ceil(1024).clamp(1, 2_097_151);
    props.entry("queued.max.messages.kbytes".into()).or_insert_with(|| batch_kbytes.to_string());
    props.entry("queued.min.messages".into()).or_insert_with(|| settings.batch_max_records.max(1).to_string());
    props.entry("fetch.queue.backoff.ms".into()).or_insert_with(|| "10".into());
    props.insert("group.id".into(), settings.naming.consumer_group(&settings.tenant, Stage::Sink));
    props.insert("enable.auto.commit".into(), "false".into());
    props.insert("enable.auto.offset.store".into(), "false".into());
    props.insert("auto.offset.reset".into(), "earliest".into());
    props
}

fn client_config(props: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in props {
        cfg.set(k, v);
    }
    cfg
}

struct Worker {
    settings: SinkSettings,
    client: SearchClient,
    consumer: Arc<StreamConsumer<Kept>>,
    producer: FutureProducer<Kept>,
    deadletter_topic: String,
    metrics: SinkMetrics,
    health: Health,
    cancel: CancellationToken,
    batches: Arc<AtomicU64>,
    /// Commits whose lag is still to be published.
    lag: Arc<std::sync::Mutex<LagUpdates>>,
}

/// The batch was abandoned because the stage is stopping; its offsets stay uncommitted.
struct Cancelled;

impl Worker {
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(100), self.settings.max_backoff)
    }

    /// Sleeps unless cancelled first.
    async fn pause(&self, d: Duration) -> Result<(), Cancelled> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn run(self) {
        if self.install().await.is_err() {
            return;
        }
        let s = &self.settings;
        let topics: Vec<String> = [TopicKind::Observations, TopicKind::Events, TopicKind::Aggregates]
            .iter()
            .map(|k| s.naming.topic(&s.tenant, *k))
            .collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = self.consumer.subscribe(&refs) {
            tracing::error!(error = %e, "sink could not subscribe to its topics");
            self.health.set("kafka", false, format!("subscribe failed: {e}"));
            return;
        }
        self.health.set("kafka", true, format!("subscribed to {}", topics.join(", ")));
        tracing::info!(topics = ?topics, group = %s.naming.consumer_group(&s.tenant, Stage::Sink), "sink consuming");
        let kinds: HashMap<String, TopicKind> = [TopicKind::Observations, TopicKind::Events, TopicKind::Aggregates]
            .into_iter()
            .map(|k| (s.naming.topic(&s.tenant, k), k))
            .collect();
        // Up to `max_in_flight` batches are written at once while the next one is read from
        // Kafka. `writing` yields them in the order they were sent, which is the order their
        // offsets are committed in, so a commit never covers a batch still being written.
        // `first_at` is when the next batch's first record arrived: its linger runs from then, so
        // records that waited through a write are sent as soon as a slot is free.
        let max_in_flight = s.max_in_flight.max(1);
        let mut next: Vec<OwnedMessage> = Vec::new();
        let mut first_at: Option<tokio::time::Instant> = None;
        let mut writing = FuturesOrdered::new();
        let mut in_flight: VecDeque<(usize, usize)> = VecDeque::new();
        let this = &self;
        let write = move |batch: Vec<OwnedMessage>, state: BatchState| async move {
            let started = Instant::now();
            let settled = this.settle(&batch, state).await;
            (batch, started, settled)
        };
        loop {
            let stopping = self.cancel.is_cancelled();
            if stopping && writing.is_empty() {
                break;
            }
            if !stopping && writing.len() < max_in_flight && self.is_due(&next, first_at) {
                let batch = std::mem::take(&mut next);
                first_at = None;
                let state = self.prepare(&batch, &kinds);
                in_flight.push_back((batch.len(), bytes_of(&batch)));
                writing.push_back(write(batch, state));
                self.hold(&in_flight, &next);
                continue;
            }
            tokio::select! {
                biased;
                Some((batch, started, settled)) = writing.next(), if !writing.is_empty() => {
                    in_flight.pop_front();
                    if settled.is_err() {
                        let unsettled: usize = in_flight.iter().map(|(n, _)| n).sum::<usize>() + batch.len() + next.len();
                        tracing::info!(
                            records = unsettled,
                            "sink stopping with records unsettled; they are redelivered on the next start"
                        );
                        break;
                    }
                    let write_ms = started.elapsed().as_millis() as u64;
                    if self.commit(&batch).await.is_err() {
                        break;
                    }
                    tracing::debug!(
                        records = batch.len(),
                        write_ms,
                        commit_ms = (started.elapsed().as_millis() as u64).saturating_sub(write_ms),
                        in_flight = writing.len(),
                        next = next.len(),
                        "batch committed"
                    );
                    self.hold(&in_flight, &next);
                    self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_records.set(batch.len() as i64);
                    self.batches.fetch_add(1, Ordering::Relaxed);
                }
                () = self.collect(&mut next, &mut first_at), if !stopping && !self.is_full(&next) => {
                    self.hold(&in_flight, &next);
                }
                else => break,
            }
        }
        self.consumer.unsubscribe();
    }

    /// Detects the engine and installs the templates, retrying until it works or the stage stops.
    async fn install(&self) -> Result<(), Cancelled> {
        let mut backoff = self.backoff();
        loop {
            match self.try_install().await {
                Ok(engine) => {
                    self.metrics.templates_installed.set(1);
                    self.health.set(
                        "templates",
                        true,
                        format!("{} {} (geo_shape: {})", engine.product.as_str(), engine.version, engine.geo_shape),
                    );
                    tracing::info!(
                        url = %self.client.url(), product = engine.product.as_str(), version = %engine.version,
                        geo_shape = engine.geo_shape, "index templates installed"
                    );
                    return Ok(());
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    self.health.set("templates", false, e.to_string());
                    tracing::warn!(error = %e, retryable = e.retryable(), retry_in_ms = wait.as_millis() as u64,
                        "search engine not ready for the sink yet");
                    self.pause(wait).await?;
                }
            }
        }
    }

    async fn try_install(&self) -> Result<crate::engine::Engine, ClientError> {
        let engine = self.client.detect().await?;
        let s = &self.settings;
        for t in templates(&s.naming, &s.tenant, &engine, &s.index) {
            self.client.put_template(&t).await?;
        }
        Ok(engine)
    }

    fn is_full(&self, batch: &[OwnedMessage]) -> bool {
        batch.len() >= self.settings.batch_max_records || bytes_of(batch) >= self.settings.batch_max_bytes
    }

    /// Whether `batch` should be sent now: it is full, or its linger has passed.
    fn is_due(&self, batch: &[OwnedMessage], first_at: Option<tokio::time::Instant>) -> bool {
        !batch.is_empty()
            && (self.is_full(batch) || first_at.is_none_or(|t| t + self.settings.linger <= tokio::time::Instant::now()))
    }

    /// The records read from Kafka and not yet committed: the batches being written (records,
    /// bytes) and the next one.
    fn hold(&self, in_flight: &VecDeque<(usize, usize)>, next: &[OwnedMessage]) {
        let records = in_flight.iter().map(|(n, _)| n).sum::<usize>() + next.len();
        let bytes = in_flight.iter().map(|(_, b)| b).sum::<usize>() + bytes_of(next);
        self.metrics.held_records.set(records as i64);
        self.metrics.held_bytes.set(bytes as i64);
    }

    /// Adds records to `batch` (waiting for a first one if it is empty) until it is full (records
    /// or bytes), `linger` passed since its first record arrived (`first_at`, set here when the
    /// first one comes), or the stage stops. Dropping it midway loses nothing: each record is in
    /// `batch` as soon as it is received.
    async fn collect(&self, batch: &mut Vec<OwnedMessage>, first_at: &mut Option<tokio::time::Instant>) {
        let s = &self.settings;
        let before = batch.len();
        let mut bytes: usize = batch.iter().map(|m| m.payload().map_or(0, <[u8]>::len)).sum();
        if !batch.is_empty() && first_at.is_none() {
            *first_at = Some(tokio::time::Instant::now());
        }
        let mut deadline = first_at.map(|t| t + s.linger);
        while batch.len() < s.batch_max_records && bytes < s.batch_max_bytes {
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = linger => break,
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        let m = m.detach();
                        bytes += m.payload().map_or(0, <[u8]>::len);
                        batch.push(m);
                        let first = *first_at.get_or_insert_with(tokio::time::Instant::now);
                        deadline = Some(first + s.linger);
                    }
                    Err(e) => {
                        // Missing topics (no events yet) and broker hiccups land here; the
                        // consumer recovers by itself, so note it and keep going.
                        tracing::debug!(error = %e, "kafka consumer error");
                        if batch.is_empty() && self.pause(Duration::from_millis(200)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        self.metrics.records.inc_by((batch.len() - before) as u64);
    }

    /// Writes the batch until every record is delivered or dead-lettered.
    /// The batch's bulk items (decoding and validating every record), and what cannot be written.
    fn prepare(&self, batch: &[OwnedMessage], kinds: &HashMap<String, TopicKind>) -> BatchState {
        let s = &self.settings;
        let mut all = Vec::new();
        let mut unwritable = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let Some(kind) = kinds.get(m.topic()) else {
                // Cannot happen with the subscription above; if it does, the record is still accounted for.
                let detail = format!("the sink does not read topic {}", m.topic());
                unwritable.push((i, Unwritable { reason: ReasonCode::Unsupported, detail }));
                continue;
            };
            match items(&s.naming, &s.tenant, *kind, i, m.payload()) {
                Ok(mut it) => all.append(&mut it),
                Err(u) => unwritable.push((i, u)),
            }
        }
        BatchState::new(batch.len(), all, unwritable)
    }

    /// Writes the prepared batch until every record is delivered or dead-lettered.
    async fn settle(&self, batch: &[OwnedMessage], mut state: BatchState) -> Result<(), Cancelled> {
        let mut backoff = self.backoff();
        while !state.settled() {
            let sent = state.pending();
            let body = state.body(&sent);
            let (answers, retry_after) = match self.client.bulk(body).await {
                Ok(answer) => (parse_response(&answer, sent.len()).map_err(|e| e.to_string()), None),
                Err(e) => (Err(e.to_string()), e.retry_after()),
            };
            match answers {
                Ok(answers) => {
                    let a = state.apply(&sent, &answers);
                    for (kind, n) in &a.written {
                        self.metrics.written.get_or_create(&KindLabel { kind: kind.as_str().to_owned() }).inc_by(*n);
                    }
                    self.metrics.duplicates.inc_by(a.duplicates);
                    self.metrics.older.inc_by(a.older);
                    self.metrics.retries.inc_by(a.retries);
                    if a.retries > 0 {
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            items = a.retries,
                            error = a.first_retry_error.as_deref().unwrap_or_default(),
                            retry_in_ms = wait.as_millis() as u64,
                            "bulk items will be sent again"
                        );
                        self.pause(wait).await?;
                    } else {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    self.metrics.request_errors.inc();
                    let wait = retry_wait(backoff.next_delay(), retry_after, self.settings.max_backoff);
                    tracing::warn!(error = %e, items = sent.len(), retry_in_ms = wait.as_millis() as u64,
                        "bulk request failed; sending it again");
                    self.pause(wait).await?;
                }
            }
        }
        for (i, u) in state.dead_letters() {
            let Some(m) = batch.get(i) else { continue };
            let raw = m.payload().unwrap_or_default();
            let mut dl = DeadLetter::new(raw, Stage::Sink, u.reason, u.detail.clone(), OffsetDateTime::now_utc())
                .with_source(format!("{}/{}/{}", m.topic(), m.partition(), m.offset()));
            if let Some(feed) = feed_of(raw) {
                dl = dl.with_feed(feed);
            }
            self.produce_dead_letter(&dl, m.key()).await?;
            self.metrics.dead_letters.get_or_create(&ReasonLabel { reason: u.reason.as_str().to_owned() }).inc();
        }
        Ok(())
    }

    async fn produce_dead_letter(&self, dl: &DeadLetter, key: Option<&[u8]>) -> Result<(), Cancelled> {
        let payload = match serde_json::to_vec(dl) {
            Ok(p) => p,
            Err(e) => {
                // A DeadLetter is plain strings and bytes; this cannot happen, but must not lose the record.
                tracing::error!(error = %e, "dead letter could not be encoded; the batch stays uncommitted");
                return Err(Cancelled);
            }
        };
        let mut backoff = self.backoff();
        loop {
            let mut record = FutureRecord::to(&self.deadletter_topic).payload(&payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            // Not raced against shutdown: the send is bounded by the timeout, and a batch whose
            // items are all settled should finish rather than be redelivered.
            match self.producer.send(record, Timeout::After(self.settings.request_timeout)).await {
                Ok(_) => return Ok(()),
                Err((e, _)) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, topic = %self.deadletter_topic, retry_in_ms = wait.as_millis() as u64,
                        "dead letter not delivered yet");
                    self.pause(wait).await?;
                }
            }
        }
    }

    /// Commits the next offset of every partition in the batch (synchronously: the commit is what
    /// makes the batch final). A failed commit (a rebalance took the partition) only means
    /// redelivery, which is harmless; it is retried a few times and then logged.
    async fn commit(&self, batch: &[OwnedMessage]) -> Result<(), Cancelled> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next.entry((m.topic().to_owned(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::error!(error = %e, %topic, partition, "offset not committable");
            }
        }
        for attempt in 1..=3 {
            let consumer = Arc::clone(&self.consumer);
            let list = tpl.clone();
            let result = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
            match result {
                Ok(Ok(())) => {
                    self.publish_lag(next);
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, attempt, "offset commit failed; the batch may be redelivered");
                }
                Err(e) => tracing::warn!(error = %e, attempt, "offset commit task failed"),
            }
            self.pause(Duration::from_millis(200 * attempt)).await?;
        }
        Ok(())
    }
}

impl Worker {
    /// Sets the lag gauge of each partition just committed: its end (high watermark) minus the
    /// committed offset. The watermark query is a broker round trip that can take a second while
    /// the broker is busy, so it runs beside the loop rather than in it: one querying task at a
    /// time, which takes up every commit made meanwhile (the newest offset per partition) before
    /// it ends, so the gauges always end at the last commit. Best effort: a failed query leaves
    /// the previous value.
    fn publish_lag(&self, committed: BTreeMap<(String, i32), i64>) {
        {
            let mut lag = self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (tp, offset) in committed {
                let e = lag.pending.entry(tp).or_insert(offset);
                *e = (*e).max(offset);
            }
            if lag.running {
                return;
            }
            lag.running = true;
        }
        let consumer = Arc::clone(&self.consumer);
        let gauge = self.metrics.consumer_lag.clone();
        let state = Arc::clone(&self.lag);
        tokio::task::spawn_blocking(move || {
            loop {
                let pending = {
                    let mut lag = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if lag.pending.is_empty() {
                        lag.running = false;
                        return;
                    }
                    std::mem::take(&mut lag.pending)
                };
                for ((topic, partition), offset) in pending {
                    if let Ok((_, high)) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)) {
                        gauge.get_or_create(&PartitionLabel { topic, partition }).set((high - offset).max(0));
                    }
                }
            }
        });
    }
}

/// Committed offsets waiting for the lag gauge, and whether a task is querying them.
#[derive(Default)]
struct LagUpdates {
    pending: BTreeMap<(String, i32), i64>,
    running: bool,
}

/// The wait before sending a failed request again: the backoff, or longer when the engine asked
/// for it with `Retry-After`, but never beyond `max` (the stage must not sleep for hours because a
/// proxy said so).
fn retry_wait(backoff: Duration, retry_after: Option<Duration>, max: Duration) -> Duration {
    backoff.max(retry_after.unwrap_or_default().min(max))
}

/// The bytes of the records' values.
fn bytes_of(batch: &[OwnedMessage]) -> usize {
    batch.iter().map(|m| m.payload().map_or(0, <[u8]>::len)).sum()
}

/// The `feed` property of a record, when it has one (for the dead letter).
fn feed_of(raw: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    v.get("properties")?.get("feed")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(kafka: &[(&str, &str)]) -> SinkSettings {
        SinkSettings {
            tenant: "acme".parse().unwrap(),
            naming: Naming::default(),
            kafka: kafka.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            url: "http://127.0.0.1:9200".into(),
            username: None,
            password: None,
            batch_max_records: 5000,
            batch_max_bytes: 8 * 1024 * 1024,
            linger: Duration::from_millis(200),
            max_in_flight: 2,
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            index: IndexSettings::default(),
        }
    }

    #[test]
    fn the_prefetch_queue_is_bounded_to_a_batch_unless_configured() {
        let p = consumer_properties(&settings(&[("bootstrap.servers", "k:9092")]));
        assert_eq!(p["queued.max.messages.kbytes"], "8192");
        assert_eq!(p["queued.min.messages"], "5000");
        assert_eq!(p["fetch.queue.backoff.ms"], "10");
        assert_eq!(p["bootstrap.servers"], "k:9092");
        assert_eq!(p["group.id"], "geostream-acme-sink");
        let p = consumer_properties(&settings(&[
            ("queued.max.messages.kbytes", "100"),
            ("queued.min.messages", "10"),
            ("fetch.queue.backoff.ms", "500"),
            ("enable.auto.commit", "true"),
        ]));
        assert_eq!((p["queued.max.messages.kbytes"].as_str(), p["queued.min.messages"].as_str()), ("100", "10"));
        assert_eq!(p["fetch.queue.backoff.ms"], "500");
        assert_eq!(p["enable.auto.commit"], "false", "the commit rule is not configurable");
        let mut tiny = settings(&[]);
        (tiny.batch_max_bytes, tiny.batch_max_records) = (10, 0);
        let p = consumer_properties(&tiny);
        assert_eq!((p["queued.max.messages.kbytes"].as_str(), p["queued.min.messages"].as_str()), ("1", "1"));
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_cap_and_never_shortens_it() {
        let s = Duration::from_secs;
        assert_eq!(retry_wait(s(2), None, s(30)), s(2));
        assert_eq!(retry_wait(s(2), Some(s(10)), s(30)), s(10));
        assert_eq!(retry_wait(s(2), Some(s(1)), s(30)), s(2), "never shorter than the backoff");
        assert_eq!(retry_wait(s(2), Some(s(3600)), s(30)), s(30), "capped");
    }

    #[test]
    fn the_feed_of_a_dead_letter_comes_from_the_record_when_it_has_one() {
        assert_eq!(feed_of(br#"{"type":"Feature","properties":{"feed":"ais"}}"#).as_deref(), Some("ais"));
        assert_eq!(feed_of(br#"{"properties":{"feed":7}}"#), None);
        assert_eq!(feed_of(b"not json"), None);
        assert_eq!(feed_of(br#"{"type":"Feature"}"#), None);
    }
}

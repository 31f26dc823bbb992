//! The write-ahead path every record takes: sources hand decoded batches to [`Durable::write`],
//! which returns once the batch is fsynced in the spool; a [`Drainer`] produces spooled records to
//! Kafka in order with an idempotent producer and acknowledges them in the spool once Kafka did.
//!
//! Always going through the spool (rather than only when Kafka is down) gives one code path, one
//! ordering and one place to count: a source acknowledges its input after `write` returns, and a
//! record leaves the spool only after Kafka acknowledged it. Writes from all feeds are grouped into
//! one fsync by a dedicated thread (group commit), so the cost of durability is per batch, not per
//! record. When the spool is full, `write` waits (backpressure reaches the sources, which stop
//! reading) and the wait shows in logs and in `geostream_ingest_spool_full`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use geostream_kafka::Kept;
use geostream_model::{Classify, ErrorClass};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;

use crate::metrics::{IngestMetrics, TopicLabel};
use crate::pipeline::{Envelope, Route};
use crate::spool::{Spool, SpoolConfig, SpoolError};

/// Errors of the durable path.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The spool failed (disk full, I/O error, corruption).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The writer thread is gone (the stage is shutting down).
    #[error("the spool writer has stopped (ingest is shutting down)")]
    Closed,
}

impl Classify for DurableError {
    fn class(&self) -> ErrorClass {
        match self {
            DurableError::Spool(e) => e.class(),
            DurableError::Closed => ErrorClass::Internal,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            DurableError::Spool(e) => e.retryable(),
            DurableError::Closed => false,
        }
    }
}

struct Request {
    records: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<Range<u64>, DurableError>>,
}

/// State shared by the writer thread, the drainer and [`Durable`] handles.
struct Shared {
    spool: Mutex<Spool>,
    /// Signalled when the drainer acknowledged records (space may be free again).
    space: Condvar,
    /// Signalled when records were appended (the drainer may have work).
    appended: Notify,
    metrics: IngestMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_gauges(&self, spool: &Spool) {
        self.metrics.spool_bytes.set(spool.bytes() as i64);
        self.metrics.spool_records.set(spool.len() as i64);
    }
}

/// Handle for writing batches durably; cheap to clone, one per source.
#[derive(Clone)]
pub struct Durable {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

/// Limits of the durable path.
#[derive(Debug, Clone)]
pub struct DurableConfig {
    /// The spool directory (on the stage's persistent volume).
    pub dir: PathBuf,
    /// Spool bound: unacknowledged bytes before writers wait.
    pub max_bytes: u64,
    /// Spool segment size.
    pub segment_bytes: u64,
}

impl Durable {
    /// Opens the spool (recovering it) and starts the group-commit writer thread. Returns the
    /// handle and the shared state the [`Drainer`] needs.
    pub fn open(config: &DurableConfig, metrics: IngestMetrics) -> Result<(Durable, DrainSource), DurableError> {
        let (spool, report) =
            Spool::open(&config.dir, SpoolConfig { max_bytes: config.max_bytes, segment_bytes: config.segment_bytes })?;
        if report.torn_records > 0 {
            tracing::warn!(
                segment = ?report.torn_segment, torn_bytes = report.torn_bytes,
                "spool: cut a torn tail left by a crash during a write that was never acknowledged to its source"
            );
        }
        tracing::info!(dir = %config.dir.display(), records = report.records, "spool opened");
        let shared =
            Arc::new(Shared { spool: Mutex::new(spool), space: Condvar::new(), appended: Notify::new(), metrics });
        shared.publish_gauges(&shared.lock());
        let (tx, rx) = mpsc::channel::<Request>(4096);
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(rx, &writer_shared))
            .map_err(|e| SpoolError::Io { what: "start of writer thread for", path: config.dir.clone(), source: e })?;
        Ok((Durable { tx, shared: Arc::clone(&shared) }, DrainSource { shared }))
    }

    /// Appends the envelopes in order; returns once they are fsynced (or the spool failed). Waits
    /// while the spool is full.
    pub async fn write(&self, envelopes: &[Envelope]) -> Result<Range<u64>, DurableError> {
        if envelopes.is_empty() {
            return Ok(0..0);
        }
        let records = envelopes.iter().map(Envelope::encode).collect();
        let (done, rx) = oneshot::channel();
        self.tx.send(Request { records, done }).await.map_err(|_| DurableError::Closed)?;
        rx.await.map_err(|_| DurableError::Closed)?
    }

    /// Unacknowledged records in the spool.
    pub fn pending(&self) -> u64 {
        self.shared.lock().len()
    }

    /// A probe that tells when every handle on this spool (writers, the writer thread, the
    /// drainer) is gone, i.e. the spool is closed and its lock released, so it can be reopened.
    pub fn closed_probe(&self) -> SpoolClosed {
        SpoolClosed(Arc::downgrade(&self.shared))
    }
}

/// See [`Durable::closed_probe`].
#[derive(Debug)]
pub struct SpoolClosed(Weak<Shared>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl SpoolClosed {
    /// Whether the spool is closed.
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }

    /// Waits (polling, the writer thread exits on its own schedule) until the spool is closed or
    /// `max` passed; returns whether it closed.
    pub async fn wait(&self, max: Duration) -> bool {
        let start = Instant::now();
        while !self.is_closed() {
            if start.elapsed() >= max {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// [`SpoolClosed::wait`] for synchronous callers.
    pub fn wait_blocking(&self, max: Duration) -> bool {
        let start = Instant::now();
        while !self.is_closed() {
            if start.elapsed() >= max {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Most records one group commit takes, so one huge burst does not hold the lock for long.
const GROUP_MAX_RECORDS: usize = 20_000;

fn writer_loop(mut rx: mpsc::Receiver<Request>, shared: &Shared) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut n = group[0].records.len();
        while n < GROUP_MAX_RECORDS {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.records.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        commit_group(group, shared);
    }
}

/// Appends a group with one fsync. A group that does not fit as a whole is split, so one large
/// request cannot starve small ones, and a request larger than the whole spool fails alone.
fn commit_group(group: Vec<Request>, shared: &Shared) {
    let result = {
        let refs: Vec<&[u8]> = group.iter().flat_map(|r| r.records.iter().map(Vec::as_slice)).collect();
        append_waiting(shared, &refs)
    };
    match result {
        Ok(range) => {
            let mut start = range.start;
            for r in group {
                let end = start + r.records.len() as u64;
                let _ = r.done.send(Ok(start..end));
                start = end;
            }
            shared.appended.notify_one();
        }
        Err(SpoolError::TooLarge { .. }) if group.len() > 1 => {
            for r in group {
                commit_group(vec![r], shared);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "spool append failed; the records were not acknowledged to their sources");
            let mut e = Some(e);
            for r in group {
                let err = e.take().unwrap_or_else(|| SpoolError::Io {
                    what: "append (same group) to",
                    path: PathBuf::new(),
                    source: std::io::Error::other(msg.clone()),
                });
                let _ = r.done.send(Err(DurableError::Spool(err)));
            }
        }
    }
}

fn append_waiting(shared: &Shared, refs: &[&[u8]]) -> Result<Range<u64>, SpoolError> {
    let mut spool = shared.lock();
    let mut waited_since: Option<Instant> = None;
    loop {
        match spool.append(refs) {
            Err(SpoolError::Full { needed, available }) => {
                if waited_since.is_none() {
                    waited_since = Some(Instant::now());
                    shared.metrics.spool_full.set(1);
                    shared.metrics.spool_full_waits.inc();
                    tracing::warn!(
                        needed,
                        available,
                        "spool is full: sources are held back until Kafka acknowledges spooled records"
                    );
                }
                spool = shared.space.wait_timeout(spool, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
            }
            other => {
                if let Some(since) = waited_since {
                    shared.metrics.spool_full.set(0);
                    tracing::info!(waited_ms = since.elapsed().as_millis() as u64, "spool has space again");
                }
                if other.is_ok() {
                    shared.publish_gauges(&spool);
                }
                return other;
            }
        }
    }
}

/// What the drainer reads from: the spool shared with the writer.
pub struct DrainSource {
    shared: Arc<Shared>,
}

/// Kafka settings of the drainer.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// librdkafka properties (bootstrap servers, security, ...), applied before geostream's own.
    pub properties: BTreeMap<String, String>,
    /// Topic of [`Route::Observations`].
    pub observations_topic: String,
    /// Topic of [`Route::DeadLetter`].
    pub deadletter_topic: String,
    /// Most records in flight to Kafka at once.
    pub max_in_flight: usize,
}

/// Produces spooled records to Kafka and acknowledges them in the spool.
pub struct Drainer {
    source: DrainSource,
    config: DrainConfig,
    health: Option<geostream_telemetry::Health>,
    /// Topic and `produced` counter of each route, resolved once rather than per record.
    observations: (Arc<str>, Counter),
    deadletter: (Arc<str>, Counter),
}

type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Result<(), KafkaError>)> + Send>>;

impl Drainer {
    /// A drainer over `source`; `health` gets a `kafka` readiness check if given.
    pub fn new(source: DrainSource, config: DrainConfig, health: Option<geostream_telemetry::Health>) -> Self {
        let route = |topic: &str| {
            let counter = source.shared.metrics.produced.get_or_create(&TopicLabel { topic: topic.to_owned() }).clone();
            (Arc::<str>::from(topic), counter)
        };
        let observations = route(&config.observations_topic);
        let deadletter = route(&config.deadletter_topic);
        Self { source, config, health, observations, deadletter }
    }

    fn producer(&self) -> Result<FutureProducer<Kept>, KafkaError> {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.config.properties {
            cfg.set(k, v);
        }
        // Idempotence: retries inside one producer session never duplicate or reorder. No local
        // timeout: a record stays with librdkafka (and in the spool) until Kafka has it, however
        // long the outage; giving up would mean re-sending, which could duplicate.
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        geostream_kafka::create(&cfg, ())
    }

    fn set_health(&self, ok: bool, detail: impl Into<String>) {
        if let Some(h) = &self.health {
            h.set("kafka", ok, detail);
        }
    }

    /// Runs until `cancel`; then waits (bounded) for records in flight and acknowledges them.
    pub async fn run(self, cancel: CancellationToken) {
        let shared = Arc::clone(&self.source.shared);
        let mut backoff = Duration::from_millis(200);
        'session: loop {
            let producer = match self.producer() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "kafka producer could not be created; retrying");
                    self.set_health(false, e.to_string());
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            match self.session(&producer, &shared, &cancel).await {
                SessionEnd::Cancelled => return,
                SessionEnd::Failed(e) => {
                    shared.metrics.delivery_errors.inc();
                    self.set_health(false, e.to_string());
                    tracing::error!(error = %e, "kafka delivery failed; re-sending from the spool after a pause");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue 'session;
                }
            }
        }
    }

    async fn session(
        &self,
        producer: &FutureProducer<Kept>,
        shared: &Arc<Shared>,
        cancel: &CancellationToken,
    ) -> SessionEnd {
        let mut next = shared.lock().ack_position();
        // Records Kafka wrote but whose acknowledgement never reached the previous producer (the
        // broker went away mid-request, or ingest restarted) are in the spool and in Kafka. A new
        // producer is a new idempotence session, so sending them again would duplicate them.
        let mut already = match self.already_in_kafka(shared).await {
            Ok(set) => set,
            Err(e) => return SessionEnd::Failed(format!("reading back recent records: {e}")),
        };
        if !already.is_empty() {
            tracing::info!(
                records = already.len(),
                "records recently in Kafka that may match spooled ones; matching spooled records are not sent again"
            );
        }
        let mut in_flight: FuturesOrdered<Delivery> = FuturesOrdered::new();
        let mut delivered_through: Option<u64> = None;
        let mut last_ack = Instant::now();
        let mut since_ack = 0usize;
        let mut ok_reported = false;
        loop {
            // Fill the window from the spool.
            if in_flight.len() < self.config.max_in_flight && !cancel.is_cancelled() {
                let want = (self.config.max_in_flight - in_flight.len()).min(5_000);
                let s = Arc::clone(shared);
                let read = tokio::task::spawn_blocking(move || s.lock().read_from(next, want)).await;
                let records = match read {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => return SessionEnd::Failed(format!("spool read: {e}")),
                    Err(e) => return SessionEnd::Failed(format!("spool read task: {e}")),
                };
                for rec in records {
                    let env = match Envelope::decode(&rec.payload) {
                        Ok(e) => e,
                        Err(e) => {
                            // Cannot happen unless the spool format changed; keep the bytes visible.
                            tracing::error!(seq = rec.seq, error = %e, "skipping unreadable spool record");
                            in_flight.push_back(Box::pin(async move { (rec.seq, Ok(())) }));
                            next = rec.seq + 1;
                            continue;
                        }
                    };
                    if !already.is_empty() && already.remove(&fingerprint(&env)) {
                        shared.metrics.already_in_kafka.inc();
                        in_flight.push_back(Box::pin(async move { (rec.seq, Ok(())) }));
                    } else {
                        in_flight.push_back(self.send(producer, rec.seq, env));
                    }
                    next = rec.seq + 1;
                }
            }
            if in_flight.is_empty() {
                if cancel.is_cancelled() {
                    return SessionEnd::Cancelled;
                }
                self.flush_ack(shared, &mut delivered_through, &mut since_ack, &mut last_ack).await;
                tokio::select! {
                    () = shared.appended.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = cancel.cancelled() => {}
                }
                continue;
            }
            // Take every delivery that has completed, in order.
            let wait = if cancel.is_cancelled() { Duration::from_secs(10) } else { Duration::from_millis(100) };
            match tokio::time::timeout(wait, in_flight.next()).await {
                Ok(Some((seq, Ok(())))) => {
                    delivered_through = Some(seq);
                    since_ack += 1;
                    if !ok_reported {
                        self.set_health(true, "delivering");
                        ok_reported = true;
                    }
                }
                Ok(Some((seq, Err(e)))) => {
                    self.flush_ack(shared, &mut delivered_through, &mut since_ack, &mut last_ack).await;
                    return SessionEnd::Failed(format!("record {seq}: {e}"));
                }
                Ok(None) => {}
                Err(_) if cancel.is_cancelled() => {
                    tracing::warn!(in_flight = in_flight.len(), "stopping with records in flight; they stay spooled");
                    self.flush_ack(shared, &mut delivered_through, &mut since_ack, &mut last_ack).await;
                    return SessionEnd::Cancelled;
                }
                Err(_) => {
                    if !ok_reported || delivered_through.is_none() {
                        self.set_health(false, "waiting for kafka to acknowledge");
                        ok_reported = false;
                    }
                }
            }
            if since_ack >= 10_000 || (since_ack > 0 && last_ack.elapsed() >= Duration::from_millis(200)) {
                self.flush_ack(shared, &mut delivered_through, &mut since_ack, &mut last_ack).await;
            }
        }
    }

    /// Fingerprints of the last records on the destination partitions, as many per partition as
    /// the spool holds unacknowledged records (the most that can have been written without the
    /// spool knowing). Empty when the spool is empty.
    async fn already_in_kafka(&self, shared: &Arc<Shared>) -> Result<HashSet<[u8; 16]>, String> {
        let pending = shared.lock().len();
        if pending == 0 {
            return Ok(HashSet::new());
        }
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.config.properties {
            cfg.set(k, v);
        }
        cfg.set("group.id", format!("{}.ingest-recovery", self.config.observations_topic))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let topics = [self.config.observations_topic.clone(), self.config.deadletter_topic.clone()];
        tokio::task::spawn_blocking(move || read_back(&cfg, &topics, pending as i64))
            .await
            .map_err(|e| e.to_string())?
    }

    fn send(&self, producer: &FutureProducer<Kept>, seq: u64, env: Envelope) -> Delivery {
        let (topic, produced) = match env.route {
            Route::Observations => self.observations.clone(),
            Route::DeadLetter => self.deadletter.clone(),
        };
        let producer = producer.clone();
        Box::pin(async move {
            loop {
                let record = FutureRecord::to(&topic).key(&env.key).payload(&env.value);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        return match delivery.await {
                            Ok(Ok(_)) => {
                                produced.inc();
                                (seq, Ok(()))
                            }
                            Ok(Err((e, _))) => (seq, Err(e)),
                            Err(_) => (seq, Err(KafkaError::Canceled)),
                        };
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return (seq, Err(e)),
                }
            }
        })
    }

    async fn flush_ack(
        &self,
        shared: &Arc<Shared>,
        delivered_through: &mut Option<u64>,
        since_ack: &mut usize,
        last_ack: &mut Instant,
    ) {
        let Some(through) = delivered_through.take() else { return };
        let s = Arc::clone(shared);
        let res = tokio::task::spawn_blocking(move || {
            let mut spool = s.lock();
            let r = spool.ack(through);
            s.publish_gauges(&spool);
            drop(spool);
            s.space.notify_all();
            r
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, through, "spool ack failed; records may be re-sent after a restart")
            }
            Err(e) => tracing::error!(error = %e, "spool ack task failed"),
        }
        *since_ack = 0;
        *last_ack = Instant::now();
    }
}

/// Identity of a record as written: its route and value bytes (values carry the record's own id and
/// receive time, so equal bytes mean the same record).
fn fingerprint(env: &Envelope) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update([u8::from(env.route == Route::Observations)]);
    h.update(&env.value);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// Reads the last `n` records of every partition of `topics` (blocking).
fn read_back(cfg: &ClientConfig, topics: &[String], n: i64) -> Result<HashSet<[u8; 16]>, String> {
    let consumer: BaseConsumer = cfg.create().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(15);
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| format!("{topic}: {e}"))?;
        for p in md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), timeout).map_err(|e| format!("{topic}: {e}"))?;
            let start = lo.max(hi - n);
            if start < hi {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(start)).map_err(|e| e.to_string())?;
                ends.insert((topic.clone(), p.id()), hi);
            }
        }
    }
    let mut seen = HashSet::new();
    if ends.is_empty() {
        return Ok(seen);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!("{} partitions not read to their end within 60 s", ends.len()));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            // The end is where the consumer's position reaches the high watermark, not the last
            // record received: the dead-letter topic is also written in the processor's
            // transactions, so it ends with a commit marker, which is never delivered.
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let positions = consumer.position().map_err(|e| e.to_string())?;
                ends.retain(|(topic, partition), end| {
                    let at = positions.find_partition(topic, *partition).map(|e| e.offset());
                    !matches!(at, Some(Offset::Offset(o)) if o >= *end)
                });
            }
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => {
                let key = (m.topic().to_owned(), m.partition());
                let route = if m.topic() == topics[0] { Route::Observations } else { Route::DeadLetter };
                let env = Envelope { route, key: Vec::new(), value: m.payload().unwrap_or_default().to_vec() };
                seen.insert(fingerprint(&env));
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
            }
        }
    }
    Ok(seen)
}

enum SessionEnd {
    Cancelled,
    Failed(String),
}

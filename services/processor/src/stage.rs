//! `geostream process`: the Kafka loop around the pure partition tasks.
//!
//! One blocking thread runs a *session*: a consumer in the group `geostream-<tenant>-process`
//! (read_committed) and one transactional producer whose id is stable per instance (the pod
//! name), so a restarted instance fences its own zombie and aborts what it left open. Each batch
//! of input records is one transaction holding
//!
//! - the outputs: events, aggregates (one shard per input partition), enriched observations and
//!   dead letters (`late`, `malformed`, failed analytics);
//! - the state of every partition the batch touched, on the compacted `<tenant>.process-state`
//!   (key and partition = the input partition);
//! - the input offsets, sent with the group's metadata so a fenced generation cannot commit. Each
//!   is the partition's resume offset (its oldest record still waiting for the watermark), with
//!   how far it has read in the offset's metadata ([`CommitMark`]): the reorder buffer is not in
//!   the state but read again from the input on restore.
//!
//! After the commit the same states go to the volume. A partition that arrives (start, restart,
//! rebalance) gets the state that matches the group's committed offset and metadata: the volume
//! copy if it is that one, else the changelog record (always that one, since both were committed
//! together).
//! Any failure inside a transaction aborts it and restarts the session from the committed
//! offsets; a rebalance drops the uncommitted batch the same way. So every input record's effects
//! are committed exactly once, whatever is killed when.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{EngineConfig, Output, SqlFactory};
use geostream_analytics::spec::AnalyticSpec;
use geostream_kafka::{
    CompactedReader, Hooks, KafkaOpError, Kept, ReaderConsumer, ReaderContext, TopicSpec, client_config, ensure_topics,
    partitions_of,
};
use geostream_model::backoff::Backoff;
use geostream_model::time::OffsetDateTime;
use geostream_model::{DeadLetter, FenceSpec, Naming, Observation, ReasonCode, Stage, TenantId, TopicKind};
use geostream_telemetry::{Health, Telemetry};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::checkpoint::{CheckpointDir, CheckpointError, decode, encode};
use crate::metrics::{PartitionLabel, ProcessMetrics};
use crate::registry::{Change, Registry};
use crate::task::{Accepted, CommitMark, Committed, PartitionTask, TaskState};

/// Largest state record (bytes) on `<tenant>.process-state`; also the topic's `max.message.bytes`.
pub const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

/// Everything `geostream process` needs, already validated by the binary's config.
#[derive(Clone)]
pub struct ProcessSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic naming.
    pub naming: Naming,
    /// librdkafka properties, including `bootstrap.servers`.
    pub kafka: BTreeMap<String, String>,
    /// The stage's volume; checkpoints go to `<data_dir>/process`.
    pub data_dir: PathBuf,
    /// This instance's stable name (the pod name): part of the transactional id.
    pub instance: String,
    /// How far behind a partition's newest event time a record may arrive.
    pub lateness: Duration,
    /// Longest a batch collects records before its transaction commits.
    pub commit_interval: Duration,
    /// Most input records in one transaction.
    pub max_batch_records: usize,
    /// Partitions of topics this stage creates if they are missing.
    pub partitions: i32,
    /// Replication of topics this stage creates; None = broker default.
    pub replication: Option<i32>,
    /// Kafka's limit on an open transaction.
    pub transaction_timeout: Duration,
    /// Runs `sql` analytics; without it they are refused with a clear message.
    pub sql: Option<Arc<SqlFactory>>,
}

impl std::fmt::Debug for ProcessSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSettings")
            .field("tenant", &self.tenant)
            .field("instance", &self.instance)
            .field("lateness", &self.lateness)
            .field("commit_interval", &self.commit_interval)
            .field("max_batch_records", &self.max_batch_records)
            .field("sql", &self.sql.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The volume is not usable.
    #[error("process: {0}")]
    Volume(#[from] CheckpointError),
    /// The worker thread could not be started.
    #[error("process: cannot start the worker thread: {0}")]
    Thread(std::io::Error),
}

/// A session ended; the worker starts a new one after a backoff.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Kafka(#[from] KafkaOpError),
    #[error("{what}: {source}")]
    Client { what: &'static str, source: KafkaError },
    #[error("partition {partition}: {problem}")]
    State { partition: i32, problem: String },
}

fn client(what: &'static str) -> impl FnOnce(KafkaError) -> SessionError {
    move |source| SessionError::Client { what, source }
}

/// Remembers that partitions were revoked, so the loop drops its uncommitted batch.
struct GroupContext {
    revoked: AtomicBool,
    assigned: Mutex<BTreeSet<i32>>,
}

impl Hooks for GroupContext {
    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoked.store(true, Ordering::SeqCst);
            if let Ok(mut a) = self.assigned.lock() {
                for e in tpl.elements() {
                    a.remove(&e.partition());
                }
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Ok(mut a) = self.assigned.lock() {
                a.extend(tpl.elements().iter().map(|e| e.partition()));
            }
            tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions assigned");
        }
    }
}

/// The running stage.
pub struct ProcessStage {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    transactions: Arc<AtomicU64>,
}

impl ProcessStage {
    /// Starts the worker thread (sessions connect and reconnect in the background).
    pub fn start(settings: ProcessSettings, telemetry: &Telemetry) -> Result<ProcessStage, StageError> {
        let metrics = ProcessMetrics::default();
        telemetry.with_registry(|r| metrics.register(r));
        let health = telemetry.health().clone();
        health.set("kafka", false, "not connected yet");
        let checkpoints = CheckpointDir::open(settings.data_dir.join("process"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let transactions = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            settings,
            checkpoints,
            metrics,
            health,
            stop: Arc::clone(&stop),
            transactions: Arc::clone(&transactions),
            fault_abort_in_transaction: std::env::var("GEOSTREAM_FAULT_ABORT_IN_TRANSACTION")
                .ok()
                .and_then(|v| v.parse().ok()),
        };
        let thread = std::thread::Builder::new()
            .name("processor".into())
            .spawn(move || worker.run())
            .map_err(StageError::Thread)?;
        Ok(ProcessStage { stop, thread, transactions })
    }

    /// Transactions committed so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Stops after the batch in hand is committed (or aborted) and leaves the group.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::error!("processor thread panicked");
        }
        tracing::info!("processor stopped");
    }
}

/// Runs the stage until `shutdown` resolves.
pub async fn run(
    settings: ProcessSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StageError> {
    let stage = ProcessStage::start(settings, telemetry)?;
    shutdown.await;
    tracing::info!("processor shutting down");
    let _ = tokio::task::spawn_blocking(move || stage.shutdown()).await;
    Ok(())
}

struct Worker {
    settings: ProcessSettings,
    checkpoints: CheckpointDir,
    metrics: ProcessMetrics,
    health: Health,
    stop: Arc<AtomicBool>,
    transactions: Arc<AtomicU64>,
    /// Test fault injection: abort the process inside this transaction (counted from 1).
    fault_abort_in_transaction: Option<u64>,
}

/// The topics of the tenant, by role.
struct Topics {
    observations: String,
    events: String,
    aggregates: String,
    enriched: String,
    deadletter: String,
    state: String,
    fences: String,
    analytics: String,
}

/// The analytics and fences in force.
struct Analytics {
    fences: Registry<FenceSpec>,
    analytics: Registry<AnalyticSpec>,
    index: Arc<FenceIndex>,
    specs: Vec<AnalyticSpec>,
}

impl Analytics {
    fn rebuild_index(&mut self) {
        let (index, errors) = FenceIndex::build_skipping_invalid(self.fences.specs());
        for e in errors {
            tracing::warn!(error = %e, "fence left out of the index");
        }
        self.index = Arc::new(index);
    }

    fn rebuild_specs(&mut self) {
        self.specs = self.analytics.specs().filter(|s| s.enabled).cloned().collect();
    }
}

/// One record to produce in the open transaction.
struct Outgoing {
    topic: String,
    partition: Option<i32>,
    key: Vec<u8>,
    value: Vec<u8>,
    kind: &'static str,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        while !self.stopping() {
            match self.session() {
                Ok(()) => break,
                Err(e) => {
                    self.health.set("kafka", false, e.to_string());
                    tracing::warn!(error = %e, "processor session ended; starting again from the committed offsets");
                    let until = Instant::now() + backoff.next_delay();
                    while Instant::now() < until && !self.stopping() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    fn topics(&self) -> Topics {
        let s = &self.settings;
        let t = |k| s.naming.topic(&s.tenant, k);
        Topics {
            observations: t(TopicKind::Observations),
            events: t(TopicKind::Events),
            aggregates: t(TopicKind::Aggregates),
            enriched: t(TopicKind::Enriched),
            deadletter: t(TopicKind::Deadletter),
            state: t(TopicKind::ProcessState),
            fences: t(TopicKind::Fences),
            analytics: t(TopicKind::Analytics),
        }
    }

    fn engine_config<'a>(&'a self, a: &'a Analytics) -> EngineConfig<'a> {
        EngineConfig { specs: &a.specs, fences: Arc::clone(&a.index), sql: self.settings.sql.as_deref() }
    }

    /// Creates what is missing; returns the input partition count.
    fn ensure_topics(&self, topics: &Topics) -> Result<usize, SessionError> {
        let s = &self.settings;
        let plain = |name: &str| TopicSpec::new(name, s.partitions, false);
        let mut wanted = vec![
            plain(&topics.observations),
            plain(&topics.events),
            plain(&topics.aggregates),
            plain(&topics.enriched),
            plain(&topics.deadletter),
            TopicSpec::new(&topics.fences, 1, true),
            TopicSpec::new(&topics.analytics, 1, true),
        ];
        futures::executor::block_on(ensure_topics(&s.kafka, &wanted, s.replication))?;
        // The changelog needs a partition per input partition, so it follows the input's count.
        let probe: BaseConsumer = client_config(&s.kafka).create().map_err(client("metadata client"))?;
        let inputs = partitions_of(&probe, &topics.observations, Duration::from_secs(30))?.len();
        let mut state = TopicSpec::new(&topics.state, i32::try_from(inputs).unwrap_or(i32::MAX), true);
        state.settings.push(("max.message.bytes".into(), MAX_STATE_BYTES.to_string()));
        wanted = vec![state];
        futures::executor::block_on(ensure_topics(&s.kafka, &wanted, s.replication))?;
        let states = partitions_of(&probe, &topics.state, Duration::from_secs(30))?.len();
        if states < inputs {
            return Err(SessionError::State {
                partition: -1,
                problem: format!(
                    "{} has {states} partitions but {} has {inputs}; add partitions to the state topic",
                    topics.state, topics.observations
                ),
            });
        }
        Ok(inputs)
    }

    fn load_registries(&self, topics: &Topics) -> Result<(Analytics, CompactedReader, CompactedReader), SessionError> {
        let mut fences_reader = CompactedReader::new(&self.settings.kafka, &topics.fences)?;
        let mut analytics_reader = CompactedReader::new(&self.settings.kafka, &topics.analytics)?;
        let mut a = Analytics {
            fences: Registry::default(),
            analytics: Registry::default(),
            index: Arc::new(FenceIndex::build_skipping_invalid(std::iter::empty()).0),
            specs: Vec::new(),
        };
        fences_reader.catch_up(
            &mut |k, v| {
                note(&a.fences.apply(k, v), "fence");
            },
            Duration::from_secs(60),
        )?;
        analytics_reader.catch_up(
            &mut |k, v| {
                note(&a.analytics.apply(k, v), "analytic");
            },
            Duration::from_secs(60),
        )?;
        a.rebuild_index();
        a.rebuild_specs();
        tracing::info!(fences = a.index.len(), analytics = a.specs.len(), "registries read");
        Ok((a, fences_reader, analytics_reader))
    }

    fn session(&self) -> Result<(), SessionError> {
        let s = &self.settings;
        let topics = self.topics();
        let inputs = self.ensure_topics(&topics)?;
        let (mut analytics, mut fences_reader, mut analytics_reader) = self.load_registries(&topics)?;
        // Refuse to run analytics the engine cannot build (e.g. SQL without a runner) up front.
        PartitionTask::new(-1, 0, -1, self.engine_config(&analytics))
            .map_err(|e| SessionError::State { partition: -1, problem: e.to_string() })?;

        let group = s.naming.consumer_group(&s.tenant, Stage::Process);
        let mut pcfg = client_config(&s.kafka);
        pcfg.set("transactional.id", s.naming.transactional_id(&s.tenant, Stage::Process, &s.instance))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("message.max.bytes", (MAX_STATE_BYTES + 1024 * 1024).to_string())
            .set("transaction.timeout.ms", s.transaction_timeout.as_millis().to_string());
        let producer: ThreadedProducer<Kept> =
            geostream_kafka::create(&pcfg, ()).map_err(client("transactional producer"))?;
        producer.init_transactions(Duration::from_secs(60)).map_err(client("init transactions"))?;

        let mut ccfg = client_config(&s.kafka);
        ccfg.set("group.id", &group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        // A killed instance holds its partitions until its session expires; librdkafka's 45 s
        // default would stall them that long after every crash. Settable through kafka.properties.
        for (k, v) in [("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "2000")] {
            if !s.kafka.contains_key(k) {
                ccfg.set(k, v);
            }
        }
        let ctx = GroupContext { revoked: AtomicBool::new(false), assigned: Mutex::new(BTreeSet::new()) };
        let consumer: BaseConsumer<Kept<GroupContext>> =
            geostream_kafka::create(&ccfg, ctx).map_err(client("consumer"))?;
        consumer.subscribe(&[topics.observations.as_str()]).map_err(client("subscribe"))?;
        let state_reader = StateReader::new(&s.kafka, &topics.state)?;
        self.health.set("kafka", true, format!("in group {group}, {inputs} input partitions"));

        let mut tasks: BTreeMap<i32, PartitionTask> = BTreeMap::new();
        let mut session = Session { worker: self, topics: &topics, producer: &producer, consumer: &consumer };
        while !self.stopping() {
            let batch = session.collect(&mut tasks)?;
            let mut pending: Vec<Outgoing> = Vec::new();
            let mut touched: BTreeSet<i32> = BTreeSet::new();

            // Registry changes apply between batches, to every task at once, inside the transaction.
            let mut fences_changed = false;
            fences_reader
                .poll(&mut |k, v| fences_changed |= note(&analytics.fences.apply(k, v), "fence"), Duration::ZERO)?;
            let mut analytics_changed = false;
            analytics_reader.poll(
                &mut |k, v| analytics_changed |= note(&analytics.analytics.apply(k, v), "analytic"),
                Duration::ZERO,
            )?;
            if fences_changed {
                analytics.rebuild_index();
                for (p, task) in &mut tasks {
                    let outs = task.replace_fences(Arc::clone(&analytics.index));
                    if !outs.is_empty() {
                        touched.insert(*p);
                    }
                    session.outputs(*p, outs, &mut pending);
                }
            }
            if analytics_changed {
                analytics.rebuild_specs();
                for (p, task) in &mut tasks {
                    if let Err(e) = task.reconfigure(self.engine_config(&analytics)) {
                        tracing::error!(error = %e, "analytics not applied; the previous set keeps running");
                        break;
                    }
                    touched.insert(*p);
                }
            }

            for m in &batch {
                let p = m.partition();
                if let std::collections::btree_map::Entry::Vacant(e) = tasks.entry(p) {
                    e.insert(session.load_task(p, &state_reader, &analytics)?);
                }
                let Some(task) = tasks.get_mut(&p) else { continue };
                touched.insert(p);
                session.accept(task, m, &mut pending);
            }
            for p in &touched {
                if let Some(task) = tasks.get_mut(p) {
                    let outs = task.release();
                    session.outputs(*p, outs, &mut pending);
                }
            }
            if touched.is_empty() {
                continue;
            }
            let committed = session.commit(&tasks, &touched, pending)?;
            for p in &touched {
                if let Some(task) = tasks.get_mut(p) {
                    self.metrics.forgotten.inc_by(task.take_forgotten());
                    let label = PartitionLabel { partition: *p };
                    self.metrics.buffered.get_or_create(&label).set(task.buffered() as i64);
                    if let Some(w) = task.watermark() {
                        self.metrics.watermark.get_or_create(&label).set(w.unix_timestamp());
                    }
                }
            }
            for (p, encoded) in &committed {
                if let Err(e) = self.checkpoints.save_encoded(*p, encoded) {
                    // The changelog holds the same state; the volume copy only saves a read.
                    tracing::warn!(error = %e, "checkpoint not written to the volume");
                }
            }
            self.transactions.fetch_add(1, Ordering::Relaxed);
        }
        consumer.unsubscribe();
        Ok(())
    }
}

fn note(change: &Change, what: &str) -> bool {
    match change {
        Change::Upserted(id) => tracing::info!(id = %id, "{what} registered"),
        Change::Deleted(id) => tracing::info!(id = %id, "{what} deleted"),
        Change::Invalid { key, problem } => tracing::warn!(key = %key, problem = %problem, "{what} record refused"),
        Change::Unchanged => {}
    }
    change.changed()
}

struct Session<'a> {
    worker: &'a Worker,
    topics: &'a Topics,
    producer: &'a ThreadedProducer<Kept>,
    consumer: &'a BaseConsumer<Kept<GroupContext>>,
}

impl Session<'_> {
    /// Polls records for up to the commit interval. A rebalance during the poll drops what was
    /// collected and every task: their effects were not committed, and partitions assigned again
    /// restart from the committed offsets with the committed state.
    fn collect(&mut self, tasks: &mut BTreeMap<i32, PartitionTask>) -> Result<Vec<OwnedMessage>, SessionError> {
        let s = &self.worker.settings;
        let deadline = Instant::now() + s.commit_interval;
        let mut batch = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let polled = self.consumer.poll(left.min(Duration::from_millis(100)));
            if self.consumer.context().revoked.swap(false, Ordering::SeqCst) {
                if !batch.is_empty() {
                    tracing::info!(records = batch.len(), "rebalance: uncommitted batch dropped, to be read again");
                }
                batch.clear();
                tasks.clear();
            }
            match polled {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => {}
            }
            let assigned = self.consumer.context().assigned.lock().map(|a| a.len()).unwrap_or(0);
            self.worker.metrics.assigned.set(assigned as i64);
            if left.is_zero() || batch.len() >= s.max_batch_records || self.worker.stopping() {
                break;
            }
        }
        self.worker.metrics.records.inc_by(batch.len() as u64);
        Ok(batch)
    }

    /// The state matching the group's committed offset of `partition`.
    fn load_task(
        &self,
        partition: i32,
        reader: &StateReader,
        analytics: &Analytics,
    ) -> Result<PartitionTask, SessionError> {
        let w = self.worker;
        let lateness = i128::try_from(w.settings.lateness.as_nanos()).unwrap_or(i128::MAX);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.observations, partition);
        let committed =
            self.consumer.committed_offsets(tpl, Duration::from_secs(30)).map_err(client("committed offsets"))?;
        let committed = committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(n) => Some(Committed::parse(n, e.metadata())),
            _ => None,
        });
        let restore = |state: TaskState, from: &str| {
            ProcessMetrics::count(&w.metrics.restored, from, 1);
            let replay = state.next_offset - state.resume_offset;
            tracing::info!(partition, offset = state.next_offset, replay, from, "partition state restored");
            PartitionTask::restore(state, lateness, w.engine_config(analytics))
                .map_err(|e| SessionError::State { partition, problem: e.to_string() })
        };
        let empty = |from_offset: i64| {
            ProcessMetrics::count(&w.metrics.restored, "empty", 1);
            PartitionTask::new(partition, lateness, from_offset, w.engine_config(analytics))
                .map_err(|e| SessionError::State { partition, problem: e.to_string() })
        };
        let Some(committed) = committed else {
            // Nothing committed: the group starts this partition from the beginning, and so does
            // its state (a checkpoint without committed offsets is from a deleted group).
            return empty(-1);
        };
        match w.checkpoints.load(partition) {
            Ok(Some(state)) if committed.matches(&state, false) => return restore(state, "volume"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "damaged checkpoint ignored; reading the changelog");
                w.checkpoints.remove(partition);
            }
        }
        match reader.latest(partition) {
            Ok(Some(state)) if committed.matches(&state, true) => restore(state, "changelog"),
            found => {
                let found = match found {
                    Ok(found) => found.map(|s| CommitMark::of(&s)),
                    // An unreadable record (e.g. an earlier version's format) is a mismatch too.
                    Err(SessionError::State { problem, .. }) => {
                        tracing::warn!(partition, problem = %problem, "changelog state not usable");
                        None
                    }
                    Err(e) => return Err(e),
                };
                w.metrics.state_mismatch.inc();
                tracing::error!(
                    partition,
                    committed = ?committed,
                    state = ?found,
                    "no state matches the committed offset (state topic deleted or truncated?); starting this \
                     partition's analytics empty"
                );
                empty(committed.resume)
            }
        }
    }

    fn accept(&self, task: &mut PartitionTask, m: &OwnedMessage, pending: &mut Vec<Outgoing>) {
        let w = self.worker;
        // Only dead letters need it; built then, not for every record.
        let source = || format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
        let raw = m.payload().unwrap_or_default();
        match serde_json::from_slice::<Observation>(raw) {
            Ok(obs) => {
                let feed = obs.feed.to_string();
                let time = obs.time;
                match task.accept(m.offset(), obs) {
                    Accepted::Late { watermark } => {
                        let detail = format!(
                            "event time {} is before the watermark {} of partition {} (allowed lateness {} s)",
                            rfc3339(time),
                            rfc3339(watermark),
                            m.partition(),
                            w.settings.lateness.as_secs()
                        );
                        let dl =
                            DeadLetter::new(raw, Stage::Process, ReasonCode::Late, detail, OffsetDateTime::now_utc())
                                .with_feed(feed)
                                .with_source(source());
                        self.dead_letter(dl, "late", pending);
                    }
                    Accepted::Replayed => {
                        w.metrics.replayed.inc();
                    }
                    Accepted::Buffered | Accepted::Duplicate => {}
                }
            }
            // A replayed malformed record was dead-lettered before the checkpoint.
            Err(_) if !task.skip(m.offset()) => {
                w.metrics.replayed.inc();
            }
            Err(e) => {
                let dl = DeadLetter::new(
                    raw,
                    Stage::Process,
                    ReasonCode::Malformed,
                    format!("not an observation: {e}"),
                    OffsetDateTime::now_utc(),
                )
                .with_source(source());
                self.dead_letter(dl, "malformed", pending);
            }
        }
    }

    fn dead_letter(&self, dl: DeadLetter, reason: &'static str, pending: &mut Vec<Outgoing>) {
        ProcessMetrics::count(&self.worker.metrics.dead_letters, reason, 1);
        let key = dl.feed.clone().unwrap_or_default().into_bytes();
        if let Ok(value) = serde_json::to_vec(&dl) {
            pending.push(Outgoing {
                topic: self.topics.deadletter.clone(),
                partition: None,
                key,
                value,
                kind: "deadletter",
            });
        }
    }

    fn outputs(&self, partition: i32, outs: Vec<Output>, pending: &mut Vec<Outgoing>) {
        for o in outs {
            let (topic, key, value, kind) = match o {
                Output::Event(e) => {
                    let key = e.track.as_ref().map_or_else(|| e.id.to_string(), |t| t.to_string());
                    (&self.topics.events, key, serde_json::to_vec(&e), "events")
                }
                Output::Aggregate(mut a) => {
                    a.shard = u32::try_from(partition).ok();
                    a.refresh_id();
                    (&self.topics.aggregates, a.id.to_string(), serde_json::to_vec(&a), "aggregates")
                }
                Output::Joined(obs) => {
                    let key = obs.track.as_ref().map_or_else(|| obs.id.to_string(), |t| t.to_string());
                    (&self.topics.enriched, key, serde_json::to_vec(&obs), "enriched")
                }
                Output::Failed { analytic, message } => {
                    let detail = format!("analytic {analytic} failed on partition {partition}: {message}");
                    tracing::warn!("{detail}");
                    let dl = DeadLetter::new(
                        Vec::new(),
                        Stage::Process,
                        ReasonCode::Rejected,
                        detail,
                        OffsetDateTime::now_utc(),
                    )
                    .with_source(format!("{}/{partition}", self.topics.observations));
                    self.dead_letter(dl, "rejected", pending);
                    continue;
                }
            };
            match value {
                Ok(value) => {
                    pending.push(Outgoing { topic: topic.clone(), partition: None, key: key.into_bytes(), value, kind })
                }
                Err(e) => tracing::error!(error = %e, "output not serialisable; dropped"),
            }
        }
    }

    /// One transaction: outputs, the touched partitions' states, their input offsets.
    fn commit(
        &self,
        tasks: &BTreeMap<i32, PartitionTask>,
        touched: &BTreeSet<i32>,
        mut pending: Vec<Outgoing>,
    ) -> Result<Vec<(i32, Vec<u8>)>, SessionError> {
        let mut offsets = TopicPartitionList::new();
        for p in touched {
            let Some(task) = tasks.get(p) else { continue };
            pending.push(Outgoing {
                topic: self.topics.state.clone(),
                partition: Some(*p),
                key: p.to_string().into_bytes(),
                value: encode(&task.state()),
                kind: "state",
            });
            let mark = task.commit_mark();
            if mark.resume >= 0 {
                let mut e = offsets.add_partition(&self.topics.observations, *p);
                e.set_offset(Offset::Offset(mark.resume)).map_err(client("offsets"))?;
                e.set_metadata(mark.metadata());
            }
        }
        let result = self.transaction(&pending, &offsets);
        let m = &self.worker.metrics;
        match result {
            Ok(()) => {
                m.transactions.inc();
                let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
                for o in &pending {
                    *by_kind.entry(o.kind).or_default() += 1;
                }
                for (kind, n) in by_kind {
                    ProcessMetrics::count(&m.produced, kind, n);
                }
                // The committed states, encoded once, go to the volume as they are.
                Ok(pending
                    .into_iter()
                    .filter(|o| o.kind == "state")
                    .filter_map(|o| o.partition.map(|p| (p, o.value)))
                    .collect())
            }
            Err(e) => {
                m.aborted.inc();
                if let Err(abort) = self.producer.abort_transaction(Duration::from_secs(30)) {
                    tracing::warn!(error = %abort, "abort failed; the broker aborts the transaction at its timeout");
                }
                Err(e)
            }
        }
    }

    fn transaction(&self, pending: &[Outgoing], offsets: &TopicPartitionList) -> Result<(), SessionError> {
        let crash_here = self
            .worker
            .fault_abort_in_transaction
            .is_some_and(|n| n == self.worker.transactions.load(Ordering::Relaxed) + 1);
        self.producer.begin_transaction().map_err(client("begin transaction"))?;
        for o in pending {
            let mut record = BaseRecord::<[u8], [u8]>::to(&o.topic).key(&o.key).payload(&o.value);
            if let Some(p) = o.partition {
                record = record.partition(p);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(SessionError::Client { what: "produce", source: e }),
                }
            }
        }
        if crash_here {
            // Fault injection for tests (GEOSTREAM_FAULT_ABORT_IN_TRANSACTION): the outputs reach
            // the broker inside the open transaction, then the process dies without a word, the
            // worst moment for exactly-once that a kill -9 can only hit by chance.
            let _ = self.producer.flush(Duration::from_secs(30));
            tracing::error!("fault injection: aborting the process inside transaction");
            std::process::abort();
        }
        if offsets.count() > 0 {
            let meta = self
                .consumer
                .group_metadata()
                .ok_or(SessionError::Client { what: "group metadata", source: KafkaError::NoMessageReceived })?;
            self.producer
                .send_offsets_to_transaction(offsets, &meta, Duration::from_secs(60))
                .map_err(client("send offsets to the transaction"))?;
        }
        self.producer.commit_transaction(Duration::from_secs(120)).map_err(client("commit transaction"))
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    use geostream_model::time::format_description::well_known::Rfc3339;
    t.format(&Rfc3339).unwrap_or_default()
}

/// Reads the newest committed state of a partition from `<tenant>.process-state`.
struct StateReader {
    consumer: ReaderConsumer,
    topic: String,
}

impl StateReader {
    fn new(properties: &BTreeMap<String, String>, topic: &str) -> Result<Self, SessionError> {
        let mut cfg: ClientConfig = client_config(properties);
        cfg.set("group.id", format!("{topic}.reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.max.bytes", (MAX_STATE_BYTES + 1024 * 1024).to_string())
            .set("receive.message.max.bytes", (MAX_STATE_BYTES + 2 * 1024 * 1024).to_string());
        let consumer: ReaderConsumer = geostream_kafka::create(&cfg, ReaderContext).map_err(client("state reader"))?;
        Ok(Self { consumer, topic: topic.to_owned() })
    }

    /// The last state record of `partition`. Each transaction writes one record (plus a commit
    /// marker) per partition it touched, so the newest is near the end; the whole partition is
    /// read only if the tail holds none (e.g. aborted transactions at the end).
    fn latest(&self, partition: i32) -> Result<Option<TaskState>, SessionError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, Duration::from_secs(30))
            .map_err(client("state topic watermarks"))?;
        if high <= low {
            return Ok(None);
        }
        let mut start = (high - 64).max(low);
        loop {
            if let Some(state) = self.read_from(partition, start)? {
                return Ok(Some(state));
            }
            if start == low {
                return Ok(None);
            }
            start = low;
        }
    }

    fn read_from(&self, partition: i32, start: i64) -> Result<Option<TaskState>, SessionError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(start)).map_err(client("state assign"))?;
        self.consumer.assign(&tpl).map_err(client("state assign"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            if Instant::now() > deadline {
                return Err(SessionError::State { partition, problem: format!("reading {} timed out", self.topic) });
            }
            match self.consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(SessionError::Client { what: "state read", source: e }),
                Some(Ok(m)) => {
                    if let Some(v) = m.payload() {
                        last = Some(v.to_vec());
                    }
                }
            }
        }
        let _ = self.consumer.unassign();
        match last {
            None => Ok(None),
            Some(bytes) => {
                let state = decode(&bytes, &format!("{}/{partition}", self.topic))
                    .map_err(|e| SessionError::State { partition, problem: e.to_string() })?;
                Ok(Some(state))
            }
        }
    }
}

//! The Kafka loop: observations, events and aggregates of a tenant (read committed, consumer group
//! `geostream-<tenant>-archive`) buffered per partition and flushed to GeoParquet files by records,
//! bytes or age, with the exactly-once protocol of [`crate::progress`]; closed hours compacted.
//!
//! Runs beside the sink in `geostream sink`, in its own group, so the archive's progress is
//! independent of the search engine's (an object store outage holds back neither the other).
//!
//! A partition's progress object is loaded when its first record arrives after an assignment; an
//! interrupted flush in it is redone first (exactly its offset range, see [`crate::progress`]);
//! records it already covers are skipped; if Kafka started
//! past it (its committed offset is ahead, e.g. the archive root was emptied), the partition is
//! sought back. A revoked partition's buffer is dropped: its new owner re-reads it from the
//! progress. Flushes run inside the loop, so a rebalance waits for a flush in progress
//! (as long as it stays within `max.poll.interval.ms`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geostream_kafka::{Hooks, Kept};
use geostream_model::backoff::Backoff;
use geostream_model::{Naming, Stage, TenantId};
use geostream_telemetry::{Health, Telemetry};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::compact::{self, Policy};
use crate::error::ArchiveError;
use crate::geoparquet;
use crate::kind::ArchiveKind;
use crate::layout::{DataFile, FileName, Layout};
use crate::metrics::{ArchiveMetrics, KindLabel, PartitionLabel};
use crate::progress::{Admit, Cursor, Pending, Progress, plan_flush};
use crate::rows::{Row, to_batch};
use crate::store::ArchiveStore;

/// When a flush happens: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushSettings {
    /// Buffered records (all partitions together).
    pub max_records: usize,
    /// Buffered bytes (all partitions together, roughly the payloads): bounds memory.
    pub max_bytes: usize,
    /// Age of the oldest buffered record.
    pub max_age: Duration,
}

/// Small-file compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Whether to compact at all.
    pub enabled: bool,
    /// How often to look for closed hours to compact.
    pub interval: Duration,
    /// How long after an hour ends before it is compacted.
    pub grace: Duration,
    /// Largest compacted file.
    pub target_bytes: u64,
}

/// Everything the archive needs, already validated by the binary's config.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic naming.
    pub naming: Naming,
    /// librdkafka properties of the pipeline's cluster, including `bootstrap.servers`.
    pub kafka: BTreeMap<String, String>,
    /// Where the archive lives.
    pub store: ArchiveStore,
    /// Flush limits.
    pub flush: FlushSettings,
    /// Compaction.
    pub compaction: CompactionSettings,
    /// Fault injection for tests (`GEOSTREAM_FAULT_ARCHIVE_STOP_AFTER_FILES`): after writing this
    /// many data files the loop stops dead, mid-flush, as a crash between files would.
    pub fault_stop_after_files: Option<u64>,
}

/// `geostream-<tenant>-archive`: a group of its own beside the sink's and the outputs'.
pub fn consumer_group(naming: &Naming, tenant: &TenantId) -> String {
    let sink = naming.consumer_group(tenant, Stage::Sink);
    let base = sink.strip_suffix(Stage::Sink.as_str()).unwrap_or(&sink);
    format!("{base}archive")
}

/// Remembers revoked partitions for the loop (the callback runs inside the consumer's poll).
#[derive(Default)]
struct ArchiveContext {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl Hooks for ArchiveContext {
    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            r.extend(list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
        }
    }
}

type ArchiveConsumer = StreamConsumer<Kept<ArchiveContext>>;

/// The running archive; [`ArchiveStage::shutdown`] flushes and stops it.
pub struct ArchiveStage {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    flushes: Arc<AtomicU64>,
    metrics: ArchiveMetrics,
}

impl ArchiveStage {
    /// Creates the consumer and starts the loop.
    pub async fn start(settings: ArchiveSettings, telemetry: &Telemetry) -> Result<ArchiveStage, ArchiveError> {
        let metrics = ArchiveMetrics::default();
        telemetry.with_registry(|r| metrics.register(r));
        for k in ArchiveKind::ALL {
            let l = KindLabel { kind: k.as_str().to_owned() };
            drop(metrics.records.get_or_create(&l));
            drop(metrics.files.get_or_create(&l));
            drop(metrics.compactions.get_or_create(&l));
        }
        let health = telemetry.health().clone();
        health.set("archive", false, "not subscribed yet");
        let mut cfg = ClientConfig::new();
        for (k, v) in &settings.kafka {
            cfg.set(k, v);
        }
        cfg.set("group.id", consumer_group(&settings.naming, &settings.tenant))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: ArchiveConsumer = geostream_kafka::create(&cfg, ArchiveContext::default())
            .map_err(|source| ArchiveError::Kafka { what: "archive consumer", source })?;
        let cancel = CancellationToken::new();
        let flushes = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            layout: Layout::new(settings.store.root.clone(), settings.tenant.as_str()),
            topics: ArchiveKind::ALL
                .into_iter()
                .map(|k| (settings.naming.topic(&settings.tenant, k.topic_kind()), k))
                .collect(),
            settings,
            consumer: Arc::new(consumer),
            parts: HashMap::new(),
            buffered_records: 0,
            buffered_bytes: 0,
            oldest: None,
            files_written: 0,
            redo_due: false,
            metrics: metrics.clone(),
            health,
            cancel: cancel.clone(),
            flushes: Arc::clone(&flushes),
        };
        let task = tokio::spawn(worker.run());
        Ok(ArchiveStage { cancel, task, flushes, metrics })
    }

    /// Flushes completed so far (each may cover several partitions).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The metrics (also registered in the telemetry registry).
    pub fn metrics(&self) -> &ArchiveMetrics {
        &self.metrics
    }

    /// Whether the loop has ended (stopped, or stopped dead by fault injection).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking records and flushes what is buffered (once; if the store is down it stays
    /// unflushed and is read again on the next start).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "archive task ended abnormally");
        }
        tracing::info!("archive stopped");
    }

    /// Stops dead without flushing or committing anything, as a killed process would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Runs the archive until `shutdown` resolves.
pub async fn run(
    settings: ArchiveSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ArchiveError> {
    let stage = ArchiveStage::start(settings, telemetry).await?;
    shutdown.await;
    stage.shutdown().await;
    Ok(())
}

/// One assigned partition's state.
struct Part {
    kind: ArchiveKind,
    progress: Progress,
    cursor: Cursor,
    rows: Vec<Row>,
    /// First and last offset taken since the last flush.
    range: Option<(i64, i64)>,
    /// The interrupted flush found on loading, until it is redone: the partition flushes exactly
    /// its range next.
    redo: Option<Pending>,
}

impl Part {
    /// Whether the buffered records may be flushed now (a redo only once its range is complete).
    fn flushable(&self) -> bool {
        match (&self.redo, self.range) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(r), Some((_, last))) => last >= r.last,
        }
    }
}

/// Why the loop stops.
enum Stop {
    /// The stage is shutting down.
    Cancelled,
    /// Fault injection fired.
    Fault,
}

struct Worker {
    settings: ArchiveSettings,
    layout: Layout,
    topics: HashMap<String, ArchiveKind>,
    consumer: Arc<ArchiveConsumer>,
    parts: HashMap<(String, i32), Part>,
    buffered_records: usize,
    buffered_bytes: usize,
    oldest: Option<Instant>,
    files_written: u64,
    /// A partition completed the range of its interrupted flush: flush before taking more.
    redo_due: bool,
    metrics: ArchiveMetrics,
    health: Health,
    cancel: CancellationToken,
    flushes: Arc<AtomicU64>,
}

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Worker {
    async fn pause(&self, d: Duration) -> Result<(), Stop> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(Stop::Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn run(mut self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let group = consumer_group(&self.settings.naming, &self.settings.tenant);
        if let Err(e) = self.consumer.subscribe(&refs) {
            tracing::error!(error = %e, "archive could not subscribe");
            self.health.set("archive", false, format!("subscribe failed: {e}"));
            return;
        }
        self.health.set("archive", true, format!("archiving to {} as {group}", self.settings.store.url));
        tracing::info!(url = %self.settings.store.url, %group, "archive consuming");
        let c = self.settings.compaction;
        let mut next_compaction = Instant::now() + c.interval;
        let stop = loop {
            let flush_at = self.oldest.map(|t| t + self.settings.flush.max_age);
            let wake = flush_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)).min(next_compaction);
            let event = tokio::select! {
                () = self.cancel.cancelled() => break Stop::Cancelled,
                () = tokio::time::sleep_until(wake) => None,
                m = self.consumer.recv() => Some(m.map(|m| m.detach())),
            };
            self.drop_revoked();
            let step = match event {
                Some(Ok(m)) => self.take(&m).await,
                Some(Err(e)) => {
                    // A missing topic (nothing produced yet) or a broker hiccup; the consumer recovers.
                    tracing::debug!(error = %e, "kafka consumer error");
                    self.pause(Duration::from_millis(200)).await
                }
                None => Ok(()),
            };
            if let Err(s) = step {
                break s;
            }
            let s = &self.settings.flush;
            let due = self.redo_due
                || self.buffered_records >= s.max_records
                || self.buffered_bytes >= s.max_bytes
                || self.oldest.is_some_and(|t| t + s.max_age <= Instant::now());
            if due && let Err(s) = self.flush_all(true).await {
                break s;
            }
            if c.enabled && Instant::now() >= next_compaction {
                if let Err(s) = self.compact_all().await {
                    break s;
                }
                next_compaction = Instant::now() + c.interval;
            }
        };
        if matches!(stop, Stop::Cancelled) {
            // One attempt at flushing what is buffered; failing that it is read again next time.
            self.drop_revoked();
            let _ = self.flush_all(false).await;
        } else {
            tracing::error!("fault injection: the archive stops dead in the middle of a flush");
        }
        self.consumer.unsubscribe();
    }

    fn drop_revoked(&mut self) {
        let revoked: Vec<(String, i32)> =
            std::mem::take(&mut *self.consumer.context().revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for key in revoked {
            if let Some(p) = self.parts.remove(&key) {
                tracing::info!(topic = %key.0, partition = key.1, dropped = p.rows.len(), "partition revoked");
                self.buffered_records = self.buffered_records.saturating_sub(p.rows.len());
            }
        }
        if self.parts.values().all(|p| p.range.is_none()) {
            self.buffered_records = 0;
            self.buffered_bytes = 0;
            self.oldest = None;
        }
        self.metrics.buffered_records.set(self.buffered_records as i64);
    }

    /// Loads a partition's progress (an interrupted flush stays pending until it is redone).
    async fn load(&self, kind: ArchiveKind, topic: &str, partition: i32) -> Result<Progress, ArchiveError> {
        let path = self.layout.progress(kind, partition);
        let Some(bytes) = self.settings.store.get(&path).await? else {
            return Ok(Progress::empty(topic, partition));
        };
        let stored = Progress::from_bytes(&bytes)?;
        if let Some(p) = &stored.pending {
            tracing::warn!(%topic, partition, first = p.first, last = p.last, files = p.files.len(),
                "an interrupted flush is redone");
        }
        Ok(stored)
    }

    /// Gives up redoing a partition's interrupted flush: deletes its files and forgets it.
    async fn abandon(&mut self, key: &(String, i32)) -> Result<(), Stop> {
        let Some(part) = self.parts.get(key) else { return Ok(()) };
        let (abandoned, files) = part.progress.abandon();
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        for f in &files {
            while let Err(e) = self.settings.store.delete(f).await {
                self.metrics.errors.inc();
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, path = %f, retry_in_ms = wait.as_millis() as u64, "archive delete failed");
                self.pause(wait).await?;
            }
        }
        self.metrics.abandoned_files.inc_by(files.len() as u64);
        if let Some(part) = self.parts.get_mut(key) {
            part.progress = abandoned;
            part.redo = None;
        }
        Ok(())
    }

    async fn take(&mut self, m: &rdkafka::message::OwnedMessage) -> Result<(), Stop> {
        let Some(&kind) = self.topics.get(m.topic()) else { return Ok(()) };
        let key = (m.topic().to_owned(), m.partition());
        if !self.parts.contains_key(&key) {
            let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
            let progress = loop {
                match self.load(kind, &key.0, key.1).await {
                    Ok(p) => break p,
                    Err(e) => {
                        self.metrics.errors.inc();
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, topic = %key.0, partition = key.1, retry_in_ms = wait.as_millis() as u64,
                            "archive progress not readable yet");
                        self.pause(wait).await?;
                    }
                }
            };
            let cursor = Cursor::Fresh { next: progress.next_offset };
            let redo = progress.pending.clone();
            self.parts.insert(key.clone(), Part { kind, progress, cursor, rows: Vec::new(), range: None, redo });
        }
        let Some(part) = self.parts.get_mut(&key) else { return Ok(()) };
        match part.cursor.admit(m.offset()) {
            Admit::Skip => return Ok(()),
            Admit::SeekTo(o) => {
                tracing::info!(topic = %key.0, partition = key.1, from = m.offset(), to = o,
                    "kafka is past the archive's progress; seeking back");
                if let Err(e) = self.consumer.seek(&key.0, key.1, Offset::Offset(o), Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "seek failed; the partition's progress is loaded again");
                    self.parts.remove(&key);
                }
                return Ok(());
            }
            Admit::Take => {}
        }
        let offset = m.offset();
        // The records no longer fit the interrupted flush (retention removed its first ones, or
        // its last one is gone): it cannot be redone as it was. What was taken of it stays
        // buffered and is flushed as an ordinary flush.
        let misfit = part.redo.as_ref().is_some_and(|r| match part.range {
            None => offset != r.first,
            Some(_) => offset > r.last,
        });
        if misfit {
            tracing::warn!(topic = %key.0, partition = key.1, offset,
                "the interrupted flush cannot be redone; its files are deleted");
            self.abandon(&key).await?;
        }
        let Some(part) = self.parts.get_mut(&key) else { return Ok(()) };
        part.range = Some(part.range.map_or((offset, offset), |(f, _)| (f, offset)));
        match Row::parse(kind, m.partition(), offset, m.payload().unwrap_or_default()) {
            Ok(row) => {
                self.buffered_bytes += row.approx_bytes();
                part.rows.push(row);
            }
            Err(e) => {
                self.metrics.malformed.inc();
                tracing::debug!(topic = %key.0, partition = key.1, offset, error = %e, "not archived");
            }
        }
        if part.redo.as_ref().is_some_and(|r| offset >= r.last) {
            self.redo_due = true;
        }
        self.buffered_records += 1;
        self.metrics.buffered_records.set(self.buffered_records as i64);
        self.oldest.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Flushes every partition with buffered records, then commits their offsets to Kafka.
    /// `retry`: keep retrying a failing store until it works or the stage stops.
    async fn flush_all(&mut self, retry: bool) -> Result<(), Stop> {
        self.redo_due = false;
        let keys: Vec<(String, i32)> =
            self.parts.iter().filter(|(_, p)| p.flushable()).map(|(k, _)| k.clone()).collect();
        let mut commit = TopicPartitionList::new();
        for key in keys {
            let Some(part) = self.parts.get_mut(&key) else { continue };
            let Some((first, last)) = part.range.take() else { continue };
            let rows = std::mem::take(&mut part.rows);
            let kind = part.kind;
            let spare = part.redo.is_some().then(|| rows.clone());
            let mut planned = plan_flush(&self.layout, kind, &part.progress, first, last, rows);
            if let (Err(e), Some(rows)) = (&planned, spare) {
                // The same records now make other files (a newer build): redo is impossible.
                tracing::warn!(error = %e, topic = %key.0, partition = key.1,
                    "the interrupted flush's records make other files now; its files are deleted");
                self.abandon(&key).await?;
                let Some(part) = self.parts.get(&key) else { continue };
                planned = plan_flush(&self.layout, kind, &part.progress, first, last, rows);
            }
            let plan = match planned {
                Ok(p) => p,
                Err(e) => {
                    // Cannot happen with offsets taken in order; the records are read again.
                    tracing::error!(error = %e, topic = %key.0, partition = key.1, "flush does not fit the progress");
                    self.parts.remove(&key);
                    continue;
                }
            };
            let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
            loop {
                match self.execute(kind, key.1, &plan).await {
                    Ok(()) => break,
                    Err(FlushError::Stop(s)) => return Err(s),
                    Err(FlushError::Failed(e)) => {
                        self.metrics.errors.inc();
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, topic = %key.0, partition = key.1, retry_in_ms = wait.as_millis() as u64,
                            "archive flush failed");
                        if !retry {
                            return Err(Stop::Cancelled);
                        }
                        self.pause(wait).await?;
                    }
                }
            }
            let rows: usize = plan.files.iter().map(|f| f.rows.len()).sum();
            self.metrics.records.get_or_create(&KindLabel { kind: kind.as_str().to_owned() }).inc_by(rows as u64);
            if let Some(part) = self.parts.get_mut(&key) {
                part.progress = plan.done.clone();
                if part.redo.take().is_some() {
                    self.metrics.redone_flushes.inc();
                }
            }
            if let Err(e) = commit.add_partition_offset(&key.0, key.1, Offset::Offset(plan.done.next_offset)) {
                tracing::warn!(error = %e, "offset not committable");
            }
        }
        // Only redos waiting for the rest of their range can still be buffered.
        let waiting = self.parts.values().filter(|p| p.range.is_some());
        self.buffered_records = waiting.clone().map(|p| p.rows.len()).sum();
        self.buffered_bytes = waiting.map(|p| p.rows.iter().map(Row::approx_bytes).sum::<usize>()).sum();
        // Restarted, so a waiting redo does not make every turn of the loop a flush.
        self.oldest = (self.buffered_records > 0).then(Instant::now);
        self.metrics.buffered_records.set(self.buffered_records as i64);
        if commit.count() == 0 {
            return Ok(());
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // Kafka's offsets only shorten the next start: the progress objects are already written.
        if let Err(e) = self.consumer.commit(&commit, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed; records are skipped by the progress on the next start");
        }
        self.publish_lag(commit).await;
        Ok(())
    }

    /// Intent, files, commit: the protocol of [`crate::progress`].
    async fn execute(
        &mut self,
        kind: ArchiveKind,
        partition: i32,
        plan: &crate::progress::FlushPlan,
    ) -> Result<(), FlushError> {
        let store = self.settings.store.clone();
        let progress_path = self.layout.progress(kind, partition);
        if let Some(intent) = &plan.intent {
            store.put(&progress_path, intent.to_bytes()).await.map_err(|e| FlushError::Failed(e.into()))?;
        }
        let label = KindLabel { kind: kind.as_str().to_owned() };
        for f in &plan.files {
            let rows = f.rows.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                let batch = to_batch(kind, &rows).map_err(geoparquet::FileError::from)?;
                geoparquet::write(&[batch])
            })
            .await
            .map_err(|e| {
                FlushError::Failed(ArchiveError::File(geoparquet::FileError::Arrow(
                    datafusion::arrow::error::ArrowError::ExternalError(Box::new(e)),
                )))
            })?
            .map_err(|e| FlushError::Failed(e.into()))?;
            let len = bytes.len() as u64;
            store.put(&f.path, bytes).await.map_err(|e| FlushError::Failed(e.into()))?;
            self.metrics.files.get_or_create(&label).inc();
            self.metrics.bytes.get_or_create(&label).inc_by(len);
            self.files_written += 1;
            if self.settings.fault_stop_after_files.is_some_and(|n| self.files_written >= n) {
                return Err(FlushError::Stop(Stop::Fault));
            }
        }
        store.put(&progress_path, plan.done.to_bytes()).await.map_err(|e| FlushError::Failed(e.into()))?;
        Ok(())
    }

    async fn publish_lag(&self, committed: TopicPartitionList) {
        let consumer = Arc::clone(&self.consumer);
        let lags = tokio::task::spawn_blocking(move || {
            committed
                .elements()
                .iter()
                .filter_map(|e| {
                    let Offset::Offset(o) = e.offset() else { return None };
                    let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5)).ok()?;
                    Some((e.topic().to_owned(), e.partition(), (high - o).max(0)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in lags {
            self.metrics.lag.get_or_create(&PartitionLabel { topic, partition }).set(lag);
        }
    }

    /// Compacts the kinds whose partition 0 this instance holds (one compactor per kind in a group).
    async fn compact_all(&self) -> Result<(), Stop> {
        let assigned = self.consumer.assignment().unwrap_or_default();
        for (topic, &kind) in &self.topics {
            let owns = assigned.elements().iter().any(|e| e.topic() == topic && e.partition() == 0);
            if !owns {
                continue;
            }
            if let Err(e) = self.compact(kind).await {
                self.metrics.errors.inc();
                tracing::warn!(error = %e, %kind, "compaction failed; retried next round");
            }
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
        }
        Ok(())
    }

    async fn compact(&self, kind: ArchiveKind) -> Result<(), ArchiveError> {
        let store = &self.settings.store;
        let files: Vec<DataFile> = store
            .list(&self.layout.kind_dir(kind))
            .await?
            .into_iter()
            .filter_map(|m| self.layout.parse_data_file(&m.location, m.size))
            .collect();
        let mut progress: HashMap<i32, Option<Progress>> = HashMap::new();
        for f in &files {
            if let FileName::Batch { partition, .. } = f.name
                && !progress.contains_key(&partition)
            {
                let p = match store.get(&self.layout.progress(kind, partition)).await? {
                    Some(b) => Some(Progress::from_bytes(&b)?),
                    None => None,
                };
                progress.insert(partition, p);
            }
        }
        let committed = |f: &DataFile| match &f.name {
            FileName::Compacted { .. } => true,
            FileName::Batch { partition, .. } => {
                progress.get(partition).and_then(Option::as_ref).is_some_and(|p| p.is_committed(&f.name))
            }
        };
        let c = self.settings.compaction;
        let policy = Policy {
            grace: time::Duration::try_from(c.grace).unwrap_or(time::Duration::HOUR),
            target_bytes: c.target_bytes,
        };
        let jobs = compact::plan(&self.layout, &files, committed, OffsetDateTime::now_utc(), policy);
        let label = KindLabel { kind: kind.as_str().to_owned() };
        for job in jobs {
            let mut inputs = Vec::with_capacity(job.inputs.len());
            for f in &job.inputs {
                match store.get(&f.path).await? {
                    Some(b) => inputs.push(b),
                    // Another round (or replica) got there first; the next round sees the new state.
                    None => return Ok(()),
                }
            }
            let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, geoparquet::FileError> {
                let mut batches = Vec::new();
                for b in inputs {
                    batches.extend(geoparquet::read(b)?.0);
                }
                let merged = compact::merge(kind, &batches)?;
                geoparquet::write(&[merged])
            })
            .await
            .map_err(|e| {
                ArchiveError::File(geoparquet::FileError::Arrow(datafusion::arrow::error::ArrowError::ExternalError(
                    Box::new(e),
                )))
            })??;
            store.put(&job.output, bytes).await?;
            for f in &job.inputs {
                if f.path != job.output {
                    store.delete(&f.path).await?;
                }
            }
            self.metrics.compactions.get_or_create(&label).inc();
            self.metrics.compacted_files.get_or_create(&label).inc_by(job.inputs.len() as u64);
            tracing::info!(%kind, hour = %job.hour.hour_dir(), date = %job.hour.date_dir(), inputs = job.inputs.len(),
                output = %job.output, "hour compacted");
        }
        Ok(())
    }
}

enum FlushError {
    Stop(Stop),
    Failed(ArchiveError),
}

/// Lists every data file of `kind` (for tests and tools).
pub async fn data_files(
    store: &ArchiveStore,
    layout: &Layout,
    kind: ArchiveKind,
) -> Result<Vec<DataFile>, ArchiveError> {
    Ok(store
        .list(&layout.kind_dir(kind))
        .await?
        .into_iter()
        .filter_map(|m| layout.parse_data_file(&m.location, m.size))
        .collect())
}

/// The stored progress of a partition, if any (for tests and tools).
pub async fn stored_progress(
    store: &ArchiveStore,
    layout: &Layout,
    kind: ArchiveKind,
    partition: i32,
) -> Result<Option<Progress>, ArchiveError> {
    Ok(match store.get(&layout.progress(kind, partition)).await? {
        Some(b) => Some(Progress::from_bytes(&b)?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_group_is_the_archives_own() {
        let tenant = TenantId::new("acme-ports").unwrap();
        let n = Naming::default();
        assert_eq!(consumer_group(&n, &tenant), "geostream-acme-ports-archive");
        assert_ne!(consumer_group(&n, &tenant), n.consumer_group(&tenant, Stage::Sink));
    }
}

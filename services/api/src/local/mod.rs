//! The local backend, for the standalone mode (no search engine): the GeoParquet archive read
//! through DataFusion, plus an in-memory live layer fed from Kafka for what the archive has not
//! flushed yet. It answers every query with the same rules as the engine backend (see
//! [`select`]), so one contract test suite runs against both.
//!
//! Consistency: each query first reads the archive's progress (the next offset it still needs per
//! partition; everything below is in files that are visible before the progress is written), then
//! lists the archive, then takes from the live layer only records at or above that progress. A
//! record is thus in the archive listing, in the tail, or in both (then merged by id); never in
//! neither.

pub mod archive;
pub mod layer;
pub mod select;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use geostream_model::{Naming, TenantId, TopicKind};
use geostream_telemetry::Health;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;
use crate::problem::ApiError;
use crate::query::{Collection, Filters};
use layer::{KINDS, LiveLayer, Progress};
use select::{Keyed, Scan};

/// The archive as the local backend reads it.
pub trait ArchiveRead: Send + Sync + 'static {
    /// The next offset the archive still needs per (topic kind, partition).
    fn progress(&self) -> BoxFuture<'_, Result<Progress, ApiError>>;
    /// Up to `limit` Features of `c` that may match `filters` after `after`, in the collection's
    /// time order (see [`Scan`]). It may return more than match (the caller filters exactly) but
    /// never fewer.
    fn scan<'a>(
        &'a self,
        c: Collection,
        filters: &'a Filters,
        after: Option<&'a [Value]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Scan, ApiError>>;
    /// Distinct ids of `c` matching `filters`.
    fn count<'a>(&'a self, c: Collection, filters: &'a Filters) -> BoxFuture<'a, Result<u64, ApiError>>;
    /// Every stored Feature of `c` with this id.
    fn by_id<'a>(&'a self, c: Collection, id: &'a str) -> BoxFuture<'a, Result<Vec<Value>, ApiError>>;
    /// The newest archived observation of every track.
    fn latest(&self) -> BoxFuture<'_, Result<Vec<Value>, ApiError>>;
    /// Per feed over the archived observations: stored, arrived at or after `since_ns`, newest
    /// arrival and event time (ns).
    fn feeds(&self, since_ns: i64) -> BoxFuture<'_, Result<Vec<FeedFigures>, ApiError>>;
}

/// One feed's figures over some observations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFigures {
    /// Feed id.
    pub feed: String,
    /// Observations.
    pub total: u64,
    /// Observations received at or after the window start.
    pub recent: u64,
    /// Newest arrival, ns.
    pub last_received_ns: Option<i64>,
    /// Newest event time, ns.
    pub last_time_ns: Option<i64>,
}

impl FeedFigures {
    /// Adds another source's figures of the same feed.
    pub fn add(&mut self, other: &FeedFigures) {
        self.total += other.total;
        self.recent += other.recent;
        self.last_received_ns = self.last_received_ns.max(other.last_received_ns);
        self.last_time_ns = self.last_time_ns.max(other.last_time_ns);
    }
}

/// The local backend's settings.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic naming.
    pub naming: Naming,
    /// librdkafka properties.
    pub kafka: BTreeMap<String, String>,
    /// Most records the live layer holds per topic beyond the archive.
    pub max_tail: usize,
    /// How often the archive's progress is read to trim the live layer.
    pub trim_interval: Duration,
}

/// The local backend.
pub struct LocalStore {
    archive: Arc<dyn ArchiveRead>,
    layer: Arc<RwLock<LiveLayer>>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").finish_non_exhaustive()
    }
}

/// A poisoned lock means a panic while the layer was changed; its data is still the best answer.
fn read(layer: &RwLock<LiveLayer>) -> std::sync::RwLockReadGuard<'_, LiveLayer> {
    layer.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(layer: &RwLock<LiveLayer>) -> std::sync::RwLockWriteGuard<'_, LiveLayer> {
    layer.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocalStore {
    /// Seeds the live layer from the archive and starts following Kafka from the archive's
    /// progress. `health` gets a `live` check, ready once the layer has caught up with the end of
    /// every partition as it was at start.
    pub async fn start(
        settings: LocalSettings,
        archive: Arc<dyn ArchiveRead>,
        health: Health,
        metrics: Arc<ApiMetrics>,
        cancel: CancellationToken,
    ) -> Result<(LocalStore, tokio::task::JoinHandle<()>), ApiError> {
        health.set("live", false, "seeding from the archive");
        let layer = Arc::new(RwLock::new(LiveLayer::new(settings.max_tail)));
        let seed = archive.latest().await?;
        let progress = archive.progress().await?;
        {
            let mut l = write(&layer);
            for f in seed {
                l.offer_latest(f);
            }
        }
        let follower = Follower {
            settings,
            archive: Arc::clone(&archive),
            layer: Arc::clone(&layer),
            health,
            metrics,
            cancel,
            runtime: tokio::runtime::Handle::current(),
        };
        let task = tokio::task::spawn_blocking(move || follower.run(progress));
        Ok((LocalStore { archive, layer }, task))
    }

    /// A page of `c`, as [`crate::shape::Page`].
    pub async fn page(
        &self,
        c: Collection,
        filters: &Filters,
        size: usize,
        after: Option<&[Value]>,
        count_total: bool,
    ) -> Result<crate::shape::Page, ApiError> {
        if c == Collection::Latest {
            let (items, total) = {
                let l = read(&self.layer);
                let items: Vec<Keyed> = l.latest().filter_map(|f| select::select(c, filters, after, f)).collect();
                let total = if count_total {
                    Some(l.latest().filter(|f| select::matches(c, filters, f)).count() as u64)
                } else {
                    None
                };
                (select::merge(c, items), total)
            };
            return Ok(page_of(items.into_iter().take(size).collect(), total));
        }
        let progress = self.archive.progress().await?;
        let mut limit = size.saturating_add(1).max(64);
        let items = loop {
            let scan = self.archive.scan(c, filters, after, limit).await?;
            let tail: Vec<Value> = {
                let l = read(&self.layer);
                l.tail(kind_of(c), &progress).filter(|f| select::matches(c, filters, f)).cloned().collect()
            };
            if let Some(items) = select::assemble(c, filters, after, size, &scan, &tail) {
                break items;
            }
            limit = limit.saturating_mul(4);
        };
        let total = if count_total {
            let archived = self.archive.count(c, filters).await?;
            let l = read(&self.layer);
            Some(archived + l.tail(kind_of(c), &progress).filter(|f| select::matches(c, filters, f)).count() as u64)
        } else {
            None
        };
        Ok(page_of(items, total))
    }

    /// The Feature with this id (for `latest` also: this track).
    pub async fn by_id(&self, c: Collection, id: &str) -> Result<Option<Value>, ApiError> {
        if c == Collection::Latest {
            let l = read(&self.layer);
            return Ok(l
                .latest()
                .find(|f| select::track_of(f) == Some(id) || f.get("id").and_then(Value::as_str) == Some(id))
                .cloned());
        }
        let mut found = self.archive.by_id(c, id).await?;
        {
            let l = read(&self.layer);
            let all = Progress::new();
            found.extend(l.tail(kind_of(c), &all).filter(|f| f.get("id").and_then(Value::as_str) == Some(id)).cloned());
        }
        let keyed = found.into_iter().filter_map(|f| Some(Keyed { key: select::sort_key(c, &f)?, feature: f }));
        Ok(select::merge(c, keyed).into_iter().next().map(|k| k.feature))
    }

    /// Feed figures over the archive and the live tail.
    pub async fn feed_status(
        &self,
        since: geostream_model::time::OffsetDateTime,
    ) -> Result<Vec<crate::feed_status::FeedStatus>, ApiError> {
        let since_ns = i64::try_from(since.unix_timestamp_nanos()).unwrap_or(i64::MIN);
        let progress = self.archive.progress().await?;
        let mut by_feed: BTreeMap<String, FeedFigures> = BTreeMap::new();
        for f in self.archive.feeds(since_ns).await? {
            by_feed
                .entry(f.feed.clone())
                .or_insert_with(|| FeedFigures { feed: f.feed.clone(), ..FeedFigures::default() })
                .add(&f);
        }
        {
            let l = read(&self.layer);
            for o in l.tail(TopicKind::Observations, &progress) {
                let Some(feed) = o.pointer("/properties/feed").and_then(Value::as_str) else { continue };
                let received = o.pointer("/properties/received").and_then(Value::as_str).and_then(select::nanos);
                let one = FeedFigures {
                    feed: feed.to_owned(),
                    total: 1,
                    recent: u64::from(received.is_some_and(|r| r >= since_ns)),
                    last_received_ns: received,
                    last_time_ns: o.pointer("/properties/time").and_then(Value::as_str).and_then(select::nanos),
                };
                by_feed
                    .entry(feed.to_owned())
                    .or_insert_with(|| FeedFigures { feed: feed.to_owned(), ..FeedFigures::default() })
                    .add(&one);
            }
        }
        let text = |ns: Option<i64>| {
            ns.and_then(|n| geostream_model::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).ok())
                .and_then(|t| t.format(&geostream_model::time::format_description::well_known::Rfc3339).ok())
        };
        Ok(by_feed
            .into_values()
            .map(|f| crate::feed_status::FeedStatus {
                feed: f.feed,
                total: f.total,
                recent: f.recent,
                last_received: text(f.last_received_ns),
                last_time: text(f.last_time_ns),
                errors: 0,
            })
            .collect())
    }

    /// Whether the archive can be read.
    pub async fn ping(&self) -> Result<(), ApiError> {
        self.archive.progress().await.map(|_| ())
    }
}

fn page_of(items: Vec<Keyed>, total: Option<u64>) -> crate::shape::Page {
    let (sorts, features) = items.into_iter().map(|k| (k.key, k.feature)).unzip();
    crate::shape::Page { features, sorts, total }
}

fn kind_of(c: Collection) -> TopicKind {
    match c {
        Collection::Observations | Collection::Latest => TopicKind::Observations,
        Collection::Events => TopicKind::Events,
        Collection::Aggregates => TopicKind::Aggregates,
    }
}

/// The blocking loop that keeps the live layer current.
struct Follower {
    settings: LocalSettings,
    archive: Arc<dyn ArchiveRead>,
    layer: Arc<RwLock<LiveLayer>>,
    health: Health,
    metrics: Arc<ApiMetrics>,
    cancel: CancellationToken,
    /// The async archive is asked from this blocking thread through the runtime.
    runtime: tokio::runtime::Handle,
}

impl Follower {
    fn run(self, progress: Progress) {
        let s = &self.settings;
        let mut cfg = ClientConfig::new();
        for (k, v) in &s.kafka {
            cfg.set(k, v);
        }
        // A group id is required by the client but never used: partitions are assigned and nothing
        // is committed, so every API replica follows the whole tail itself. Under the tenant's
        // topic prefix, which its Kafka ACLs cover.
        cfg.set("group.id", format!("{}.api-local", s.naming.topic(&s.tenant, TopicKind::Observations)))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer<geostream_kafka::Kept> = match geostream_kafka::create(&cfg, ()) {
            Ok(c) => c,
            Err(e) => {
                self.health.set("live", false, format!("Kafka consumer: {e}"));
                return;
            }
        };
        let topics: Vec<(TopicKind, String)> = KINDS.iter().map(|k| (*k, s.naming.topic(&s.tenant, *k))).collect();
        // Ends at start: the layer is ready once it has read up to them.
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let timeout = Duration::from_secs(10);
        let tpl = loop {
            if self.cancel.is_cancelled() {
                return;
            }
            ends.clear();
            let mut tpl = TopicPartitionList::new();
            let mut failed = None;
            for (kind, topic) in &topics {
                let partitions = match consumer.fetch_metadata(Some(topic), timeout) {
                    Ok(md) => md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>()),
                    Err(e) => {
                        failed = Some(format!("metadata of {topic}: {e}"));
                        break;
                    }
                };
                for p in partitions.unwrap_or_default() {
                    let start = progress.get(&(*kind, p)).copied().unwrap_or(0);
                    if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Offset(start)) {
                        failed = Some(format!("{topic}/{p}: {e}"));
                    }
                    match consumer.fetch_watermarks(topic, p, timeout) {
                        Ok((_, high)) if high > start => {
                            ends.insert((topic.clone(), p), high);
                        }
                        Ok(_) => {}
                        Err(e) => failed = Some(format!("watermarks of {topic}/{p}: {e}")),
                    }
                }
            }
            match failed {
                None => break tpl,
                Some(why) => {
                    self.health.set("live", false, why);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        if let Err(e) = consumer.assign(&tpl) {
            self.health.set("live", false, format!("assign: {e}"));
            return;
        }
        let kinds: BTreeMap<String, TopicKind> = topics.iter().map(|(k, t)| (t.clone(), *k)).collect();
        let mut last_trim = std::time::Instant::now();
        let mut skipped = 0u64;
        self.report(&ends);
        while !self.cancel.is_cancelled() {
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => tracing::warn!(error = %e, "api live layer: Kafka"),
                Some(Ok(m)) => {
                    if let Some(kind) = kinds.get(m.topic()) {
                        let applied = write(&self.layer).apply(*kind, m.partition(), m.offset(), m.payload());
                        if let Err(why) = applied {
                            skipped += 1;
                            tracing::debug!(topic = m.topic(), offset = m.offset(), %why, skipped, "api live layer skipped a record");
                        }
                    }
                }
            }
            // Caught up by the consumer's position, not the last record's offset: a transactional
            // topic (events, aggregates) ends with a commit marker, which is never delivered as a
            // record but which the position moves past. The position is local state; no network.
            if !ends.is_empty()
                && let Ok(positions) = consumer.position()
            {
                let before = ends.len();
                for e in positions.elements() {
                    if let Offset::Offset(at) = e.offset()
                        && ends.get(&(e.topic().to_owned(), e.partition())).is_some_and(|end| at >= *end)
                    {
                        ends.remove(&(e.topic().to_owned(), e.partition()));
                    }
                }
                if ends.len() != before {
                    self.report(&ends);
                }
            }
            if last_trim.elapsed() >= self.settings.trim_interval {
                last_trim = std::time::Instant::now();
                match self.runtime.block_on(self.archive.progress()) {
                    Ok(p) => {
                        let mut l = write(&self.layer);
                        l.trim(&p);
                        self.metrics.local_tracks.set(i64::try_from(l.tracks()).unwrap_or(i64::MAX));
                        self.metrics.local_tail_records.set(i64::try_from(l.tail_len()).unwrap_or(i64::MAX));
                        self.metrics.local_dropped.set(i64::try_from(l.dropped()).unwrap_or(i64::MAX));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "api live layer: the archive's progress cannot be read; not trimming")
                    }
                }
            }
        }
    }

    fn report(&self, ends: &BTreeMap<(String, i32), i64>) {
        if ends.is_empty() {
            let l = read(&self.layer);
            self.health.set(
                "live",
                true,
                format!("caught up: {} tracks, {} records beyond the archive", l.tracks(), l.tail_len()),
            );
        } else {
            self.health.set("live", false, format!("catching up on {} partitions", ends.len()));
        }
    }
}

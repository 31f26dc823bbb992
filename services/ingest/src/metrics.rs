//! Ingest's Prometheus metrics, per feed where an operator needs to tell feeds apart.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pipeline::Batch;

/// Labels of per-feed series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabel {
    /// Feed id.
    pub feed: String,
}

/// Labels of per-feed, per-reason series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Feed id.
    pub feed: String,
    /// Dead-letter reason code.
    pub reason: String,
}

/// Labels of per-topic series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Destination topic.
    pub topic: String,
}

/// All ingest metrics; cheap to clone (the families are shared).
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Input units (payloads, lines, datagrams) received per feed.
    pub received: Family<FeedLabel, Counter>,
    /// Input bytes received per feed.
    pub received_bytes: Family<FeedLabel, Counter>,
    /// Observations accepted per feed.
    pub accepted: Family<FeedLabel, Counter>,
    /// Records dead-lettered per feed and reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Records skipped (comments, non-position messages) per feed.
    pub skipped: Family<FeedLabel, Counter>,
    /// Bytes each feed wrote into the spool (records as stored, framing excluded).
    pub spooled_bytes: Family<FeedLabel, Counter>,
    /// Items a poller dropped because the previous answer had them too.
    pub deduplicated: Family<FeedLabel, Counter>,
    /// Unix time of the last input per feed.
    pub last_seen: Family<FeedLabel, Gauge>,
    /// Whether each feed's source is currently connected or serving (1) or failing (0).
    pub source_up: Family<FeedLabel, Gauge>,
    /// Source errors (connection failures, HTTP errors) per feed.
    pub source_errors: Family<FeedLabel, Counter>,
    /// Passes of a repeated file started per feed (a restart continuing a pass does not count).
    pub file_passes: Family<FeedLabel, Counter>,
    /// Bytes of unacknowledged records in the spool.
    pub spool_bytes: Gauge,
    /// Records in the spool not yet acknowledged by Kafka.
    pub spool_records: Gauge,
    /// 1 while writers wait because the spool is full (backpressure), else 0.
    pub spool_full: Gauge,
    /// Times writers had to wait for spool space.
    pub spool_full_waits: Counter,
    /// Records Kafka acknowledged, per topic.
    pub produced: Family<TopicLabel, Counter>,
    /// Failed deliveries (each is retried from the spool).
    pub delivery_errors: Counter,
    /// Spooled records found already written to Kafka when a producer session started (their
    /// acknowledgement was lost in an outage or a crash), so not sent again.
    pub already_in_kafka: Counter,
    /// Feeds currently running.
    pub feeds_running: Gauge,
}

impl IngestMetrics {
    /// Registers every metric (names get the registry's `geostream_` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("ingest_received", "Input units (payloads, lines, datagrams) received", self.received.clone());
        r.register("ingest_received_bytes", "Input bytes received", self.received_bytes.clone());
        r.register("ingest_accepted", "Observations accepted", self.accepted.clone());
        r.register("ingest_rejected", "Records sent to the dead-letter topic, by reason", self.rejected.clone());
        r.register("ingest_skipped", "Records skipped without error (comments, non-positions)", self.skipped.clone());
        r.register("ingest_spooled_bytes", "Bytes the feed wrote into the disk spool", self.spooled_bytes.clone());
        r.register("ingest_deduplicated", "Polled items unchanged since the previous poll", self.deduplicated.clone());
        r.register("ingest_last_seen_timestamp_seconds", "Unix time of the feed's last input", self.last_seen.clone());
        r.register("ingest_source_up", "1 while the feed's source is connected or serving", self.source_up.clone());
        r.register("ingest_source_errors", "Source errors (connects, HTTP, reads)", self.source_errors.clone());
        r.register("ingest_file_passes", "Passes of a repeated file started", self.file_passes.clone());
        r.register(
            "ingest_spool_bytes",
            "Bytes of records in the spool not yet acked by Kafka",
            self.spool_bytes.clone(),
        );
        r.register("ingest_spool_records", "Records in the spool not yet acked by Kafka", self.spool_records.clone());
        r.register("ingest_spool_full", "1 while sources wait for spool space (backpressure)", self.spool_full.clone());
        r.register("ingest_spool_full_waits", "Times a write waited for spool space", self.spool_full_waits.clone());
        r.register("ingest_produced", "Records acknowledged by Kafka, by topic", self.produced.clone());
        r.register(
            "ingest_delivery_errors",
            "Kafka deliveries that failed and were retried",
            self.delivery_errors.clone(),
        );
        r.register(
            "ingest_already_in_kafka",
            "Spooled records found already in Kafka at a producer restart, not sent again",
            self.already_in_kafka.clone(),
        );
        r.register("ingest_feeds_running", "Feeds currently running", self.feeds_running.clone());
    }

    /// Counts a decoded batch for `feed`.
    pub fn record_batch(&self, feed: &str, batch: &Batch, now_unix: i64) {
        let label = FeedLabel { feed: feed.to_owned() };
        self.received.get_or_create(&label).inc_by(batch.inputs);
        self.received_bytes.get_or_create(&label).inc_by(batch.input_bytes);
        self.accepted.get_or_create(&label).inc_by(batch.summary.accepted);
        self.skipped.get_or_create(&label).inc_by(batch.summary.skipped.values().sum());
        for (reason, n) in &batch.summary.rejected {
            self.rejected
                .get_or_create(&ReasonLabel { feed: feed.to_owned(), reason: (*reason).to_owned() })
                .inc_by(*n);
        }
        let spooled: usize = batch.envelopes.iter().map(|e| 5 + e.key.len() + e.value.len()).sum();
        self.spooled_bytes.get_or_create(&label).inc_by(spooled as u64);
        if batch.inputs > 0 {
            self.last_seen.get_or_create(&label).set(now_unix);
        }
    }

    /// Marks a feed's source up or down.
    pub fn set_up(&self, feed: &str, up: bool) {
        self.source_up.get_or_create(&FeedLabel { feed: feed.to_owned() }).set(i64::from(up));
    }

    /// Counts a source error.
    pub fn source_error(&self, feed: &str) {
        self.source_errors.get_or_create(&FeedLabel { feed: feed.to_owned() }).inc();
        self.set_up(feed, false);
    }
}

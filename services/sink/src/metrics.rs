//! The sink's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels by index kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// observations, events, aggregates or latest.
    pub kind: String,
}

/// Labels by dead-letter reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason code.
    pub reason: String,
}

/// Labels by topic partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// All sink metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Documents the engine stored, by index kind.
    pub written: Family<KindLabel, Counter>,
    /// `create` items answered 409: already stored (a redelivery).
    pub duplicates: Counter,
    /// External-version items answered 409: a newer version is stored.
    pub older: Counter,
    /// Items sent again after a 429/5xx.
    pub retries: Counter,
    /// Whole bulk requests that failed (engine unreachable, unreadable answer) and were retried.
    pub request_errors: Counter,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Kafka records consumed.
    pub records: Counter,
    /// Seconds from the first bulk request of a batch until every item is settled and committed.
    pub batch_seconds: Histogram,
    /// Records in the last batch.
    pub batch_records: Gauge,
    /// 1 once the index templates are installed.
    pub templates_installed: Gauge,
    /// Records behind the end of the partition after the last commit that covered it.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Records of the batch in hand (collected, not yet committed): what the sink itself holds in
    /// memory, at most `batch_max_records` however long the engine is away.
    pub held_records: Gauge,
    /// Kafka value bytes of the batch in hand.
    pub held_bytes: Gauge,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics {
            written: Family::default(),
            duplicates: Counter::default(),
            older: Counter::default(),
            retries: Counter::default(),
            request_errors: Counter::default(),
            dead_letters: Family::default(),
            records: Counter::default(),
            batch_seconds: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            batch_records: Gauge::default(),
            templates_installed: Gauge::default(),
            consumer_lag: Family::default(),
            held_records: Gauge::default(),
            held_bytes: Gauge::default(),
        }
    }
}

impl SinkMetrics {
    /// Registers every metric (names get the registry's `geostream_` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("sink_written", "Documents stored by the search engine, by index kind", self.written.clone());
        r.register("sink_duplicates", "Create items answered 409: already stored", self.duplicates.clone());
        r.register("sink_older", "External-version items answered 409: a newer version is stored", self.older.clone());
        r.register("sink_retries", "Bulk items sent again after 429 or 5xx", self.retries.clone());
        r.register(
            "sink_request_errors",
            "Whole bulk requests that failed and were retried",
            self.request_errors.clone(),
        );
        r.register("sink_dead_letters", "Records sent to the dead-letter topic, by reason", self.dead_letters.clone());
        r.register("sink_records", "Kafka records consumed", self.records.clone());
        r.register("sink_batch_seconds", "Time to settle and commit one batch", self.batch_seconds.clone());
        r.register("sink_batch_records", "Records in the last batch", self.batch_records.clone());
        r.register(
            "sink_templates_installed",
            "1 once the index templates are installed",
            self.templates_installed.clone(),
        );
        r.register(
            "sink_consumer_lag",
            "Records behind the partition's end after the last commit covering it",
            self.consumer_lag.clone(),
        );
        r.register("sink_held_records", "Records of the batch in hand, not yet committed", self.held_records.clone());
        r.register("sink_held_bytes", "Kafka value bytes of the batch in hand", self.held_bytes.clone());
    }
}

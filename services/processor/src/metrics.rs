//! The processor's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels by a closed set of names (output kind, dead-letter reason, restore source).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The name.
    pub name: String,
}

/// Labels by input partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The partition of `<tenant>.observations`.
    pub partition: i32,
}

/// All processor metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone, Default)]
pub struct ProcessMetrics {
    /// Input records consumed (committed or not).
    pub records: Counter,
    /// Input records read again after a restore to rebuild the reorder buffer (no output).
    pub replayed: Counter,
    /// Records produced, by output: events, aggregates, enriched, deadletter.
    pub produced: Family<NameLabel, Counter>,
    /// Records sent to the dead-letter topic, by reason (`late`, `malformed`, `rejected`).
    pub dead_letters: Family<NameLabel, Counter>,
    /// Transactions committed.
    pub transactions: Counter,
    /// Transactions aborted (the session restarts from the committed offsets).
    pub aborted: Counter,
    /// Partition states restored, by source: `volume`, `changelog` or `empty`.
    pub restored: Family<NameLabel, Counter>,
    /// A partition's state did not match its committed offset and was started empty.
    pub state_mismatch: Counter,
    /// Observations waiting for the watermark, per partition.
    pub buffered: Family<PartitionLabel, Gauge>,
    /// Event-time watermark per partition, in Unix seconds.
    pub watermark: Family<PartitionLabel, Gauge>,
    /// Input partitions assigned to this instance.
    pub assigned: Gauge,
    /// Tracks forgotten after `forget_after_s` of silence, counted when their batch commits.
    pub forgotten: Counter,
}

impl ProcessMetrics {
    /// Registers every metric (names get the registry's `geostream_` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("process_records", "Input records consumed", self.records.clone());
        r.register(
            "process_replayed",
            "Input records read again after a restore to rebuild the reorder buffer",
            self.replayed.clone(),
        );
        r.register("process_produced", "Records produced, by output", self.produced.clone());
        r.register(
            "process_dead_letters",
            "Records sent to the dead-letter topic, by reason",
            self.dead_letters.clone(),
        );
        r.register("process_transactions", "Kafka transactions committed", self.transactions.clone());
        r.register("process_aborted", "Kafka transactions aborted", self.aborted.clone());
        r.register("process_restored", "Partition states restored, by source", self.restored.clone());
        r.register(
            "process_state_mismatch",
            "Partition states that did not match the committed offset and were started empty",
            self.state_mismatch.clone(),
        );
        r.register("process_buffered", "Observations waiting for the watermark", self.buffered.clone());
        r.register("process_watermark_seconds", "Event-time watermark per partition", self.watermark.clone());
        r.register("process_assigned_partitions", "Input partitions assigned", self.assigned.clone());
        r.register(
            "process_tracks_forgotten",
            "Tracks dropped from analytic state after forget_after_s of silence",
            self.forgotten.clone(),
        );
    }

    pub(crate) fn count(family: &Family<NameLabel, Counter>, name: &str, n: u64) {
        family.get_or_create(&NameLabel { name: name.to_owned() }).inc_by(n);
    }
}

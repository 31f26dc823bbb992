//! The archive's Prometheus metrics (`geostream_archive_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels by record kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// observations, events or aggregates.
    pub kind: String,
}

/// Labels by topic partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// All archive metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone, Default)]
pub struct ArchiveMetrics {
    /// Records written to committed files, by kind.
    pub records: Family<KindLabel, Counter>,
    /// Data files written by flushes, by kind.
    pub files: Family<KindLabel, Counter>,
    /// Bytes of data files written by flushes, by kind.
    pub bytes: Family<KindLabel, Counter>,
    /// Records that were not valid records of their topic (not archived).
    pub malformed: Counter,
    /// Interrupted flushes redone after a restart.
    pub redone_flushes: Counter,
    /// Files of an interrupted flush deleted because it could not be redone.
    pub abandoned_files: Counter,
    /// Compactions done (one per new compacted file), by kind.
    pub compactions: Family<KindLabel, Counter>,
    /// Files removed by compactions, by kind.
    pub compacted_files: Family<KindLabel, Counter>,
    /// Store or flush failures that were retried.
    pub errors: Counter,
    /// Records buffered and not yet flushed.
    pub buffered_records: Gauge,
    /// Records behind the end of the partition after the last flush that covered it.
    pub lag: Family<PartitionLabel, Gauge>,
}

impl ArchiveMetrics {
    /// Registers every metric under `archive_` (the telemetry registry adds `geostream_`).
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("archive");
        r.register("records", "Records written to committed archive files", self.records.clone());
        r.register("files", "Archive data files written by flushes", self.files.clone());
        r.register("bytes", "Bytes of archive data files written by flushes", self.bytes.clone());
        r.register(
            "malformed",
            "Records not archived because they are not valid records of their topic",
            self.malformed.clone(),
        );
        r.register("redone_flushes", "Interrupted flushes redone after a restart", self.redone_flushes.clone());
        r.register(
            "abandoned_files",
            "Files of an interrupted flush deleted because it could not be redone",
            self.abandoned_files.clone(),
        );
        r.register("compactions", "Compacted files written", self.compactions.clone());
        r.register("compacted_files", "Small files removed by compaction", self.compacted_files.clone());
        r.register("errors", "Store or flush failures (retried)", self.errors.clone());
        r.register("buffered_records", "Records buffered for the next flush", self.buffered_records.clone());
        r.register("lag", "Records behind the end of the partition after the last flush", self.lag.clone());
    }
}

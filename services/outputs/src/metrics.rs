//! Delivery metrics per output, so a lost or late notification shows on a dashboard.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels by output.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabel {
    /// The output's name.
    pub output: String,
}

/// Labels by output and reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputReasonLabel {
    /// The output's name.
    pub output: String,
    /// Failure reason or dead-letter reason code.
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

/// All output metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone, Default)]
pub struct OutputMetrics {
    /// Events routed to the output (each counted once per consumption).
    pub routed: Family<OutputLabel, Counter>,
    /// Events delivered.
    pub sent: Family<OutputLabel, Counter>,
    /// Failed attempts, by reason.
    pub failed: Family<OutputReasonLabel, Counter>,
    /// Attempts made again after a failure.
    pub retries: Family<OutputLabel, Counter>,
    /// Events given up and written to the dead-letter topic, by reason code.
    pub dead_letters: Family<OutputReasonLabel, Counter>,
    /// Events of the batch in hand not settled yet.
    pub pending: Family<OutputLabel, Gauge>,
    /// Event time (Unix seconds) of the last delivered event; `time() - this` is the live lag.
    pub last_event_time: Family<OutputLabel, Gauge<f64, AtomicU64>>,
    /// Seconds between the last delivered event's time and its delivery.
    pub event_lag: Family<OutputLabel, Gauge<f64, AtomicU64>>,
    /// Event records consumed.
    pub records: Counter,
    /// Records on the events topic that are not events (dead-lettered by the sink, skipped here).
    pub malformed: Counter,
    /// Records behind the partition's end after the last commit covering it.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
}

impl OutputMetrics {
    /// Registers every metric (names get the registry's `geostream_` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register("outputs_routed", "Events routed to the output", self.routed.clone());
        r.register("outputs_sent", "Events delivered by the output", self.sent.clone());
        r.register("outputs_failed", "Failed delivery attempts, by reason", self.failed.clone());
        r.register("outputs_retries", "Delivery attempts made again after a failure", self.retries.clone());
        r.register(
            "outputs_dead_letters",
            "Events the output gave up on (dead-lettered), by reason",
            self.dead_letters.clone(),
        );
        r.register("outputs_pending", "Events of the batch in hand the output has not settled", self.pending.clone());
        r.register(
            "outputs_last_event_time_seconds",
            "Event time of the last event the output delivered (Unix seconds)",
            self.last_event_time.clone(),
        );
        r.register(
            "outputs_event_lag_seconds",
            "Seconds from the last delivered event's time to its delivery",
            self.event_lag.clone(),
        );
        r.register("outputs_records", "Records consumed from the events topic", self.records.clone());
        r.register(
            "outputs_malformed",
            "Records on the events topic that are not events (skipped)",
            self.malformed.clone(),
        );
        r.register(
            "outputs_consumer_lag",
            "Records behind the partition's end after the last commit covering it",
            self.consumer_lag.clone(),
        );
    }

    fn label(output: &str) -> OutputLabel {
        OutputLabel { output: output.to_owned() }
    }

    /// Delivered events of `output` so far.
    pub fn sent_of(&self, output: &str) -> u64 {
        self.sent.get_or_create(&Self::label(output)).get()
    }

    /// Retries of `output` so far.
    pub fn retries_of(&self, output: &str) -> u64 {
        self.retries.get_or_create(&Self::label(output)).get()
    }

    /// Failed attempts of `output` for `reason` so far.
    pub fn failed_of(&self, output: &str, reason: &str) -> u64 {
        self.failed.get_or_create(&OutputReasonLabel { output: output.to_owned(), reason: reason.to_owned() }).get()
    }

    /// Dead letters of `output` for `reason` so far.
    pub fn dead_letters_of(&self, output: &str, reason: &str) -> u64 {
        self.dead_letters
            .get_or_create(&OutputReasonLabel { output: output.to_owned(), reason: reason.to_owned() })
            .get()
    }

    /// Events routed to `output` so far.
    pub fn routed_of(&self, output: &str) -> u64 {
        self.routed.get_or_create(&Self::label(output)).get()
    }
}

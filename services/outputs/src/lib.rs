//! Event outputs: events from `<tenant>.events` delivered to where people act on them — webhooks
//! (signed HTTP POST), MQTT topics and Kafka topics — at least once and in order per output, with
//! per-output dead letters and metrics. See `docs/outputs.md`.
//!
//! Layout: a pure core with no I/O ([`spec`] validation, [`route()`], [`signature`], [`render`]
//! for topic templates, [`retry`] decisions from status codes) and a thin async shell
//! ([`webhook`], [`mqtt`], [`kafka`] senders and the Kafka loop in [`stage`]).
//!
//! Must not: commit an offset before every output settled every event of the batch (delivered or
//! dead-lettered), or let one output's failures reorder another's deliveries.

pub mod kafka;
pub mod metrics;
pub mod mqtt;
pub mod render;
pub mod retry;
pub mod route;
pub mod secrets;
pub mod signature;
pub mod spec;
pub mod stage;
pub mod webhook;

use geostream_model::{Classify, ErrorClass};

pub use route::route;
pub use spec::{OutputConfig, OutputName, OutputSpec};
pub use stage::{OutputsSettings, OutputsStage};

/// Why the outputs could not start.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An output's settings or secret are unusable: fix the configuration; a retry cannot help.
    #[error("output {output}: {problem}")]
    Config {
        /// The output's name.
        output: String,
        /// What is wrong.
        problem: String,
    },
    /// The events consumer or the dead-letter producer could not be created (its properties are
    /// wrong): fix `kafka.*`; a retry cannot help.
    #[error("outputs: Kafka {what}: {source}")]
    Kafka {
        /// Which client.
        what: &'static str,
        /// The error.
        source: rdkafka::error::KafkaError,
    },
}

impl Classify for OutputError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

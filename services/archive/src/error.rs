//! The archive's errors, each saying whether a retry can help.

use crate::geoparquet::FileError;
use crate::progress::ProgressError;
use crate::store::StoreError;

/// Something the archive could not do.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The object store failed (or its URL is wrong).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be encoded or decoded.
    #[error(transparent)]
    File(#[from] FileError),
    /// A progress object is unreadable or a flush does not fit it.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// A Kafka client could not be created or used.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// DataFusion refused a table or query.
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl ArchiveError {
    /// Whether retrying later can succeed (a store outage can end; a bad URL or an unreadable
    /// progress object needs a person).
    pub fn retryable(&self) -> bool {
        match self {
            ArchiveError::Store(e) => e.retryable(),
            ArchiveError::Kafka { .. } => true,
            ArchiveError::File(_) | ArchiveError::Progress(_) | ArchiveError::DataFusion(_) => false,
        }
    }
}

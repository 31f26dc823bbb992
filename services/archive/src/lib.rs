//! The GeoParquet archive: observations, events and aggregates from a tenant's Kafka topics to
//! GeoParquet 1.1 files (WKB geometry, a `bbox` covering struct, the record's exact Feature JSON),
//! partitioned by tenant, kind, date and hour, on the stage's volume or an S3-compatible object
//! store, exactly once per Kafka record; closed hours are compacted; DataFusion reads it back.
//!
//! Pure cores (no I/O, no async): [`kind`] and [`layout`] (names and paths), [`rows`] (Kafka payloads
//! to Arrow batches), [`geoparquet`] (the `geo` file metadata and Parquet bytes), [`progress`]
//! (the exactly-once bookkeeping as a state machine), [`compact`] (compaction planning and merging).
//! Thin shells: [`store`] (object_store from a URL), [`stage`] (the Kafka loop run by `geostream
//! sink`), [`read`] (DataFusion tables over the archive). The design is in `docs/archive.md`.

pub mod compact;
pub mod error;
pub mod geoparquet;
pub mod kind;
pub mod layout;
pub mod metrics;
pub mod progress;
pub mod read;
pub mod rows;
pub mod stage;
pub mod store;

pub use error::ArchiveError;
pub use kind::ArchiveKind;
pub use layout::Layout;
pub use read::{ArchiveTables, register};
pub use stage::{ArchiveSettings, ArchiveStage, CompactionSettings, FlushSettings, consumer_group};
pub use store::{ArchiveStore, S3Options, StoreError};

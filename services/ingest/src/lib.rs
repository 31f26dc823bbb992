//! The ingest stage: the async shell that reads feed sources (MQTT, HTTP poll/push, TCP/UDP, files,
//! external Kafka), runs each payload through `geostream_codecs`, and produces Observations to
//! `<tenant>.observations` (dead letters to `<tenant>.deadletter`). A record is acknowledged to its
//! source only once it sits fsynced in the disk spool, from which it is produced to Kafka.
//!
//! Must not: decode or validate by itself (that is the codecs crate), or hold unbounded memory when
//! Kafka is down (spool to disk instead).
//!
//! - [`pipeline`]: pure; bytes to Kafka-ready envelopes, dead letters, de-duplication of polls.
//! - [`registry`]: the feed registry (`<tenant>.feeds`) folded into state, and the pure plan of
//!   which feeds to start, restart and stop.
//! - [`spool`]: the synchronous, fsync-backed disk spool.
//! - [`durable`]: the group-commit writer in front of the spool and the drainer that produces
//!   spooled records to Kafka with an idempotent producer.
//! - [`sources`]: one task per running feed.
//! - [`stage`]: `geostream ingest`: registry watcher, supervisor, push receiver, drainer.

pub mod durable;
pub mod feed;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod sources;
pub mod spool;
pub mod stage;

//! The ingest stage: the async shell that reads feed sources (MQTT, HTTP poll/push, TCP/UDP, files,
//! external Kafka), runs each payload through `geostream_codecs`, and produces Observations to
//! `<tenant>.observations` (dead letters to `<tenant>.deadletter`). A record is acknowledged to its
//! source only once Kafka acked it or it sits fsynced in the disk spool.
//!
//! Must not: decode or validate by itself (that is the codecs crate), or hold unbounded memory when
//! Kafka is down (spool to disk instead).
//!
//! The [`spool`] module is the synchronous, fsync-backed disk spool that holds records while Kafka
//! is unreachable; it drains in order and is size-bounded (a full spool means backpressure).
//!
//! Status: arrives with the feed-adapter issue; `geostream ingest` says so until then.

pub mod spool;

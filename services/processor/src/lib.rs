//! The process stage: consume-transform-produce in Kafka transactions around the pure
//! `geostream_analytics` core, with each input partition's operator state committed in the same
//! transaction as its outputs and offsets, cached on the stage volume, and handed over exactly on
//! rebalance. See `docs/processor.md`.
//!
//! Layout: a pure core with no I/O and no clock ([`task`]: reorder buffer, watermark and engine of
//! one partition; [`registry`]: the fence and analytic registries; [`checkpoint`]: the state's
//! byte format) and a thin shell ([`stage`]: the Kafka loop on a blocking thread).
//!
//! Must not: contain analytics logic (that is pure and lives in the analytics crate), emit a
//! result without a deterministic id, or commit an input offset apart from the outputs and state
//! it produced.

pub mod checkpoint;
pub mod metrics;
pub mod registry;
pub mod stage;
pub mod task;

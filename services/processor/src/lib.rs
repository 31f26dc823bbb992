//! The process stage: consume-transform-produce in Kafka transactions around the pure
//! `geostream_analytics` core, checkpointing operator state with the input offsets it reflects to the
//! stage volume and handing partitions over cleanly on rebalance.
//!
//! Must not: contain analytics logic (that is pure and lives in the analytics crate) or emit a result
//! without a deterministic id.
//!
//! Status: arrives with the stream-analytics issue; `geostream process` says so until then.

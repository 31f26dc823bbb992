//! The sink stage: Observations, events and aggregates from Kafka into Elasticsearch or OpenSearch
//! (idempotent bulk writes with deterministic `_id`s, per-item retry and dead letters) and into the
//! GeoParquet archive. Offsets are committed only after every item of a batch is settled.
//!
//! Must not: commit an offset ahead of an unacknowledged write, or drop an item without a dead letter.
//!
//! Status: arrives with the sink/API issue; `geostream sink` says so until then.

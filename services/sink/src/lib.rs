//! The sink stage: observations, events and aggregates from Kafka into Elasticsearch or
//! OpenSearch with idempotent bulk writes (deterministic `_id`s), per-item retries and dead
//! letters; offsets are committed only after every item of a batch is settled. See `docs/sink.md`.
//!
//! Layout: a pure core with no I/O and no clock ([`engine`], [`templates`], [`document`],
//! [`bulk`]; retries wait by `geostream_model::backoff`) and a thin async shell ([`client`] for the search engine, [`stage`] for
//! the Kafka loop). The GeoParquet archive is not built yet.
//!
//! Must not: commit an offset ahead of an unacknowledged write, or drop an item without a dead letter.

pub mod bulk;
pub mod client;
pub mod document;
pub mod engine;
pub mod metrics;
pub mod stage;
pub mod templates;

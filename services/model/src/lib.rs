//! The record contracts of geostream: observations, events, aggregates and dead letters (the
//! records on the Kafka topics and in the indices), feed and fence specs (the registry), the
//! names of topics, indices and consumer groups, validated identifiers, deterministic record ids
//! and the error taxonomy ([`ErrorClass`], [`Classify`]) with its retry policy ([`backoff`]). Every other geostream crate depends on
//! this one, so it must stay small and pure: no I/O, no async, no network, no clocks (callers
//! pass times in), only types, validation and (de)serialization. A change to a wire format or to
//! an id scheme here is a data-contract change for every stage and every stored record.
//!
//! ```
//! use geostream_model::geojson::Geometry;
//! use geostream_model::time::OffsetDateTime;
//! use geostream_model::{FeedId, Naming, Observation, TenantId, TopicKind, TrackId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenant: TenantId = "acme-ports".parse()?;
//! let topic = Naming::default().topic(&tenant, TopicKind::Observations);
//! assert_eq!(topic, "acme-ports.observations");
//!
//! let t = OffsetDateTime::from_unix_timestamp(1_714_564_800)?;
//! let obs = Observation::try_new(
//!     FeedId::new("ais-norway")?,
//!     Some(TrackId::new("257123456")?),
//!     t,
//!     t,
//!     Geometry::new_point([10.3951, 63.4305]),
//!     Default::default(),
//! )?;
//! let json = serde_json::to_string(&obs)?; // a GeoJSON Feature
//! let back: Observation = serde_json::from_str(&json)?;
//! assert_eq!(back.id, obs.id); // same reading, same id
//! # Ok(())
//! # }
//! ```

#[macro_use]
mod macros;

mod aggregate;
pub mod backoff;
mod catalog;
mod deadletter;
mod error;
mod event;
mod feature;
mod feed;
mod fence;
mod idhash;
mod ids;
mod naming;
mod observation;
pub mod rfc3339;
mod wgs84;
mod window;

pub use aggregate::{Aggregate, AggregateKind};
pub use catalog::{CatalogEntry, CatalogSample, SampleExpectation};
pub use deadletter::{DeadLetter, ReasonCode};
pub use error::{Classify, ErrorClass, IdKind, IdProblem, ModelError};
pub use event::{Event, EventBuilder, EventKind, FenceRef};
pub use feed::{
    FeedSpec, Format, FormatOptions, HttpAuth, Mapping, MqttProtocol, Replay, Source, TcpMode, TimeFormat,
    topic_template_captures,
};
pub use fence::{
    FenceCollectionError, FenceShape, FenceSpec, MAX_FENCE_POSITIONS, MAX_FENCES_PER_TENANT, MAX_RADIUS_M,
};
pub use ids::{AnalyticId, FeedId, FenceId, MAX_SLUG_LEN, RecordId, TenantId, TrackId};
pub use naming::{INDEX_PREFIX, IndexKind, KAFKA_TOPIC_MAX_LEN, Naming, Stage, TopicKind};
pub use observation::Observation;
pub use window::Window;

/// Re-exported so dependants use the same GeoJSON types as the records.
pub use geojson;
/// Re-exported so dependants use the same time types as the records.
pub use time;

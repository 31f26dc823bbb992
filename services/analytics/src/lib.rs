//! Windowed geospatial analytics over Observations: event-time windows and watermarks, geofence and
//! track-motion state machines, gap detection, spatial bins, and DataFusion SQL over closed windows.
//! State is plain data that can be checkpointed and restored byte for byte.
//!
//! Must not: do I/O, spawn tasks or read the wall clock; time only advances through the watermark the
//! caller feeds in, so results depend on the input alone and tests can replay any order.
//!
//! - [`watermark`]: per-partition event-time watermarks with allowed lateness and idle partitions.
//! - [`motion`]: per-track speed, heading, distance, acceleration; stop/moving; implausible jumps
//!   (distances and bearings from `geo`'s haversine measure).
//! - [`bins`]: spatial bins (geohash via `geohash`, H3 via `h3o`, a metre grid of our own) over
//!   tumbling or hopping event-time windows, emitted at the watermark and corrected within the
//!   allowed lateness.
//! - [`spec`]: analytic definitions (motion, gaps, bins) as stored on `<tenant>.analytics`.
//! - [`engine`]: runs a set of analytics and produces `Event`s and `Aggregate`s (model records
//!   with deterministic ids); shared by the processor and `geostream analyze`.
//! - [`gaps`]: `gap` when a track is silent past a threshold of event time, `resumed` when it
//!   reports again.
//!
//! Status: geofences and SQL, and the Kafka runtime in `services/processor`, arrive with the
//! rest of the stream-analytics issue.

pub mod bins;
pub mod engine;
pub mod gaps;
pub mod motion;
pub mod spec;
pub mod watermark;

//! The API stage: tenant-scoped queries (latest positions, tracks, events, aggregates), live push,
//! the feed/fence/analytics registry over the compacted registry topics, and the map dashboard.
//!
//! Must not: write to search indices or hold registry state of its own; the registry topics are the
//! source of truth.
//!
//! Status: arrives with the sink/API issue; `geostream api` says so until then.

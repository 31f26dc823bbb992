//! The API stage: tenant-scoped queries (latest positions, tracks, events, aggregates) and OGC API
//! – Features over the sink's indices, with bearer-token auth and RFC 7807 errors. See `docs/api.md`.
//!
//! Layout: a pure core ([`params`] parses and checks parameters, [`query`] builds the engine
//! queries, [`shape`] turns answers into GeoJSON and sums aggregate shards, [`auth`] decides
//! tokens, [`problem`] shapes errors) and a thin shell ([`search`] for the engine, [`routes`] for
//! the handlers, [`stage`] for the server). The map dashboard adds a pure [`tiles`] (vector
//! tiles), [`feed_status`] and [`dashboard`] (static files), with their handlers in [`maps`].
//!
//! Must not: write to search indices or hold registry state of its own; the registry topics are the
//! source of truth.

pub mod auth;
pub mod backend;
pub mod dashboard;
pub mod feed_status;
pub mod limits;
pub mod live;
pub mod local;
pub mod maps;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod query;
pub mod registry;
pub mod routes;
pub mod search;
pub mod shape;
pub mod stage;
pub mod tiles;

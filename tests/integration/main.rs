//! Integration tests against real services (see `tests/lib.rs` for how services are found).
//! One binary for all of them keeps link time down on small machines.
#![allow(clippy::unwrap_used, missing_docs)]

mod api;
mod archive;
mod dashboard;
mod faultproxy;
mod helm;
mod ingest;
mod kafka;
mod kafka_secure;
mod kube;
mod mqtt;
mod operator;
mod outputs;
mod search;
mod sink;
mod sink_faults;

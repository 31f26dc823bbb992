//! Every ingest source against the real thing (Mosquitto, Kafka, an HTTP server, sockets, files),
//! counting exactly what lands in the durable spool. Kafka and Mosquitto come from
//! `./scripts/testenv.sh up kafka mosquitto` (`MQTT_URL`, `KAFKA_BOOTSTRAP`); a missing service
//! fails its test with instructions.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod file;
mod http_poll;
mod kafka;
mod mqtt;
mod tcp;
mod udp;

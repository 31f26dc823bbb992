//! The record contracts, tested as a dependant crate sees them. One test binary (modules below)
//! rather than one per file: each binary is a separate link, the slow part on two cores.

mod common;
mod deadletter;
mod events;
mod naming;
mod observation;
mod specs;

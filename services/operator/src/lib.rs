//! The Kubernetes operator: SensorFeed and GeofenceSet custom resources reconciled into the registry
//! topics, VolumeAutoscalePolicy (PVC growth) and SnapshotSchedule (VolumeSnapshots). Reconciliation is
//! dereference, validate, build (pure), apply, status.
//!
//! Must not: put decisions in the apply step; what to change is computed by pure functions
//! ([`registry`], [`autoscale`], [`snapshot`], [`leader::decide`]) that tests drive by scenario
//! without a cluster. See docs/operator.md.

pub mod autoscale;
pub mod controller;
pub mod crd;
pub mod figures;
pub mod leader;
pub mod metrics;
pub mod registry;
pub mod snapshot;
pub mod stage;
pub mod units;
pub mod usage;

pub use controller::{Context, run_controllers};

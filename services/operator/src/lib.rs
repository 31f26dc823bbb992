//! The Kubernetes operator: SensorFeed and GeofenceSet custom resources reconciled into the registry
//! topics, VolumeAutoscalePolicy (PVC growth) and SnapshotSchedule (VolumeSnapshots). Reconciliation is
//! dereference, validate, build (pure), apply, status.
//!
//! Must not: put decisions in the apply step; what to change is computed by pure functions that tests
//! drive by scenario without a cluster.
//!
//! Status: arrives with the Helm/operator issue; `geostream operator` says so until then.

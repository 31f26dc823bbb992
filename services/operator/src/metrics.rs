//! The operator's metrics, registered on the stage's telemetry registry (`geostream_operator_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `feeds`, `fences`, `autoscale`, `snapshots`.
    pub controller: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of a volume decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The decision's state word.
    pub state: String,
}

/// Counters and gauges of the operator.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Reconciles by controller and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Volume decisions by state.
    pub volume_decisions: Family<DecisionLabels, Counter>,
    /// PVC requests patched.
    pub resizes: Counter,
    /// Registry records written (feeds and fences, tombstones included).
    pub registry_writes: Counter,
    /// VolumeSnapshots created.
    pub snapshots_created: Counter,
    /// VolumeSnapshots deleted by retention.
    pub snapshots_pruned: Counter,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Metrics {
    /// Registers every metric under `operator_` in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("operator");
        r.register("reconciles", "Reconciles by controller and result", self.reconciles.clone());
        r.register("volume_decisions", "Autoscale decisions by state", self.volume_decisions.clone());
        r.register("resizes", "PVC storage requests raised", self.resizes.clone());
        r.register("registry_writes", "Registry records written", self.registry_writes.clone());
        r.register("snapshots_created", "VolumeSnapshots created", self.snapshots_created.clone());
        r.register("snapshots_pruned", "VolumeSnapshots deleted by retention", self.snapshots_pruned.clone());
        r.register("leader", "Whether this replica holds the leader lease", self.leader.clone());
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, controller: &str, ok: bool) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }
}

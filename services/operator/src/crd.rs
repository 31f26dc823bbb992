//! The custom resources, as Rust types from which the CRDs are generated (`geostream crdgen`).
//!
//! Status fields use RFC 3339 strings for times so the pure deciders can work on plain values.

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every geostream resource.
pub const GROUP: &str = "geostream.io";

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // Overrides and fence geometry are validated by the model's own validators (with field names in
    // the messages); the apiserver only needs to keep them.
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn free_form_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

fn positive_int(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // schemars says `format: uint32`, which the apiserver does not know and warns about.
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 1})
}

fn non_negative_int(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 0})
}

fn version_int(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int64", "minimum": 0})
}

fn yes() -> bool {
    true
}

/// One status condition (the shape of metav1.Condition, without observedGeneration per condition).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `Invalid`, `Ready`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A PascalCase reason.
    pub reason: String,
    /// The human explanation (for `Invalid`: what is wrong, naming the field).
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
}

/// A feed registration: a catalog type plus overrides, reconciled into `<tenant>.feeds`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "geostream.io",
    version = "v1alpha1",
    kind = "SensorFeed",
    namespaced,
    status = "SensorFeedStatus",
    shortname = "feed",
    category = "geostream",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Rate","type":"number","jsonPath":".status.ratePerSecond"}"#,
    printcolumn = r#"{"name":"Last seen","type":"string","jsonPath":".status.lastSeen"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SensorFeedSpec {
    /// The tenant whose registry topic holds the feed (a lowercase DNS label).
    pub tenant: String,
    /// The catalog type (a file of the feed catalog, e.g. `ais-nmea-tcp`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The feed id in the registry; default: the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_id: Option<String>,
    /// Whether ingest runs the feed (false: registered but paused).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fields merged over the catalog entry's spec, e.g. `{source: {address: "10.0.0.5:10110"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub overrides: Option<serde_json::Value>,
}

/// What the operator knows about a SensorFeed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensorFeedStatus {
    /// `Accepted` (written to the registry) and `Invalid` (with the reason).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The registry topic written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The feed id written (a changed id or tenant deletes the old record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_id: Option<String>,
    /// The registry version of the spec written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "version_int")]
    pub registry_version: Option<u64>,
    /// Observations per second as ingest reports them (from the figures source, when configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// When ingest last saw an observation of the feed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// A set of geofences, reconciled into `<tenant>.fences`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "geostream.io",
    version = "v1alpha1",
    kind = "GeofenceSet",
    namespaced,
    status = "GeofenceSetStatus",
    shortname = "fences",
    category = "geostream",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GeofenceSetSpec {
    /// The tenant whose `<tenant>.fences` topic holds the fences.
    pub tenant: String,
    /// Fence specs as `geostream fences apply` takes them (id, name, geometry, properties, enabled).
    #[schemars(schema_with = "free_form_list")]
    pub fences: Vec<serde_json::Value>,
}

/// What the operator knows about a GeofenceSet.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeofenceSetStatus {
    /// `Accepted` and `Invalid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The fences topic written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Fence ids this set wrote; a fence dropped from the set is deleted from the topic.
    #[serde(default)]
    pub fence_ids: Vec<String>,
}

/// A label selector (matchLabels only: what the chart's labels need, and simple to evaluate purely).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels that must all be present with these values.
    #[serde(default)]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

/// When a volume needs more room; any condition that holds counts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageCondition {
    /// Used bytes above this percentage of the capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_percent_above: Option<f64>,
    /// Available bytes below this quantity (e.g. `2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_below: Option<String>,
    /// Used inodes above this percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used_percent_above: Option<f64>,
    /// How long the condition must hold before acting (e.g. `5m`; default 0).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
}

/// How to grow a volume.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResizeAction {
    /// Growth in percent of the current request (at least 1 MiB more).
    #[schemars(schema_with = "positive_int")]
    pub percentage: u32,
    /// Never request more than this (e.g. `100Gi`).
    pub max_size: String,
}

/// Volume growth like Portworx Autopilot's AutopilotRule, with pvc-autoresizer's guard rails.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "geostream.io",
    version = "v1alpha1",
    kind = "VolumeAutoscalePolicy",
    status = "VolumeAutoscalePolicyStatus",
    shortname = "vap",
    category = "geostream",
    printcolumn = r#"{"name":"Max","type":"string","jsonPath":".spec.action.maxSize"}"#,
    printcolumn = r#"{"name":"Approval","type":"boolean","jsonPath":".spec.approvalRequired"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAutoscalePolicySpec {
    /// Which PersistentVolumeClaims (by their labels).
    pub selector: Selector,
    /// In which namespaces (by the namespace's labels; empty: all).
    #[serde(default)]
    pub namespace_selector: Selector,
    /// When to act.
    pub conditions: UsageCondition,
    /// What to do.
    pub action: ResizeAction,
    /// Minimum time between two resizes of one volume (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Resize only after a person approved the proposed size: the PVC annotation
    /// `geostream.io/approved-size` must equal it.
    #[serde(default)]
    pub approval_required: bool,
}

/// One volume as the policy last saw it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// PVC namespace.
    pub namespace: String,
    /// PVC name.
    pub name: String,
    /// The decision: `Normal`, `Pending`, `Resized`, `AwaitingApproval`, `CoolingDown`,
    /// `AtMaximum`, `QuotaExceeded`, `ResizeInProgress`, `Skipped`.
    pub state: String,
    /// Why, in words.
    #[serde(default)]
    pub message: String,
    /// Used percentage at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<f64>,
    /// Since when the condition holds (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_since: Option<String>,
    /// The last resize the operator made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resize: Option<String>,
    /// The request now (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Per-volume status of a policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAutoscalePolicyStatus {
    /// One entry per selected PVC.
    #[serde(default)]
    pub volumes: Vec<VolumeStatus>,
    /// Policy-level conditions (`Invalid` when the spec cannot be used).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// CSI VolumeSnapshots of label-selected PVCs on an interval, with retention.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "geostream.io",
    version = "v1alpha1",
    kind = "SnapshotSchedule",
    namespaced,
    status = "SnapshotScheduleStatus",
    shortname = "snaps",
    category = "geostream",
    printcolumn = r#"{"name":"Every","type":"string","jsonPath":".spec.interval"}"#,
    printcolumn = r#"{"name":"Keep","type":"integer","jsonPath":".spec.retention.keep"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotScheduleSpec {
    /// PVCs of this namespace to snapshot.
    pub selector: Selector,
    /// Time between snapshots of one PVC (e.g. `6h`).
    pub interval: String,
    /// The VolumeSnapshotClass (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// What to keep.
    pub retention: Retention,
}

/// Retention of scheduled snapshots (per PVC).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep at most this many snapshots per PVC (newest first).
    #[schemars(schema_with = "positive_int")]
    pub keep: u32,
    /// And delete snapshots older than this (e.g. `7d`), keeping at least the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// What a SnapshotSchedule did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotScheduleStatus {
    /// `Ready`, or `SnapshotApiMissing` when the snapshot.storage.k8s.io CRDs are not installed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The last snapshot taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<String>,
    /// Snapshots held now.
    #[serde(default)]
    #[schemars(schema_with = "non_negative_int")]
    pub snapshots: u32,
}

/// Every CRD of the operator, in a fixed order.
pub fn all() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    vec![SensorFeed::crd(), GeofenceSet::crd(), VolumeAutoscalePolicy::crd(), SnapshotSchedule::crd()]
}

/// The CRDs as one YAML stream (what `geostream crdgen` prints and the chart holds), and the file
/// name of each CRD in the chart's `crds/`.
pub fn yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("{name}.yaml"), serde_yaml::to_string(&crd)?))
        })
        .collect()
}

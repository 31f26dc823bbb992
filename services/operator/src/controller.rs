//! The thin async shells: read what the pure deciders need from the apiserver, Kafka and the usage
//! source, call them, apply what they decided, write the status. Plus the controller loops.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use geostream_ingest::registry::RegistryClient;
use geostream_model::{FeedId, FenceSpec, Naming, TopicKind};
use geostream_processor::registry::{RegistryTopic, check_room};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, ResourceQuota};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::autoscale::{self, Decision, Policy, Volume};
use crate::crd::{
    GeofenceSet, GeofenceSetStatus, Selector, SensorFeed, SensorFeedStatus, SnapshotSchedule, SnapshotScheduleStatus,
    VolumeAutoscalePolicy, VolumeAutoscalePolicyStatus, VolumeStatus,
};
use crate::figures::FeedFigures;
use crate::metrics::{DecisionLabels, Metrics};
use crate::registry::{self, Catalog, Write};
use crate::snapshot::{self, Snap};
use crate::units::{format_quantity, parse_duration, parse_quantity, parse_rfc3339, rfc3339};
use crate::usage::{UsageError, UsageSource};

/// The finalizer that removes registry records when a SensorFeed or GeofenceSet is deleted.
pub const FINALIZER: &str = "geostream.io/registry";
/// PVC annotation with the size a person approved.
pub const APPROVED_SIZE: &str = "geostream.io/approved-size";
/// Label on VolumeSnapshots naming their schedule.
pub const SCHEDULE_LABEL: &str = "geostream.io/snapshot-schedule";
/// Label on VolumeSnapshots naming their PVC.
pub const PVC_LABEL: &str = "geostream.io/pvc";
/// Annotation on VolumeSnapshots with when the operator took them (unix seconds).
pub const TAKEN_AT: &str = "geostream.io/taken-at";

/// Failures of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or could not be reached.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// Kafka (the registry topics) failed.
    #[error("registry: {0}")]
    Registry(String),
    /// The usage source failed.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Whether retrying soon may help (everything here is a dependency, so yes, except a
    /// finalizer problem caused by an object without a name or namespace).
    pub fn retryable(&self) -> bool {
        !matches!(self, Error::Finalizer(_))
    }
}

/// What every reconciler shares.
pub struct Context {
    /// The apiserver.
    pub client: Client,
    /// librdkafka properties for the registry topics.
    pub kafka: BTreeMap<String, String>,
    /// Topic naming (the prefix).
    pub naming: Naming,
    /// The feed catalog.
    pub catalog: Catalog,
    /// Kubelet volume stats.
    pub usage: Arc<dyn UsageSource>,
    /// Kubernetes events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// How often registry resources are reconciled without a change.
    pub resync: Duration,
    /// How often autoscale policies and snapshot schedules are evaluated.
    pub interval: Duration,
    /// Where SensorFeed live figures come from (None: not reported).
    pub figures: Option<Arc<dyn FeedFigures>>,
}

impl Context {
    /// A context; `identity` names this replica in events.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        kafka: BTreeMap<String, String>,
        naming: Naming,
        catalog: Catalog,
        usage: Arc<dyn UsageSource>,
        metrics: Metrics,
        identity: &str,
        interval: Duration,
    ) -> Self {
        let reporter = Reporter { controller: "geostream-operator".into(), instance: Some(identity.into()) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            kafka,
            naming,
            catalog,
            usage,
            metrics,
            resync: Duration::from_secs(300),
            interval,
            figures: None,
        }
    }

    /// Reports feed figures from `source` in SensorFeed status (refreshed every `interval`).
    pub fn with_figures(mut self, source: Arc<dyn FeedFigures>) -> Self {
        self.figures = Some(source);
        self
    }

    async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        // An event that cannot be written must not fail the reconcile that did the work.
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "event not recorded");
        }
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn reg_err(e: impl std::fmt::Display) -> Error {
    Error::Registry(e.to_string())
}

fn label_selector(s: &Selector) -> String {
    s.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

async fn finalized<K, F, Fut>(api: Api<K>, obj: Arc<K>, f: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnOnce(Finalizer<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    finalizer(&api, FINALIZER, obj, f).await.map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e) | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
            Error::Kube(e)
        }
        other => Error::Finalizer(other.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// SensorFeed

/// Reconciles one SensorFeed (with the finalizer that tombstones it on deletion).
pub async fn reconcile_feed(obj: Arc<SensorFeed>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<SensorFeed> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let r = finalized(api, obj, |ev| async {
        match ev {
            Finalizer::Apply(f) => apply_feed(&f, &ctx).await,
            Finalizer::Cleanup(f) => cleanup_feed(&f, &ctx).await,
        }
    })
    .await;
    ctx.metrics.reconciled("feeds", r.is_ok());
    r
}

async fn tombstone_feed(ctx: &Context, topic: &str, id: &str) -> Result<(), Error> {
    let client = RegistryClient::new(ctx.kafka.clone(), topic);
    let Ok(feed) = FeedId::new(id) else { return Ok(()) };
    let (state, _) = client.snapshot().await.map_err(reg_err)?;
    if state.get(&feed).is_some() {
        client.put(&feed, None).await.map_err(reg_err)?;
        ctx.metrics.registry_writes.inc();
    }
    Ok(())
}

async fn apply_feed(f: &SensorFeed, ctx: &Context) -> Result<Action, Error> {
    let name = f.name_any();
    let prev = f.status.clone().unwrap_or_default();
    let mut status = SensorFeedStatus { observed_generation: f.metadata.generation, ..prev.clone() };
    let outcome = match registry::desired_feed(&name, &f.spec, &ctx.catalog) {
        Err(problem) => {
            ctx.event(f, true, "Invalid", problem.clone()).await;
            Err(problem)
        }
        Ok(want) => {
            let tenant = registry::tenant(&f.spec.tenant).map_err(Error::Registry)?;
            let topic = ctx.naming.topic(&tenant, TopicKind::Feeds);
            // A changed tenant or feed id moves the registration: the old record goes.
            if let (Some(old_topic), Some(old_id)) = (&prev.topic, &prev.feed_id)
                && (old_topic != &topic || old_id != want.id.as_str())
            {
                tombstone_feed(ctx, old_topic, old_id).await?;
            }
            let client = RegistryClient::new(ctx.kafka.clone(), &topic);
            client.ensure_topic().await.map_err(reg_err)?;
            let (state, _) = client.snapshot().await.map_err(reg_err)?;
            let id = want.id.clone();
            let version = match registry::decide_feed(want, state.get(&id)) {
                Write::Nothing(v) => v,
                Write::Put(spec) => {
                    client.put(&spec.id, Some(&spec)).await.map_err(reg_err)?;
                    ctx.metrics.registry_writes.inc();
                    ctx.event(f, false, "Registered", format!("feed {id} version {} on {topic}", spec.version)).await;
                    spec.version
                }
            };
            status.topic = Some(topic.clone());
            status.feed_id = Some(id.to_string());
            status.registry_version = Some(version);
            Ok(format!("feed {id} is version {version} on {topic}"))
        }
    };
    status.conditions = registry::outcome_conditions(&prev.conditions, &outcome, &rfc3339(now_unix()));
    if let (Some(source), Some(id)) = (&ctx.figures, &status.feed_id) {
        // Figures are informational: an unreachable source keeps the last ones.
        match source.figures().await {
            Ok(all) => {
                let fig = all.get(&(f.spec.tenant.clone(), id.clone())).copied().unwrap_or_default();
                status.rate_per_second = fig.rate_per_second;
                status.last_seen = fig.last_seen.map(rfc3339);
            }
            Err(e) => tracing::warn!(error = %e, "feed figures unavailable"),
        }
    }
    let api: Api<SensorFeed> = Api::namespaced(ctx.client.clone(), &f.namespace().unwrap_or_default());
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(Action::requeue(if ctx.figures.is_some() { ctx.interval.min(ctx.resync) } else { ctx.resync }))
}

async fn cleanup_feed(f: &SensorFeed, ctx: &Context) -> Result<Action, Error> {
    let status = f.status.clone().unwrap_or_default();
    if let (Some(topic), Some(id)) = (&status.topic, &status.feed_id) {
        tombstone_feed(ctx, topic, id).await?;
        ctx.event(f, false, "Deregistered", format!("feed {id} deleted from {topic}")).await;
    }
    Ok(Action::await_change())
}

// ---------------------------------------------------------------------------------------------
// GeofenceSet

/// Reconciles one GeofenceSet (with the finalizer that tombstones its fences on deletion).
pub async fn reconcile_fences(obj: Arc<GeofenceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<GeofenceSet> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let r = finalized(api, obj, |ev| async {
        match ev {
            Finalizer::Apply(s) => apply_fences(&s, &ctx).await,
            Finalizer::Cleanup(s) => cleanup_fences(&s, &ctx).await,
        }
    })
    .await;
    ctx.metrics.reconciled("fences", r.is_ok());
    r
}

async fn held_fences(topic: &RegistryTopic) -> Result<BTreeMap<String, FenceSpec>, Error> {
    let (reg, _) = topic.read::<FenceSpec>().await.map_err(reg_err)?;
    Ok(reg.specs().map(|f| (f.id.as_str().to_owned(), f.clone())).collect())
}

async fn apply_fences(s: &GeofenceSet, ctx: &Context) -> Result<Action, Error> {
    let name = s.name_any();
    let prev = s.status.clone().unwrap_or_default();
    let mut status = GeofenceSetStatus { observed_generation: s.metadata.generation, ..prev.clone() };
    let outcome = match registry::desired_fences(&s.spec) {
        Err(problem) => {
            ctx.event(s, true, "Invalid", problem.clone()).await;
            Err(problem)
        }
        Ok(want) => {
            let tenant = registry::tenant(&s.spec.tenant).map_err(Error::Registry)?;
            let topic_name = ctx.naming.topic(&tenant, TopicKind::Fences);
            let mut owned = prev.fence_ids.clone();
            if let Some(old) = prev.topic.as_ref().filter(|t| **t != topic_name) {
                // Moved to another tenant: everything written to the old topic goes.
                let old_topic = RegistryTopic::new(ctx.kafka.clone(), old);
                let held = held_fences(&old_topic).await?;
                for (id, _) in registry::decide_fences(&[], &held, &owned) {
                    old_topic.put(&id, None).await.map_err(reg_err)?;
                }
                owned.clear();
            }
            let topic = RegistryTopic::new(ctx.kafka.clone(), &topic_name);
            topic.ensure().await.map_err(reg_err)?;
            let held = held_fences(&topic).await?;
            let writes = registry::decide_fences(&want, &held, &owned);
            // Other sets and the CLI write to the same topic: the limit is on the tenant's total.
            let room = check_room::<FenceSpec>(held.len(), registry::count_after(&held, &writes));
            if let Err(problem) = room {
                ctx.event(s, true, "Invalid", problem.clone()).await;
                Err(problem)
            } else {
                for (id, spec) in &writes {
                    let value = spec.as_ref().map(serde_json::to_vec).transpose().map_err(reg_err)?;
                    topic.put(id, value.as_deref()).await.map_err(reg_err)?;
                    ctx.metrics.registry_writes.inc();
                }
                if !writes.is_empty() {
                    let written = format!("{} fence record(s) written to {topic_name}", writes.len());
                    ctx.event(s, false, "Registered", written).await;
                }
                status.topic = Some(topic_name.clone());
                status.fence_ids = want.iter().map(|f| f.id.as_str().to_owned()).collect();
                Ok(format!("{} fence(s) on {topic_name}", want.len()))
            }
        }
    };
    status.conditions = registry::outcome_conditions(&prev.conditions, &outcome, &rfc3339(now_unix()));
    let api: Api<GeofenceSet> = Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(Action::requeue(ctx.resync))
}

async fn cleanup_fences(s: &GeofenceSet, ctx: &Context) -> Result<Action, Error> {
    let status = s.status.clone().unwrap_or_default();
    if let Some(topic_name) = &status.topic {
        let topic = RegistryTopic::new(ctx.kafka.clone(), topic_name);
        let held = held_fences(&topic).await?;
        for (id, _) in registry::decide_fences(&[], &held, &status.fence_ids) {
            topic.put(&id, None).await.map_err(reg_err)?;
            ctx.metrics.registry_writes.inc();
        }
    }
    Ok(Action::await_change())
}

// ---------------------------------------------------------------------------------------------
// VolumeAutoscalePolicy

/// Evaluates one policy now.
pub async fn reconcile_policy(obj: Arc<VolumeAutoscalePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let r = apply_policy(&obj, &ctx, now_unix()).await;
    ctx.metrics.reconciled("autoscale", r.is_ok());
    r.map(|_| Action::requeue(ctx.interval))
}

fn resize_in_progress(pvc: &PersistentVolumeClaim) -> bool {
    let Some(st) = &pvc.status else { return false };
    let by_condition = st.conditions.iter().flatten().any(|c| {
        c.status == "True"
            && matches!(
                c.type_.as_str(),
                "Resizing" | "FileSystemResizePending" | "ControllerResizeError" | "NodeResizeError"
            )
    });
    let by_allocation = st.allocated_resource_statuses.as_ref().and_then(|m| m.get("storage")).is_some_and(|s| {
        matches!(s.as_str(), "ControllerResizeInProgress" | "NodeResizePending" | "NodeResizeInProgress")
    });
    by_condition || by_allocation
}

/// What the namespace's quotas still allow for `requests.storage` of `class` (None: no quota).
fn quota_headroom(quotas: &[ResourceQuota], class: Option<&str>) -> Option<u64> {
    let keys: Vec<String> = std::iter::once("requests.storage".to_owned())
        .chain(class.map(|c| format!("{c}.storageclass.storage.k8s.io/requests.storage")))
        .collect();
    let mut headroom: Option<u64> = None;
    for q in quotas {
        let hard = q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
        let used = q.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
        for k in &keys {
            if let Some(h) = hard.get(k).and_then(|h| parse_quantity(&h.0).ok()) {
                let u = used.get(k).and_then(|u| parse_quantity(&u.0).ok()).unwrap_or(0);
                let room = h.saturating_sub(u);
                headroom = Some(headroom.map_or(room, |r| r.min(room)));
            }
        }
    }
    headroom
}

/// Evaluates `p` at `now` (unix seconds): patches PVC requests the decision asks for, records
/// events and writes the per-volume status. Returns the status written.
pub async fn apply_policy(
    p: &VolumeAutoscalePolicy,
    ctx: &Context,
    now: i64,
) -> Result<VolumeAutoscalePolicyStatus, Error> {
    let api: Api<VolumeAutoscalePolicy> = Api::all(ctx.client.clone());
    let name = p.name_any();
    let prev = p.status.clone().unwrap_or_default();
    let stamp = rfc3339(now);
    let policy = match Policy::from_spec(&p.spec) {
        Ok(policy) => policy,
        Err(problem) => {
            let mut status = VolumeAutoscalePolicyStatus { volumes: vec![], conditions: prev.conditions.clone() };
            registry::set_condition(&mut status.conditions, "Invalid", true, "SpecInvalid", &problem, &stamp);
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
            return Ok(status);
        }
    };
    let namespaces: Option<BTreeSet<String>> = if p.spec.namespace_selector.match_labels.is_empty() {
        None
    } else {
        let nss: Api<Namespace> = Api::all(ctx.client.clone());
        let lp = ListParams::default().labels(&label_selector(&p.spec.namespace_selector));
        Some(nss.list(&lp).await?.items.into_iter().map(|n| n.name_any()).collect())
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let lp = ListParams::default().labels(&label_selector(&p.spec.selector));
    let mut claims: Vec<PersistentVolumeClaim> = pvcs
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|c| namespaces.as_ref().is_none_or(|n| n.contains(&c.namespace().unwrap_or_default())))
        .collect();
    claims.sort_by_key(|c| (c.namespace(), c.name_any()));
    let usage = ctx.usage.volumes().await?;
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let mut expandable: BTreeMap<String, bool> = BTreeMap::new();
    let mut quotas: BTreeMap<String, Vec<ResourceQuota>> = BTreeMap::new();
    let remembered: BTreeMap<(String, String), &VolumeStatus> =
        prev.volumes.iter().map(|v| ((v.namespace.clone(), v.name.clone()), v)).collect();

    let mut volumes = Vec::new();
    for pvc in &claims {
        let (ns, pvc_name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
        let spec = pvc.spec.clone().unwrap_or_default();
        let class = spec.storage_class_name.clone();
        let can_expand = match &class {
            None => false,
            Some(c) => match expandable.get(c) {
                Some(e) => *e,
                None => {
                    let e = classes.get_opt(c).await?.and_then(|sc| sc.allow_volume_expansion).unwrap_or(false);
                    expandable.insert(c.clone(), e);
                    e
                }
            },
        };
        if !quotas.contains_key(&ns) {
            let qapi: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
            quotas.insert(ns.clone(), qapi.list(&ListParams::default()).await?.items);
        }
        let before = remembered.get(&(ns.clone(), pvc_name.clone()));
        let request = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_quantity(&q.0).ok())
            .unwrap_or(0);
        let facts = Volume {
            expandable: can_expand,
            filesystem: spec.volume_mode.as_deref() != Some("Block"),
            bound: pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"),
            request,
            capacity: pvc
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| parse_quantity(&q.0).ok()),
            resize_condition: resize_in_progress(pvc),
            usage: usage.get(&(ns.clone(), pvc_name.clone())).copied(),
            quota_headroom: quota_headroom(quotas.get(&ns).map(Vec::as_slice).unwrap_or(&[]), class.as_deref()),
            approved_size: pvc.annotations().get(APPROVED_SIZE).and_then(|a| parse_quantity(a).ok()),
            condition_since: before.and_then(|b| b.condition_since.as_deref()).and_then(parse_rfc3339),
            last_resize: before.and_then(|b| b.last_resize.as_deref()).and_then(parse_rfc3339),
        };
        let out = autoscale::decide(&policy, &facts, now);
        ctx.metrics.volume_decisions.get_or_create(&DecisionLabels { state: out.decision.state().into() }).inc();
        let mut last_resize = facts.last_resize;
        let mut request_now = request;
        let changed_state = before.is_none_or(|b| b.state != out.decision.state());
        match &out.decision {
            Decision::Resize { to, .. } => {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                let patch = json!({"spec": {"resources": {"requests": {"storage": format_quantity(*to)}}}});
                api.patch(&pvc_name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                ctx.metrics.resizes.inc();
                last_resize = Some(now);
                request_now = *to;
                ctx.event(pvc, false, "Resized", format!("policy {name}: {}", out.decision.message())).await;
                template_behind(ctx, &ns, &pvc_name, *to).await?;
            }
            Decision::QuotaExceeded { .. } if changed_state => {
                ctx.event(pvc, true, "QuotaExceeded", format!("policy {name}: {}", out.decision.message())).await;
            }
            Decision::AwaitingApproval { .. } if changed_state => {
                ctx.event(pvc, false, "ResizeAwaitingApproval", format!("policy {name}: {}", out.decision.message()))
                    .await;
            }
            Decision::AtMaximum if changed_state => {
                ctx.event(pvc, true, "AtMaximum", format!("policy {name}: {}", out.decision.message())).await;
            }
            _ => {}
        }
        volumes.push(VolumeStatus {
            namespace: ns,
            name: pvc_name,
            state: out.decision.state().into(),
            message: out.decision.message(),
            used_percent: facts.usage.map(|u| (u.used_percent() * 10.0).round() / 10.0),
            condition_since: out.condition_since.map(rfc3339),
            last_resize: last_resize.map(rfc3339),
            request: Some(format_quantity(request_now)),
        });
    }
    let mut status = VolumeAutoscalePolicyStatus { volumes, conditions: prev.conditions.clone() };
    registry::set_condition(&mut status.conditions, "Invalid", false, "Valid", "", &stamp);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(status)
}

/// After a resize of a StatefulSet's claim: the volumeClaimTemplate is immutable on the apiserver,
/// so the operator says on the StatefulSet which size the chart must ask for (new replicas would
/// otherwise start small), instead of deleting and re-creating a running StatefulSet behind Helm.
async fn template_behind(ctx: &Context, ns: &str, pvc: &str, size: u64) -> Result<(), Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let sets = api.list(&ListParams::default()).await?.items;
    let shapes: Vec<(String, Vec<(String, u64)>)> = sets
        .iter()
        .map(|s| {
            let templates = s
                .spec
                .volume_claim_templates
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let req = t
                        .spec
                        .and_then(|sp| sp.resources)
                        .and_then(|r| r.requests)
                        .and_then(|r| r.get("storage").and_then(|q| parse_quantity(&q.0).ok()))
                        .unwrap_or(0);
                    (t.metadata.name.unwrap_or_default(), req)
                })
                .collect();
            (s.name_any(), templates)
        })
        .collect();
    if let Some((sts, tpl, template_size)) = autoscale::owning_template(pvc, &shapes)
        && template_size < size
        && let Some(set) = sets.iter().find(|s| s.name_any() == sts)
    {
        let note = format!(
            "claim {pvc} grew to {}; volumeClaimTemplate {tpl} still asks {} and is immutable: set the chart's storage value to {} so new replicas start at that size",
            format_quantity(size),
            format_quantity(template_size),
            format_quantity(size)
        );
        ctx.event(set, true, "VolumeClaimTemplateBehind", note).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SnapshotSchedule

/// The snapshot.storage.k8s.io/v1 VolumeSnapshot resource.
pub fn volume_snapshot_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// Evaluates one schedule now.
pub async fn reconcile_schedule(obj: Arc<SnapshotSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let r = apply_schedule(&obj, &ctx, now_unix()).await;
    ctx.metrics.reconciled("snapshots", r.is_ok());
    r.map(|_| Action::requeue(ctx.interval))
}

/// Takes the snapshots due at `now` and prunes by retention; returns the status written.
pub async fn apply_schedule(s: &SnapshotSchedule, ctx: &Context, now: i64) -> Result<SnapshotScheduleStatus, Error> {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let api: Api<SnapshotSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let prev = s.status.clone().unwrap_or_default();
    let stamp = rfc3339(now);
    let mut status = SnapshotScheduleStatus { conditions: prev.conditions.clone(), ..prev.clone() };
    let write = |status: SnapshotScheduleStatus| async {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
        Ok::<_, Error>(status)
    };
    let interval = parse_duration(&s.spec.interval).map_err(|e| format!("spec.interval: {e}"));
    let max_age = s.spec.retention.max_age.as_deref().map(parse_duration).transpose();
    let (interval, max_age) = match (interval, max_age) {
        (Ok(i), Ok(m)) if i > 0 => (i, m),
        (Ok(_), Ok(_)) => (0, None),
        (Err(problem), _) | (_, Err(problem)) => {
            registry::set_condition(&mut status.conditions, "Ready", false, "SpecInvalid", &problem, &stamp);
            return write(status).await;
        }
    };
    if interval == 0 {
        registry::set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "SpecInvalid",
            "spec.interval: must be above 0",
            &stamp,
        );
        return write(status).await;
    }
    let snaps: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &volume_snapshot_resource());
    let lp = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}"));
    let existing = match snaps.list(&lp).await {
        Ok(l) => l.items,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let msg = "the snapshot.storage.k8s.io/v1 VolumeSnapshot API is not served: install the external-snapshotter CRDs and a CSI driver that supports snapshots";
            if prev.conditions.iter().all(|c| c.reason != "SnapshotApiMissing") {
                ctx.event(s, true, "SnapshotApiMissing", msg.into()).await;
            }
            registry::set_condition(&mut status.conditions, "Ready", false, "SnapshotApiMissing", msg, &stamp);
            return write(status).await;
        }
        Err(e) => return Err(e.into()),
    };
    let mut by_pvc: BTreeMap<String, Vec<Snap>> = BTreeMap::new();
    for o in &existing {
        let (Some(pvc), Some(t)) =
            (o.labels().get(PVC_LABEL).cloned(), o.annotations().get(TAKEN_AT).and_then(|t| t.parse::<i64>().ok()))
        else {
            continue;
        };
        by_pvc.entry(pvc.clone()).or_default().push(Snap { name: o.name_any(), pvc, taken_at: t });
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claims = pvcs.list(&ListParams::default().labels(&label_selector(&s.spec.selector))).await?.items;
    let mut last = prev.last_snapshot.as_deref().and_then(parse_rfc3339);
    for pvc in &claims {
        let pvc_name = pvc.name_any();
        let list = by_pvc.entry(pvc_name.clone()).or_default();
        if snapshot::due(interval, list.iter().map(|x| x.taken_at).max(), now) {
            let snap_name = snapshot::snapshot_name(&name, &pvc_name, now);
            let mut obj = DynamicObject::new(&snap_name, &volume_snapshot_resource()).within(&ns);
            obj.metadata.labels = Some(BTreeMap::from([
                (SCHEDULE_LABEL.to_owned(), name.clone()),
                (PVC_LABEL.to_owned(), pvc_name.clone()),
                ("app.kubernetes.io/managed-by".to_owned(), "geostream-operator".to_owned()),
            ]));
            obj.metadata.annotations = Some(BTreeMap::from([(TAKEN_AT.to_owned(), now.to_string())]));
            let mut spec = json!({"source": {"persistentVolumeClaimName": pvc_name}});
            if let Some(class) = &s.spec.volume_snapshot_class_name {
                spec["volumeSnapshotClassName"] = json!(class);
            }
            obj.data = json!({"spec": spec});
            match snaps.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                // Taken already at this instant (a reconcile repeated): nothing to do.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.metrics.snapshots_created.inc();
            list.push(Snap { name: snap_name, pvc: pvc_name.clone(), taken_at: now });
            last = Some(now);
        }
        for gone in snapshot::prune(list, s.spec.retention.keep, max_age, now) {
            match snaps.delete(&gone, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.metrics.snapshots_pruned.inc();
            list.retain(|x| x.name != gone);
        }
    }
    status.snapshots = u32::try_from(by_pvc.values().map(Vec::len).sum::<usize>()).unwrap_or(u32::MAX);
    status.last_snapshot = last.map(rfc3339);
    let msg = format!("{} PVC(s) selected, every {}", claims.len(), s.spec.interval);
    registry::set_condition(&mut status.conditions, "Ready", true, "Scheduled", &msg, &stamp);
    write(status).await
}

// ---------------------------------------------------------------------------------------------
// The loops

fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "reconcile failed");
    Action::requeue(if err.retryable() { Duration::from_secs(10) } else { Duration::from_secs(300) })
}

/// Runs the four controllers until `shutdown` completes.
pub async fn run_controllers(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
    let client = ctx.client.clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let feeds = Controller::new(Api::<SensorFeed>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(signal())
        .run(reconcile_feed, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let fences = Controller::new(Api::<GeofenceSet>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(signal())
        .run(reconcile_fences, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let policies = Controller::new(Api::<VolumeAutoscalePolicy>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(signal())
        .run(reconcile_policy, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let schedules = Controller::new(Api::<SnapshotSchedule>::all(client), watcher::Config::default())
        .graceful_shutdown_on(signal())
        .run(reconcile_schedule, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    futures::join!(feeds, fences, policies, schedules);
}

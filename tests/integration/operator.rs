//! The operator against the real kube-apiserver (and real Kafka for the registry): the CRDs
//! install, SensorFeeds and GeofenceSets become registry records, an autoscale policy patches PVC
//! requests from usage a test double serves, a snapshot schedule creates and prunes
//! VolumeSnapshots, and deleting everything leaves nothing behind. Offline: the chart lints,
//! renders, validates, and every example custom resource passes its CRD schema on the apiserver.
//!
//! This apiserver has no kubelet, scheduler, controller-manager or CSI driver: the tests set PVC
//! status (Bound, capacity) through the status subresource the way those components would, and
//! install minimal snapshot CRDs themselves. docs/operator.md lists what only a real cluster shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use geostream_ingest::registry::RegistryClient;
use geostream_model::{FeedId, FenceSpec, Naming};
use geostream_operator::autoscale::Usage;
use geostream_operator::controller::{self, Context};
use geostream_operator::crd::{self, GeofenceSet, SensorFeed, SnapshotSchedule, VolumeAutoscalePolicy};
use geostream_operator::metrics::Metrics;
use geostream_operator::usage::StaticUsageTestDouble;
use geostream_processor::registry::RegistryTopic;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

const GI: u64 = 1 << 30;

/// The operator's tests share cluster-scoped CRDs; one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn client(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read KUBECONFIG");
    let config = Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig");
    Client::try_from(config).expect("client")
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..120 {
        let c = crds.get(name).await.expect("get CRD");
        let ok = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("CRD {name} never became Established");
}

async fn install(client: &Client, crd_list: Vec<CustomResourceDefinition>) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crd_list {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("geostream-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        wait_established(&crds, &name).await;
    }
}

async fn install_operator_crds(client: &Client) {
    install(client, crd::all()).await;
}

async fn remove_crd(client: &Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds.delete(name, &DeleteParams::default()).await;
    for _ in 0..240 {
        if crds.get_opt(name).await.expect("get CRD").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("CRD {name} was not removed");
}

/// TEST FIXTURE, not the external-snapshotter's CRD: a minimal snapshot.storage.k8s.io/v1
/// VolumeSnapshot with the fields the operator writes (spec.source.persistentVolumeClaimName,
/// spec.volumeSnapshotClassName), so the apiserver serves the API a CSI snapshot setup would.
fn volume_snapshot_crd_fixture() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {
            "name": "volumesnapshots.snapshot.storage.k8s.io",
            "labels": {"geostream.io/test-fixture": "true"},
            // *.k8s.io groups are protected; the upstream CRDs carry their API review's approval.
            "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/419"}
        },
        "spec": {
            "group": "snapshot.storage.k8s.io",
            "scope": "Namespaced",
            "names": {"plural": "volumesnapshots", "singular": "volumesnapshot", "kind": "VolumeSnapshot", "listKind": "VolumeSnapshotList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["source"], "properties": {
                        "source": {"type": "object", "properties": {
                            "persistentVolumeClaimName": {"type": "string"},
                            "volumeSnapshotContentName": {"type": "string"}}},
                        "volumeSnapshotClassName": {"type": "string"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}
            }]
        }
    }))
    .expect("fixture CRD")
}

async fn namespace(client: &Client, name: &str, labels: Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
}

fn context(client: &Client, kafka: &str, usage: Arc<StaticUsageTestDouble>) -> Arc<Context> {
    let catalog =
        geostream_operator::registry::load_catalog(&geostream_tests::repo_root().join("feeds")).expect("catalog");
    let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), kafka.to_owned())]);
    Arc::new(Context::new(
        client.clone(),
        kafka,
        Naming::new("").unwrap(),
        catalog,
        usage,
        Metrics::default(),
        "geostream-tests",
        Duration::from_secs(3600),
    ))
}

/// Polls `get` until `done` holds for what it returns (at most ~60 s; a bound, not a timing
/// assertion: a reconcile normally lands in well under a second).
async fn eventually<T, F, Fut>(what: &str, mut get: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: std::fmt::Debug,
{
    let mut last = None;
    for _ in 0..240 {
        let v = get().await;
        if done(&v) {
            return v;
        }
        last = Some(v);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} never happened; last seen: {last:?}");
}

fn condition(conds: &[crd::Condition], type_: &str) -> Option<(String, String)> {
    conds.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn sensor_feeds_and_fences_become_registry_records_and_leave_with_their_resources() {
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "operator feeds") else { return };
    let Some(kafka) = geostream_tests::service("KAFKA_BOOTSTRAP", "operator feeds") else { return };
    let _serial = SERIAL.lock().await;
    let client = client(&kubeconfig).await;
    install_operator_crds(&client).await;
    let ns = geostream_tests::unique("opfeeds");
    namespace(&client, &ns, json!({})).await;
    let tenant = ns.clone();
    // Live figures as ingest would report them (through Prometheus in a cluster).
    let figures = geostream_operator::figures::StaticFiguresTestDouble::default();
    let seen = 1_790_000_000;
    figures.set(
        &tenant,
        "harbour-ais",
        geostream_operator::figures::Figures { rate_per_second: Some(2.5), last_seen: Some(seen) },
    );
    let ctx = context(&client, &kafka, Arc::new(StaticUsageTestDouble::default()));
    let ctx = Arc::new(Arc::into_inner(ctx).expect("sole owner").with_figures(Arc::new(figures)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(geostream_operator::run_controllers(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));

    let feeds: Api<SensorFeed> = Api::namespaced(client.clone(), &ns);
    let feed: SensorFeed = serde_json::from_value(json!({
        "apiVersion": "geostream.io/v1alpha1", "kind": "SensorFeed",
        "metadata": {"name": "harbour-ais"},
        "spec": {"tenant": tenant, "type": "ais-nmea-tcp", "overrides": {"source": {"address": "10.20.0.5:10110"}}}
    }))
    .unwrap();
    feeds.create(&PostParams::default(), &feed).await.expect("create SensorFeed");
    let bad: SensorFeed = serde_json::from_value(json!({
        "apiVersion": "geostream.io/v1alpha1", "kind": "SensorFeed",
        "metadata": {"name": "typo"},
        "spec": {"tenant": tenant, "type": "ais-nmea-tpc"}
    }))
    .unwrap();
    feeds.create(&PostParams::default(), &bad).await.expect("create SensorFeed");

    let got = eventually(
        "SensorFeed Accepted",
        || async { feeds.get("harbour-ais").await.unwrap() },
        |f: &SensorFeed| {
            f.status.as_ref().and_then(|s| condition(&s.conditions, "Accepted")).is_some_and(|c| c.0 == "True")
        },
    )
    .await;
    let st = got.status.unwrap();
    let topic = format!("{tenant}.feeds");
    assert_eq!(st.topic.as_deref(), Some(topic.as_str()));
    assert_eq!(st.registry_version, Some(1));
    assert_eq!(st.rate_per_second, Some(2.5));
    assert_eq!(st.last_seen.as_deref(), Some("2026-09-21T14:13:20Z"));
    assert!(got.metadata.finalizers.unwrap_or_default().contains(&controller::FINALIZER.to_owned()));

    // The real registry topic holds the catalog entry with the override.
    let registry = RegistryClient::new(ctx.kafka.clone(), topic.clone());
    let (state, _) = registry.snapshot().await.expect("read registry");
    let spec = state.get(&FeedId::new("harbour-ais").unwrap()).expect("feed registered").clone();
    assert_eq!(spec.type_, "ais-nmea-tcp");
    assert_eq!(serde_json::to_value(&spec.source).unwrap()["address"], "10.20.0.5:10110");
    assert!(spec.enabled);
    assert_eq!(state.len(), 1, "the invalid feed is not registered");

    let typo = eventually(
        "Invalid condition",
        || async { feeds.get("typo").await.unwrap() },
        |f: &SensorFeed| {
            f.status.as_ref().and_then(|s| condition(&s.conditions, "Invalid")).is_some_and(|c| c.0 == "True")
        },
    )
    .await;
    let (_, why) = condition(&typo.status.unwrap().conditions, "Invalid").unwrap();
    assert!(why.contains("spec.type") && why.contains("ais-nmea-tcp"), "{why}");

    // Pausing through the resource raises the registry version.
    feeds
        .patch("harbour-ais", &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}})))
        .await
        .expect("pause");
    eventually(
        "paused spec registered",
        || async { registry.snapshot().await.unwrap().0.get(&FeedId::new("harbour-ais").unwrap()).cloned() },
        |s| s.as_ref().is_some_and(|s| !s.enabled && s.version == 2),
    )
    .await;

    // Fences.
    let sets: Api<GeofenceSet> = Api::namespaced(client.clone(), &ns);
    let set: GeofenceSet = serde_json::from_value(json!({
        "apiVersion": "geostream.io/v1alpha1", "kind": "GeofenceSet",
        "metadata": {"name": "harbour"},
        "spec": {"tenant": tenant, "fences": [
            {"id": "pilot", "name": "Pilot station", "geometry": {"type": "Circle", "center": [151.2, -33.8], "radius_m": 500}},
            {"id": "berth-4", "name": "Berth 4", "geometry": {"type": "Polygon",
              "coordinates": [[[151.20, -33.86], [151.21, -33.86], [151.21, -33.87], [151.20, -33.87], [151.20, -33.86]]]}}
        ]}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.expect("create GeofenceSet");
    let fences = RegistryTopic::new(ctx.kafka.clone(), format!("{tenant}.fences"));
    let read_fences = || async {
        match fences.read::<FenceSpec>().await {
            Ok((reg, _)) => reg.specs().map(|f| f.id.as_str().to_owned()).collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        }
    };
    eventually("fences registered", read_fences, |ids: &Vec<String>| ids == &["berth-4", "pilot"]).await;
    // A fence dropped from the set is deleted from the topic.
    sets.patch(
        "harbour",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"fences": [
            {"id": "pilot", "name": "Pilot station", "geometry": {"type": "Circle", "center": [151.2, -33.8], "radius_m": 800}}
        ]}})),
    )
    .await
    .expect("patch fences");
    eventually("berth-4 removed", read_fences, |ids: &Vec<String>| ids == &["pilot"]).await;

    // Uninstall: deleting the resources runs the finalizers (tombstones), then the CRDs go.
    feeds.delete("harbour-ais", &DeleteParams::default()).await.expect("delete feed");
    feeds.delete("typo", &DeleteParams::default()).await.expect("delete feed");
    sets.delete("harbour", &DeleteParams::default()).await.expect("delete set");
    eventually(
        "resources gone",
        || async {
            (
                feeds.list(&ListParams::default()).await.unwrap().items.len(),
                sets.list(&ListParams::default()).await.unwrap().items.len(),
            )
        },
        |n| *n == (0, 0),
    )
    .await;
    let (state, _) = registry.snapshot().await.unwrap();
    assert!(state.is_empty(), "feed tombstoned: {:?}", state.feeds().collect::<Vec<_>>());
    assert!(read_fences().await.is_empty(), "fences tombstoned");
    let _ = stop_tx.send(());
    running.await.expect("controllers stopped");

    for c in crd::all() {
        remove_crd(&client, &c.name_any()).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let left: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.name_any())
        .filter(|n| n.ends_with(".geostream.io") && !n.contains(".smoke."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
}

async fn pvc(client: &Client, ns: &str, name: &str, class: &str, app: &str) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let p: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": "10Gi"}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.expect("create PVC");
}

/// What the PV controller and the kubelet would report: Bound with a capacity.
async fn bind(client: &Client, ns: &str, name: &str, capacity: &str) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": capacity}}}),
        ),
    )
    .await
    .expect("set PVC status");
}

fn usage(used_gi: f64, cap_gi: u64) -> Usage {
    Usage { used: (used_gi * GI as f64) as u64, capacity: cap_gi * GI, inodes_used: None, inodes: None }
}

fn volume_state(st: &crd::VolumeAutoscalePolicyStatus, name: &str) -> (String, String) {
    let v = st.volumes.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("{name} not in status: {st:?}"));
    (v.state.clone(), v.message.clone())
}

#[tokio::test]
async fn autoscale_policy_patches_pvc_requests_from_usage_behind_the_guard_rails() {
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "operator autoscale") else { return };
    let _serial = SERIAL.lock().await;
    let client = client(&kubeconfig).await;
    install_operator_crds(&client).await;
    let ns = geostream_tests::unique("opscale");
    let app = ns.clone();
    namespace(&client, &ns, json!({"geostream.io/autoscale": ns})).await;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let (expand, fixed) = (format!("{ns}-expand"), format!("{ns}-fixed"));
    for (name, allow) in [(&expand, true), (&fixed, false)] {
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": name}, "provisioner": "example.com/no-driver", "allowVolumeExpansion": allow
        }))
        .unwrap();
        classes.create(&PostParams::default(), &sc).await.expect("create StorageClass");
    }
    // data-store-0 is replica 0's claim of StatefulSet "store" (template "data"), as the chart's are.
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "store"},
        "spec": {
            "serviceName": "store",
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                         "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": expand,
                         "resources": {"requests": {"storage": "10Gi"}}}}]
        }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &sts).await.expect("create StatefulSet");
    for (name, class) in [("data-store-0", &expand), ("data-b", &fixed), ("data-c", &expand), ("data-d", &expand)] {
        pvc(&client, &ns, name, class, &app).await;
    }
    for name in ["data-store-0", "data-b", "data-c"] {
        bind(&client, &ns, name, "10Gi").await;
    }
    // Usage from the test double: c is bound but not mounted (no stats); d is full but Pending.
    let stats = Arc::new(StaticUsageTestDouble::default());
    stats.set(&ns, "data-store-0", usage(9.0, 10));
    stats.set(&ns, "data-b", usage(9.5, 10));
    stats.set(&ns, "data-d", usage(9.9, 10));
    let ctx = context(&client, "127.0.0.1:1", stats.clone());

    let policies: Api<VolumeAutoscalePolicy> = Api::all(client.clone());
    let policy: VolumeAutoscalePolicy = serde_json::from_value(json!({
        "apiVersion": "geostream.io/v1alpha1", "kind": "VolumeAutoscalePolicy",
        "metadata": {"name": ns},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "namespaceSelector": {"matchLabels": {"geostream.io/autoscale": ns}},
            "conditions": {"usedPercentAbove": 80, "for": "5m"},
            "action": {"percentage": 50, "maxSize": "12Gi"},
            "cooldown": "1h"
        }
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.expect("create policy");
    let t0 = 1_800_000_000;
    let eval = |now: i64| {
        let (policies, ctx, name) = (policies.clone(), ctx.clone(), ns.clone());
        async move {
            let p = policies.get(&name).await.unwrap();
            controller::apply_policy(&p, &ctx, now).await.expect("apply policy")
        }
    };

    let st = eval(t0).await;
    assert_eq!(volume_state(&st, "data-store-0").0, "Pending", "over 80 % but not for 5 minutes yet");
    assert_eq!(volume_state(&st, "data-b").0, "Skipped");
    assert!(volume_state(&st, "data-b").1.contains("expansion"));
    assert!(volume_state(&st, "data-c").1.contains("not mounted"));
    assert!(volume_state(&st, "data-d").1.contains("not Bound"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let request = |name: &'static str| {
        let pvcs = pvcs.clone();
        async move {
            let p = pvcs.get(name).await.unwrap();
            p.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0.clone()
        }
    };
    assert_eq!(request("data-store-0").await, "10Gi");

    // Five minutes later it still holds: the request grows by 50 %, capped at maxSize.
    let st = eval(t0 + 300).await;
    assert_eq!(volume_state(&st, "data-store-0"), ("Resized".into(), "resized 10Gi -> 12Gi".into()));
    assert_eq!(request("data-store-0").await, "12Gi");
    assert_eq!(request("data-b").await, "10Gi", "guard rails: untouched");
    assert_eq!(request("data-d").await, "10Gi", "guard rails: untouched");

    // Until the resizer reports the new capacity, a resize is in progress; nothing more is asked.
    let st = eval(t0 + 360).await;
    assert_eq!(volume_state(&st, "data-store-0").0, "ResizeInProgress");
    bind(&client, &ns, "data-store-0", "12Gi").await;
    stats.set(&ns, "data-store-0", usage(11.5, 12));
    let st = eval(t0 + 1000).await;
    assert_eq!(volume_state(&st, "data-store-0").0, "AtMaximum", "{st:?}");
    assert_eq!(request("data-store-0").await, "12Gi");

    // The resize is recorded as a Kubernetes event on the claim.
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("data-store-0"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains(&"Resized".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"AtMaximum".to_owned()), "{reasons:?}");
    // The StatefulSet's template is immutable: the event on it names the size the chart must ask.
    let behind: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("StatefulSet"))
        .filter(|e| e.reason.as_deref() == Some("VolumeClaimTemplateBehind"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(behind.len(), 1, "{behind:?}");
    assert!(behind[0].contains("data-store-0 grew to 12Gi") && behind[0].contains("still asks 10Gi"), "{behind:?}");

    policies.delete(&ns, &DeleteParams::default()).await.expect("delete policy");
    for name in [&expand, &fixed] {
        classes.delete(name, &DeleteParams::default()).await.expect("delete StorageClass");
    }
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
}

#[tokio::test]
async fn snapshot_schedule_reports_a_missing_api_then_snapshots_and_prunes_by_retention() {
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "operator snapshots") else { return };
    let _serial = SERIAL.lock().await;
    let client = client(&kubeconfig).await;
    install_operator_crds(&client).await;
    let fixture = volume_snapshot_crd_fixture();
    remove_crd(&client, &fixture.name_any()).await;
    let ns = geostream_tests::unique("opsnap");
    namespace(&client, &ns, json!({})).await;
    for name in ["data-process-0", "data-process-1", "data-other"] {
        pvc(&client, &ns, name, "standard", if name == "data-other" { "other" } else { "process" }).await;
    }
    let ctx = context(&client, "127.0.0.1:1", Arc::new(StaticUsageTestDouble::default()));
    let schedules: Api<SnapshotSchedule> = Api::namespaced(client.clone(), &ns);
    let schedule: SnapshotSchedule = serde_json::from_value(json!({
        "apiVersion": "geostream.io/v1alpha1", "kind": "SnapshotSchedule",
        "metadata": {"name": "checkpoints"},
        "spec": {"selector": {"matchLabels": {"app": "process"}}, "interval": "6h", "retention": {"keep": 2}}
    }))
    .unwrap();
    schedules.create(&PostParams::default(), &schedule).await.expect("create schedule");
    let eval = |now: i64| {
        let (schedules, ctx) = (schedules.clone(), ctx.clone());
        async move {
            let s = schedules.get("checkpoints").await.unwrap();
            controller::apply_schedule(&s, &ctx, now).await.expect("apply schedule")
        }
    };

    // Without the snapshot CRDs the schedule says so instead of failing in a loop.
    let st = eval(0).await;
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SnapshotApiMissing"));
    assert!(ready.message.contains("snapshot.storage.k8s.io"), "{}", ready.message);

    install(&client, vec![fixture.clone()]).await;
    let snaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &controller::volume_snapshot_resource());
    let names = || async {
        let mut n: Vec<String> =
            snaps.list(&ListParams::default()).await.unwrap().items.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    };
    let t0 = 1_800_000_000;
    // Discovery may lag the Established condition for a moment.
    let st = eventually(
        "first snapshots",
        || async {
            let s = schedules.get("checkpoints").await.unwrap();
            controller::apply_schedule(&s, &ctx, t0).await.expect("apply schedule")
        },
        |st| st.snapshots == 2,
    )
    .await;
    assert_eq!(st.conditions.iter().find(|c| c.type_ == "Ready").unwrap().status, "True");
    let first = names().await;
    assert_eq!(first, [format!("checkpoints-data-process-0-{t0}"), format!("checkpoints-data-process-1-{t0}")]);
    let obj = snaps.get(&first[0]).await.unwrap();
    assert_eq!(obj.data["spec"]["source"]["persistentVolumeClaimName"], "data-process-0");

    assert_eq!(eval(t0 + 3600).await.snapshots, 2, "not due before 6 h");
    assert_eq!(eval(t0 + 6 * 3600).await.snapshots, 4);
    let st = eval(t0 + 12 * 3600).await;
    assert_eq!(st.snapshots, 4, "keep 2 per claim: the oldest were pruned");
    let left = names().await;
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|n| !n.ends_with(&format!("-{t0}"))), "{left:?}");
    assert!(left.iter().all(|n| !n.contains("data-other")), "{left:?}");

    schedules.delete("checkpoints", &DeleteParams::default()).await.expect("delete schedule");
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
    remove_crd(&client, &fixture.name_any()).await;
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn operator_chart_lints_renders_and_validates_offline() {
    let Some(helm) = geostream_tests::service("HELM", "operator chart") else { return };
    let Some(validator) = geostream_tests::service("KUBERNETES_VALIDATE", "operator chart") else { return };
    let chart = geostream_tests::repo_root().join("charts").join("geostream-operator");
    let chart = chart.to_str().expect("utf8 path");
    let values = ["--set", "kafka.bootstrap=kafka.data:9092"];
    let mut lint = vec!["lint", "--strict", chart];
    lint.extend(values);
    let out = run(&helm, &lint);
    assert!(out.status.success(), "helm lint --strict failed:\n{}", text(&out));

    let mut template = vec!["template", "ops", chart, "--namespace", "geostream-system", "--include-crds"];
    template.extend(values);
    let out = run(&helm, &template);
    assert!(out.status.success(), "helm template failed:\n{}", text(&out));
    let rendered = String::from_utf8(out.stdout).expect("utf8");
    let dir = geostream_tests::report_dir().join(geostream_tests::unique("operator-chart"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = run(&validator, &["--strict", file.to_str().unwrap()]);
    assert!(out.status.success(), "kubernetes-validate --strict rejected the chart:\n{}", text(&out));

    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // Least privilege: no wildcards, no secrets, nothing but the verbs the reconcilers use.
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let rules = serde_json::to_string(&role["rules"]).unwrap();
    assert!(!rules.contains('*') && !rules.contains("secrets") && !rules.contains("\"update\""), "{rules}");
    assert!(rules.contains("nodes/proxy"), "node-proxy usage needs nodes/proxy: {rules}");
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("operator"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["readinessProbe"]["httpGet"]["port"].as_str(), Some("metrics"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(9464));

    // With Prometheus as the usage source the node proxy is not granted.
    let out = run(
        &helm,
        &[
            "template",
            "ops",
            chart,
            "--set",
            "kafka.bootstrap=k:9092",
            "--set",
            "usage.source=prometheus",
            "--set",
            "usage.prometheusUrl=http://prom:9090",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nodes/proxy"));
    // The schema refuses a release without Kafka and Prometheus without a URL.
    let out = run(&helm, &["template", "ops", chart]);
    assert!(!out.status.success(), "rendered without kafka.bootstrap");
    let out =
        run(&helm, &["template", "ops", chart, "--set", "kafka.bootstrap=k:9092", "--set", "usage.source=prometheus"]);
    assert!(!out.status.success(), "rendered prometheus without a URL:\n{}", text(&out));
}

#[tokio::test]
async fn every_example_custom_resource_passes_its_crd_schema() {
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "operator examples") else { return };
    let _serial = SERIAL.lock().await;
    let client = client(&kubeconfig).await;
    install_operator_crds(&client).await;
    let ns = geostream_tests::unique("opexamples");
    namespace(&client, &ns, json!({})).await;
    let dir = geostream_tests::repo_root().join("charts/geostream-operator/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let dry = PostParams { dry_run: true, ..PostParams::default() };
    let mut kinds = Vec::new();
    for f in &files {
        let mut v: Value = serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let kind = v["kind"].as_str().unwrap().to_owned();
        let gvk = kube::api::GroupVersionKind::gvk("geostream.io", "v1alpha1", &kind);
        let ar = kube::api::ApiResource::from_gvk(&gvk);
        let namespaced = kind != "VolumeAutoscalePolicy";
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), &ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        if namespaced {
            v["metadata"]["namespace"] = json!(ns);
        }
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        api.create(&dry, &obj).await.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // The operator's own validation accepts them too.
        match kind.as_str() {
            "SensorFeed" => {
                let feed: SensorFeed = serde_json::from_value(v.clone()).unwrap();
                let catalog =
                    geostream_operator::registry::load_catalog(&geostream_tests::repo_root().join("feeds")).unwrap();
                geostream_operator::registry::desired_feed("harbour-ais", &feed.spec, &catalog).unwrap();
            }
            "GeofenceSet" => {
                let set: GeofenceSet = serde_json::from_value(v.clone()).unwrap();
                assert_eq!(geostream_operator::registry::desired_fences(&set.spec).unwrap().len(), 2);
            }
            "VolumeAutoscalePolicy" => {
                let p: VolumeAutoscalePolicy = serde_json::from_value(v.clone()).unwrap();
                geostream_operator::autoscale::Policy::from_spec(&p.spec).unwrap();
            }
            _ => {}
        }
        // And the schema is enforced: the same resource without its spec's required fields is refused.
        let mut broken = v.clone();
        broken["spec"] = json!({"unrelated": true});
        let obj: DynamicObject = serde_json::from_value(broken).unwrap();
        match api.create(&dry, &obj).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{}: {e:?}", f.display()),
            other => panic!("{}: a spec without required fields was accepted: {other:?}", f.display()),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(kinds, ["GeofenceSet", "SensorFeed", "SnapshotSchedule", "VolumeAutoscalePolicy"]);
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
}

#[tokio::test]
async fn one_candidate_leads_through_the_lease_and_another_takes_over_only_when_it_lapses() {
    use geostream_operator::leader::Elector;
    use k8s_openapi::api::coordination::v1::Lease;
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "operator leader election") else { return };
    let client = client(&kubeconfig).await;
    let ns = geostream_tests::unique("oplease");
    namespace(&client, &ns, json!({})).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let a = Elector::new(leases.clone(), "geostream-operator", "pod-a", 3600);
    let b = Elector::new(leases.clone(), "geostream-operator", "pod-b", 3600);
    assert!(a.try_lead().await.unwrap(), "a free lease is taken");
    assert!(!b.try_lead().await.unwrap(), "a renewed lease is not");
    assert!(a.try_lead().await.unwrap(), "the holder renews");
    let held = leases.get("geostream-operator").await.unwrap().spec.unwrap();
    assert_eq!(held.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(held.lease_transitions, Some(1));

    // The holder stops renewing: backdate its renewal beyond the duration, as time would.
    let stale = k8s_openapi::jiff::Timestamp::from_second(held.renew_time.unwrap().0.as_second() - 7200).unwrap();
    leases
        .patch(
            "geostream-operator",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(stale)}}),
            ),
        )
        .await
        .unwrap();
    assert!(b.try_lead().await.unwrap(), "a lapsed lease is taken over");
    assert!(!a.try_lead().await.unwrap(), "the old holder now waits");
    let held = leases.get("geostream-operator").await.unwrap().spec.unwrap();
    assert_eq!(held.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(held.lease_transitions, Some(2));
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
}

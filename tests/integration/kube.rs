//! A real kube-apiserver through the `kube` crate: a namespace and a CustomResourceDefinition are
//! created, a custom resource of it is stored and read back, and everything is cleaned up.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Client, Config};
use serde_json::json;

async fn client(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read KUBECONFIG");
    let config = Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig");
    Client::try_from(config).expect("client")
}

#[tokio::test]
async fn namespace_crd_and_custom_resource_round_trip() {
    let Some(kubeconfig) = geostream_tests::service("KUBECONFIG", "kube-apiserver round trip") else { return };
    let client = client(&kubeconfig).await;
    let version = client.apiserver_version().await.expect("apiserver /version");
    println!("kube-apiserver {}", version.git_version);

    let ns_name = geostream_tests::unique("smoke");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": ns_name, "labels": {"app.kubernetes.io/part-of": "geostream"}}}),
    )
    .expect("namespace");
    namespaces.create(&PostParams::default(), &ns).await.expect("create namespace");
    let back = namespaces.get(&ns_name).await.expect("get namespace");
    assert_eq!(back.metadata.labels.unwrap_or_default()["app.kubernetes.io/part-of"], "geostream");

    // A CRD in a group of its own per run, so reruns and the operator's real CRDs never collide.
    let group = format!("{}.smoke.geostream.io", ns_name.replace('-', ""));
    let crd_name = format!("probes.{group}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["feed"], "properties": {
                        "feed": {"type": "string"},
                        "intervalSeconds": {"type": "integer", "minimum": 1}}}}}}
            }]
        }
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd).await.expect("create CRD");

    // The API serves the new kind only once the CRD is Established.
    let mut established = false;
    for _ in 0..60 {
        let c = crds.get(&crd_name).await.expect("get CRD");
        established = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(established, "CRD {crd_name} never became Established");

    let gvk = GroupVersionKind::gvk(&group, "v1alpha1", "Probe");
    let resource = ApiResource::from_gvk(&gvk);
    let probes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns_name, &resource);
    let mut probe = DynamicObject::new("ais-sydney", &resource);
    probe.data = json!({"spec": {"feed": "ais", "intervalSeconds": 5}});
    // Creating right after Established can still race discovery for a moment; retry briefly.
    let mut created = None;
    for _ in 0..20 {
        match probes.create(&PostParams::default(), &probe).await {
            Ok(p) => {
                created = Some(p);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("create custom resource: {e}"),
        }
    }
    assert!(created.is_some(), "custom resource kind never served");
    let read = probes.get("ais-sydney").await.expect("get custom resource");
    assert_eq!(read.data["spec"]["feed"], "ais");
    assert_eq!(read.data["spec"]["intervalSeconds"], 5);

    // The schema is enforced by the real apiserver: a spec without `feed` is rejected.
    let mut bad = DynamicObject::new("bad", &resource);
    bad.data = json!({"spec": {"intervalSeconds": 0}});
    match probes.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("invalid custom resource was not rejected: {other:?}"),
    }

    crds.delete(&crd_name, &DeleteParams::default()).await.expect("delete CRD");
    namespaces.delete(&ns_name, &DeleteParams::default()).await.expect("delete namespace");
}

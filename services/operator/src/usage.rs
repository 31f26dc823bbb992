//! Where volume usage comes from: kubelet volume stats, read from Prometheus
//! (`kubelet_volume_stats_*`) or from the kubelets through the apiserver's node proxy
//! (`/api/v1/nodes/<node>/proxy/stats/summary`). The parsing is pure; the sources are thin.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::autoscale::Usage;

/// PVC (namespace, name) to its usage. A PVC that is missing is not mounted anywhere.
pub type UsageMap = BTreeMap<(String, String), Usage>;

/// Why usage could not be read; always worth retrying (the source may come back).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The source could not be reached or answered an error.
    #[error("usage source {source_name}: {detail}")]
    Unavailable {
        /// Which source.
        source_name: &'static str,
        /// What happened.
        detail: String,
    },
}

/// A source of kubelet volume stats.
pub trait UsageSource: Send + Sync {
    /// Usage of every mounted volume the source knows.
    fn volumes(&self) -> BoxFuture<'_, Result<UsageMap, UsageError>>;
}

/// Folds Prometheus instant-query answers of the four `kubelet_volume_stats_*` series. Pure.
pub fn parse_prometheus(used: &Value, capacity: &Value, inodes_used: &Value, inodes: &Value) -> UsageMap {
    fn series(v: &Value) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for r in v["data"]["result"].as_array().into_iter().flatten() {
            let (Some(ns), Some(pvc)) =
                (r["metric"]["namespace"].as_str(), r["metric"]["persistentvolumeclaim"].as_str())
            else {
                continue;
            };
            if let Some(x) = r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
                && x.is_finite()
                && x >= 0.0
            {
                out.insert((ns.to_owned(), pvc.to_owned()), x as u64);
            }
        }
        out
    }
    let (used, capacity, iu, it) = (series(used), series(capacity), series(inodes_used), series(inodes));
    used.into_iter()
        .filter_map(|(k, u)| {
            let c = *capacity.get(&k)?;
            let usage = Usage { used: u, capacity: c, inodes_used: iu.get(&k).copied(), inodes: it.get(&k).copied() };
            Some((k, usage))
        })
        .collect()
}

/// Folds a kubelet `/stats/summary` document (pods with their volumes and `pvcRef`). Pure.
pub fn parse_summary(summary: &Value, into: &mut UsageMap) {
    for pod in summary["pods"].as_array().into_iter().flatten() {
        for vol in pod["volume"].as_array().into_iter().flatten() {
            let (Some(ns), Some(name)) = (vol["pvcRef"]["namespace"].as_str(), vol["pvcRef"]["name"].as_str()) else {
                continue;
            };
            let (Some(used), Some(capacity)) = (vol["usedBytes"].as_u64(), vol["capacityBytes"].as_u64()) else {
                continue;
            };
            into.insert(
                (ns.to_owned(), name.to_owned()),
                Usage { used, capacity, inodes_used: vol["inodesUsed"].as_u64(), inodes: vol["inodes"].as_u64() },
            );
        }
    }
}

/// An instant-query client of one Prometheus server, shared by the usage and feed-figure sources.
pub(crate) struct Prometheus {
    http: reqwest::Client,
    url: String,
}

impl Prometheus {
    /// A client of `url` (`http://prometheus:9090`).
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self { http: reqwest::Client::new(), url: url.into().trim_end_matches('/').to_owned() }
    }

    /// The `/api/v1/query` answer to `q`.
    pub(crate) async fn query(&self, q: &str) -> Result<Value, UsageError> {
        let err = |detail: String| UsageError::Unavailable { source_name: "prometheus", detail };
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .timeout(std::time::Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("{q}: HTTP {}", resp.status())));
        }
        resp.json().await.map_err(|e| err(e.to_string()))
    }
}

/// Reads the kubelet series from a Prometheus server (`http://prometheus:9090`).
pub struct PrometheusUsage(Prometheus);

impl PrometheusUsage {
    /// A source querying `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(Prometheus::new(url))
    }

    async fn query(&self, q: &str) -> Result<Value, UsageError> {
        self.0.query(q).await
    }
}

impl UsageSource for PrometheusUsage {
    fn volumes(&self) -> BoxFuture<'_, Result<UsageMap, UsageError>> {
        Box::pin(async move {
            let used = self.query("kubelet_volume_stats_used_bytes").await?;
            let cap = self.query("kubelet_volume_stats_capacity_bytes").await?;
            let iu = self.query("kubelet_volume_stats_inodes_used").await?;
            let it = self.query("kubelet_volume_stats_inodes").await?;
            Ok(parse_prometheus(&used, &cap, &iu, &it))
        })
    }
}

/// Reads every node's kubelet summary through the apiserver's node proxy (needs `nodes/proxy`).
pub struct NodeProxyUsage {
    client: kube::Client,
}

impl NodeProxyUsage {
    /// A source using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl UsageSource for NodeProxyUsage {
    fn volumes(&self) -> BoxFuture<'_, Result<UsageMap, UsageError>> {
        Box::pin(async move {
            let err = |detail: String| UsageError::Unavailable { source_name: "node proxy", detail };
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.client.clone());
            let list = nodes.list(&Default::default()).await.map_err(|e| err(e.to_string()))?;
            let mut out = UsageMap::new();
            for node in list.items {
                let Some(name) = node.metadata.name else { continue };
                let req = http_get(&format!("/api/v1/nodes/{name}/proxy/stats/summary")).map_err(err)?;
                // One unreachable kubelet must not hide every other node's volumes.
                match self.client.request::<Value>(req).await {
                    Ok(summary) => parse_summary(&summary, &mut out),
                    Err(e) => tracing::warn!(node = %name, error = %e, "kubelet stats unavailable"),
                }
            }
            Ok(out)
        })
    }
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>, String> {
    http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())
}

/// Test double: usage set by the test (or a demo), not read from any kubelet.
#[derive(Clone, Default)]
pub struct StaticUsageTestDouble {
    map: Arc<Mutex<UsageMap>>,
}

impl StaticUsageTestDouble {
    /// Sets one volume's usage.
    pub fn set(&self, namespace: &str, pvc: &str, usage: Usage) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert((namespace.into(), pvc.into()), usage);
    }
}

impl UsageSource for StaticUsageTestDouble {
    fn volumes(&self) -> BoxFuture<'_, Result<UsageMap, UsageError>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move { Ok(map) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn vector(points: &[(&str, &str, &str)]) -> Value {
        let result: Vec<Value> = points
            .iter()
            .map(|(ns, pvc, v)| json!({"metric": {"namespace": ns, "persistentvolumeclaim": pvc}, "value": [1.0, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn prometheus_series_join_by_namespace_and_claim() {
        let m = parse_prometheus(
            &vector(&[("a", "data-0", "900"), ("a", "lonely", "5"), ("b", "data-0", "NaN")]),
            &vector(&[("a", "data-0", "1000"), ("b", "data-0", "1000")]),
            &vector(&[("a", "data-0", "10")]),
            &vector(&[("a", "data-0", "100")]),
        );
        assert_eq!(m.len(), 1, "no capacity, or not a number: left out");
        let u = m[&("a".to_owned(), "data-0".to_owned())];
        assert_eq!((u.used, u.capacity, u.inodes_used, u.inodes), (900, 1000, Some(10), Some(100)));
    }

    #[test]
    fn summary_volumes_without_a_claim_are_ignored() {
        let s = json!({"pods": [{"volume": [
            {"name": "tmp", "usedBytes": 1, "capacityBytes": 2},
            {"name": "data", "usedBytes": 700, "capacityBytes": 1000, "inodesUsed": 3, "inodes": 9,
             "pvcRef": {"name": "data-ingest-0", "namespace": "acme"}}
        ]}]});
        let mut m = UsageMap::new();
        parse_summary(&s, &mut m);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&("acme".to_owned(), "data-ingest-0".to_owned())].used, 700);
    }
}

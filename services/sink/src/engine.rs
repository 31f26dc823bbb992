//! Which search engine answers, and what it can store.
//!
//! Identification does not use `GET /`: the integration-test distribution of Elasticsearch answers
//! it with 405. Every Elasticsearch response carries `X-Elastic-Product: Elasticsearch`, and both
//! products serve `GET /_nodes/_local` with the version and the loaded modules, so those decide.

use serde_json::Value;

/// The product behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Elasticsearch (any distribution).
    Elasticsearch,
    /// OpenSearch.
    OpenSearch,
}

impl Product {
    /// Lowercase name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Product::Elasticsearch => "elasticsearch",
            Product::OpenSearch => "opensearch",
        }
    }
}

/// What the sink learned about the engine at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// Elasticsearch or OpenSearch.
    pub product: Product,
    /// The node's version string, e.g. `8.19.21`.
    pub version: String,
    /// Whether the `geo_shape` field type exists. OpenSearch has it in core; Elasticsearch keeps it
    /// in the x-pack spatial module, which some distributions (the integration-test zip) leave out.
    pub geo_shape: bool,
}

/// Why the node info could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the engine's GET /_nodes/_local answer is not understood: {0}")]
pub struct DetectError(pub String);

/// Module names that provide `geo_shape` on Elasticsearch.
const ES_SPATIAL_MODULES: &[&str] = &["spatial", "x-pack-spatial"];

/// Identifies the engine from the `X-Elastic-Product` header (if any) and the `GET /_nodes/_local`
/// body.
pub fn detect(product_header: Option<&str>, nodes: &Value) -> Result<Engine, DetectError> {
    let node = nodes
        .get("nodes")
        .and_then(Value::as_object)
        .and_then(|n| n.values().next())
        .ok_or_else(|| DetectError("no `nodes` object with at least one node".into()))?;
    let version = node
        .get("version")
        .and_then(Value::as_str)
        .ok_or_else(|| DetectError("the node has no `version` string".into()))?
        .to_owned();
    let modules: Vec<&str> = node
        .get("modules")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|x| x.get("name").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let product = if product_header.is_some_and(|h| h.eq_ignore_ascii_case("elasticsearch")) {
        Product::Elasticsearch
    } else if node.get("distribution").and_then(Value::as_str) == Some("opensearch")
        || modules.iter().any(|m| m.starts_with("opensearch"))
        || version.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m < 5)
    {
        // OpenSearch reports its own version line (1.x to 3.x), which Elasticsearch never had
        // after 2016 and never without the product header.
        Product::OpenSearch
    } else {
        return Err(DetectError(format!(
            "neither the X-Elastic-Product header nor the node ({version}, modules {modules:?}) says which product it is"
        )));
    };
    let geo_shape = match product {
        Product::OpenSearch => true,
        Product::Elasticsearch => modules.iter().any(|m| ES_SPATIAL_MODULES.contains(m)),
    };
    Ok(Engine { product, version, geo_shape })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn nodes(version: &str, modules: &[&str]) -> Value {
        let modules: Vec<Value> = modules.iter().map(|m| json!({"name": m})).collect();
        json!({"nodes": {"abc": {"version": version, "modules": modules}}})
    }

    #[test]
    fn elasticsearch_test_distribution_has_no_geo_shape() {
        let e = detect(Some("Elasticsearch"), &nodes("8.19.21", &["apm", "x-pack-core", "x-pack-security"])).unwrap();
        assert_eq!(e, Engine { product: Product::Elasticsearch, version: "8.19.21".into(), geo_shape: false });
    }

    #[test]
    fn elasticsearch_with_spatial_has_geo_shape() {
        let e = detect(Some("Elasticsearch"), &nodes("8.19.0", &["x-pack-core", "spatial"])).unwrap();
        assert!(e.geo_shape);
        assert_eq!(e.product.as_str(), "elasticsearch");
    }

    #[test]
    fn opensearch_always_has_geo_shape() {
        let e = detect(None, &nodes("3.6.0", &["geo", "opensearch-dashboards"])).unwrap();
        assert_eq!(e, Engine { product: Product::OpenSearch, version: "3.6.0".into(), geo_shape: true });
        // Without telling modules, the version line alone identifies it.
        assert_eq!(detect(None, &nodes("2.19.1", &[])).unwrap().product, Product::OpenSearch);
    }

    #[test]
    fn unknown_or_broken_answers_are_errors() {
        assert!(detect(None, &nodes("8.19.0", &["x-pack-core"])).unwrap_err().to_string().contains("which product"));
        assert!(detect(None, &json!({})).unwrap_err().to_string().contains("no `nodes`"));
        assert!(detect(None, &json!({"nodes": {"a": {}}})).unwrap_err().to_string().contains("`version`"));
    }
}

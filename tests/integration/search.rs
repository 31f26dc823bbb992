//! Elasticsearch and OpenSearch through the `elasticsearch` crate: geo mappings, bulk indexing,
//! geo queries and aggregations, and a record of which geo features each distribution answers.

use std::collections::BTreeMap;

use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::Transport;
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, Elasticsearch, SearchParts};
use serde_json::{Value, json};

/// Real positions (Sydney Harbour, Port Botany) and one port-limit-like polygon around Botany Bay.
fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    let points = [
        ("v1", 151.2093, -33.8688),
        ("v2", 151.2153, -33.8570),
        ("v3", 151.2250, -33.9600),
        ("v4", 151.1900, -33.9800),
        ("v5", 144.9631, -37.8136), // Melbourne, outside every box below
    ];
    for (i, (track, lon, lat)) in points.iter().enumerate() {
        docs.push(json!({
            "track": track,
            "feed": "ais",
            "time": format!("2024-05-01T12:00:0{i}Z"),
            "location": {"lat": lat, "lon": lon},
            "shape": {"type": "Point", "coordinates": [lon, lat]},
        }));
    }
    docs.push(json!({
        "track": "fence-botany",
        "feed": "fences",
        "time": "2024-05-01T12:00:00Z",
        "location": {"lat": -33.98, "lon": 151.2},
        "shape": {"type": "Polygon", "coordinates": [[[151.15,-34.02],[151.27,-34.02],[151.27,-33.94],[151.15,-33.94],[151.15,-34.02]]]},
    }));
    docs
}

struct Engine {
    name: &'static str,
    client: Elasticsearch,
    base_url: String,
}

fn engine(name: &'static str, var: &str) -> Option<Engine> {
    let url = geostream_tests::service(var, name)?;
    let transport = Transport::single_node(&url).expect("transport");
    Some(Engine { name, client: Elasticsearch::new(transport), base_url: url })
}

async fn json_of(resp: elasticsearch::http::response::Response, what: &str) -> Value {
    let status = resp.status_code();
    let body: Value = resp.json().await.unwrap_or_else(|e| panic!("{what}: response is not JSON: {e}"));
    assert!(status.is_success(), "{what}: HTTP {status}: {body}");
    body
}

/// Runs the same geo scenario on one engine and returns the feature matrix entry.
async fn exercise(engine: &Engine) -> BTreeMap<&'static str, Value> {
    let mut features = BTreeMap::new();
    let client = &engine.client;
    // Which product and version answers. The integration-test build of Elasticsearch has no handler
    // for `GET /` (405), so identify it the way every ES response allows: the X-Elastic-Product header,
    // with the version from the node info API, which both products serve.
    let nodes = client
        .send(
            Method::Get,
            "/_nodes/_local",
            HeaderMap::new(),
            Option::<&()>::None,
            Option::<JsonBody<Value>>::None,
            None,
        )
        .await
        .expect("nodes info");
    let product_header = nodes.headers().get("x-elastic-product").map(|v| v.to_str().unwrap_or_default().to_owned());
    let nodes = json_of(nodes, "GET /_nodes/_local").await;
    let node = nodes["nodes"].as_object().and_then(|n| n.values().next()).cloned().expect("one node");
    let distribution = if product_header.as_deref() == Some("Elasticsearch") { "elasticsearch" } else { "opensearch" };
    features.insert("distribution", json!(distribution));
    features.insert("version", node["version"].clone());
    features.insert(
        "modules",
        json!(node["modules"].as_array().map(|m| m.iter().filter_map(|x| x["name"].as_str()).collect::<Vec<_>>())),
    );

    let index = geostream_tests::unique(&format!("geostream-smoke-{}", engine.name));
    let mut properties = json!({
        "track": {"type": "keyword"},
        "feed": {"type": "keyword"},
        "time": {"type": "date"},
        "location": {"type": "geo_point"},
        "shape": {"type": "geo_shape"},
    });
    let create = |properties: Value| {
        let index = index.clone();
        async move {
            client
                .indices()
                .create(IndicesCreateParts::Index(&index))
                .body(json!({
                    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                    "mappings": {"properties": properties}
                }))
                .send()
                .await
        }
    };
    let resp = create(properties.clone()).await.expect("create index");
    let has_geo_shape = if resp.status_code().is_success() {
        true
    } else {
        // Elasticsearch keeps geo_shape in its spatial module, which the integration-test distribution
        // leaves out. That must show as a named, recorded gap, never as silently missing shapes.
        let status = resp.status_code().as_u16();
        let body: Value = resp.json().await.expect("error body");
        let reason = body["error"]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(
            status == 400 && reason.contains("geo_shape"),
            "{}: index creation failed for another reason than a missing geo_shape type: {status} {body}",
            engine.name
        );
        features.insert("geo_shape", json!({"answered": false, "status": status, "reason": reason}));
        properties.as_object_mut().expect("object").remove("shape");
        json_of(create(properties).await.expect("create index"), "create index without geo_shape").await;
        false
    };
    let docs = documents();
    let mut body: Vec<JsonBody<Value>> = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut doc = doc.clone();
        if !has_geo_shape {
            doc.as_object_mut().expect("object").remove("shape");
        }
        body.push(json!({"create": {"_id": format!("doc-{i}")}}).into());
        body.push(doc.into());
    }
    let bulk = json_of(
        client.bulk(BulkParts::Index(&index)).body(body).refresh(Refresh::True).send().await.expect("bulk"),
        "bulk",
    )
    .await;
    assert_eq!(bulk["errors"], json!(false), "{}: bulk item errors: {bulk}", engine.name);
    assert_eq!(bulk["items"].as_array().map(Vec::len), Some(docs.len()));

    // geo_bounding_box over Sydney: v1..v4 and the fence's point, not Melbourne.
    let bbox = json_of(
        client
            .search(SearchParts::Index(&[&index]))
            .body(json!({
                "size": 20,
                "query": {"geo_bounding_box": {"location": {
                    "top_left": {"lat": -33.80, "lon": 151.10},
                    "bottom_right": {"lat": -34.05, "lon": 151.30}}}},
                "sort": [{"track": "asc"}]
            }))
            .send()
            .await
            .expect("bbox search"),
        "geo_bounding_box",
    )
    .await;
    let tracks: Vec<&str> =
        bbox["hits"]["hits"].as_array().expect("hits").iter().filter_map(|h| h["_source"]["track"].as_str()).collect();
    assert_eq!(tracks, ["fence-botany", "v1", "v2", "v3", "v4"], "{}", engine.name);
    features.insert("geo_point+geo_bounding_box", json!(true));

    // geo_shape: which shapes intersect a box around Port Botany? v3, v4 and the fence polygon (as a
    // polygon where geo_shape exists, as its representative point where only geo_point does).
    let shape_field = if has_geo_shape { "shape" } else { "location" };
    let shape = json_of(
        client
            .search(SearchParts::Index(&[&index]))
            .body(json!({
                "size": 20,
                "query": {"geo_shape": {shape_field: {
                    "shape": {"type": "envelope", "coordinates": [[151.18, -33.95], [151.24, -33.99]]},
                    "relation": "intersects"}}},
                "sort": [{"track": "asc"}]
            }))
            .send()
            .await
            .expect("geo_shape search"),
        "geo_shape",
    )
    .await;
    let tracks: Vec<&str> =
        shape["hits"]["hits"].as_array().expect("hits").iter().filter_map(|h| h["_source"]["track"].as_str()).collect();
    assert_eq!(tracks, ["fence-botany", "v3", "v4"], "{}", engine.name);
    if has_geo_shape {
        features.insert("geo_shape", json!(true));
    }
    features.insert(
        if has_geo_shape { "geo_shape_query_on_geo_shape" } else { "geo_shape_query_on_geo_point" },
        json!(true),
    );

    // geotile_grid at zoom 8: Sydney points share tiles, Melbourne gets its own; counts add up.
    let grid = json_of(
        client
            .search(SearchParts::Index(&[&index]))
            .body(json!({"size": 0, "aggs": {"tiles": {"geotile_grid": {"field": "location", "precision": 8}}}}))
            .send()
            .await
            .expect("geotile_grid"),
        "geotile_grid",
    )
    .await;
    let buckets = grid["aggregations"]["tiles"]["buckets"].as_array().expect("buckets");
    let total: u64 = buckets.iter().filter_map(|b| b["doc_count"].as_u64()).sum();
    assert_eq!(total, docs.len() as u64, "{}: {grid}", engine.name);
    let melbourne_tile = buckets.iter().find(|b| b["key"] == json!("8/231/157")).map(|b| b["doc_count"].clone());
    assert_eq!(melbourne_tile, Some(json!(1)), "{}: Melbourne's z8 tile: {grid}", engine.name);
    features.insert("geotile_grid", json!(true));

    // Optional features: record what answers instead of failing, so the product can degrade visibly.
    for (name, method, path, body) in [
        (
            "geohex_grid",
            Method::Post,
            format!("/{index}/_search"),
            Some(json!({"size": 0, "aggs": {"h": {"geohex_grid": {"field": "location", "precision": 4}}}})),
        ),
        (
            "geo_bounds",
            Method::Post,
            format!("/{index}/_search"),
            Some(json!({"size": 0, "aggs": {"b": {"geo_bounds": {"field": "location"}}}})),
        ),
        (
            "geo_centroid",
            Method::Post,
            format!("/{index}/_search"),
            Some(json!({"size": 0, "aggs": {"c": {"geo_centroid": {"field": "location"}}}})),
        ),
        ("vector_tiles_mvt", Method::Get, format!("/{index}/_mvt/location/0/0/0"), None),
    ] {
        let body = body.map(JsonBody::new);
        let resp =
            client.send(method, &path, HeaderMap::new(), Option::<&()>::None, body, None).await.expect("request");
        let status = resp.status_code().as_u16();
        let detail = if status == 200 {
            json!(true)
        } else {
            let text = resp.text().await.unwrap_or_default();
            let reason: Value = serde_json::from_str(&text).unwrap_or(json!(text));
            json!({"answered": false, "status": status,
                   "reason": reason["error"]["reason"].as_str().map(str::to_owned).unwrap_or_else(|| text.chars().take(200).collect())})
        };
        features.insert(name, detail);
    }

    json_of(client.indices().delete(IndicesDeleteParts::Index(&[&index])).send().await.expect("delete"), "delete")
        .await;
    features.insert("url", json!(engine.base_url));
    features
}

#[tokio::test]
async fn geo_indexing_and_queries_on_elasticsearch_and_opensearch() {
    let engines: Vec<Engine> = [engine("elasticsearch", "ELASTICSEARCH_URL"), engine("opensearch", "OPENSEARCH_URL")]
        .into_iter()
        .flatten()
        .collect();
    let mut matrix = BTreeMap::new();
    for e in &engines {
        let features = exercise(e).await;
        println!("geo features of {}: {}", e.name, serde_json::to_string(&features).unwrap_or_default());
        matrix.insert(e.name, features);
    }
    if let Some(es) = matrix.get("elasticsearch") {
        assert_ne!(es["distribution"], json!("opensearch"), "ELASTICSEARCH_URL points at OpenSearch");
    }
    if let Some(os) = matrix.get("opensearch") {
        assert_eq!(os["distribution"], json!("opensearch"), "OPENSEARCH_URL does not point at OpenSearch");
        assert_eq!(os["geo_shape"], json!(true), "OpenSearch ships geo_shape in its core");
    }
    let report = geostream_tests::report_dir().join("geo-features.json");
    std::fs::write(&report, serde_json::to_vec_pretty(&matrix).unwrap_or_default()).expect("write report");
    println!("geo feature matrix written to {}", report.display());
}

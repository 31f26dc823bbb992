//! The API's Prometheus metrics: requests by route template (never the raw path, whose ids would
//! make the series unbounded), method and status, their latency, and the local
//! backend's live layer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// The route template, e.g. `/v1/{tenant}/latest`; `unmatched` for paths no route has.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels of a latency series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route template.
    pub route: String,
}

fn latency() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

/// All API metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// Requests answered.
    pub requests: Family<RequestLabel, Counter>,
    /// Seconds until the response head (a live stream counts until it starts).
    pub request_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Local backend: tracks in the live layer.
    pub local_tracks: Gauge,
    /// Local backend: records held beyond the archive.
    pub local_tail_records: Gauge,
    /// Local backend: records dropped from the live layer because the archive fell behind.
    pub local_dropped: Gauge,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            local_tracks: Gauge::default(),
            local_tail_records: Gauge::default(),
            local_dropped: Gauge::default(),
        }
    }
}

impl ApiMetrics {
    /// Registers every series under `geostream_api_*`.
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("geostream_api");
        r.register("requests", "HTTP requests answered, by route template, method and status", self.requests.clone());
        r.register(
            "request_seconds",
            "Seconds from request to response head, by route template",
            self.request_seconds.clone(),
        );
        r.register(
            "local_tracks",
            "Local backend: tracks whose newest position is held in memory",
            self.local_tracks.clone(),
        );
        r.register(
            "local_tail_records",
            "Local backend: records held in memory that the archive has not flushed yet",
            self.local_tail_records.clone(),
        );
        r.register(
            "local_dropped_records",
            "Local backend: records dropped from memory because the archive fell behind (queries may miss them until it catches up)",
            self.local_dropped.clone(),
        );
    }
}

/// Middleware counting and timing every request.
pub async fn track(State(metrics): State<Arc<ApiMetrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics
        .request_seconds
        .get_or_create(&RouteLabel { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RequestLabel { route, method, status: resp.status().as_u16() }).inc();
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let metrics = Arc::new(ApiMetrics::default());
        let app = Router::new()
            .route("/v1/{tenant}/latest", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), track));
        for uri in ["/v1/a/latest", "/v1/b/latest", "/nowhere"] {
            let _ = app.clone().oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"geostream_api_requests_total{route="/v1/{tenant}/latest",method="GET",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"geostream_api_requests_total{route="unmatched",method="GET",status="404"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"geostream_api_request_seconds_count{route="/v1/{tenant}/latest"} 2"#), "{text}");
    }
}

//! The one place every stage gets its Prometheus `/metrics` endpoint and its health endpoints from,
//! so that probes, dashboards and alerts look the same for ingest, process, sink, api and operator.
//!
//! Owns: the metric registry a stage registers its own counters into, a `build_info` metric, named
//! readiness checks (`/readyz` answers 503 and lists the failing ones), liveness (`/healthz`), and the
//! small HTTP server that exposes them. Must not: know anything about a particular stage, or decide
//! readiness itself; stages report the state of their dependencies (Kafka, Elasticsearch, spool).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

/// One readiness check's last reported state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckState {
    /// Whether the dependency is usable right now.
    pub ok: bool,
    /// What the stage last saw, e.g. "connected to 127.0.0.1:9092" or the error.
    pub detail: String,
}

/// Named readiness checks shared between a stage's tasks and the HTTP endpoint.
///
/// A stage registers each dependency once (initially not ready) and updates it as it learns more,
/// so a pod is only marked ready when every dependency it needs has been seen working.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<String, CheckState>>>,
    /// Put before every name this handle sets (see [`Health::scoped`]).
    prefix: String,
}

/// What `/readyz` answers, also useful for logs and tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    /// True when every check is ok (and there is at least one check).
    pub ready: bool,
    /// Each check by name.
    pub checks: BTreeMap<String, CheckState>,
}

impl Health {
    /// Records the state of the named check, creating it when new.
    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self.checks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.insert(format!("{}{name}", self.prefix), CheckState { ok, detail: detail.into() });
    }

    /// A handle on the same checks whose names it sets are `<scope>/<name>`. Several stages in one
    /// process (`geostream standalone`) each report a `kafka` check: unscoped, the stage that
    /// reported last would hide another's broken connection.
    pub fn scoped(&self, scope: &str) -> Self {
        Self { checks: Arc::clone(&self.checks), prefix: format!("{}{scope}/", self.prefix) }
    }

    /// The current readiness. With no checks registered a stage is not ready: an empty list means
    /// the stage has not started checking anything yet, not that it has nothing to check.
    pub fn report(&self) -> ReadinessReport {
        let checks = self.checks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let ready = !checks.is_empty() && checks.values().all(|c| c.ok);
        ReadinessReport { ready, checks }
    }
}

/// A stage's metrics registry and health state.
#[derive(Debug, Clone)]
pub struct Telemetry {
    stage: String,
    registry: Arc<Mutex<Registry>>,
    health: Health,
}

/// Makes ring rustls's process-wide crypto provider. geostream builds rustls with ring only, but
/// the embedded broker's dependencies (tansu) switch on rustls's aws-lc-rs provider too; with two
/// compiled in, rustls no longer picks one by itself and every TLS user that relies on the process
/// default (the API's HTTPS, MQTT over TLS) would panic. Every stage makes a `Telemetry` first, so
/// this runs before any of them. Installing twice is harmless (the first one stays).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Telemetry {
    /// Creates the registry for `stage` (metric names are prefixed `geostream_`) and registers
    /// `geostream_build_info{stage, version}` = 1 so every scrape shows what is running.
    pub fn new(stage: &str, tenant: &str) -> Self {
        install_crypto_provider();
        let mut registry = Registry::with_prefix_and_labels(
            "geostream",
            [("stage".into(), stage.to_owned().into()), ("tenant".into(), tenant.to_owned().into())].into_iter(),
        );
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info.get_or_create(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]).set(1);
        registry.register("build_info", "Version of the running geostream binary", build_info);
        Self { stage: stage.to_owned(), registry: Arc::new(Mutex::new(registry)), health: Health::default() }
    }

    /// The stage name given at creation.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Runs `f` with the registry, for a stage to register its own metrics.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// The same registry and checks, with the check names this handle sets scoped to `scope`
    /// (see [`Health::scoped`]): for one stage among several in a process.
    pub fn scoped(&self, scope: &str) -> Self {
        Self { stage: self.stage.clone(), registry: Arc::clone(&self.registry), health: self.health.scoped(scope) }
    }

    /// The shared health state.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Encodes all metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        encode(&mut out, &registry)?;
        Ok(out)
    }

    /// The router with `/metrics`, `/healthz` and `/readyz`; stages may merge it into their own.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// Serves the router on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, stage = %self.stage, "telemetry endpoints listening");
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// Binds `addr` and serves in a background task; returns the bound address (useful with port 0).
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(err) = self.serve(listener, std::future::pending()).await {
                tracing::error!(%err, "telemetry server stopped");
            }
        });
        Ok(bound)
    }
}

async fn metrics(State(t): State<Telemetry>) -> Response {
    match t.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {err}\n")).into_response(),
    }
}

async fn readyz(State(t): State<Telemetry>) -> Response {
    let report = t.health.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn readiness_needs_every_check_and_at_least_one() {
        let h = Health::default();
        assert!(!h.report().ready, "no checks yet must not count as ready");
        h.set("kafka", true, "connected");
        assert!(h.report().ready);
        h.set("elasticsearch", false, "connection refused");
        let r = h.report();
        assert!(!r.ready);
        assert_eq!(r.checks["elasticsearch"].detail, "connection refused");
        h.set("elasticsearch", true, "green");
        assert!(h.report().ready);
    }

    #[test]
    fn scoped_handles_keep_their_checks_apart_in_one_report() {
        let h = Health::default();
        let (ingest, process) = (h.scoped("ingest"), h.scoped("process"));
        ingest.set("kafka", true, "connected");
        process.set("kafka", false, "broker down");
        let r = h.report();
        assert!(!r.ready, "one stage's working Kafka must not hide another's broken one");
        assert_eq!(r.checks.keys().collect::<Vec<_>>(), ["ingest/kafka", "process/kafka"]);
        assert_eq!(process.report(), r, "every handle sees the whole process");
        process.set("kafka", true, "connected");
        assert!(h.report().ready);
        assert_eq!(h.scoped("a").scoped("b").prefix, "a/b/");
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        let t = Telemetry::new("sink", "acme");
        let sent = Counter::<u64>::default();
        t.with_registry(|r| r.register("records_sent", "Records written", sent.clone()));
        sent.inc_by(42);
        let addr = t.clone().spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();

        let body = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"geostream_build_info{stage="sink",tenant="acme",version=""#), "{body}");
        assert!(body.contains(r#"geostream_records_sent_total{stage="sink",tenant="acme"} 42"#), "{body}");

        let live = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(live.status(), 200);

        let not_ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(not_ready.status(), 503);
        t.health().set("kafka", false, "broker down");
        let body: serde_json::Value = client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["ready"], false);
        assert_eq!(body["checks"]["kafka"]["detail"], "broker down");
        t.health().set("kafka", true, "ok");
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
    }
}

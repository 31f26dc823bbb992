//! `geostream operator`: the apiserver client, the catalog, metrics and health, leader election,
//! then the controllers until shutdown or a lost lease.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use geostream_model::Naming;
use geostream_telemetry::Telemetry;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::controller::{Context, run_controllers};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::usage::{NodeProxyUsage, PrometheusUsage, UsageSource};

/// What the operator needs from the configuration.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// librdkafka properties for the registry topics.
    pub kafka: BTreeMap<String, String>,
    /// Topic naming.
    pub naming: Naming,
    /// The feed catalog directory.
    pub catalog_dir: PathBuf,
    /// Prometheus for usage; None: kubelet stats through the node proxy.
    pub prometheus_url: Option<String>,
    /// Evaluation interval of policies and schedules.
    pub interval: Duration,
    /// Whether to elect a leader.
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Seconds a lease lasts.
    pub lease_duration_s: i64,
    /// This replica (the pod name).
    pub identity: String,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// No apiserver (in-cluster config or kubeconfig) could be used; retried by a restart.
    #[error("kubernetes client: {0}")]
    Client(String),
    /// The feed catalog could not be read (the image or `operator.catalog_dir`); not retryable.
    #[error("{0}")]
    Catalog(String),
    /// Another replica took the lease; the pod restarts and waits as a candidate.
    #[error("lost the leader lease {0}")]
    LostLease(String),
}

/// Runs the operator until `shutdown` completes.
pub async fn run(
    settings: OperatorSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StageError> {
    let catalog = crate::registry::load_catalog(&settings.catalog_dir).map_err(StageError::Catalog)?;
    let client = Client::try_default().await.map_err(|e| StageError::Client(e.to_string()))?;
    let health = telemetry.health().clone();
    health.set("kubernetes", false, "connecting");
    match client.apiserver_version().await {
        Ok(v) => health.set("kubernetes", true, format!("apiserver {}", v.git_version)),
        Err(e) => return Err(StageError::Client(e.to_string())),
    }
    let metrics = Metrics::default();
    telemetry.with_registry(|r| metrics.register(r));
    let usage: Arc<dyn UsageSource> = match &settings.prometheus_url {
        Some(url) => Arc::new(PrometheusUsage::new(url.clone())),
        None => Arc::new(NodeProxyUsage::new(client.clone())),
    };
    let ctx = Context::new(
        client.clone(),
        settings.kafka.clone(),
        settings.naming.clone(),
        catalog,
        usage,
        metrics.clone(),
        &settings.identity,
        settings.interval,
    );
    let ctx = Arc::new(match &settings.prometheus_url {
        Some(url) => ctx.with_figures(Arc::new(crate::figures::PrometheusFigures::new(url.clone()))),
        None => ctx,
    });
    if settings.leader_election {
        let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost_flag = lost.clone();
        let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace);
        let elector = Elector::new(leases, &settings.lease_name, &settings.identity, settings.lease_duration_s);
        let period = Duration::from_secs(u64::try_from(settings.lease_duration_s / 3).unwrap_or(5).max(1));
        let mut shutdown = Box::pin(shutdown);
        loop {
            match elector.try_lead().await {
                Ok(true) => break,
                Ok(false) => tracing::info!(lease = %settings.lease_name, "standing by: another replica leads"),
                Err(e) => tracing::warn!(error = %e, "lease not readable"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(period) => {}
            }
        }
        metrics.leader.set(1);
        tracing::info!(identity = %settings.identity, "leading");
        let duration = settings.lease_duration_s;
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(period).await;
                match elector.try_lead().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => break,
                    // A renewal that keeps failing for a whole lease means someone else may lead by now.
                    Err(e) if last_ok.elapsed() >= Duration::from_secs(u64::try_from(duration).unwrap_or(15)) => {
                        tracing::error!(error = %e, "lease not renewed in time");
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
            lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = lost_tx.send(true);
        });
        let stop = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = lost_rx.wait_for(|l| *l) => {}
            }
        };
        run_controllers(ctx, stop).await;
        metrics.leader.set(0);
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StageError::LostLease(settings.lease_name));
        }
        Ok(())
    } else {
        run_controllers(ctx, shutdown).await;
        Ok(())
    }
}

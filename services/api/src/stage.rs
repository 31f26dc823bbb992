//! `geostream api`: binds the listener, serves the router until shutdown, and keeps a readiness
//! check of the search engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geostream_ingest::registry::RegistryClient;
use geostream_model::{Naming, TenantId, TopicKind};
use geostream_processor::registry::RegistryTopic;
use geostream_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Tokens;
use crate::backend::Store;
use crate::local::{ArchiveRead, LocalSettings, LocalStore};
use crate::metrics::ApiMetrics;
use crate::registry::Registries;
use crate::routes::{AppState, router};
use crate::search::{ClientConfigError, Search};

/// Everything `geostream api` needs, already validated by the binary's config.
#[derive(Clone)]
pub struct ApiSettings {
    /// The tenant served.
    pub tenant: TenantId,
    /// Topic and index naming.
    pub naming: Naming,
    /// librdkafka properties, including `bootstrap.servers` (registry and live push).
    pub kafka: BTreeMap<String, String>,
    /// Engine base URL.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Read tokens by tenant.
    pub tokens: BTreeMap<String, Vec<String>>,
    /// The token for registry writes; none disables writes.
    pub admin_token: Option<String>,
    /// Timeout of one request to the engine.
    pub request_timeout: Duration,
    /// Most live-push clients at once (each holds a Kafka consumer).
    pub max_live_clients: usize,
    /// Request rate and body limits.
    pub limits: crate::limits::Limits,
    /// The built map dashboard (`scripts/dashboard.sh` writes `web/dist`).
    pub dashboard_dir: std::path::PathBuf,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and the password are secrets: never in logs.
        f.debug_struct("ApiSettings")
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("listen", &self.listen)
            .field("tenants_with_tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("admin_token", &self.admin_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The engine client could not be built (configuration).
    #[error("api: {0}")]
    Client(#[from] ClientConfigError),
    /// The archive could not be read at start.
    #[error("api: archive: {0}")]
    Archive(String),
    /// The listen address could not be bound.
    #[error("api: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The running stage.
pub struct ApiStage {
    addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    probe: JoinHandle<()>,
    follower: Option<JoinHandle<()>>,
}

impl ApiStage {
    /// Binds the listener and serves from the search engine at `settings.url`, in the background.
    pub async fn start(settings: ApiSettings, telemetry: &Telemetry) -> Result<ApiStage, StageError> {
        let search = Search::new(
            &settings.url,
            settings.username.as_deref(),
            settings.password.as_deref(),
            settings.request_timeout,
        )?;
        let store = Store::Search { search, naming: settings.naming.clone(), tenant: settings.tenant.clone() };
        Self::serve(settings, telemetry, store, new_metrics(telemetry), CancellationToken::new(), None).await
    }

    /// Binds the listener and serves from the local backend: `archive` plus the live layer
    /// following Kafka (`settings.url` is not used). Its `live` readiness check turns ready once the
    /// layer has read what Kafka held at start.
    pub async fn start_local(
        settings: ApiSettings,
        telemetry: &Telemetry,
        archive: Arc<dyn ArchiveRead>,
        max_tail: usize,
    ) -> Result<ApiStage, StageError> {
        let cancel = CancellationToken::new();
        let local = LocalSettings {
            tenant: settings.tenant.clone(),
            naming: settings.naming.clone(),
            kafka: settings.kafka.clone(),
            max_tail,
            trim_interval: Duration::from_secs(2),
        };
        let metrics = new_metrics(telemetry);
        let (store, follower) =
            LocalStore::start(local, archive, telemetry.health().clone(), Arc::clone(&metrics), cancel.clone())
                .await
                .map_err(|e| StageError::Archive(e.to_string()))?;
        Self::serve(settings, telemetry, Store::Local(Arc::new(store)), metrics, cancel, Some(follower)).await
    }

    async fn serve(
        settings: ApiSettings,
        telemetry: &Telemetry,
        store: Store,
        metrics: Arc<ApiMetrics>,
        cancel: CancellationToken,
        follower: Option<JoinHandle<()>>,
    ) -> Result<ApiStage, StageError> {
        let health = telemetry.health().clone();
        let check = store.name();
        health.set(check, false, "not checked yet");
        if settings.tokens.values().all(Vec::is_empty) && settings.admin_token.is_none() {
            tracing::warn!("no API tokens are configured: every request will be refused with 401");
        }
        let state = Arc::new(AppState {
            tenant: settings.tenant.clone(),
            naming: settings.naming.clone(),
            store: store.clone(),
            metrics,
            limits: settings.limits,
            tokens: Tokens::new(&settings.tokens, settings.admin_token.clone()),
            kafka: settings.kafka.clone(),
            live_slots: Arc::new(tokio::sync::Semaphore::new(settings.max_live_clients)),
            shutdown: cancel.clone(),
            dashboard_dir: settings.dashboard_dir.clone(),
            registries: Registries {
                feeds: RegistryClient::new(
                    settings.kafka.clone(),
                    settings.naming.topic(&settings.tenant, TopicKind::Feeds),
                ),
                fences: RegistryTopic::new(
                    settings.kafka.clone(),
                    settings.naming.topic(&settings.tenant, TopicKind::Fences),
                ),
                analytics: RegistryTopic::new(
                    settings.kafka.clone(),
                    settings.naming.topic(&settings.tenant, TopicKind::Analytics),
                ),
            },
        });
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StageError::Listen { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StageError::Listen { addr: settings.listen, source })?;
        let stop = cancel.clone();
        let app = router(state);
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "api server stopped");
            }
        });
        let stop = cancel.clone();
        let probe = tokio::spawn(async move {
            loop {
                match store.ping().await {
                    Ok(()) => health.set(check, true, "answers"),
                    Err(e) => health.set(check, false, e.to_string()),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        tracing::info!(%addr, tenant = %settings.tenant, "api listening");
        Ok(ApiStage { addr, cancel, server, probe, follower })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends live streams and lets other requests in flight finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let tasks = [("server", Some(self.server)), ("probe", Some(self.probe)), ("live layer", self.follower)];
        for (name, task) in tasks.into_iter().filter_map(|(n, t)| Some((n, t?))) {
            if let Err(e) = task.await {
                tracing::error!(error = %e, task = name, "api task ended abnormally");
            }
        }
        tracing::info!("api stopped");
    }
}

fn new_metrics(telemetry: &Telemetry) -> Arc<ApiMetrics> {
    let metrics = Arc::new(ApiMetrics::default());
    telemetry.with_registry(|r| metrics.register(r));
    metrics
}

/// Runs the stage until `shutdown` resolves.
pub async fn run(
    settings: ApiSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StageError> {
    let stage = ApiStage::start(settings, telemetry).await?;
    shutdown.await;
    tracing::info!("api shutting down");
    stage.shutdown().await;
    Ok(())
}

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
}

impl ApiStage {
    /// Binds the listener and serves in the background.
    pub async fn start(settings: ApiSettings, telemetry: &Telemetry) -> Result<ApiStage, StageError> {
        let search = Search::new(
            &settings.url,
            settings.username.as_deref(),
            settings.password.as_deref(),
            settings.request_timeout,
        )?;
        let health = telemetry.health().clone();
        health.set("search", false, "not checked yet");
        if settings.tokens.values().all(Vec::is_empty) && settings.admin_token.is_none() {
            tracing::warn!("no API tokens are configured: every request will be refused with 401");
        }
        let cancel = CancellationToken::new();
        let state = Arc::new(AppState {
            tenant: settings.tenant.clone(),
            naming: settings.naming.clone(),
            search: search.clone(),
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
                match search.ping().await {
                    Ok(()) => health.set("search", true, "engine answers"),
                    Err(e) => health.set("search", false, e.to_string()),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        tracing::info!(%addr, tenant = %settings.tenant, "api listening");
        Ok(ApiStage { addr, cancel, server, probe })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends live streams and lets other requests in flight finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for (name, task) in [("server", self.server), ("probe", self.probe)] {
            if let Err(e) = task.await {
                tracing::error!(error = %e, task = name, "api task ended abnormally");
            }
        }
        tracing::info!("api stopped");
    }
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

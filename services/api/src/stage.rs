//! `geostream api`: binds the listener, serves the router until shutdown, and keeps a readiness
//! check of the search engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
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
    /// Serve HTTPS with this certificate and key; none = plain HTTP (behind a TLS-terminating
    /// ingress).
    pub tls: Option<TlsFiles>,
}

/// PEM files of the API's certificate (chain) and private key, e.g. a mounted `kubernetes.io/tls`
/// Secret. They are read again when they change, so a renewed certificate (cert-manager) is
/// served without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// How often the certificate files are checked for a renewal.
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(5);

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
    /// The TLS certificate or key could not be read or used.
    #[error(
        "api: TLS certificate {cert} / key {key}: {source} (fix: api.tls_cert_file and api.tls_key_file must name PEM files of a certificate chain and its private key)"
    )]
    Tls {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
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
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        let server = match &settings.tls {
            None => tokio::spawn(async move {
                let served =
                    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "api server stopped");
                }
            }),
            Some(files) => {
                let tls_error = |source| StageError::Tls {
                    cert: files.cert.display().to_string(),
                    key: files.key.display().to_string(),
                    source,
                };
                let config = RustlsConfig::from_pem_file(&files.cert, &files.key).await.map_err(tls_error)?;
                let std_listener = listener.into_std().map_err(|source| StageError::Listen { addr, source })?;
                let server = axum_server::from_tcp_rustls(std_listener, config.clone())
                    .map_err(|source| StageError::Listen { addr, source })?;
                let handle = axum_server::Handle::new();
                let reload = tokio::spawn(reload_certificates(config, files.clone(), stop.clone()));
                let shutdown = handle.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                tokio::spawn(async move {
                    if let Err(e) = server.handle(handle).serve(app.into_make_service()).await {
                        tracing::error!(error = %e, "api server stopped");
                    }
                    reload.abort();
                })
            }
        };
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
        tracing::info!(%addr, scheme, tenant = %settings.tenant, "api listening");
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

/// Reads the certificate files again whenever their modification times change. A renewal that
/// cannot be used (a half-written file, a key that does not match) keeps the previous certificate
/// and is logged; the next check tries again.
async fn reload_certificates(config: RustlsConfig, files: TlsFiles, stop: CancellationToken) {
    let stamp = |f: &TlsFiles| {
        let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (m(&f.cert), m(&f.key))
    };
    let mut seen = stamp(&files);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TLS_RELOAD_CHECK) => {}
        }
        let now = stamp(&files);
        if now == seen {
            continue;
        }
        match config.reload_from_pem_file(&files.cert, &files.key).await {
            Ok(()) => {
                seen = now;
                tracing::info!(cert = %files.cert.display(), "api TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, cert = %files.cert.display(), "api TLS certificate not reloaded; serving the previous one")
            }
        }
    }
}

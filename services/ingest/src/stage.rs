//! `geostream ingest`: wires the registry, the feed supervisor, the push receiver and the drainer.
//!
//! Start-up order is chosen so Kafka being down never stops ingest from accepting data: the spool
//! opens first, feeds start from the last registry snapshot on the volume, and the drainer and the
//! registry watcher keep retrying Kafka in the background. Shutdown runs the other way: feeds stop
//! (so nothing new is acknowledged), then the drainer delivers what is in flight.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use geostream_model::{Classify, ErrorClass, FeedId, FeedSpec, Naming, TenantId, TopicKind};
use geostream_telemetry::Telemetry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::durable::{DrainConfig, Drainer, Durable, DurableConfig, DurableError};
use crate::feed::{FeedHandle, Secrets};
use crate::metrics::IngestMetrics;
use crate::registry::{Action, Applied, RegistryState, RegistryWatcher, ensure_topics, plan};
use crate::sources::{self, http_push};

/// Everything `geostream ingest` needs, already validated by the binary's config.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The tenant.
    pub tenant: TenantId,
    /// Topic naming.
    pub naming: Naming,
    /// librdkafka properties, including `bootstrap.servers`.
    pub kafka: BTreeMap<String, String>,
    /// The stage's volume.
    pub data_dir: PathBuf,
    /// Address of the HTTP push receiver.
    pub push_listen: SocketAddr,
    /// Push body limit for feeds that set none.
    pub max_body_bytes: usize,
    /// Spool bound.
    pub spool_max_bytes: u64,
    /// Spool segment size.
    pub spool_segment_bytes: u64,
    /// Partitions of the observations topic when ingest creates it.
    pub partitions: i32,
    /// Replication factor of topics ingest creates; none = the broker default.
    pub replication: Option<i32>,
    /// Directory of mounted secrets.
    pub secrets_dir: Option<PathBuf>,
    /// Records in flight to Kafka at once.
    pub max_in_flight: usize,
}

/// Why the stage could not run.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The spool could not be opened.
    #[error("ingest: {0}")]
    Durable(#[from] DurableError),
    /// A listener could not be bound.
    #[error("ingest: push receiver could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A directory on the volume could not be created.
    #[error("ingest: {path} could not be created: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

struct Running {
    spec: FeedSpec,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The running stage; [`IngestStage::shutdown`] stops it cleanly.
pub struct IngestStage {
    /// Where the push receiver listens (useful with port 0).
    pub push_addr: SocketAddr,
    cancel: CancellationToken,
    supervisor: JoinHandle<()>,
    drainer: JoinHandle<()>,
    drain_cancel: CancellationToken,
    push_server: JoinHandle<()>,
    durable: Durable,
}

impl IngestStage {
    /// Opens the spool, starts everything, and returns once the push receiver listens.
    pub async fn start(settings: IngestSettings, telemetry: &Telemetry) -> Result<IngestStage, StageError> {
        let metrics = IngestMetrics::default();
        telemetry.with_registry(|r| metrics.register(r));
        let health = telemetry.health().clone();
        let base = settings.data_dir.join("ingest");
        for dir in [base.clone(), base.join("feeds")] {
            std::fs::create_dir_all(&dir).map_err(|source| StageError::DataDir { path: dir.clone(), source })?;
        }
        let (durable, drain_source) = Durable::open(
            &DurableConfig {
                dir: base.join("spool"),
                max_bytes: settings.spool_max_bytes,
                segment_bytes: settings.spool_segment_bytes,
            },
            metrics.clone(),
        )?;
        health.set("spool", true, "open");

        let topic = |k| settings.naming.topic(&settings.tenant, k);
        let observations = topic(TopicKind::Observations);
        let deadletter = topic(TopicKind::Deadletter);
        let feeds_topic = topic(TopicKind::Feeds);

        // Drainer: topics first (retrying while Kafka is away), then deliver forever.
        let drain_cancel = CancellationToken::new();
        let drainer = {
            let props = settings.kafka.clone();
            let topics = vec![
                (observations.clone(), settings.partitions, false),
                (deadletter.clone(), settings.partitions.clamp(1, 3), false),
                (feeds_topic.clone(), 1, true),
            ];
            let replication = settings.replication;
            let config = DrainConfig {
                properties: settings.kafka.clone(),
                observations_topic: observations,
                deadletter_topic: deadletter,
                max_in_flight: settings.max_in_flight,
            };
            let cancel = drain_cancel.clone();
            tokio::spawn(async move {
                let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
                loop {
                    match ensure_topics(&props, &topics, replication).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka topics not ensured yet; records wait in the spool");
                            tokio::select! {
                                () = cancel.cancelled() => return,
                                () = tokio::time::sleep(backoff.next_delay()) => {}
                            }
                        }
                    }
                }
                Drainer::new(drain_source, config, None).run(cancel).await;
            })
        };

        let cancel = CancellationToken::new();
        let push = http_push::PushFeeds::default();
        let listener = tokio::net::TcpListener::bind(settings.push_listen)
            .await
            .map_err(|source| StageError::Bind { addr: settings.push_listen, source })?;
        let push_addr =
            listener.local_addr().map_err(|source| StageError::Bind { addr: settings.push_listen, source })?;
        let router = http_push::router(
            push.clone(),
            http_push::PushConfig {
                tenant: settings.tenant.as_str().to_owned(),
                default_max_body: settings.max_body_bytes,
            },
        );
        let push_server = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tracing::info!(addr = %push_addr, "push receiver listening");
                let serve =
                    axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "push receiver stopped");
                }
            })
        };

        // Registry: last snapshot from the volume now, then the topic as it changes.
        let snapshot_path = base.join("registry.json");
        let initial = load_snapshot(&snapshot_path);
        if !initial.is_empty() {
            tracing::info!(feeds = initial.len(), "starting feeds from the registry snapshot on the volume");
        }
        // Ready once the registry is known: from the volume now, or from Kafka once read.
        if initial.is_empty() {
            health.set("registry", false, "not read from Kafka yet");
        } else {
            health.set("registry", true, format!("{} feeds from the snapshot on the volume", initial.len()));
        }
        let (state_tx, state_rx) = watch::channel(initial);
        spawn_watcher(settings.kafka.clone(), feeds_topic, state_tx, cancel.clone(), health.clone());

        let ctx = SupervisorCtx {
            tenant: settings.tenant.clone(),
            durable: durable.clone(),
            metrics,
            feeds_dir: base.join("feeds"),
            secrets: Secrets::new(settings.secrets_dir.clone()),
            push,
            snapshot_path,
        };
        let supervisor = tokio::spawn(supervise(ctx, state_rx, cancel.clone()));
        Ok(IngestStage { push_addr, cancel, supervisor, drainer, drain_cancel, push_server, durable })
    }

    /// Records written but not yet acknowledged by Kafka.
    pub fn pending(&self) -> u64 {
        self.durable.pending()
    }

    /// Stops feeds (nothing new is accepted), then lets the drainer deliver what it can.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.supervisor.await;
        // A push request can be waiting for spool space that only Kafka can free; do not let it
        // hold the shutdown forever (its sender gets no 202 and sends again).
        let mut push_server = self.push_server;
        if tokio::time::timeout(Duration::from_secs(20), &mut push_server).await.is_err() {
            tracing::warn!("push requests still waiting after 20 s; closing them unanswered");
            push_server.abort();
        }
        self.drain_cancel.cancel();
        let _ = self.drainer.await;
        let spooled = self.durable.pending();
        let closed = self.durable.closed_probe();
        drop(self.durable);
        // The spool is locked while open; a stage started right after this one (a restart in
        // the same process) must find it released.
        if !closed.wait(Duration::from_secs(10)).await {
            tracing::warn!("the spool is still held 10 s after shutdown");
        }
        tracing::info!(spooled, "ingest stopped");
    }
}

/// Runs the stage until `shutdown` resolves.
pub async fn run(
    settings: IngestSettings,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StageError> {
    let stage = IngestStage::start(settings, telemetry).await?;
    shutdown.await;
    tracing::info!("ingest shutting down");
    stage.shutdown().await;
    Ok(())
}

fn load_snapshot(path: &Path) -> RegistryState {
    let mut state = RegistryState::default();
    let Ok(bytes) = std::fs::read(path) else { return state };
    match serde_json::from_slice::<Vec<FeedSpec>>(&bytes) {
        Ok(specs) => {
            for spec in specs {
                if let Ok(v) = serde_json::to_vec(&spec) {
                    state.apply(spec.id.as_str().as_bytes(), Some(&v));
                }
            }
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "registry snapshot unreadable; waiting for Kafka"),
    }
    state
}

fn save_snapshot(path: &Path, state: &RegistryState) {
    let specs: Vec<&FeedSpec> = state.feeds().collect();
    let result = serde_json::to_vec_pretty(&specs).map_err(std::io::Error::other).and_then(|bytes| {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "registry snapshot not saved");
    }
}

/// Folds the registry topic on a blocking thread and publishes each changed state.
fn spawn_watcher(
    props: BTreeMap<String, String>,
    topic: String,
    tx: watch::Sender<RegistryState>,
    cancel: CancellationToken,
    health: geostream_telemetry::Health,
) {
    std::thread::Builder::new()
        .name("registry-watcher".into())
        .spawn(move || {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            'connect: while !cancel.is_cancelled() {
                let mut watcher = match RegistryWatcher::new(&props, &topic) {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "feed registry not readable yet");
                        std::thread::sleep(backoff.next_delay());
                        continue;
                    }
                };
                let mut state = RegistryState::default();
                let mut notes = Vec::new();
                if let Err(e) = watcher.catch_up(&mut state, &mut notes, Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "feed registry read failed");
                    std::thread::sleep(backoff.next_delay());
                    continue;
                }
                backoff.reset();
                log_notes(&mut notes);
                health.set("registry", true, format!("{} feeds", state.len()));
                tx.send_replace(state.clone());
                while !cancel.is_cancelled() {
                    if let Err(e) = watcher.poll(&mut state, &mut notes, Duration::from_millis(500)) {
                        tracing::warn!(error = %e, "feed registry read failed; reconnecting");
                        continue 'connect;
                    }
                    let changed = notes.iter().any(|n| matches!(n, Applied::Upserted(_) | Applied::Deleted(_)));
                    log_notes(&mut notes);
                    if changed {
                        tx.send_replace(state.clone());
                    }
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(error = %e, "registry watcher thread could not start"));
}

fn log_notes(notes: &mut Vec<Applied>) {
    for n in notes.drain(..) {
        match n {
            Applied::Invalid { key, problem } => {
                tracing::error!(feed = %key, %problem, "registry record refused; the feed keeps its previous spec");
            }
            Applied::Upserted(id) => tracing::info!(feed = %id, "registry: feed registered or changed"),
            Applied::Deleted(id) => tracing::info!(feed = %id, "registry: feed deleted"),
            Applied::Unchanged => {}
        }
    }
}

struct SupervisorCtx {
    tenant: TenantId,
    durable: Durable,
    metrics: IngestMetrics,
    feeds_dir: PathBuf,
    secrets: Secrets,
    push: http_push::PushFeeds,
    snapshot_path: PathBuf,
}

async fn supervise(ctx: SupervisorCtx, mut rx: watch::Receiver<RegistryState>, cancel: CancellationToken) {
    let mut running: BTreeMap<FeedId, Running> = BTreeMap::new();
    loop {
        let state = rx.borrow_and_update().clone();
        let specs: BTreeMap<FeedId, FeedSpec> = running.iter().map(|(k, r)| (k.clone(), r.spec.clone())).collect();
        for action in plan(&state, &specs) {
            match action {
                Action::Stop(id) => {
                    if let Some(r) = running.remove(&id) {
                        tracing::info!(feed = %id, "stopping feed");
                        stop(r).await;
                    }
                }
                Action::Restart(spec) => {
                    if let Some(r) = running.remove(&spec.id) {
                        tracing::info!(feed = %spec.id, version = spec.version, "reconfiguring feed");
                        stop(r).await;
                    }
                    running.insert(spec.id.clone(), start(&ctx, spec));
                }
                Action::Start(spec) => {
                    tracing::info!(feed = %spec.id, kind = spec.source.kind(), format = %spec.format, "starting feed");
                    running.insert(spec.id.clone(), start(&ctx, spec));
                }
            }
        }
        ctx.metrics.feeds_running.set(running.len() as i64);
        let path = ctx.snapshot_path.clone();
        let _ = tokio::task::spawn_blocking(move || save_snapshot(&path, &state)).await;
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    for (id, r) in std::mem::take(&mut running) {
        tracing::info!(feed = %id, "stopping feed for shutdown");
        stop(r).await;
    }
}

fn start(ctx: &SupervisorCtx, spec: FeedSpec) -> Running {
    let cancel = CancellationToken::new();
    let handle = FeedHandle {
        state_dir: ctx.feeds_dir.join(spec.id.as_str()),
        spec: Arc::new(spec.clone()),
        tenant: ctx.tenant.clone(),
        durable: ctx.durable.clone(),
        metrics: ctx.metrics.clone(),
        secrets: ctx.secrets.clone(),
    };
    let push = ctx.push.clone();
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        let id = handle.id().to_owned();
        if let Err(e) = std::fs::create_dir_all(&handle.state_dir) {
            tracing::error!(feed = %id, error = %e, "feed state directory could not be created");
        }
        let metrics = handle.metrics.clone();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match sources::run(handle.clone(), push.clone(), token.clone()).await {
                Ok(()) => {
                    tracing::info!(feed = %id, "feed source finished");
                    break;
                }
                Err(e) if e.class() == ErrorClass::User => {
                    // Not restarted until its spec changes: the problem is in the spec or its secrets.
                    metrics.source_error(&id);
                    tracing::error!(feed = %id, error = %e, "feed stopped; fix its spec or secrets and re-register it");
                    break;
                }
                Err(e) => {
                    // The volume or the process, not the spec: try again, slower each time.
                    metrics.source_error(&id);
                    let wait = backoff.next_delay();
                    tracing::error!(feed = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "feed failed; restarting it");
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    });
    Running { spec, cancel, task }
}

async fn stop(r: Running) {
    r.cancel.cancel();
    let mut task = r.task;
    if tokio::time::timeout(Duration::from_secs(15), &mut task).await.is_err() {
        tracing::warn!(feed = %r.spec.id, "feed did not stop within 15 s; aborting it");
        task.abort();
    }
}

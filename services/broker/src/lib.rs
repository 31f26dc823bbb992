//! The embedded Kafka-compatible broker of `geostream standalone` and `demo`: tansu (used as a
//! library) listening on a local port, with its topics, records, consumer groups and transactions in
//! one sqlite file in the data dir. The stages keep speaking Kafka through rdkafka to
//! [`EmbeddedBroker::bootstrap`], so the standalone mode runs the very code paths a cluster does.
//!
//! Data dir: `broker.db` (+ its `-wal`/`-shm`), `broker-cluster-id` (minted once, so a restart finds
//! its topics again: tansu keys all of them by cluster id) and `broker.lock` (held while running).
//! The rules for these are pure and live in [`layout`]; this file is the async shell around tansu.
//!
//! The accept loop is ours, not tansu's `Broker`: it serves tansu's routes plus the EndTxn route and
//! the read_committed Fetch that tansu 0.6.0 lacks (see `routes.rs`); its `Broker` takes no routes.
//!
//! Must not: know topics, tenants or record formats; the stages create what they need through the
//! Kafka admin API as they would against a cluster.

pub mod layout;
mod routes;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use geostream_model::{Classify, ErrorClass};
use rama::{Context, Service as _};
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::{BrokerRegistrationRequest, Storage as _, StorageContainer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::layout::{ClusterIdProblem, Layout};

/// The node id the broker registers and names as leader of every partition. There is one node, so
/// any fixed value does; it is fixed because tansu records it beside the partitions it creates.
pub const NODE_ID: i32 = 1;

/// How long [`EmbeddedBroker::shutdown`] waits for tansu to close the database.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the storage compacts, applies retention and vacuums: tansu's own default.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);
/// How long the accept loop pauses after a failed accept (say, out of file descriptors), so it does
/// not spin while the cause lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`EmbeddedBroker::start`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Where the database, the cluster id and the lock live; created if missing.
    pub data_dir: PathBuf,
    /// Where to listen. Port 0 picks a free port; a wildcard IP listens everywhere and advertises
    /// loopback.
    pub listen: SocketAddr,
}

impl BrokerConfig {
    /// A broker on `data_dir` listening on a free loopback port, the standalone mode's default:
    /// nothing outside the machine can reach it.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), listen: SocketAddr::from(([127, 0, 0, 1], 0)) }
    }
}

/// Why the broker could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A file of the data dir could not be read, written or created (permissions, full disk).
    #[error("broker data dir: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Another broker holds the data dir's lock; starting a second one on it would corrupt both.
    #[error("broker data dir {0} is in use by another broker (its lock file is held); stop that one first")]
    Locked(PathBuf),
    /// The cluster id file holds something else than a cluster id (edited by hand or damaged).
    #[error("cluster id file {path} is not usable: {problem}; restore it, or remove the data dir for a new broker")]
    BadClusterId {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: ClusterIdProblem,
    },
    /// tansu would put the database somewhere else than asked for (see [`layout::storage_url`]).
    #[error(
        "broker data dir {0} cannot be passed to the broker: it must be an absolute UTF-8 path without \
         spaces, '?', '#' or non-ASCII characters"
    )]
    UnsupportedDataDir(PathBuf),
    /// No port could be had for the listener.
    #[error("broker listener on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's (or tansu's) error.
        #[source]
        source: io::Error,
    },
    /// tansu refused to open its storage, to register the node or to build its request routes.
    #[error("broker storage {url}: {source}")]
    Storage {
        /// The storage URL given to tansu.
        url: String,
        /// tansu's error.
        #[source]
        source: tansu_broker::Error,
    },
    /// The broker task ended with an error while running.
    #[error("broker stopped with an error: {0}")]
    Failed(#[source] tansu_broker::Error),
    /// tansu's storage still had the database open after shutdown; a broker started on the same
    /// data dir now would find it locked.
    #[error("broker database {db} was still open {waited:?} after shutdown")]
    NotClosed {
        /// The database file.
        db: PathBuf,
        /// How long was waited.
        waited: Duration,
    },
    /// The broker task panicked (a tansu bug).
    #[error("broker task panicked: {0}")]
    Panicked(String),
}

impl Classify for BrokerError {
    fn class(&self) -> ErrorClass {
        match self {
            BrokerError::Io { .. } | BrokerError::Locked(_) | BrokerError::Listen { .. } => ErrorClass::External,
            BrokerError::NotClosed { .. } | BrokerError::Storage { .. } | BrokerError::Failed(_) => {
                ErrorClass::External
            }
            BrokerError::BadClusterId { .. } | BrokerError::UnsupportedDataDir(_) => ErrorClass::User,
            BrokerError::Panicked(_) => ErrorClass::Internal,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            // Free once the other broker stops; a port taken by someone else may be free next time.
            BrokerError::Locked(_) | BrokerError::Listen { .. } | BrokerError::NotClosed { .. } => true,
            // A full disk or a busy database may clear; permissions and broken files will not, but
            // io::Error does not say which, so a bounded retry is the safe reading.
            BrokerError::Io { .. } | BrokerError::Storage { .. } | BrokerError::Failed(_) => true,
            BrokerError::BadClusterId { .. } | BrokerError::UnsupportedDataDir(_) | BrokerError::Panicked(_) => false,
        }
    }
}

type BrokerTask = JoinHandle<Result<(), tansu_broker::Error>>;

/// A running broker. Stop it with [`shutdown`](Self::shutdown); dropping it aborts the broker the
/// same way, without waiting.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    cluster_id: String,
    data_dir: PathBuf,
    task: Option<BrokerTask>,
    // Held for the broker's lifetime; the flock goes with the file descriptor.
    _lock: File,
}

impl EmbeddedBroker {
    /// Starts a broker on `config.data_dir` and returns once it accepts connections.
    ///
    /// Must be called inside a tokio runtime; the broker runs as tasks on it.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        let data_dir = prepare_data_dir(&config.data_dir)?;
        let files = Layout::new(&data_dir);
        let lock = take_lock(&files.lock, &data_dir)?;
        let cluster_id = load_or_mint_cluster_id(&files.cluster_id)?;
        let storage =
            layout::storage_url(&files.database).ok_or_else(|| BrokerError::UnsupportedDataDir(data_dir.clone()))?;

        // Bound here rather than in the serve loop so port 0 gives a port we know and can advertise.
        let listener = std::net::TcpListener::bind(config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|source| BrokerError::Listen { addr: config.listen, source })?;
        let bound = listener.local_addr().map_err(|source| BrokerError::Listen { addr: config.listen, source })?;
        let addr = layout::advertised_addr(bound);
        let task = launch(&cluster_id, &storage, listener, addr).await?;
        info!(%addr, cluster_id, data_dir = %data_dir.display(), "embedded broker ready");
        Ok(Self { addr, cluster_id, data_dir, task: Some(task), _lock: lock })
    }

    /// Where clients connect: `host:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster id, stable across restarts on the same data dir.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The data dir, absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the broker and waits until its listener and connections are gone, then releases the
    /// data dir.
    ///
    /// The broker task is aborted, which drops its listener and the connection and maintenance
    /// tasks it owns. Every write tansu makes is a sqlite statement or transaction that either
    /// committed before the abort or is rolled back when the connection closes, the same as a crash, which sqlite's WAL is
    /// built for. The storage task tansu runs beside the listener is aborted when its last handle
    /// drops with the broker, a moment later; this waits for it to close the database (see
    /// `wait_closed`) so a restart on the same data dir right after does not find it locked.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        let Some(task) = self.task.take() else { return Ok(()) };
        task.abort();
        let outcome = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BrokerError::Failed(e)),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(BrokerError::Panicked(e.to_string())),
        };
        if outcome.is_ok() {
            wait_closed(&Layout::new(&self.data_dir).database).await?;
        }
        debug!(addr = %self.addr, "embedded broker stopped");
        outcome
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Opens tansu's storage and group coordinator as tansu's own broker builder does, registers the
/// node and spawns the accept loop on `listener`.
async fn launch(
    cluster_id: &str,
    storage: &url::Url,
    listener: TcpListener,
    advertised: SocketAddr,
) -> Result<BrokerTask, BrokerError> {
    let advertised_url = layout::listener_url(advertised).map_err(|e| BrokerError::Listen {
        addr: advertised,
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let storage_err = |source| BrokerError::Storage { url: storage.to_string(), source };
    let store = StorageContainer::builder()
        .cluster_id(cluster_id)
        .node_id(NODE_ID)
        .advertised_listener(advertised_url)
        .storage(storage.clone())
        // Not silent, tansu's storage prints progress to the terminal.
        .silent(true)
        .build()
        .await
        .map_err(|e| storage_err(e.into()))?;
    let groups = Controller::with_storage(store.clone()).map_err(storage_err)?;
    store
        .register_broker(BrokerRegistrationRequest {
            broker_id: NODE_ID,
            cluster_id: cluster_id.to_owned(),
            // A new incarnation per start: Kafka's way of telling a restarted node from a stale one.
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
        })
        .await
        .map_err(|e| storage_err(e.into()))?;
    // A route table that cannot be built would fail every connection; better to fail the start.
    routes::connection_service(cluster_id, groups.clone(), store.clone()).map_err(storage_err)?;
    let cluster_id = cluster_id.to_owned();
    Ok(tokio::spawn(serve(listener, cluster_id, groups, store)))
}

/// Accepts connections and runs the storage's periodic maintenance until aborted. Connections and
/// maintenance run as tasks in a set this future owns, so aborting it ends them too.
async fn serve(
    listener: TcpListener,
    cluster_id: String,
    groups: Controller<StorageContainer>,
    store: StorageContainer,
) -> Result<(), tansu_broker::Error> {
    let mut tasks = JoinSet::new();
    // The first tick is immediate, as in tansu's loop: retention that expired while the broker was
    // down applies at start.
    let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Kafka requests are small and latency bound; Nagle would hold responses back.
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, error = %e, "nodelay not set");
                    }
                    let service = routes::connection_service(&cluster_id, groups.clone(), store.clone())?;
                    tasks.spawn(serve_connection(service, stream, peer));
                }
                Err(e) => {
                    warn!(error = %e, "broker accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = maintenance.tick() => {
                let store = store.clone();
                tasks.spawn(async move {
                    if let Err(e) = store.maintain(SystemTime::now()).await {
                        warn!(error = %e, "broker storage maintenance failed");
                    }
                });
            }
            // Reaps finished tasks so the set does not grow with every connection ever made.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn serve_connection(service: routes::ConnectionService, stream: TcpStream, peer: SocketAddr) {
    match service.serve(Context::default(), stream).await {
        Ok(_) => debug!(%peer, "broker connection closed"),
        Err(tansu_broker::Error::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            debug!(%peer, "broker connection closed by the client")
        }
        // A request tansu has no route for also lands here; the client sees its connection close.
        Err(e) => warn!(%peer, error = %e, "broker connection ended with an error"),
    }
}

/// Waits until tansu's storage task has closed the database at `db`.
///
/// The task outlives the broker task by a moment (it is aborted, not awaited, when tansu's storage
/// handle drops), and while it closes, sqlite checkpoints the WAL under an exclusive lock; tansu
/// sets no busy timeout, so a broker started on the same data dir in that moment fails with
/// "database is locked". sqlite deletes the `-wal` file when its last connection closes, which is
/// the one outside sign that the database is free again.
async fn wait_closed(db: &Path) -> Result<(), BrokerError> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let started = std::time::Instant::now();
    while wal.exists() {
        if started.elapsed() > CLOSE_TIMEOUT {
            return Err(BrokerError::NotClosed { db: db.to_path_buf(), waited: CLOSE_TIMEOUT });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Creates the data dir if needed and makes its path absolute (tansu resolves relative storage
/// paths against the current dir, which a later `cd` would change).
fn prepare_data_dir(dir: &Path) -> Result<PathBuf, BrokerError> {
    fs::create_dir_all(dir).map_err(io_err("creation of", dir))?;
    fs::canonicalize(dir).map_err(io_err("resolution of", dir))
}

fn take_lock(path: &Path, data_dir: &Path) -> Result<File, BrokerError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open of lock file", path))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(BrokerError::Locked(data_dir.to_path_buf())),
        Err(fs4::TryLockError::Error(e)) => Err(io_err("lock of", path)(e)),
    }
}

/// The cluster id in `path`, or a new one written there (temp file, fsync, rename, so a crash leaves
/// either no file or a whole one).
fn load_or_mint_cluster_id(path: &Path) -> Result<String, BrokerError> {
    match fs::read_to_string(path) {
        Ok(text) => layout::parse_cluster_id(&text)
            .map_err(|problem| BrokerError::BadClusterId { path: path.to_path_buf(), problem }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = layout::mint_cluster_id(uuid::Uuid::new_v4().as_u128());
            let tmp = path.with_extension("tmp");
            let mut file = File::create(&tmp).map_err(io_err("creation of", &tmp))?;
            file.write_all(format!("{id}\n").as_bytes()).map_err(io_err("write of", &tmp))?;
            file.sync_all().map_err(io_err("fsync of", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
            if let Some(dir) = path.parent() {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync of", dir))?;
            }
            Ok(id)
        }
        Err(e) => Err(io_err("read of", path)(e)),
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BrokerError + 'a {
    move |source| BrokerError::Io { what, path: path.to_path_buf(), source }
}

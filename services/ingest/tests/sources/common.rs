//! What every source test needs: service addresses (a missing one fails the test), a durable spool
//! on a temporary directory with a feed handle in front of it, the source task, and the spool read
//! back and decoded once the source has stopped.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use geostream_codecs::{Context, Outcome, decode_all, registry};
use geostream_ingest::durable::{Durable, DurableConfig};
use geostream_ingest::feed::{FeedHandle, Secrets, SourceError};
use geostream_ingest::metrics::{FeedLabel, IngestMetrics};
use geostream_ingest::pipeline::{Envelope, Route};
use geostream_ingest::spool::{Spool, SpoolConfig};
use geostream_model::time::OffsetDateTime;
use geostream_model::{DeadLetter, FeedSpec, Observation, TenantId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any wait in these tests may take before the test fails (a generous bound for a
/// loaded two-core machine; nothing here is a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(120);

const SPOOL_MAX_BYTES: u64 = 512 * 1024 * 1024;
const SPOOL_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

// The workspace's one rule for test services: a missing one fails (always under CI); only
// `GEOSTREAM_ALLOW_MISSING_SERVICES=1` outside CI turns it into NOT RUN.
pub use geostream_tests::{service, unique};

/// A file of the codecs' real samples.
pub fn sample(name: &str) -> PathBuf {
    geostream_tests::package_dir().join("../codecs/tests/data").join(name)
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG` to change the level).
pub fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("geostream_ingest=debug"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// A spec from JSON, validated like the registry does.
pub fn spec(json: serde_json::Value) -> FeedSpec {
    let spec: FeedSpec = serde_json::from_value(json).expect("test spec parses");
    spec.validate().expect("test spec is valid");
    spec
}

/// Envelopes (observations plus dead letters) and their tallies, as the codec alone gives them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expected {
    pub observations: usize,
    pub dead_letters: usize,
    pub rejected: BTreeMap<String, usize>,
}

impl Expected {
    pub fn envelopes(&self) -> usize {
        self.observations + self.dead_letters
    }

    pub fn add(&mut self, other: &Expected) {
        self.observations += other.observations;
        self.dead_letters += other.dead_letters;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
    }
}

/// What `geostream_codecs` decodes from `bytes` with the spec's codec (framed as the codec asks,
/// like `geostream decode`), independent of any ingest code.
pub fn decode_expected(spec: &FeedSpec, bytes: &[u8]) -> Expected {
    let mut codec = registry::build(spec.format, &spec.mapping, &spec.options).expect("codec builds");
    let ctx = Context::new(spec.id.clone(), OffsetDateTime::now_utc());
    let mut e = Expected::default();
    for o in decode_all(codec.as_mut(), bytes, &ctx) {
        match o {
            Outcome::Observation(_) => e.observations += 1,
            Outcome::Rejected(r) => {
                e.dead_letters += 1;
                *e.rejected.entry(r.reason.as_str().to_owned()).or_default() += 1;
            }
            Outcome::Skipped(_) => {}
        }
    }
    e
}

/// One feed's source against a real spool on a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub handle: FeedHandle,
    durable: Option<Durable>,
    spool_dir: PathBuf,
}

impl Harness {
    pub fn new(spec: FeedSpec) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        let metrics = IngestMetrics::default();
        let config =
            DurableConfig { dir: spool_dir.clone(), max_bytes: SPOOL_MAX_BYTES, segment_bytes: SPOOL_SEGMENT_BYTES };
        let (durable, _drain) = Durable::open(&config, metrics.clone()).expect("spool opens");
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir).expect("secrets dir");
        let handle = FeedHandle {
            spec: std::sync::Arc::new(spec),
            tenant: TenantId::new("acme").expect("tenant"),
            durable: durable.clone(),
            metrics,
            state_dir: dir.path().join("state").join("feed"),
            secrets: Secrets::new(Some(secrets_dir)),
        };
        Self { dir, handle, durable: Some(durable), spool_dir }
    }

    /// Writes a secret the spec can name.
    pub fn secret(&self, name: &str, value: &str) {
        std::fs::write(self.dir.path().join("secrets").join(name), value).expect("secret written");
    }

    /// Replaces the spec (a feed reconfigured between runs) keeping spool and state.
    pub fn respec(&mut self, spec: FeedSpec) {
        self.handle.spec = std::sync::Arc::new(spec);
    }

    /// Starts the feed's source as the stage would.
    pub fn start(&self) -> Running {
        let cancel = CancellationToken::new();
        let handle = self.handle.clone();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            let push = geostream_ingest::sources::http_push::PushFeeds::default();
            geostream_ingest::sources::run(handle, push, c).await
        });
        Running { cancel, task }
    }

    /// Records in the spool so far (nothing drains it in these tests).
    pub fn pending(&self) -> u64 {
        self.durable.as_ref().map_or(0, Durable::pending)
    }

    /// Waits until the spool holds at least `n` records; fails the test after [`PATIENCE`].
    pub async fn wait_for(&self, n: u64, what: &str) {
        let start = Instant::now();
        while self.pending() < n {
            assert!(
                start.elapsed() < PATIENCE,
                "{what}: {} of {n} records in the spool after {PATIENCE:?}",
                self.pending()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn source_errors(&self) -> u64 {
        let label = FeedLabel { feed: self.handle.id().to_owned() };
        self.handle.metrics.source_errors.get_or_create(&label).get()
    }

    pub fn file_passes(&self) -> u64 {
        let label = FeedLabel { feed: self.handle.id().to_owned() };
        self.handle.metrics.file_passes.get_or_create(&label).get()
    }

    pub fn deduplicated(&self) -> u64 {
        let label = FeedLabel { feed: self.handle.id().to_owned() };
        self.handle.metrics.deduplicated.get_or_create(&label).get()
    }

    /// Closes the durable writer and reads the spool back through a fresh [`Spool::open`].
    pub fn into_spooled(mut self) -> Spooled {
        let closed = self.durable.as_ref().map(Durable::closed_probe);
        drop(self.durable.take());
        let spool_dir = self.spool_dir.clone();
        drop(self.handle);
        if let Some(c) = closed {
            assert!(c.wait_blocking(PATIENCE), "the spool writer never closed");
        }
        let (spool, _) =
            Spool::open(&spool_dir, SpoolConfig { max_bytes: SPOOL_MAX_BYTES, segment_bytes: SPOOL_SEGMENT_BYTES })
                .expect("spool reopens");
        let mut s = Spooled::default();
        for rec in spool.peek(usize::MAX).expect("spool reads") {
            let env = Envelope::decode(&rec.payload).expect("envelope decodes");
            match env.route {
                Route::Observations => {
                    let obs: Observation = serde_json::from_slice(&env.value).expect("observation JSON");
                    assert_eq!(env.key, obs.kafka_key().as_bytes(), "observations are keyed by track");
                    s.observations.push(obs);
                }
                Route::DeadLetter => s.dead_letters.push(serde_json::from_slice(&env.value).expect("dead letter JSON")),
            }
        }
        s
    }
}

/// A running source.
pub struct Running {
    pub cancel: CancellationToken,
    pub task: JoinHandle<Result<(), SourceError>>,
}

impl Running {
    /// Cancels the source and waits for it to stop (it must, promptly and without error).
    pub async fn stop(self) {
        self.cancel.cancel();
        let done = tokio::time::timeout(PATIENCE, self.task).await.expect("the source stops after cancel");
        done.expect("source task did not panic").expect("source stopped without error");
    }

    /// Waits for a source that ends by itself (a single file) and returns its result.
    pub async fn finished(self) -> Result<(), SourceError> {
        tokio::time::timeout(PATIENCE, self.task).await.expect("the source ends by itself").expect("no panic")
    }
}

/// What the spool held.
#[derive(Debug, Default)]
pub struct Spooled {
    pub observations: Vec<Observation>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Spooled {
    /// Counts in the shape of [`Expected`].
    pub fn counts(&self) -> Expected {
        let mut rejected = BTreeMap::new();
        for d in &self.dead_letters {
            *rejected.entry(d.reason.as_str().to_owned()).or_default() += 1;
        }
        Expected { observations: self.observations.len(), dead_letters: self.dead_letters.len(), rejected }
    }

    /// Fails if any observation id occurs twice.
    pub fn assert_no_duplicates(&self) {
        let mut seen = HashSet::new();
        for o in &self.observations {
            assert!(seen.insert(o.id.to_string()), "observation {} was written twice", o.id);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the source binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

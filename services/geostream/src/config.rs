//! Typed configuration: defaults, then a TOML file, then `GEOSTREAM_*` environment variables.
//!
//! Nested keys use a double underscore in the environment (`GEOSTREAM_KAFKA__BOOTSTRAP` sets
//! `kafka.bootstrap`) because single underscores occur inside key names (`topic_prefix`).
//! Validation collects every problem at once and names the key and the fix, so an operator fixes a
//! bad deployment in one round instead of one error per restart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use geostream_model::{Naming, TenantId};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable geostream reads as configuration.
pub const ENV_PREFIX: &str = "GEOSTREAM_";

/// The top-level keys; environment variables naming anything else (for example `GEOSTREAM_CACHE`,
/// which the test scripts use) are not configuration and are left alone.
const TOP_LEVEL_KEYS: &[&str] = &[
    "tenant",
    "topic_prefix",
    "data_dir",
    "kafka",
    "elasticsearch",
    "telemetry",
    "log",
    "ingest",
    "process",
    "sink",
    "outputs",
    "api",
    "operator",
    "archive",
];

/// The whole configuration of one geostream process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The tenant this process serves; names its topics and indices. Required.
    pub tenant: Option<String>,
    /// Prepended to every topic name, e.g. `prod.` gives `prod.acme.observations`.
    pub topic_prefix: String,
    /// Where the stage keeps its spool, checkpoints and archive (its persistent volume).
    pub data_dir: PathBuf,
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Elasticsearch or OpenSearch connection (sink and api).
    pub elasticsearch: SearchConfig,
    /// Metrics and health endpoints.
    pub telemetry: TelemetryConfig,
    /// Logging.
    pub log: LogConfig,
    /// The ingest stage.
    pub ingest: IngestConfig,
    /// The process stage.
    pub process: ProcessConfig,
    /// The sink stage.
    pub sink: SinkConfig,
    /// Event outputs (`[[outputs]]`: webhook, mqtt or kafka each), run by `geostream sink`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<geostream_outputs::OutputConfig>,
    /// The api stage.
    pub api: ApiConfig,
    /// The Kubernetes operator (`geostream operator`).
    pub operator: OperatorConfig,
    /// The GeoParquet archive, run by `geostream sink`.
    pub archive: ArchiveConfig,
}

/// Settings of `geostream operator`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// The feed catalog SensorFeeds name their `type` from (the image has it at
    /// `/usr/share/geostream/feeds`).
    pub catalog_dir: PathBuf,
    /// Where volume usage comes from: `node-proxy` (kubelet stats through the apiserver) or
    /// `prometheus` (`kubelet_volume_stats_*`; needs `prometheus_url`).
    pub usage_source: String,
    /// Prometheus base URL, e.g. `http://prometheus-server.monitoring:9090`.
    pub prometheus_url: Option<String>,
    /// Seconds between evaluations of autoscale policies and snapshot schedules.
    pub interval_s: u64,
    /// Elect one active replica through a Lease (off only for a single replica you run by hand).
    pub leader_election: bool,
    /// Namespace of the Lease; default the pod's (`POD_NAMESPACE`), else `default`.
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    pub lease_name: String,
    /// Seconds a lease lasts without renewal.
    pub lease_duration_s: u64,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            catalog_dir: PathBuf::from("feeds"),
            usage_source: "node-proxy".into(),
            prometheus_url: None,
            interval_s: 60,
            leader_election: true,
            lease_namespace: None,
            lease_name: "geostream-operator".into(),
            lease_duration_s: 15,
        }
    }
}

/// Settings of the GeoParquet archive (`[archive]`), which `geostream sink` runs beside the search
/// engine writer (or alone when `elasticsearch.url` is unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Whether `geostream sink` archives at all.
    pub enabled: bool,
    /// `file:///data/archive` (a volume) or `s3://bucket/prefix`; unset = `<data_dir>/archive`.
    pub url: Option<String>,
    /// S3-compatible store settings (for `s3://` URLs).
    pub s3: ArchiveS3Config,
    /// Flush when this many records are buffered.
    pub flush_max_records: usize,
    /// Flush when the buffered records hold this many bytes (bounds the stage's memory).
    pub flush_max_bytes: u64,
    /// Flush when the oldest buffered record waited this long, in seconds.
    pub flush_max_age_s: u64,
    /// Merge the small files of closed hours.
    pub compaction_enabled: bool,
    /// How often to look for hours to compact, in seconds.
    pub compaction_interval_s: u64,
    /// How long after an hour ends before it is compacted, in seconds (late records still add
    /// small files afterwards; later rounds merge them).
    pub compaction_grace_s: u64,
    /// Largest compacted file, in bytes.
    pub compaction_target_bytes: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: None,
            s3: ArchiveS3Config::default(),
            flush_max_records: 100_000,
            flush_max_bytes: 64 * 1024 * 1024,
            flush_max_age_s: 300,
            compaction_enabled: true,
            compaction_interval_s: 300,
            compaction_grace_s: 600,
            compaction_target_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The S3-compatible store of the archive. Credentials: these keys (for instance
/// `GEOSTREAM_ARCHIVE__S3__SECRET_ACCESS_KEY`), or files (mounted secrets), or else the usual
/// `AWS_*` variables and instance credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveS3Config {
    /// Base URL of an S3-compatible service, e.g. `http://minio.storage:9000`; unset = AWS.
    pub endpoint: Option<String>,
    /// The region; unset = `us-east-1` (what most S3-compatible services accept).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key; never printed.
    pub secret_access_key: Option<String>,
    /// A file holding the access key id (a mounted secret).
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key (a mounted secret).
    pub secret_access_key_file: Option<PathBuf>,
    /// Path-style requests (`http://host/bucket/key`), which most self-hosted services need.
    pub path_style: bool,
    /// Allow a plain-HTTP endpoint (cluster-internal services).
    pub allow_http: bool,
}

/// Settings of `geostream api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the HTTP API.
    pub listen: String,
    /// Read tokens by tenant (`tokens.acme = ["..."]`); secrets, masked by `config print`. Use
    /// either this or `tokens_file`.
    pub tokens: BTreeMap<String, Vec<String>>,
    /// A file of `<tenant> <token>` lines (a mounted secret); read at start.
    pub tokens_file: Option<PathBuf>,
    /// A file holding the admin token, which registry writes need; unset = no writes.
    pub admin_token_file: Option<PathBuf>,
    /// Timeout of one request to the search engine, in milliseconds.
    pub request_timeout_ms: u64,
    /// Most live-push (SSE) clients at once; each holds one Kafka consumer. More answer 503.
    pub max_live_clients: usize,
    /// Sustained requests per second per bearer token (requests without one share a budget);
    /// more answer 429 with `Retry-After`. 0 turns the limit off.
    pub rate_limit_per_s: u32,
    /// Requests a token may send at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// Largest request body (registry writes); larger ones answer 413.
    pub max_body_bytes: usize,
    /// Directory of the built map dashboard, served at `/dashboard/` (`scripts/dashboard.sh`
    /// builds `web/dist`; relative paths are from the working directory).
    pub dashboard_dir: PathBuf,
    /// Where queries are answered from: `search` (Elasticsearch/OpenSearch at
    /// `elasticsearch.url`), `archive` (the GeoParquet archive at `archive.url` plus a live layer
    /// read from Kafka: the standalone shape), or `auto` = `search` when `elasticsearch.url` is
    /// set, else `archive` when `archive.url` is set or `archive.enabled`.
    pub backend: ApiBackend,
    /// With the `archive` backend: most records the live layer keeps per topic beyond what the
    /// archive holds (older ones are dropped and counted; the archive catches up with them).
    pub live_tail: usize,
    /// PEM certificate chain for HTTPS (e.g. `tls.crt` of a mounted `kubernetes.io/tls` Secret);
    /// set together with `tls_key_file`. Unset = plain HTTP. Renewed files are picked up within
    /// 5 s without a restart.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

/// Where `geostream api` answers queries from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiBackend {
    /// `search` when `elasticsearch.url` is set, else `archive`.
    #[default]
    Auto,
    /// Elasticsearch or OpenSearch.
    Search,
    /// The GeoParquet archive plus a live layer from Kafka.
    Archive,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            tokens: BTreeMap::new(),
            tokens_file: None,
            admin_token_file: None,
            request_timeout_ms: 30_000,
            max_live_clients: 256,
            rate_limit_per_s: 100,
            rate_limit_burst: 200,
            max_body_bytes: 16 * 1024 * 1024,
            dashboard_dir: PathBuf::from("web/dist"),
            backend: ApiBackend::Auto,
            live_tail: 100_000,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// Settings of `geostream process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// How far behind a partition's newest event time a record may arrive and still count, in
    /// seconds; later records go to the dead-letter topic as `late`. Results trail the newest data
    /// by this much.
    pub lateness_s: u64,
    /// Longest a batch collects records before its transaction commits, in milliseconds.
    pub commit_interval_ms: u64,
    /// Most input records in one transaction.
    pub max_batch_records: usize,
    /// This instance's stable name (part of its transactional id); unset = the host name, which
    /// is the pod name in the chart's StatefulSet.
    pub instance: Option<String>,
    /// Partitions of topics the processor creates when missing.
    pub partitions: i32,
    /// Replication factor of topics the processor creates; unset = the broker's default.
    pub replication_factor: Option<i32>,
    /// Kafka's limit on an open transaction, in milliseconds.
    pub transaction_timeout_ms: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            lateness_s: 60,
            commit_interval_ms: 1000,
            max_batch_records: 5000,
            instance: None,
            partitions: 6,
            replication_factor: None,
            transaction_timeout_ms: 60_000,
        }
    }
}

/// Settings of `geostream sink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Most records in one bulk request.
    pub batch_max_records: usize,
    /// Most bytes (Kafka record values) in one bulk request.
    pub batch_max_bytes: u64,
    /// How long a batch waits for more records after its first one, in milliseconds.
    pub linger_ms: u64,
    /// Most bulk requests in flight at once. The sink holds at most this many batches plus the
    /// one it is reading until they are written; offsets are still committed in order.
    pub max_in_flight: usize,
    /// Longest wait between retries of 429/5xx items or an unreachable engine, in milliseconds.
    /// Items are retried until they settle; their offsets are not committed meanwhile.
    pub max_backoff_ms: u64,
    /// Timeout of one request to the search engine, in milliseconds.
    pub request_timeout_ms: u64,
    /// `number_of_replicas` in the index templates; unset = the engine's default.
    pub index_replicas: Option<u32>,
    /// Most events per batch of the event outputs: also the most a crash can deliver twice.
    pub outputs_batch_max_records: usize,
    /// Directory of mounted secrets named by outputs (`secret_ref`, `password_ref`);
    /// `GEOSTREAM_SECRET_<NAME>` variables are the fallback.
    pub secrets_dir: Option<PathBuf>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            batch_max_records: 5000,
            batch_max_bytes: 8 * 1024 * 1024,
            linger_ms: 200,
            max_in_flight: 2,
            max_backoff_ms: 30_000,
            request_timeout_ms: 60_000,
            index_replicas: None,
            outputs_batch_max_records: 100,
            secrets_dir: None,
        }
    }
}

/// Settings of `geostream ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the HTTP push receiver (`POST /v1/push/<tenant>/<feed>`).
    pub listen: String,
    /// Largest push body for feeds that set no `max_body_bytes`.
    pub max_body_bytes: u64,
    /// Bound of the disk spool: unacknowledged bytes before sources are held back.
    pub spool_max_bytes: u64,
    /// Size of one spool segment file.
    pub spool_segment_bytes: u64,
    /// Partitions of `<tenant>.observations` when ingest creates it.
    pub partitions: i32,
    /// Replication factor of topics ingest creates; unset = the broker's default.
    pub replication_factor: Option<i32>,
    /// Directory of mounted secrets named by feed specs (`token_ref`, `password_ref`, ...);
    /// `GEOSTREAM_SECRET_<NAME>` variables are the fallback.
    pub secrets_dir: Option<PathBuf>,
    /// Records in flight to Kafka at once.
    pub max_in_flight: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8088".into(),
            max_body_bytes: 16 * 1024 * 1024,
            spool_max_bytes: 2 * 1024 * 1024 * 1024,
            spool_segment_bytes: 64 * 1024 * 1024,
            partitions: 6,
            replication_factor: None,
            secrets_dir: None,
            max_in_flight: 50_000,
        }
    }
}

/// Kafka client settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// Extra librdkafka properties (e.g. `security.protocol`), passed through unchanged.
    pub properties: BTreeMap<String, String>,
    /// A file holding the SASL password (a mounted secret), read at start and passed to the client
    /// as `sasl.password`; keeps the password out of the config file and the environment.
    pub sasl_password_file: Option<PathBuf>,
}

/// Search engine settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Base URL, e.g. `http://127.0.0.1:9200`; unset means the stage runs without a search engine.
    pub url: Option<String>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password; never printed.
    pub password: Option<String>,
}

/// Telemetry endpoint settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the `/metrics`, `/healthz` and `/readyz` server.
    pub listen: String,
}

/// Log output settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `geostream=debug,rdkafka=warn`; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tenant: None,
            topic_prefix: String::new(),
            data_dir: PathBuf::from("/var/lib/geostream"),
            kafka: KafkaConfig::default(),
            elasticsearch: SearchConfig::default(),
            telemetry: TelemetryConfig::default(),
            log: LogConfig::default(),
            ingest: IngestConfig::default(),
            process: ProcessConfig::default(),
            sink: SinkConfig::default(),
            outputs: Vec::new(),
            api: ApiConfig::default(),
            operator: OperatorConfig::default(),
            archive: ArchiveConfig::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self { bootstrap: "127.0.0.1:9092".into(), properties: BTreeMap::new(), sasl_password_file: None }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { listen: "0.0.0.0:9464".into() }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Why configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong shape.
    #[error("configuration could not be read: {0}")]
    Load(String),
    /// Values were read but are not usable; every problem is listed.
    #[error("configuration is invalid:\n{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

/// One invalid value: which key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `kafka.bootstrap`.
    pub key: String,
    /// What is wrong with the value.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  - {}: {}\n    fix: {}", self.key, self.problem, self.fix)
    }
}

fn format_problems(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Settings that passed validation, with the parsed values stages need.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The raw configuration.
    pub config: Config,
    /// The parsed tenant id.
    pub tenant: TenantId,
    /// Topic and index naming for this deployment.
    pub naming: Naming,
    /// The parsed telemetry address.
    pub telemetry_listen: SocketAddr,
    /// The parsed push receiver address.
    pub ingest_listen: SocketAddr,
    /// The validated event outputs (empty: none configured).
    pub outputs: Vec<geostream_outputs::OutputSpec>,
    /// The parsed API address.
    pub api_listen: SocketAddr,
}

impl Config {
    /// Layers defaults, the optional file, and the environment (`env` is the process environment in
    /// production and a fixed list in tests).
    pub fn load(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist or is not a file (given with --config or GEOSTREAM_CONFIG)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env);
        figment.extract().map_err(|e| ConfigError::Load(describe_figment_error(e)))
    }

    /// The environment provider for `GEOSTREAM_*`, restricted to configuration keys.
    pub fn env_provider() -> Env {
        Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            // Depending on figment's order of filter and split the key may still hold `__`.
            let top = key.as_str().split('.').next().unwrap_or_default();
            let top = top.split("__").next().unwrap_or_default();
            // Keys are not lowercased yet at this point.
            TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        })
    }

    /// Checks every value and returns all problems together.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let mut problems = Vec::new();
        let tenant = match &self.tenant {
            None => {
                problems.push(Problem {
                    key: "tenant".into(),
                    problem: "not set; every stage serves exactly one tenant".into(),
                    fix: "set `tenant = \"acme\"` in the config file or GEOSTREAM_TENANT=acme".into(),
                });
                None
            }
            Some(raw) => match raw.parse::<TenantId>() {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(Problem {
                        key: "tenant".into(),
                        problem: e.to_string(),
                        fix: format!("use a lowercase DNS label, e.g. \"{}\"", suggest_tenant(raw)),
                    });
                    None
                }
            },
        };
        let naming = match Naming::new(&self.topic_prefix) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(Problem {
                    key: "topic_prefix".into(),
                    problem: e.to_string(),
                    fix: "use only letters, digits, '.', '_' and '-' (or leave it empty)".into(),
                });
                None
            }
        };
        check_bootstrap(&self.kafka.bootstrap, &mut problems);
        if self.kafka.sasl_password_file.is_some() && self.kafka.properties.contains_key("sasl.password") {
            problems.push(Problem {
                key: "kafka.sasl_password_file".into(),
                problem: "both kafka.sasl_password_file and kafka.properties.\"sasl.password\" are set; which one \
                          holds the password would be a guess"
                    .into(),
                fix: "keep one of them (kafka.sasl_password_file for a mounted secret)".into(),
            });
        }
        if let Some(url) = &self.elasticsearch.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(Problem {
                key: "elasticsearch.url".into(),
                problem: format!("{url:?} is not an http:// or https:// URL"),
                fix: "give the full base URL, e.g. http://127.0.0.1:9200".into(),
            });
        }
        if self.elasticsearch.password.is_some() && self.elasticsearch.username.is_none() {
            problems.push(Problem {
                key: "elasticsearch.username".into(),
                problem: "a password is set but no username".into(),
                fix: "set elasticsearch.username (GEOSTREAM_ELASTICSEARCH__USERNAME) too".into(),
            });
        }
        let op = &self.operator;
        match (op.usage_source.as_str(), &op.prometheus_url) {
            ("node-proxy", _) | ("prometheus", Some(_)) => {}
            ("prometheus", None) => problems.push(Problem {
                key: "operator.prometheus_url".into(),
                problem: "usage_source is prometheus but no URL is set".into(),
                fix: "set operator.prometheus_url, e.g. http://prometheus-server.monitoring:9090".into(),
            }),
            (other, _) => problems.push(Problem {
                key: "operator.usage_source".into(),
                problem: format!("{other:?} is not a usage source"),
                fix: "use \"node-proxy\" or \"prometheus\"".into(),
            }),
        }
        if op.interval_s == 0 || op.lease_duration_s < 5 {
            problems.push(Problem {
                key: "operator.interval_s / operator.lease_duration_s".into(),
                problem: "the interval must be positive and a lease must last at least 5 s".into(),
                fix: "e.g. interval_s = 60, lease_duration_s = 15".into(),
            });
        }
        let telemetry_listen = match self.telemetry.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(Problem {
                    key: "telemetry.listen".into(),
                    problem: format!("{:?} is not an address: {e}", self.telemetry.listen),
                    fix: "use ip:port, e.g. 0.0.0.0:9464".into(),
                });
                None
            }
        };
        let ingest_listen = match self.ingest.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(Problem {
                    key: "ingest.listen".into(),
                    problem: format!("{:?} is not an address: {e}", self.ingest.listen),
                    fix: "use ip:port, e.g. 0.0.0.0:8088".into(),
                });
                None
            }
        };
        let ig = &self.ingest;
        let mut positive = |key: &str, ok: bool, fix: &str| {
            if !ok {
                problems.push(Problem {
                    key: format!("ingest.{key}"),
                    problem: "must be positive".into(),
                    fix: fix.into(),
                });
            }
        };
        positive("max_body_bytes", ig.max_body_bytes > 0, "e.g. 16777216 (16 MiB)");
        positive("spool_segment_bytes", ig.spool_segment_bytes > 0, "e.g. 67108864 (64 MiB)");
        positive("partitions", ig.partitions > 0, "e.g. 6; more partitions let more processors share the load");
        positive("max_in_flight", ig.max_in_flight > 0, "e.g. 50000");
        positive("replication_factor", ig.replication_factor.is_none_or(|r| r > 0), "e.g. 3, or leave it unset");
        let pr = &self.process;
        for (key, ok, fix) in [
            ("commit_interval_ms", pr.commit_interval_ms > 0, "e.g. 1000"),
            ("max_batch_records", pr.max_batch_records > 0, "e.g. 5000"),
            ("partitions", pr.partitions > 0, "e.g. 6"),
            ("replication_factor", pr.replication_factor.is_none_or(|r| r > 0), "e.g. 3, or leave it unset"),
            (
                "transaction_timeout_ms",
                pr.transaction_timeout_ms >= 2 * pr.commit_interval_ms.max(1000),
                "e.g. 60000; at least twice commit_interval_ms",
            ),
        ] {
            if !ok {
                problems.push(Problem {
                    key: format!("process.{key}"),
                    problem: "is out of range".into(),
                    fix: fix.into(),
                });
            }
        }
        let sk = &self.sink;
        for (key, ok, fix) in [
            ("batch_max_records", sk.batch_max_records > 0, "e.g. 5000"),
            (
                "batch_max_bytes",
                sk.batch_max_bytes > 0,
                "e.g. 8388608 (8 MiB); keep it below the engine's http.max_content_length",
            ),
            ("max_in_flight", sk.max_in_flight > 0, "e.g. 2; 1 writes one batch at a time"),
            ("max_backoff_ms", sk.max_backoff_ms > 0, "e.g. 30000"),
            ("request_timeout_ms", sk.request_timeout_ms > 0, "e.g. 60000"),
            ("outputs_batch_max_records", sk.outputs_batch_max_records > 0, "e.g. 100"),
        ] {
            if !ok {
                problems.push(Problem {
                    key: format!("sink.{key}"),
                    problem: "must be positive".into(),
                    fix: fix.into(),
                });
            }
        }
        if ig.spool_max_bytes < ig.spool_segment_bytes.saturating_mul(2) {
            problems.push(Problem {
                key: "ingest.spool_max_bytes".into(),
                problem: format!(
                    "{} is less than two segments ({} bytes each), so the spool could not roll",
                    ig.spool_max_bytes, ig.spool_segment_bytes
                ),
                fix:
                    "raise ingest.spool_max_bytes (the volume's free space minus a margin) or lower spool_segment_bytes"
                        .into(),
            });
        }
        let outputs = match geostream_outputs::spec::validate(&self.outputs) {
            Ok(specs) => specs,
            Err(found) => {
                problems.extend(found.into_iter().map(|p| Problem { key: p.key, problem: p.problem, fix: p.fix }));
                Vec::new()
            }
        };
        let api_listen = match self.api.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(Problem {
                    key: "api.listen".into(),
                    problem: format!("{:?} is not an address: {e}", self.api.listen),
                    fix: "use ip:port, e.g. 0.0.0.0:8080".into(),
                });
                None
            }
        };
        if !self.api.tokens.is_empty() && self.api.tokens_file.is_some() {
            problems.push(Problem {
                key: "api.tokens".into(),
                problem: "both api.tokens and api.tokens_file are set; which one holds the tokens would be a guess"
                    .into(),
                fix: "keep one of them (api.tokens_file for a mounted secret)".into(),
            });
        }
        for (tenant, tokens) in &self.api.tokens {
            if let Err(e) = tenant.parse::<TenantId>() {
                problems.push(Problem {
                    key: format!("api.tokens.{tenant}"),
                    problem: e.to_string(),
                    fix: "key the tokens by tenant id, e.g. tokens.acme = [\"...\"]".into(),
                });
            } else if tokens.iter().any(|t| t.trim().is_empty() || t.chars().any(char::is_whitespace)) {
                problems.push(Problem {
                    key: format!("api.tokens.{tenant}"),
                    problem: "a token is empty or contains whitespace".into(),
                    fix: "use tokens without spaces, e.g. from `openssl rand -hex 32`".into(),
                });
            }
        }
        if self.api.request_timeout_ms == 0 {
            problems.push(Problem {
                key: "api.request_timeout_ms".into(),
                problem: "must be positive".into(),
                fix: "e.g. 30000".into(),
            });
        }
        if self.api.max_body_bytes == 0 {
            problems.push(Problem {
                key: "api.max_body_bytes".into(),
                problem: "must be positive; no registry write would fit".into(),
                fix: "e.g. 16777216 (16 MiB)".into(),
            });
        }
        if self.api.live_tail == 0 {
            problems.push(Problem {
                key: "api.live_tail".into(),
                problem: "must be positive; the live layer could hold nothing".into(),
                fix: "e.g. 100000".into(),
            });
        }
        match (&self.api.tls_cert_file, &self.api.tls_key_file) {
            (Some(_), None) | (None, Some(_)) => {
                let missing = if self.api.tls_cert_file.is_none() { "api.tls_cert_file" } else { "api.tls_key_file" };
                problems.push(Problem {
                    key: missing.into(),
                    problem: "is unset while the other half of the API's TLS pair is set".into(),
                    fix: "set both api.tls_cert_file and api.tls_key_file (PEM files), or neither for plain HTTP"
                        .into(),
                });
            }
            _ => {}
        }
        self.validate_archive(&mut problems);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(Problem {
                key: "log.level".into(),
                problem: format!("{:?} is not a log filter: {e}", self.log.level),
                fix: "use a level (error, warn, info, debug, trace) or directives like geostream=debug".into(),
            });
        }
        match (tenant, naming, telemetry_listen, ingest_listen, api_listen) {
            (Some(tenant), Some(naming), Some(telemetry_listen), Some(ingest_listen), Some(api_listen))
                if problems.is_empty() =>
            {
                Ok(Validated {
                    config: self.clone(),
                    tenant,
                    naming,
                    telemetry_listen,
                    ingest_listen,
                    api_listen,
                    outputs,
                })
            }
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    /// The archive's URL: `archive.url`, or the `archive` directory on the stage's volume.
    pub fn archive_url(&self) -> String {
        self.archive.url.clone().unwrap_or_else(|| format!("file://{}", self.data_dir.join("archive").display()))
    }

    fn validate_archive(&self, problems: &mut Vec<Problem>) {
        let a = &self.archive;
        if !a.enabled && self.api.backend != ApiBackend::Archive {
            return;
        }
        let url = self.archive_url();
        let mut problem = |key: &str, problem: String, fix: &str| {
            problems.push(Problem { key: format!("archive.{key}"), problem, fix: fix.into() });
        };
        let url_fix = "use file:///absolute/path (a volume) or s3://bucket/prefix";
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                problem("url", format!("{url:?} is not an absolute file:// path"), url_fix);
            }
        } else if let Some(rest) = url.strip_prefix("s3://") {
            if rest.split('/').next().is_none_or(str::is_empty) {
                problem("url", format!("{url:?} names no bucket"), url_fix);
            }
        } else {
            problem("url", format!("{url:?} is neither a file:// nor an s3:// URL"), url_fix);
        }
        if let Some(e) = &a.s3.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            problem(
                "s3.endpoint",
                format!("{e:?} is not an http:// or https:// URL"),
                "e.g. http://minio.storage:9000",
            );
        } else if a.s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) && !a.s3.allow_http {
            problem(
                "s3.allow_http",
                "the endpoint is plain http:// but allow_http is false".into(),
                "set archive.s3.allow_http = true, or use https",
            );
        }
        for (key, value, file) in [
            ("s3.access_key_id", &a.s3.access_key_id, &a.s3.access_key_id_file),
            ("s3.secret_access_key", &a.s3.secret_access_key, &a.s3.secret_access_key_file),
        ] {
            if value.is_some() && file.is_some() {
                problem(
                    key,
                    format!("both {key} and {key}_file are set"),
                    "keep one of them (the _file for a mounted secret)",
                );
            }
        }
        let has = |v: &Option<String>, f: &Option<PathBuf>| v.is_some() || f.is_some();
        if has(&a.s3.access_key_id, &a.s3.access_key_id_file)
            != has(&a.s3.secret_access_key, &a.s3.secret_access_key_file)
        {
            problem(
                "s3.secret_access_key",
                "only one of the access key id and the secret access key is set".into(),
                "set both (or neither, to use AWS_* variables or instance credentials)",
            );
        }
        for (key, ok, fix) in [
            ("flush_max_records", a.flush_max_records > 0, "e.g. 100000"),
            ("flush_max_bytes", a.flush_max_bytes > 0, "e.g. 67108864 (64 MiB); the stage's memory must hold it"),
            ("flush_max_age_s", a.flush_max_age_s > 0, "e.g. 300"),
            ("compaction_interval_s", a.compaction_interval_s > 0, "e.g. 300"),
            ("compaction_target_bytes", a.compaction_target_bytes > 0, "e.g. 268435456 (256 MiB)"),
        ] {
            if !ok {
                problem(key, "must be positive".into(), fix);
            }
        }
    }

    /// librdkafka properties: `kafka.properties` plus `bootstrap.servers`.
    pub fn kafka_properties(&self) -> BTreeMap<String, String> {
        let mut p = self.kafka.properties.clone();
        p.insert("bootstrap.servers".into(), self.kafka.bootstrap.clone());
        p
    }

    /// The effective configuration as TOML with secrets masked, for `geostream config print`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        if shown.elasticsearch.password.is_some() {
            shown.elasticsearch.password = Some("<redacted>".into());
        }
        if shown.archive.s3.secret_access_key.is_some() {
            shown.archive.s3.secret_access_key = Some("<redacted>".into());
        }
        geostream_outputs::spec::redact(&mut shown.outputs);
        for tokens in shown.api.tokens.values_mut() {
            for t in tokens.iter_mut() {
                *t = "<redacted>".into();
            }
        }
        for (key, value) in shown.kafka.properties.iter_mut() {
            if key.contains("password") || key.contains("secret") || key.contains("token") {
                *value = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown)
    }
}

fn check_bootstrap(bootstrap: &str, problems: &mut Vec<Problem>) {
    let bad: Vec<&str> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|hp| match hp.rsplit_once(':') {
            Some((host, port)) => host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0),
            None => true,
        })
        .collect();
    if bootstrap.trim().is_empty() || !bad.is_empty() {
        problems.push(Problem {
            key: "kafka.bootstrap".into(),
            problem: if bootstrap.trim().is_empty() {
                "empty".into()
            } else {
                format!("{} is not host:port", bad.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join(", "))
            },
            fix: "give a comma-separated host:port list, e.g. kafka-0.kafka:9092,kafka-1.kafka:9092".into(),
        });
    }
}

fn suggest_tenant(raw: &str) -> String {
    let mut s: String = raw.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s = s.trim_matches('-').to_owned();
    s.truncate(TenantId::MAX_LEN);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "acme".into() } else { s }
}

/// figment's errors already name the key; add where the value came from in words an operator knows.
fn describe_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { String::from("(top level)") } else { e.path.join(".") };
            let from = match &e.metadata {
                Some(m) => match &m.source {
                    Some(source) => format!("{} {source}", m.name),
                    None => m.name.to_string(),
                },
                None => "defaults".into(),
            };
            format!("key `{key}` (from {from}): {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    // figment's Jail closures return its own (large) error type; that is its API, not ours.
    #![allow(clippy::unwrap_used, clippy::result_large_err)]
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_need_only_a_tenant() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("tenant: not set"), "{err}");
        assert!(err.contains("GEOSTREAM_TENANT"), "{err}");
        let c = Config { tenant: Some("acme".into()), ..Config::default() };
        let v = c.validate().unwrap();
        assert_eq!(v.tenant.as_str(), "acme");
    }

    #[test]
    fn file_then_env_layering() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "geostream.toml",
                "tenant = \"ports\"\ntopic_prefix = \"prod.\"\n[kafka]\nbootstrap = \"k1:9092,k2:9092\"\n",
            )?;
            jail.set_env("GEOSTREAM_KAFKA__BOOTSTRAP", "k9:9093");
            jail.set_env("GEOSTREAM_LOG__FORMAT", "json");
            jail.set_env("GEOSTREAM_CACHE", "/not/config");
            let c = Config::load(Some(Path::new("geostream.toml")), Config::env_provider()).unwrap();
            assert_eq!(c.tenant.as_deref(), Some("ports"));
            assert_eq!(c.topic_prefix, "prod.");
            assert_eq!(c.kafka.bootstrap, "k9:9093", "environment overrides the file");
            assert_eq!(c.log.format, LogFormat::Json);
            c.validate().unwrap();
            Ok(())
        });
    }

    #[test]
    fn unknown_file_key_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file("g.toml", "tenant = \"a\"\n[kafka]\nbootstrapp = \"x:1\"\n")?;
            let err = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap_err().to_string();
            assert!(err.contains("bootstrapp"), "{err}");
            assert!(err.contains("g.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_in_env_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("GEOSTREAM_LOG__FORMAT", "yaml");
            let err = Config::load(None, Config::env_provider()).unwrap_err().to_string();
            assert!(err.contains("log.format"), "{err}");
            assert!(err.contains("GEOSTREAM_"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Config::load(Some(Path::new("/nonexistent/geostream.toml")), Config::env_provider())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/geostream.toml does not exist"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_fix() {
        let c = Config {
            tenant: Some("Acme Ports".into()),
            kafka: KafkaConfig { bootstrap: "broker,:9092,ok:1".into(), ..KafkaConfig::default() },
            elasticsearch: SearchConfig {
                url: Some("localhost:9200".into()),
                username: None,
                password: Some("p".into()),
            },
            telemetry: TelemetryConfig { listen: "9464".into() },
            log: LogConfig { level: "info,=[".into(), format: LogFormat::Text },
            ..Config::default()
        };
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tenant",
                "kafka.bootstrap",
                "elasticsearch.url",
                "elasticsearch.username",
                "telemetry.listen",
                "log.level"
            ]
        );
        assert!(problems[0].fix.contains("\"acme-ports\""), "{:?}", problems[0]);
        assert!(problems[1].problem.contains("\"broker\"") && problems[1].problem.contains("\":9092\""));
        assert!(!problems[1].problem.contains("ok:1"));
    }

    #[test]
    fn sink_section_layers_and_validates() {
        Jail::expect_with(|jail| {
            jail.create_file("g.toml", "tenant = \"a\"\n[sink]\nbatch_max_records = 100\nlinger_ms = 50\n")?;
            jail.set_env("GEOSTREAM_SINK__MAX_BACKOFF_MS", "1000");
            let c = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap();
            assert_eq!((c.sink.batch_max_records, c.sink.linger_ms, c.sink.max_backoff_ms), (100, 50, 1000));
            assert_eq!(c.sink.batch_max_bytes, SinkConfig::default().batch_max_bytes);
            c.validate().unwrap();
            Ok(())
        });
        let mut c = Config { tenant: Some("a".into()), ..Config::default() };
        c.sink.batch_max_records = 0;
        c.sink.request_timeout_ms = 0;
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["sink.batch_max_records", "sink.request_timeout_ms"]);
    }

    #[test]
    fn outputs_load_from_the_file_validate_with_keys_and_print_masked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                r#"tenant = "a"
[[outputs]]
name = "ops"
max_attempts = 5
[outputs.filter]
kinds = ["enter", "exit"]
[outputs.webhook]
url = "https://ops.example/hooks"
secret_ref = "ops-key"
headers = { Authorization = "Bearer hunter2" }

[[outputs]]
name = "alerts"
[outputs.mqtt]
url = "mqtt://127.0.0.1:1883"
topic = "geostream/{tenant}/{kind}/{track}"
"#,
            )?;
            let c = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap();
            let v = c.validate().unwrap();
            assert_eq!(v.outputs.len(), 2);
            assert_eq!((v.outputs[0].max_attempts, v.outputs[1].max_attempts), (5, 0));
            let shown = c.to_redacted_toml().unwrap();
            assert!(!shown.contains("hunter2") && shown.contains("ops-key"), "{shown}");
            let back: Config = toml::from_str(&shown).unwrap();
            assert_eq!(back.outputs.len(), 2);
            Ok(())
        });
        let mut c = Config { tenant: Some("a".into()), ..Config::default() };
        c.outputs = vec![toml::from_str("name = \"x\"\n[kafka]\ntopic = \"a b\"\n").unwrap()];
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["outputs[0].kafka.topic"]);
    }

    #[test]
    fn kafka_sasl_over_tls_loads_from_file_and_env_and_refuses_two_passwords() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "tenant = \"a\"\n[kafka]\nbootstrap = \"k1:9093\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
                 \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"a\"\n\"ssl.ca.location\" = \"/etc/kafka/ca.pem\"\n",
            )?;
            jail.set_env("GEOSTREAM_KAFKA__SASL_PASSWORD_FILE", "/run/secrets/kafka/password");
            let c = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap();
            assert_eq!(c.kafka.sasl_password_file.as_deref(), Some(Path::new("/run/secrets/kafka/password")));
            let v = c.validate().unwrap();
            let p = v.config.kafka_properties();
            assert_eq!((p["security.protocol"].as_str(), p["sasl.mechanism"].as_str()), ("SASL_SSL", "SCRAM-SHA-512"));
            assert!(!p.contains_key("sasl.password"), "the file is read at start, not at load");
            Ok(())
        });
        let mut c = Config { tenant: Some("a".into()), ..Config::default() };
        c.kafka.sasl_password_file = Some("/run/secrets/kafka/password".into());
        c.kafka.properties.insert("sasl.password".into(), "hunter2".into());
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["kafka.sasl_password_file"]);
        let shown = c.to_redacted_toml().unwrap();
        assert!(!shown.contains("hunter2") && shown.contains("/run/secrets/kafka/password"), "{shown}");
    }

    #[test]
    fn api_section_layers_and_validates() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "tenant = \"a\"\n[api]\nlisten = \"127.0.0.1:9000\"\n[api.tokens]\na = [\"t1\"]\n",
            )?;
            jail.set_env("GEOSTREAM_API__ADMIN_TOKEN_FILE", "/run/secrets/admin");
            let c = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap();
            assert_eq!(c.api.tokens["a"], ["t1"]);
            assert_eq!(c.api.admin_token_file.as_deref(), Some(Path::new("/run/secrets/admin")));
            let v = c.validate().unwrap();
            assert_eq!(v.api_listen.port(), 9000);
            Ok(())
        });
        assert_eq!(
            Config { tenant: Some("a".into()), ..Config::default() }.validate().unwrap().api_listen.port(),
            8080
        );
        let mut c = Config { tenant: Some("a".into()), ..Config::default() };
        c.api.listen = "8080".into();
        c.api.tokens.insert("Not A Tenant".into(), vec!["t".into()]);
        c.api.tokens.insert("b".into(), vec!["has space".into()]);
        c.api.tokens_file = Some("/x".into());
        c.api.request_timeout_ms = 0;
        c.api.max_body_bytes = 0;
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "api.listen",
                "api.tokens",
                "api.tokens.Not A Tenant",
                "api.tokens.b",
                "api.request_timeout_ms",
                "api.max_body_bytes"
            ]
        );
    }

    #[test]
    fn archive_section_layers_validates_and_masks_its_secret() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "tenant = \"a\"\n[archive]\nenabled = true\nurl = \"s3://bucket/geo\"\n[archive.s3]\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\nallow_http = true\naccess_key_id = \"k\"\n",
            )?;
            jail.set_env("GEOSTREAM_ARCHIVE__S3__SECRET_ACCESS_KEY", "hunter2");
            jail.set_env("GEOSTREAM_ARCHIVE__FLUSH_MAX_AGE_S", "5");
            let c = Config::load(Some(Path::new("g.toml")), Config::env_provider()).unwrap();
            assert_eq!(c.archive.s3.secret_access_key.as_deref(), Some("hunter2"));
            assert_eq!(c.archive.flush_max_age_s, 5);
            c.validate().unwrap();
            let shown = c.to_redacted_toml().unwrap();
            assert!(!shown.contains("hunter2") && shown.contains("s3://bucket/geo"), "{shown}");
            Ok(())
        });
        let mut c = Config { tenant: Some("a".into()), data_dir: "/vol".into(), ..Config::default() };
        assert_eq!(c.archive_url(), "file:///vol/archive");
        c.validate().unwrap();
        c.archive.enabled = true;
        c.validate().unwrap();
        c.archive.url = Some("gs://b".into());
        c.archive.s3.endpoint = Some("http://minio:9000".into());
        c.archive.s3.access_key_id = Some("k".into());
        c.archive.s3.access_key_id_file = Some("/run/k".into());
        c.archive.flush_max_records = 0;
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "archive.url",
                "archive.s3.allow_http",
                "archive.s3.access_key_id",
                "archive.s3.secret_access_key",
                "archive.flush_max_records"
            ]
        );
        c.archive.enabled = false;
        c.validate().unwrap();
        // An API answering from the archive needs a usable archive URL even where this process
        // does not archive; and its live layer must hold something.
        c.api.backend = ApiBackend::Archive;
        c.api.live_tail = 0;
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"api.live_tail") && keys.contains(&"archive.url"), "{keys:?}");
        c.api.backend = ApiBackend::Auto;
        c.api.live_tail = 10;
        c.api.tls_cert_file = Some("/run/tls/tls.crt".into());
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else { panic!("expected Invalid") };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["api.tls_key_file"], "TLS needs both files");
        c.api.tls_key_file = Some("/run/tls/tls.key".into());
        c.validate().unwrap();
    }

    #[test]
    fn the_suggested_tenant_is_always_valid() {
        for raw in ["Acme Ports", "___", &"Very Long Harbour Authority Name ".repeat(3), "Ünïcode-Tenant"] {
            let s = suggest_tenant(raw);
            assert!(s.parse::<TenantId>().is_ok(), "{raw:?} -> {s:?}");
        }
    }

    #[test]
    fn print_masks_secrets() {
        let mut c = Config { tenant: Some("a".into()), ..Config::default() };
        c.elasticsearch.username = Some("elastic".into());
        c.elasticsearch.password = Some("hunter2".into());
        c.kafka.properties.insert("sasl.password".into(), "s3cret".into());
        c.kafka.properties.insert("security.protocol".into(), "SASL_SSL".into());
        c.api.tokens.insert("a".into(), vec!["tok-read-1".into()]);
        let shown = c.to_redacted_toml().unwrap();
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret") && !shown.contains("tok-read-1"), "{shown}");
        assert!(shown.contains("SASL_SSL") && shown.contains("elastic"), "{shown}");
        // What is printed must load back as configuration (minus the secrets).
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.kafka.bootstrap, c.kafka.bootstrap);
    }
}

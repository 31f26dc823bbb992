//! `geostream`: the one binary of the pipeline, with a subcommand per stage (ingest, process, sink,
//! api, operator), the all-in-one `standalone`/`demo`, and tools (`config`, `feeds`, `crdgen`).
//!
//! Owns: argument parsing, configuration loading and validation, logging setup and wiring stages
//! together. Must not: contain stage logic; each stage lives in its own crate and this binary only
//! starts it. Nothing pretends to work: a failure exits non-zero with a code that says which kind.

mod analyze;
mod config;
mod config_reference;
mod decode;
mod demo;
mod feeds_cli;
mod registry_cli;
mod standalone;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::{Config, ConfigError, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "geostream", version, about = "Streaming pipeline for IoT geospatial data on Kafka")]
struct Cli {
    /// Configuration file (TOML); `GEOSTREAM_*` environment variables override it.
    #[arg(long, short = 'c', global = true, env = "GEOSTREAM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read feed sources, normalise, produce Observations to Kafka.
    Ingest,
    /// Run stream analytics: observations to events and aggregates.
    Process,
    /// Write observations, events and aggregates to Elasticsearch/OpenSearch and the archive.
    Sink,
    /// Serve queries, live push, the registry and the map dashboard.
    Api,
    /// Run the Kubernetes operator.
    Operator,
    /// All stages in one process on an embedded broker.
    Standalone(StandaloneArgs),
    /// `standalone` plus the sample feeds of `feeds/`, replayed in a loop, with example fences
    /// and analytics, a live status line and a summary.
    Demo(demo::DemoArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the feed registry.
    #[command(subcommand)]
    Feeds(feeds_cli::FeedsCommand),
    /// Manage the fence registry (`<tenant>.fences`) the processor evaluates.
    #[command(subcommand)]
    Fences(registry_cli::RegistryCommand),
    /// Manage the analytic registry (`<tenant>.analytics`) the processor runs.
    #[command(subcommand)]
    Analytics(registry_cli::RegistryCommand),
    /// Kafka administration for this tenant.
    #[command(subcommand)]
    Kafka(KafkaCommand),
    /// Print the operator's CustomResourceDefinitions as YAML.
    Crdgen,
    /// Print the API's OpenAPI document (the same as its `/openapi.json`).
    Openapi,
    /// Decode a file offline: observations as GeoJSON lines on stdout, a summary on stderr.
    Decode(decode::DecodeArgs),
    /// Run analytics over observations offline: events and aggregates as GeoJSON lines on stdout.
    Analyze(analyze::AnalyzeArgs),
}

/// What `standalone` (and `demo`) take besides the configuration.
#[derive(Debug, clap::Args)]
struct StandaloneArgs {
    /// Where the embedded broker, spool, checkpoints and archive live (default: `data_dir` of the
    /// configuration).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also sink to this Elasticsearch/OpenSearch, and answer the API from it.
    #[arg(long, value_name = "URL")]
    elasticsearch: Option<String>,
    /// Stop by itself after this long (e.g. `90s`, `5m`), as Ctrl-C would.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    exit_after: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment) with secrets masked.
    Print,
    /// Validate the configuration and exit non-zero listing every problem.
    Check,
    /// Print the configuration reference (every key, its type, default, environment variable and
    /// meaning) as Markdown: `docs/config.md`.
    Reference,
}

#[derive(Debug, Subcommand)]
enum KafkaCommand {
    /// Print the ACLs the tenant's principal needs to run every stage (and nothing of another
    /// tenant): `kafka-acls.sh` command lines to apply, or JSON.
    Acls {
        /// The tenant's Kafka principal, e.g. `User:acme`.
        #[arg(long)]
        principal: String,
        /// `commands` (shell lines for kafka-acls.sh) or `json`.
        #[arg(long, value_enum, default_value_t = AclFormat::Commands)]
        format: AclFormat,
        /// The admin client properties file the printed commands pass to kafka-acls.sh.
        #[arg(long, default_value = "admin.properties")]
        command_config: String,
        /// The operator's ACLs for this tenant instead: its registry topics only (one set per
        /// tenant the operator serves).
        #[arg(long)]
        operator: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AclFormat {
    Commands,
    Json,
}

/// Failures the binary reports; the exit code tells scripts which kind it was.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error(transparent)]
    Analyze(#[from] analyze::AnalyzeError),
    #[error(transparent)]
    Feeds(#[from] feeds_cli::FeedsError),
    #[error(transparent)]
    Registry(#[from] registry_cli::RegistryCliError),
    #[error(transparent)]
    Principal(#[from] geostream_kafka::acls::PrincipalError),
    #[error(transparent)]
    Ingest(#[from] geostream_ingest::stage::StageError),
    #[error(transparent)]
    Sink(#[from] geostream_sink::stage::StageError),
    #[error(transparent)]
    Process(#[from] geostream_processor::stage::StageError),
    #[error(transparent)]
    Outputs(#[from] geostream_outputs::OutputError),
    #[error(transparent)]
    Archive(#[from] geostream_archive::ArchiveError),
    #[error(transparent)]
    Api(#[from] geostream_api::stage::StageError),
    #[error(transparent)]
    Operator(#[from] geostream_operator::stage::StageError),
    #[error("standalone: {0}")]
    Broker(#[from] geostream_broker::BrokerError),
    #[error("`geostream {stage}` needs `{key}`: {fix}")]
    Missing { stage: &'static str, key: &'static str, fix: &'static str },
    #[error("demo: {0}")]
    Demo(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 78, // EX_CONFIG: the operator must change something, a restart won't help
            CliError::Decode(decode::DecodeError::Usage(_)) => 64, // EX_USAGE
            CliError::Decode(decode::DecodeError::Io { .. }) => 74, // EX_IOERR
            CliError::Decode(decode::DecodeError::Rejected(_)) => 1,
            CliError::Analyze(analyze::AnalyzeError::Usage(_)) => 64,
            CliError::Analyze(analyze::AnalyzeError::Io { .. }) => 74,
            CliError::Feeds(e) => e.exit_code(),
            CliError::Registry(e) => e.exit_code(),
            CliError::Principal(_) => 64, // EX_USAGE: the --principal argument
            CliError::Ingest(_) => 74,    // EX_IOERR: the volume or a port, not the config
            // The sink's start-up errors are client construction from configuration (URL, Kafka properties).
            CliError::Sink(_) | CliError::Missing { .. } => 78,
            // Outputs fail to start on their configuration only (a secret, a URL, Kafka properties).
            CliError::Outputs(_) => 78,
            // The archive's start-up errors are its URL, credentials or Kafka properties.
            CliError::Archive(_) => 78,
            // The processor's start-up errors are its volume (checkpoint directory) or its thread.
            CliError::Process(_) => 74,
            CliError::Api(geostream_api::stage::StageError::Client(_)) => 78,
            CliError::Api(geostream_api::stage::StageError::Listen { .. }) => 74,
            // A certificate or key file that cannot be read or used: configuration (or its Secret).
            CliError::Api(geostream_api::stage::StageError::Tls { .. }) => 78,
            // The archive could not be read at start: its volume or object store.
            CliError::Api(geostream_api::stage::StageError::Archive(_)) => 74,
            CliError::Operator(geostream_operator::stage::StageError::Catalog(_)) => 78,
            CliError::Operator(geostream_operator::stage::StageError::Client(_)) => 69,
            CliError::Operator(geostream_operator::stage::StageError::LostLease(_)) => 75, // EX_TEMPFAIL
            // The embedded broker's data dir (locked, unreadable, full) or its port.
            CliError::Broker(_) => 74,
            // The demo's catalog, manifest or samples cannot be read or decoded.
            CliError::Demo(_) => 66, // EX_NOINPUT
            CliError::Other(_) => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("geostream: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    // The offline decoder needs no configuration; a broken deployment config must not stop it.
    if let Command::Decode(args) = &cli.command {
        decode::run(args)?;
        return Ok(());
    }
    if let Command::Openapi = &cli.command {
        println!("{}", geostream_api::openapi::json());
        return Ok(());
    }
    if let Command::Config(ConfigCommand::Reference) = &cli.command {
        print!("{}", config_reference::markdown());
        return Ok(());
    }
    if let Command::Analyze(args) = &cli.command {
        let sql = geostream_sql::runner();
        analyze::run(args, Some(&*sql))?;
        return Ok(());
    }
    let mut cfg = Config::load(cli.config.as_deref(), Config::env_provider())?;
    if let Command::Demo(_) = &cli.command {
        // The demo runs with no configuration at all: its own tenant, and quiet logs so the
        // status line stays readable (a configured level or RUST_LOG still wins).
        cfg.tenant.get_or_insert_with(|| "demo".to_owned());
        // The samples are replayed in event-time order, so windows can close 10 s after their
        // end instead of the minute a real feed's stragglers need: aggregates show up sooner.
        if cfg.process.lateness_s == config::ProcessConfig::default().lateness_s {
            cfg.process.lateness_s = 10;
        }
        if cfg.log.level == config::LogConfig::default().level && std::env::var_os("RUST_LOG").is_none() {
            cfg.log.level = "warn".into();
        }
    }
    match cli.command {
        Command::Config(ConfigCommand::Print) => {
            let text = cfg.to_redacted_toml().map_err(|e| CliError::Other(format!("printing config: {e}")))?;
            print!("{text}");
            if let Err(err) = cfg.validate() {
                eprintln!("geostream: warning: {err}");
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let v = cfg.validate()?;
            println!(
                "configuration ok: tenant {} (observations topic {}, telemetry on {})",
                v.tenant,
                v.naming.topic(&v.tenant, geostream_model::TopicKind::Observations),
                v.telemetry_listen
            );
            if v.config.archive.enabled {
                println!(
                    "archive: {} (group {})",
                    v.config.archive_url(),
                    geostream_archive::consumer_group(&v.naming, &v.tenant)
                );
            }
            if !v.outputs.is_empty() {
                println!("outputs (group {}):", geostream_outputs::stage::consumer_group(&v.naming, &v.tenant));
                for o in &v.outputs {
                    println!("  {}", o.describe());
                }
            }
            Ok(())
        }
        Command::Kafka(KafkaCommand::Acls { principal, format, command_config, operator }) => {
            let v = cfg.validate()?;
            let acls = if operator {
                geostream_kafka::acls::operator_acls(&v.naming, &v.tenant, &principal)?
            } else {
                geostream_kafka::acls::tenant_acls(&v.naming, &v.tenant, &principal)?
            };
            match format {
                AclFormat::Json => println!("{}", acls_json(&acls)),
                AclFormat::Commands => print!("{}", acls_commands(&acls, &v.config.kafka.bootstrap, &command_config)),
            }
            Ok(())
        }
        Command::Crdgen => {
            let crds = geostream_operator::crd::yaml().map_err(|e| CliError::Other(format!("CRDs as YAML: {e}")))?;
            for (_, yaml) in crds {
                print!("---\n{yaml}");
            }
            Ok(())
        }
        command => {
            // Stages need a valid configuration before anything else; report it first so an operator
            // fixes config problems even while a stage is still being built.
            let mut valid = cfg.validate()?;
            read_kafka_password(&mut valid)?;
            init_logging(&valid.config);
            match command {
                Command::Ingest => run_ingest(&valid),
                Command::Process => run_process(&valid),
                Command::Sink => run_sink(&valid),
                Command::Api => run_api(&valid),
                Command::Operator => run_operator(&valid),
                Command::Standalone(args) => standalone::run(valid, args, None),
                Command::Demo(args) => {
                    let plan = demo::plan(&args.catalog, args.speed, args.max_pass)?;
                    let every = std::time::Duration::from_secs(args.status_every_s);
                    standalone::run(valid, args.run, Some((plan, every)))
                }
                Command::Feeds(cmd) => {
                    let client = geostream_ingest::registry::RegistryClient::new(
                        feeds_cli::client_properties(valid.config.kafka_properties()),
                        valid.naming.topic(&valid.tenant, geostream_model::TopicKind::Feeds),
                    );
                    let out = runtime()?.block_on(async {
                        if matches!(cmd, feeds_cli::FeedsCommand::Register(ref a) if !a.dry_run) {
                            client.ensure_topic().await.map_err(feeds_cli::FeedsError::from)?;
                        }
                        feeds_cli::run(cmd, &client).await
                    })?;
                    print!("{out}");
                    Ok(())
                }
                Command::Fences(cmd) => {
                    print!("{}", runtime()?.block_on(fences(&valid, cmd))?);
                    Ok(())
                }
                Command::Analytics(cmd) => {
                    print!("{}", runtime()?.block_on(analytics(&valid, cmd))?);
                    Ok(())
                }
                Command::Config(_)
                | Command::Kafka(_)
                | Command::Crdgen
                | Command::Decode(_)
                | Command::Analyze(_)
                | Command::Openapi => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// Runs a fence registry command (`geostream fences ...`, and the demo's fences).
async fn fences(valid: &config::Validated, cmd: registry_cli::RegistryCommand) -> Result<String, CliError> {
    let topic = geostream_processor::registry::RegistryTopic::new(
        feeds_cli::client_properties(valid.config.kafka_properties()),
        valid.naming.topic(&valid.tenant, geostream_model::TopicKind::Fences),
    );
    let load = |p: &std::path::Path| analyze::read_fence_specs(p).map_err(|e| e.to_string());
    let describe = |f: &geostream_model::FenceSpec| {
        let shape = match &f.geometry {
            geostream_model::FenceShape::Circle { radius_m, .. } => format!("circle {radius_m} m"),
            geostream_model::FenceShape::Geometry(_) => "polygon".to_owned(),
        };
        format!("{}\t{shape}{}", f.name, if f.enabled { "" } else { "\tdisabled" })
    };
    Ok(registry_cli::run(cmd, &topic, load, describe).await?)
}

/// Runs an analytic registry command (`geostream analytics ...`, and the demo's analytics).
async fn analytics(valid: &config::Validated, cmd: registry_cli::RegistryCommand) -> Result<String, CliError> {
    let topic = geostream_processor::registry::RegistryTopic::new(
        feeds_cli::client_properties(valid.config.kafka_properties()),
        valid.naming.topic(&valid.tenant, geostream_model::TopicKind::Analytics),
    );
    let load = |p: &std::path::Path| analyze::load_specs(p).map_err(|e| e.to_string());
    let describe = |a: &geostream_analytics::spec::AnalyticSpec| {
        format!("{}{}", a.analytic.name(), if a.enabled { "" } else { "\tdisabled" })
    };
    Ok(registry_cli::run(cmd, &topic, load, describe).await?)
}

/// Puts the SASL password from `kafka.sasl_password_file` into the client properties, so every
/// client a stage builds from `kafka_properties()` authenticates without the password ever being in
/// the config file or the environment.
fn read_kafka_password(valid: &mut config::Validated) -> Result<(), CliError> {
    let Some(path) = valid.config.kafka.sasl_password_file.clone() else { return Ok(()) };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Config(config::ConfigError::Invalid(vec![config::Problem {
            key: "kafka.sasl_password_file".into(),
            problem: format!("{} cannot be read: {e}", path.display()),
            fix: "mount the secret there or correct the path".into(),
        }]))
    })?;
    // Secrets written with `echo` or by editors end in a newline that is not part of the password.
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    valid.config.kafka.properties.insert("sasl.password".into(), password);
    Ok(())
}

/// Shell-quotes `arg` when it holds anything beyond the characters of Kafka names and principals.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "._-:/=,@+".contains(c)) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn acls_commands(acls: &[geostream_kafka::acls::AclBinding], bootstrap: &str, command_config: &str) -> String {
    let mut out = String::new();
    for b in acls {
        let mut words = vec![
            "kafka-acls.sh".to_owned(),
            "--bootstrap-server".to_owned(),
            shell_quote(bootstrap),
            "--command-config".to_owned(),
            shell_quote(command_config),
        ];
        words.extend(b.add_args().iter().map(|a| shell_quote(a)));
        out.push_str(&format!("# {}\n{}\n", b.why, words.join(" ")));
    }
    out
}

fn acls_json(acls: &[geostream_kafka::acls::AclBinding]) -> serde_json::Value {
    serde_json::Value::Array(
        acls.iter()
            .map(|b| {
                serde_json::json!({
                    "principal": b.principal,
                    "host": "*",
                    "permission": "ALLOW",
                    "resource_type": b.resource.as_str(),
                    "pattern_type": b.pattern.as_str().to_uppercase(),
                    "name": b.name,
                    "operations": b.operations.iter().map(|o| o.as_str().to_uppercase()).collect::<Vec<_>>(),
                    "why": b.why,
                })
            })
            .collect(),
    )
}

fn run_operator(valid: &config::Validated) -> Result<(), CliError> {
    let op = &valid.config.operator;
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "geostream-operator".into());
    let settings = geostream_operator::stage::OperatorSettings {
        kafka: feeds_cli::client_properties(valid.config.kafka_properties()),
        naming: valid.naming.clone(),
        catalog_dir: op.catalog_dir.clone(),
        prometheus_url: if op.usage_source == "prometheus" { op.prometheus_url.clone() } else { None },
        interval: std::time::Duration::from_secs(op.interval_s),
        leader_election: op.leader_election,
        lease_namespace: op
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| "default".into()),
        lease_name: op.lease_name.clone(),
        lease_duration_s: i64::try_from(op.lease_duration_s).unwrap_or(15),
        identity,
    };
    runtime()?.block_on(async {
        let telemetry = start_telemetry(valid, "operator").await?;
        geostream_operator::stage::run(settings, &telemetry, shutdown_signal()).await?;
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("async runtime could not start: {e}")))
}

fn run_ingest(valid: &config::Validated) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let telemetry = start_telemetry(valid, "ingest").await?;
        serve_ingest(valid, &telemetry, shutdown_signal()).await
    })
}

/// Runs ingest until `shutdown` resolves.
async fn serve_ingest(
    valid: &config::Validated,
    telemetry: &geostream_telemetry::Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let cfg = &valid.config;
    let settings = geostream_ingest::stage::IngestSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        data_dir: cfg.data_dir.clone(),
        push_listen: valid.ingest_listen,
        max_body_bytes: usize::try_from(cfg.ingest.max_body_bytes).unwrap_or(usize::MAX),
        spool_max_bytes: cfg.ingest.spool_max_bytes,
        spool_segment_bytes: cfg.ingest.spool_segment_bytes,
        partitions: cfg.ingest.partitions,
        replication: cfg.ingest.replication_factor,
        secrets_dir: cfg.ingest.secrets_dir.clone(),
        max_in_flight: cfg.ingest.max_in_flight,
    };
    geostream_ingest::stage::run(settings, telemetry, shutdown).await?;
    Ok(())
}

fn run_process(valid: &config::Validated) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let telemetry = start_telemetry(valid, "process").await?;
        serve_process(valid, &telemetry, shutdown_signal()).await
    })
}

/// Runs the processor until `shutdown` resolves.
async fn serve_process(
    valid: &config::Validated,
    telemetry: &geostream_telemetry::Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let cfg = &valid.config;
    let pr = &cfg.process;
    let instance = pr
        .instance
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "0".into());
    let settings = geostream_processor::stage::ProcessSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        data_dir: cfg.data_dir.clone(),
        instance,
        lateness: std::time::Duration::from_secs(pr.lateness_s),
        commit_interval: std::time::Duration::from_millis(pr.commit_interval_ms),
        max_batch_records: pr.max_batch_records,
        partitions: pr.partitions,
        replication: pr.replication_factor,
        transaction_timeout: std::time::Duration::from_millis(pr.transaction_timeout_ms),
        sql: Some(geostream_sql::runner()),
    };
    geostream_processor::stage::run(settings, telemetry, shutdown).await?;
    Ok(())
}

fn run_sink(valid: &config::Validated) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let telemetry = start_telemetry(valid, "sink").await?;
        serve_sink(valid, &telemetry, shutdown_signal()).await
    })
}

/// Runs the sink (with the outputs and the archive, as configured) until `shutdown` resolves.
async fn serve_sink(
    valid: &config::Validated,
    telemetry: &geostream_telemetry::Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let cfg = &valid.config;
    let archive = archive_settings(valid)?;
    // Without a search engine the sink runs archive-only (the standalone shape); with neither it
    // would do nothing at all.
    let url = match (cfg.elasticsearch.url.clone(), &archive) {
        (Some(url), _) => Some(url),
        (None, Some(_)) => None,
        (None, None) => {
            return Err(CliError::Missing {
                stage: "sink",
                key: "elasticsearch.url",
                fix: "set it in the config file or GEOSTREAM_ELASTICSEARCH__URL=http://127.0.0.1:9200, \
                      or enable the archive alone ([archive] enabled = true)",
            });
        }
    };
    let sk = &cfg.sink;
    let settings = url.map(|url| geostream_sink::stage::SinkSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        url,
        username: cfg.elasticsearch.username.clone(),
        password: cfg.elasticsearch.password.clone(),
        batch_max_records: sk.batch_max_records,
        batch_max_bytes: usize::try_from(sk.batch_max_bytes).unwrap_or(usize::MAX),
        linger: std::time::Duration::from_millis(sk.linger_ms),
        max_in_flight: sk.max_in_flight,
        max_backoff: std::time::Duration::from_millis(sk.max_backoff_ms),
        request_timeout: std::time::Duration::from_millis(sk.request_timeout_ms),
        index: geostream_sink::templates::IndexSettings { replicas: sk.index_replicas },
    });
    {
        // The outputs and the archive run beside the sink in the same process, each in its own
        // consumer group.
        let outputs = match outputs_settings(valid) {
            Some(s) => Some(geostream_outputs::OutputsStage::start(s, telemetry).await?),
            None => None,
        };
        let archive = match archive {
            Some(s) => match geostream_archive::ArchiveStage::start(s, telemetry).await {
                Ok(a) => Some(a),
                Err(e) => {
                    if let Some(o) = outputs {
                        o.shutdown().await;
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        let sink = match settings {
            None => None,
            Some(settings) => match geostream_sink::stage::SinkStage::start(settings, telemetry).await {
                Ok(sink) => Some(sink),
                Err(e) => {
                    if let Some(o) = outputs {
                        o.shutdown().await;
                    }
                    if let Some(a) = archive {
                        a.shutdown().await;
                    }
                    return Err(e.into());
                }
            },
        };
        shutdown.await;
        tracing::info!("sink shutting down");
        // All settle their batch in hand at the same time, within one termination grace period.
        tokio::join!(
            async {
                if let Some(s) = sink {
                    s.shutdown().await;
                }
            },
            async {
                if let Some(o) = outputs {
                    o.shutdown().await;
                }
            },
            async {
                if let Some(a) = archive {
                    a.shutdown().await;
                }
            }
        );
        Ok(())
    }
}

/// The archive's settings when it is enabled: the store opened from its URL, credentials read
/// from their files.
fn archive_settings(valid: &config::Validated) -> Result<Option<geostream_archive::ArchiveSettings>, CliError> {
    let cfg = &valid.config;
    let a = &cfg.archive;
    if !a.enabled {
        return Ok(None);
    }
    let store = archive_store(valid)?;
    Ok(Some(geostream_archive::ArchiveSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        store,
        flush: geostream_archive::FlushSettings {
            max_records: a.flush_max_records,
            max_bytes: usize::try_from(a.flush_max_bytes).unwrap_or(usize::MAX),
            max_age: std::time::Duration::from_secs(a.flush_max_age_s),
        },
        compaction: geostream_archive::CompactionSettings {
            enabled: a.compaction_enabled,
            interval: std::time::Duration::from_secs(a.compaction_interval_s),
            grace: std::time::Duration::from_secs(a.compaction_grace_s),
            target_bytes: a.compaction_target_bytes,
        },
        // Fault injection for tests: stop dead between the files of a flush.
        fault_stop_after_files: std::env::var("GEOSTREAM_FAULT_ARCHIVE_STOP_AFTER_FILES")
            .ok()
            .and_then(|v| v.parse().ok()),
    }))
}

/// The archive's store (`archive.url`), credentials read from their files.
fn archive_store(valid: &config::Validated) -> Result<geostream_archive::ArchiveStore, CliError> {
    let a = &valid.config.archive;
    let read =
        |key: &str, value: &Option<String>, file: &Option<std::path::PathBuf>| -> Result<Option<String>, CliError> {
            match (value, file) {
                (Some(v), _) => Ok(Some(v.clone())),
                (None, None) => Ok(None),
                (None, Some(path)) => std::fs::read_to_string(path).map(|v| Some(v.trim().to_owned())).map_err(|e| {
                    CliError::Config(config::ConfigError::Invalid(vec![config::Problem {
                        key: key.to_owned(),
                        problem: format!("{} cannot be read: {e}", path.display()),
                        fix: "mount the secret there or correct the path".into(),
                    }]))
                }),
            }
        };
    let s3 = geostream_archive::S3Options {
        endpoint: a.s3.endpoint.clone(),
        region: a.s3.region.clone(),
        access_key_id: read("archive.s3.access_key_id_file", &a.s3.access_key_id, &a.s3.access_key_id_file)?,
        secret_access_key: read(
            "archive.s3.secret_access_key_file",
            &a.s3.secret_access_key,
            &a.s3.secret_access_key_file,
        )?,
        path_style: a.s3.path_style,
        allow_http: a.s3.allow_http,
    };
    geostream_archive::ArchiveStore::open(&valid.config.archive_url(), &s3)
        .map_err(|e| CliError::Archive(geostream_archive::ArchiveError::Store(e)))
}

/// The event outputs' settings, when any output is configured.
fn outputs_settings(valid: &config::Validated) -> Option<geostream_outputs::OutputsSettings> {
    let cfg = &valid.config;
    (!valid.outputs.is_empty()).then(|| geostream_outputs::OutputsSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        outputs: valid.outputs.clone(),
        secrets_dir: cfg.sink.secrets_dir.clone(),
        batch_max_records: cfg.sink.outputs_batch_max_records,
        linger: std::time::Duration::from_millis(cfg.sink.linger_ms),
    })
}

fn run_api(valid: &config::Validated) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let telemetry = start_telemetry(valid, "api").await?;
        serve_api(valid, &telemetry, shutdown_signal()).await
    })
}

/// Runs the API until `shutdown` resolves.
async fn serve_api(
    valid: &config::Validated,
    telemetry: &geostream_telemetry::Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let cfg = &valid.config;
    let api = &cfg.api;
    // `auto` takes the archive only when one is configured: an API over an empty default
    // directory would look healthy and answer nothing.
    let archive_configured = cfg.archive.enabled || cfg.archive.url.is_some();
    let archive = match (api.backend, &cfg.elasticsearch.url) {
        (config::ApiBackend::Archive, _) => Some(archive_store(valid)?),
        (config::ApiBackend::Auto, None) if archive_configured => Some(archive_store(valid)?),
        (config::ApiBackend::Search | config::ApiBackend::Auto, None) => {
            return Err(CliError::Missing {
                stage: "api",
                key: "elasticsearch.url",
                fix: "set it in the config file or GEOSTREAM_ELASTICSEARCH__URL=http://127.0.0.1:9200, \
                      or answer from the archive (archive.url, or api.backend = \"archive\")",
            });
        }
        (config::ApiBackend::Search | config::ApiBackend::Auto, Some(_)) => None,
    };
    let url = cfg.elasticsearch.url.clone().unwrap_or_default();
    let read_secret = |key: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            CliError::Config(config::ConfigError::Invalid(vec![config::Problem {
                key: key.to_owned(),
                problem: format!("{} cannot be read: {e}", path.display()),
                fix: "mount the secret there or correct the path".into(),
            }]))
        })
    };
    let tokens = match &api.tokens_file {
        None => api.tokens.clone(),
        Some(path) => geostream_api::auth::Tokens::parse_file(&read_secret("api.tokens_file", path)?).map_err(|e| {
            CliError::Config(config::ConfigError::Invalid(vec![config::Problem {
                key: "api.tokens_file".into(),
                problem: format!("{}: {e}", path.display()),
                fix: "one `<tenant> <token>` pair per line".into(),
            }]))
        })?,
    };
    let admin_token = match &api.admin_token_file {
        None => None,
        Some(path) => Some(read_secret("api.admin_token_file", path)?.trim().to_owned()),
    };
    let settings = geostream_api::stage::ApiSettings {
        tenant: valid.tenant.clone(),
        naming: valid.naming.clone(),
        kafka: cfg.kafka_properties(),
        url,
        username: cfg.elasticsearch.username.clone(),
        password: cfg.elasticsearch.password.clone(),
        listen: valid.api_listen,
        tokens,
        admin_token,
        request_timeout: std::time::Duration::from_millis(api.request_timeout_ms),
        max_live_clients: api.max_live_clients,
        limits: geostream_api::limits::Limits {
            requests_per_s: api.rate_limit_per_s,
            burst: api.rate_limit_burst,
            max_body_bytes: api.max_body_bytes,
        },
        dashboard_dir: api.dashboard_dir.clone(),
        tls: match (&api.tls_cert_file, &api.tls_key_file) {
            (Some(cert), Some(key)) => Some(geostream_api::stage::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        },
    };
    {
        let stage = match archive {
            None => geostream_api::stage::ApiStage::start(settings, telemetry).await?,
            Some(store) => {
                tracing::info!(url = %store.url, "answering from the archive and a live layer");
                let archive = geostream_api::local::archive::DataFusionArchive::open(store, valid.tenant.as_str())
                    .await
                    .map_err(|e| geostream_api::stage::StageError::Archive(e.to_string()))?;
                geostream_api::stage::ApiStage::start_local(
                    settings,
                    telemetry,
                    std::sync::Arc::new(archive),
                    api.live_tail,
                )
                .await?
            }
        };
        shutdown.await;
        tracing::info!("api shutting down");
        stage.shutdown().await;
        Ok(())
    }
}

/// The stage's `/metrics`, `/healthz` and `/readyz`, listening before the stage starts so probes
/// and metrics see its start-up too.
async fn start_telemetry(valid: &config::Validated, stage: &str) -> Result<geostream_telemetry::Telemetry, CliError> {
    let telemetry = geostream_telemetry::Telemetry::new(stage, valid.tenant.as_str());
    let addr = telemetry
        .clone()
        .spawn(valid.telemetry_listen)
        .await
        .map_err(|e| CliError::Other(format!("telemetry could not listen on {}: {e}", valid.telemetry_listen)))?;
    tracing::info!(%addr, "telemetry listening");
    Ok(telemetry)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `level` plus quieter defaults for the embedded broker of `standalone`, unless `level` says
/// otherwise about it: tansu logs every request at info, and its storage logs a refused request
/// (such as creating a topic that exists, which every stage does at start) at error. What matters
/// of those reaches the stages as Kafka errors, and they log it.
fn with_quiet_broker(level: &str) -> String {
    if level.contains("tansu") || level.contains("rama") {
        return level.to_owned();
    }
    format!("{level},tansu_broker=warn,tansu_service=warn,tansu_sans_io=warn,tansu_storage=off,rama=warn")
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG wins so a developer can turn on a module's debug output without editing config.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(with_quiet_broker(&cfg.log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use geostream_kafka::acls::{Operation, ResourceType, allows, tenant_acls};
    use geostream_model::{Naming, Stage, TenantId, TopicKind};

    /// The ACL list is computed from the naming contract; the groups the archive and the outputs
    /// derive for themselves must stay inside it, or a stage would fail on a secured cluster.
    #[test]
    fn every_group_and_topic_a_stage_uses_is_allowed_to_its_tenant() {
        let naming = Naming::new("staging.").unwrap();
        let tenant: TenantId = "acme".parse().unwrap();
        let acls = tenant_acls(&naming, &tenant, "User:acme").unwrap();
        let groups = [
            naming.consumer_group(&tenant, Stage::Process),
            naming.consumer_group(&tenant, Stage::Sink),
            geostream_archive::consumer_group(&naming, &tenant),
            geostream_outputs::stage::consumer_group(&naming, &tenant),
            format!("{}.reader", naming.topic(&tenant, TopicKind::Fences)),
            format!("{}.ingest-recovery", naming.topic(&tenant, TopicKind::Observations)),
        ];
        for g in &groups {
            assert!(allows(&acls, ResourceType::Group, g, Operation::Read), "group {g}");
        }
        let tx = naming.transactional_id(&tenant, Stage::Process, "processor-0");
        assert!(allows(&acls, ResourceType::TransactionalId, &tx, Operation::Write), "{tx}");
        let other: TenantId = "acme-x".parse().unwrap();
        // A tenant whose id starts like this one's stage names: none of its ids are allowed.
        let lookalike: TenantId = "acme-process-x".parse().unwrap();
        let theirs = naming.transactional_id(&lookalike, Stage::Process, "processor-0");
        assert!(!allows(&acls, ResourceType::TransactionalId, &theirs, Operation::Write), "{theirs}");
        assert!(!allows(
            &acls,
            ResourceType::Group,
            &geostream_archive::consumer_group(&naming, &other),
            Operation::Read
        ));
    }

    #[test]
    fn acl_commands_are_shell_safe_and_say_why() {
        let acls = tenant_acls(&Naming::default(), &"acme".parse().unwrap(), "User:acme").unwrap();
        let text = super::acls_commands(&acls, "k1:9093,k2:9093", "/etc/kafka/admin client.properties");
        assert_eq!(text.lines().filter(|l| l.starts_with("kafka-acls.sh ")).count(), acls.len(), "{text}");
        assert!(text.contains("--command-config '/etc/kafka/admin client.properties'"), "{text}");
        assert!(text.lines().filter(|l| l.starts_with("# ")).count() == acls.len(), "{text}");
        assert_eq!(super::shell_quote("it's"), "'it'\\''s'");
    }
}

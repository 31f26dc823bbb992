//! `geostream`: the one binary of the pipeline, with a subcommand per stage (ingest, process, sink,
//! api, operator), the all-in-one `standalone`/`demo`, and tools (`config`, `feeds`, `crdgen`).
//!
//! Owns: argument parsing, configuration loading and validation, logging setup and wiring stages
//! together. Must not: contain stage logic; each stage lives in its own crate and this binary only
//! starts it. A stage that is not built yet says so and exits non-zero; nothing pretends to work.

mod config;
mod decode;

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
    Standalone {
        /// Where the embedded broker, spool, checkpoints and archive live.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// `standalone` plus the sample feeds from `feeds/`, replayed in a loop.
    Demo {
        /// Where the embedded broker, spool, checkpoints and archive live.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the feed registry.
    #[command(subcommand)]
    Feeds(FeedsCommand),
    /// Print the operator's CustomResourceDefinitions as YAML.
    Crdgen,
    /// Decode a file offline: observations as GeoJSON lines on stdout, a summary on stderr.
    Decode(decode::DecodeArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment) with secrets masked.
    Print,
    /// Validate the configuration and exit non-zero listing every problem.
    Check,
}

#[derive(Debug, Subcommand)]
enum FeedsCommand {
    /// Register a feed of a catalog type.
    Register {
        /// Catalog type from `feeds/`.
        #[arg(long = "type")]
        type_name: String,
    },
    /// List the registered feeds.
    List,
}

/// Failures the binary reports; the exit code tells scripts which kind it was.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error("`geostream {what}` is not implemented yet (tracked in issue #{issue}: {title})")]
    NotImplemented { what: &'static str, issue: u32, title: &'static str },
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
            CliError::NotImplemented { .. } => 69, // EX_UNAVAILABLE
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
    let cfg = Config::load(cli.config.as_deref(), Config::env_provider())?;
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
            Ok(())
        }
        Command::Crdgen => Err(not_implemented("crdgen", 6, "Helm chart per tenant and the geostream operator")),
        command => {
            // Stages need a valid configuration before anything else; report it first so an operator
            // fixes config problems even while a stage is still being built.
            let valid = cfg.validate()?;
            init_logging(&valid.config);
            match command {
                Command::Ingest => Err(not_implemented("ingest", 3, "Feed adapters and the feed registry")),
                Command::Process => Err(not_implemented("process", 4, "Stream analytics")),
                Command::Sink => Err(not_implemented("sink", 5, "Elasticsearch and OpenSearch sink")),
                Command::Api => Err(not_implemented("api", 5, "the query API and the map dashboard")),
                Command::Operator => Err(not_implemented("operator", 6, "the geostream operator")),
                Command::Standalone { .. } => Err(not_implemented("standalone", 7, "One command to a working system")),
                Command::Demo { .. } => Err(not_implemented("demo", 7, "One command to a working system")),
                Command::Feeds(_) => Err(not_implemented("feeds", 3, "Feed adapters and the feed registry")),
                Command::Config(_) | Command::Crdgen | Command::Decode(_) => unreachable!("handled above"),
            }
        }
    }
}

fn not_implemented(what: &'static str, issue: u32, title: &'static str) -> CliError {
    tracing::error!(stage = what, issue, "not implemented yet");
    CliError::NotImplemented { what, issue, title }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG wins so a developer can turn on a module's debug output without editing config.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

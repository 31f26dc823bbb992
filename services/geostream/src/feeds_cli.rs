//! `geostream feeds register|list|show|pause|resume|delete`: the feed registry from a terminal.
//!
//! The registry is the compacted topic `<tenant>.feeds`; every command reads it to its end first,
//! so `pause` and `resume` raise the version of what is really registered, and `register` refuses to
//! overwrite a feed unless asked to. Specs are validated before anything is written, and a problem
//! names the field and the `--set` that fixes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use geostream_ingest::registry::{Applied, RegistryClient, RegistryError, RegistryState};
use geostream_model::{FeedId, FeedSpec, ModelError};
use serde_json::Value;

/// The registry subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FeedsCommand {
    /// Register a feed from a catalog type (and overrides) or a spec file.
    Register(RegisterArgs),
    /// List the registered feeds.
    List {
        /// Print the specs as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one feed's spec as YAML.
    Show {
        /// Feed id.
        id: String,
    },
    /// Stop ingesting a feed but keep it registered.
    Pause {
        /// Feed id.
        id: String,
    },
    /// Ingest a paused feed again.
    Resume {
        /// Feed id.
        id: String,
    },
    /// Remove a feed from the registry (a tombstone on the compacted topic).
    Delete {
        /// Feed id.
        id: String,
    },
}

/// Arguments of `feeds register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Catalog type (`feeds/<type>.yaml`) to start from.
    #[arg(long = "type", required_unless_present = "file")]
    pub type_name: Option<String>,
    /// A feed spec or catalog entry file (YAML or JSON) to start from instead of a catalog type.
    #[arg(long, conflicts_with = "type_name")]
    pub file: Option<PathBuf>,
    /// The feed id; default the catalog entry's.
    #[arg(long)]
    pub id: Option<String>,
    /// Override a field: `--set source.address=10.0.0.5:10110`, `--set options.lines=true`,
    /// `--set 'source.topics=[fleet/#]'`. Values are read as YAML scalars or lists.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Replace a feed that is already registered (its version is raised).
    #[arg(long)]
    pub replace: bool,
    /// Validate and print the spec without writing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Where catalog types are looked up.
    #[arg(long, env = "GEOSTREAM_CATALOG", default_value = "feeds")]
    pub catalog: PathBuf,
}

/// Failures of the registry commands.
#[derive(Debug, thiserror::Error)]
pub enum FeedsError {
    /// Bad arguments or an unreadable file.
    #[error("{0}")]
    Usage(String),
    /// The spec does not validate.
    #[error("the feed spec is invalid: {problem}\n  fix: {fix}")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The feed is not (or already) registered.
    #[error("{0}")]
    State(String),
    /// Kafka could not be reached or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl FeedsError {
    /// The process exit code (sysexits): usage 64, invalid data 65, unavailable 69, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            FeedsError::Usage(_) => 64,
            FeedsError::Invalid { .. } => 65,
            FeedsError::State(_) => 1,
            FeedsError::Registry(_) => 69,
        }
    }
}

/// Runs a registry command against `client`; returns what to print on stdout.
pub async fn run(cmd: FeedsCommand, client: &RegistryClient) -> Result<String, FeedsError> {
    match cmd {
        FeedsCommand::Register(args) => register(args, client).await,
        FeedsCommand::List { json } => {
            let state = read(client).await?;
            Ok(if json { list_json(&state) } else { list_table(&state) })
        }
        FeedsCommand::Show { id } => {
            let state = read(client).await?;
            let spec = find(&state, &id, client)?;
            serde_yaml::to_string(spec).map_err(|e| FeedsError::Usage(format!("spec could not be printed: {e}")))
        }
        FeedsCommand::Pause { id } => set_enabled(client, &id, false).await,
        FeedsCommand::Resume { id } => set_enabled(client, &id, true).await,
        FeedsCommand::Delete { id } => {
            let state = read(client).await?;
            let spec = find(&state, &id, client)?;
            client.put(&spec.id, None).await?;
            Ok(format!("deleted feed {id} from {}\n", client.topic()))
        }
    }
}

async fn read(client: &RegistryClient) -> Result<RegistryState, FeedsError> {
    let (state, notes) = client.snapshot().await?;
    for n in notes {
        if let Applied::Invalid { key, problem } = n {
            eprintln!("geostream: warning: registry record for {key:?} ignored: {problem}");
        }
    }
    Ok(state)
}

fn find<'a>(state: &'a RegistryState, id: &str, client: &RegistryClient) -> Result<&'a FeedSpec, FeedsError> {
    let feed = FeedId::new(id).map_err(|e| FeedsError::Usage(e.to_string()))?;
    state.get(&feed).ok_or_else(|| {
        let known: Vec<&str> = state.feeds().map(|f| f.id.as_str()).collect();
        FeedsError::State(format!(
            "feed {id:?} is not registered on {} (registered: {})",
            client.topic(),
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        ))
    })
}

async fn set_enabled(client: &RegistryClient, id: &str, enabled: bool) -> Result<String, FeedsError> {
    let state = read(client).await?;
    let mut spec = find(&state, id, client)?.clone();
    let verb = if enabled { "resumed" } else { "paused" };
    if spec.enabled == enabled {
        return Ok(format!("feed {id} is already {verb}; nothing written\n"));
    }
    spec.enabled = enabled;
    spec.version += 1;
    client.put(&spec.id, Some(&spec)).await?;
    Ok(format!("{verb} feed {id} (version {})\n", spec.version))
}

async fn register(args: RegisterArgs, client: &RegistryClient) -> Result<String, FeedsError> {
    let mut spec = build_spec(&args)?;
    if args.dry_run {
        let yaml = serde_yaml::to_string(&spec).map_err(|e| FeedsError::Usage(e.to_string()))?;
        return Ok(format!("# valid; not written (--dry-run)\n{yaml}"));
    }
    let state = read(client).await?;
    if let Some(existing) = state.get(&spec.id) {
        if !args.replace {
            return Err(FeedsError::State(format!(
                "feed {} is already registered (version {}); pass --replace to overwrite it, or choose another --id",
                spec.id, existing.version
            )));
        }
        spec.version = spec.version.max(existing.version + 1);
    } else {
        spec.version = spec.version.max(1);
    }
    client.put(&spec.id, Some(&spec)).await?;
    Ok(format!(
        "registered feed {} (type {}, {} source, {} format) as version {} on {}\n",
        spec.id,
        spec.type_,
        spec.source.kind(),
        spec.format,
        spec.version,
        client.topic()
    ))
}

/// The spec `register` would write: base, id, overrides, validated. Pure apart from reading files.
pub fn build_spec(args: &RegisterArgs) -> Result<FeedSpec, FeedsError> {
    let (mut value, type_name) = match (&args.type_name, &args.file) {
        (Some(t), _) => {
            let path = args.catalog.join(format!("{t}.yaml"));
            if !path.is_file() {
                return Err(FeedsError::Usage(format!(
                    "--type {t:?} is not in the catalog {} (known: {})",
                    args.catalog.display(),
                    catalog_names(&args.catalog).join(", ")
                )));
            }
            (load(&path)?, Some(t.clone()))
        }
        (None, Some(file)) => (load(file)?, None),
        (None, None) => return Err(FeedsError::Usage("give --type <catalog type> or --file <spec>".into())),
    };
    // A catalog entry wraps the spec under `feed`.
    if let Some(inner) = value.get("feed").cloned() {
        value = inner;
    }
    let obj = value.as_object_mut().ok_or_else(|| FeedsError::Usage("the spec is not a mapping".into()))?;
    if let Some(t) = type_name {
        obj.insert("type".into(), Value::String(t));
    }
    if let Some(id) = &args.id {
        obj.insert("id".into(), Value::String(id.clone()));
    }
    for o in &args.overrides {
        apply_override(&mut value, o)?;
    }
    let spec: FeedSpec = serde_json::from_value(value).map_err(|e| FeedsError::Invalid {
        problem: e.to_string(),
        fix: "check the field's spelling and type against docs (e.g. --set source.qos=1, --set source.mode=server)"
            .into(),
    })?;
    spec.validate().map_err(|e| invalid(&e))?;
    geostream_ingest::pipeline::check_feed(&spec).map_err(|problem| FeedsError::Invalid {
        problem,
        fix: "fix the mapping (try it on a sample with `geostream decode --feed <file>`)".into(),
    })?;
    Ok(spec)
}

fn invalid(e: &ModelError) -> FeedsError {
    let fix = match e {
        ModelError::InvalidField { field, .. } => format!("--set {field}=<value> (or fix it in the spec file)"),
        _ => "fix the value in the spec file or with --set".into(),
    };
    FeedsError::Invalid { problem: e.to_string(), fix }
}

fn load(path: &Path) -> Result<Value, FeedsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FeedsError::Usage(format!("{} could not be read: {e}", path.display())))?;
    let parsed: Result<Value, String> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| FeedsError::Usage(format!("{} is not valid YAML/JSON: {e}", path.display())))
}

fn catalog_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".yaml")).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        names.push("none; set --catalog or GEOSTREAM_CATALOG".into());
    }
    names
}

/// Sets `a.b.c=value` in `spec`, creating objects on the way.
fn apply_override(spec: &mut Value, assignment: &str) -> Result<(), FeedsError> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| FeedsError::Usage(format!("--set {assignment:?}: expected PATH=VALUE")))?;
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(FeedsError::Usage(format!("--set {assignment:?}: {path:?} is not a dotted path like source.url")));
    }
    // YAML reading makes `10` a number, `true` a boolean and `[a, b]` a list; plain text stays text.
    let value: Value = if raw.is_empty() {
        Value::String(String::new())
    } else {
        serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
    };
    let mut cur = spec;
    for (i, k) in keys.iter().enumerate() {
        let obj = match cur {
            Value::Object(m) => m,
            other => {
                return Err(FeedsError::Usage(format!(
                    "--set {assignment:?}: {} is {}, not a mapping",
                    keys[..i].join("."),
                    geostream_codecs::mapping::kind(other)
                )));
            }
        };
        if i + 1 == keys.len() {
            obj.insert((*k).to_owned(), value);
            return Ok(());
        }
        cur = obj.entry((*k).to_owned()).or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    Ok(())
}

fn source_target(spec: &FeedSpec) -> String {
    use geostream_model::Source;
    match &spec.source {
        Source::Mqtt { url, topics, .. } => format!("{url} {}", topics.join(",")),
        Source::HttpPoll { url, interval_s, .. } => format!("{url} every {interval_s}s"),
        Source::HttpPush { .. } => format!("POST /v1/push/<tenant>/{}", spec.id),
        Source::Tcp { address, mode, .. } => format!("{address} ({mode:?})").to_lowercase(),
        Source::Udp { address } => address.clone(),
        Source::File { path, .. } => path.clone(),
        Source::Kafka { bootstrap, topic, .. } => format!("{bootstrap}/{topic}"),
    }
}

fn list_table(state: &RegistryState) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "ID".into(),
        "TYPE".into(),
        "SOURCE".into(),
        "FORMAT".into(),
        "STATE".into(),
        "VERSION".into(),
        "TARGET".into(),
    ]];
    for f in state.feeds() {
        rows.push([
            f.id.to_string(),
            f.type_.clone(),
            f.source.kind().to_owned(),
            f.format.to_string(),
            if f.enabled { "enabled".into() } else { "paused".into() },
            f.version.to_string(),
            source_target(f),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if state.is_empty() {
        out.push_str("(no feeds registered)\n");
    }
    out
}

fn list_json(state: &RegistryState) -> String {
    let mut out = String::new();
    for f in state.feeds() {
        if let Ok(line) = serde_json::to_string(f) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Kafka properties for the registry client: the config's, plus short timeouts so a CLI user
/// with Kafka down gets an answer instead of a hang.
pub fn client_properties(mut props: BTreeMap<String, String>) -> BTreeMap<String, String> {
    props.entry("socket.connection.setup.timeout.ms".into()).or_insert_with(|| "10000".into());
    props
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(type_name: &str, overrides: &[&str]) -> RegisterArgs {
        RegisterArgs {
            type_name: Some(type_name.into()),
            file: None,
            id: None,
            overrides: overrides.iter().map(|s| (*s).to_owned()).collect(),
            replace: false,
            dry_run: true,
            catalog: std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default().join("../../feeds"),
        }
    }

    #[test]
    fn catalog_type_with_overrides_builds_a_valid_spec() {
        let mut a = args("ais-nmea-tcp", &["source.address=10.1.2.3:5631", "source.mode=server", "options.lines=true"]);
        a.id = Some("harbour-ais".into());
        let spec = build_spec(&a).unwrap();
        assert_eq!(spec.id.as_str(), "harbour-ais");
        assert_eq!(spec.type_, "ais-nmea-tcp");
        assert!(spec.options.lines);
        match spec.source {
            geostream_model::Source::Tcp { address, mode, .. } => {
                assert_eq!(address, "10.1.2.3:5631");
                assert_eq!(mode, geostream_model::TcpMode::Server);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_overrides_say_what_to_fix() {
        let e = build_spec(&args("ais-nmea-tcp", &["source.address=nohost"])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("source.address"), "{text}");
        assert!(text.contains("--set source.address="), "{text}");
        assert_eq!(e.exit_code(), 65);
        let e = build_spec(&args("mqtt-geojson", &["source.qos=high"])).unwrap_err().to_string();
        assert!(e.contains("qos"), "{e}");
        let e = build_spec(&args("no-such-type", &[])).unwrap_err().to_string();
        assert!(e.contains("ais-nmea-tcp"), "lists known types: {e}");
        let e = build_spec(&args("ais-nmea-tcp", &["source.address.port=1"])).unwrap_err().to_string();
        assert!(e.contains("source.address is a string"), "{e}");
        let e = build_spec(&args("ais-nmea-tcp", &["nonsense"])).unwrap_err().to_string();
        assert!(e.contains("PATH=VALUE"), "{e}");
    }

    #[test]
    fn lists_and_numbers_in_overrides_are_typed() {
        let spec =
            build_spec(&args("mqtt-geojson", &["source.topics=[fleet/+/pos, ships/#]", "source.qos=0"])).unwrap();
        match spec.source {
            geostream_model::Source::Mqtt { topics, qos, .. } => {
                assert_eq!(topics, ["fleet/+/pos", "ships/#"]);
                assert_eq!(qos, 0);
            }
            other => panic!("{other:?}"),
        }
    }
}

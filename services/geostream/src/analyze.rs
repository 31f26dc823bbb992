//! `geostream analyze`: runs analytics over a file of observations offline, with the same engine
//! as the processor, so an analytic can be back-tested on history before it is deployed.
//!
//! Input: observations as GeoJSON lines (what `geostream decode` prints and what is on
//! `<tenant>.observations`). They are sorted by event time first (a file is all known at once, so
//! the watermark simply follows the data). Output: events, aggregates and the observations `join`
//! analytics enriched, as GeoJSON lines on stdout; analytics that failed on some input (a SQL
//! window) and a summary on stderr. The end of the file emits every open window but declares no
//! gaps: the end of a file is not silence.
//!
//! Fences for `geofence` and `join` analytics come from `--fences`: a GeoJSON FeatureCollection of
//! Polygon/MultiPolygon features (the fence id is `properties.id`, else the feature's `id`; the
//! name is `properties.name`, else the id; the other properties are kept as the fence's
//! properties), or a JSON/YAML list of `FenceSpec`s as stored on `<tenant>.fences`.
//!
//! SQL analytics need a [`SqlFactory`] (the DataFusion runner of `geostream-sql`); [`run`] takes
//! one, and without it a SQL spec is refused with the engine's message.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{Engine, EngineConfig, Output, SqlFactory};
use geostream_analytics::spec::AnalyticSpec;
use geostream_model::{FenceSpec, Observation};
use serde_json::Value;

/// Arguments of `geostream analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Analytic definitions (YAML or JSON): a list of specs, or one spec.
    #[arg(long)]
    pub analytics: PathBuf,
    /// Fences for geofence and join analytics: a GeoJSON FeatureCollection of (Multi)Polygons, or a
    /// JSON/YAML list of fence specs.
    #[arg(long)]
    pub fences: Option<PathBuf>,
    /// Observations as GeoJSON lines; `-` or none reads standard input.
    pub input: Option<PathBuf>,
}

/// Failures of `analyze`.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The analytics file or the arguments are not usable.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Analytic specs from a YAML or JSON file: a list, or one spec.
pub fn load_specs(path: &std::path::Path) -> Result<Vec<AnalyticSpec>, AnalyzeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AnalyzeError::Io { what: format!("reading {}", path.display()), source })?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| AnalyzeError::Usage(format!("{} is not YAML/JSON: {e}", path.display())))?;
    let specs = if value.is_sequence() {
        serde_yaml::from_value(value)
    } else {
        serde_yaml::from_value(value).map(|s: AnalyticSpec| vec![s])
    };
    specs.map_err(|e| AnalyzeError::Usage(format!("{}: {e}", path.display())))
}

/// Reads `--fences` and builds the index, refusing invalid fences by name.
fn load_fences(path: &Path) -> Result<FenceIndex, AnalyzeError> {
    let specs = read_fence_specs(path)?;
    FenceIndex::build(&specs).map_err(|e| AnalyzeError::Usage(format!("{}: {e}", path.display())))
}

/// Fence specs from a GeoJSON FeatureCollection of (Multi)Polygons or a JSON/YAML list of specs.
pub fn read_fence_specs(path: &Path) -> Result<Vec<FenceSpec>, AnalyzeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AnalyzeError::Io { what: format!("reading {}", path.display()), source })?;
    // JSON first: GeoJSON files are large and serde_json is much faster than the YAML parser.
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_str(&text)
            .map_err(|e| AnalyzeError::Usage(format!("{} is not JSON or YAML: {e}", path.display())))?,
    };
    if value.get("type").and_then(Value::as_str) == Some("FeatureCollection") {
        FenceSpec::from_feature_collection(&value).map_err(|e| AnalyzeError::Usage(format!("{}: {e}", path.display())))
    } else if value.is_array() {
        serde_json::from_value::<Vec<FenceSpec>>(value)
            .map_err(|e| AnalyzeError::Usage(format!("{}: not a list of fence specs: {e}", path.display())))
    } else {
        Err(AnalyzeError::Usage(format!(
            "{}: expected a GeoJSON FeatureCollection or a list of fence specs",
            path.display()
        )))
    }
}

/// What `analyze` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events.
    pub events: u64,
    /// Aggregates.
    pub aggregates: u64,
    /// Observations enriched by `join` analytics.
    pub joined: u64,
    /// Failures reported on stderr.
    pub failed: u64,
}

/// Runs the command. `sql` runs `sql` analytics (the binary passes the DataFusion runner once it
/// is linked); without it a SQL spec is refused.
pub fn run(args: &AnalyzeArgs, sql: Option<&SqlFactory>) -> Result<Summary, AnalyzeError> {
    let specs = load_specs(&args.analytics)?;
    if specs.is_empty() {
        return Err(AnalyzeError::Usage(format!("{} defines no analytics", args.analytics.display())));
    }
    let fences = match &args.fences {
        Some(path) => load_fences(path)?,
        None => FenceIndex::build_skipping_invalid(std::iter::empty()).0,
    };
    let config = EngineConfig { specs: &specs, fences: Arc::new(fences), sql };
    let mut engine = Engine::build(config, None).map_err(|e| AnalyzeError::Usage(e.to_string()))?;
    let reader: Box<dyn BufRead> = match args.input.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p)
                .map_err(|source| AnalyzeError::Io { what: format!("opening {}", p.display()), source })?,
        )),
    };
    let mut observations = Vec::new();
    let mut bad = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| AnalyzeError::Io { what: "reading input".into(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Observation>(&line) {
            Ok(o) => observations.push(o),
            Err(e) => {
                bad += 1;
                if bad <= 5 {
                    eprintln!("geostream: line {}: not an observation: {e}", i + 1);
                }
            }
        }
    }
    // Stable: equal times keep their input order.
    observations.sort_by_key(|o| o.time);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut n = Summary::default();
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let mut write = |outputs: Vec<Output>, out: &mut BufWriter<std::io::StdoutLock<'_>>| -> Result<(), AnalyzeError> {
        for o in outputs {
            let line = match &o {
                Output::Event(e) => {
                    n.events += 1;
                    *kinds.entry(e.kind.as_str().to_owned()).or_default() += 1;
                    serde_json::to_string(e)
                }
                Output::Aggregate(a) => {
                    n.aggregates += 1;
                    serde_json::to_string(a)
                }
                Output::Joined(j) => {
                    n.joined += 1;
                    serde_json::to_string(j)
                }
                Output::Failed { analytic, message } => {
                    n.failed += 1;
                    eprintln!("geostream: analytic {analytic} failed: {message}");
                    continue;
                }
            };
            let line = line.map_err(|e| AnalyzeError::Usage(format!("a result could not be written: {e}")))?;
            writeln!(out, "{line}").map_err(|source| AnalyzeError::Io { what: "writing output".into(), source })?;
        }
        Ok(())
    };
    for o in &observations {
        write(engine.advance(o.time), &mut out)?;
        write(engine.observe(o), &mut out)?;
    }
    write(engine.finish(), &mut out)?;
    out.flush().map_err(|source| AnalyzeError::Io { what: "writing output".into(), source })?;
    let s = engine.skipped();
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
    eprintln!(
        "analyze: {} observations ({bad} unreadable lines), {} events ({}), {} aggregates, {} joined, {} failures; skipped: {} not points, {} late, {} out of order; {} tracks forgotten",
        observations.len(),
        n.events,
        kinds.join(" "),
        n.aggregates,
        n.joined,
        n.failed,
        s.not_a_point,
        s.late,
        s.out_of_order,
        engine.forgotten()
    );
    Ok(n)
}

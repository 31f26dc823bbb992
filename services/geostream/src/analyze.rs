//! `geostream analyze`: runs analytics over a file of observations offline, with the same engine
//! as the processor, so an analytic can be back-tested on history before it is deployed.
//!
//! Input: observations as GeoJSON lines (what `geostream decode` prints and what is on
//! `<tenant>.observations`). They are sorted by event time first (a file is all known at once, so
//! the watermark simply follows the data). Output: events and aggregates as GeoJSON lines on
//! stdout; a summary on stderr. The end of the file emits every open window but declares no gaps:
//! the end of a file is not silence.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use geostream_analytics::engine::{Engine, Output};
use geostream_analytics::spec::AnalyticSpec;
use geostream_model::Observation;

/// Arguments of `geostream analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Analytic definitions (YAML or JSON): a list of specs, or one spec.
    #[arg(long)]
    pub analytics: PathBuf,
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

fn load_specs(path: &std::path::Path) -> Result<Vec<AnalyticSpec>, AnalyzeError> {
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

/// Runs the command; returns (events, aggregates) written.
pub fn run(args: &AnalyzeArgs) -> Result<(u64, u64), AnalyzeError> {
    let specs = load_specs(&args.analytics)?;
    if specs.is_empty() {
        return Err(AnalyzeError::Usage(format!("{} defines no analytics", args.analytics.display())));
    }
    let mut engine = Engine::new(&specs).map_err(|e| AnalyzeError::Usage(e.to_string()))?;
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
    let (mut events, mut aggregates) = (0u64, 0u64);
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let mut write = |outputs: Vec<Output>, out: &mut BufWriter<std::io::StdoutLock<'_>>| -> Result<(), AnalyzeError> {
        for o in outputs {
            let line = match &o {
                Output::Event(e) => {
                    events += 1;
                    *kinds.entry(e.kind.as_str().to_owned()).or_default() += 1;
                    serde_json::to_string(e)
                }
                Output::Aggregate(a) => {
                    aggregates += 1;
                    serde_json::to_string(a)
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
        "analyze: {} observations ({bad} unreadable lines), {events} events ({}), {aggregates} aggregates; skipped: {} not points, {} late, {} out of order",
        observations.len(),
        kinds.join(" "),
        s.not_a_point,
        s.late,
        s.out_of_order
    );
    Ok((events, aggregates))
}

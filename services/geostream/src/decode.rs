//! `geostream decode`: the offline decoder. Users check a feed's bytes and mapping before they
//! register it; tests and benchmarks drive the codecs through it.
//!
//! Observations go to stdout as GeoJSON lines (one Feature per line, the record on the topic);
//! a summary (accepted, rejected by reason, skipped, distinct tracks) and the first rejections go
//! to stderr, so stdout can be piped into other tools untouched.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use geostream_codecs::{CodecOptions, Context, Outcome, Summary, decode_all};
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{CatalogEntry, CatalogSample, FeedId, FeedSpec, Format, Mapping};

/// Arguments of `geostream decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Input file; `-` or none reads standard input.
    pub input: Option<PathBuf>,
    /// Wire format (json, geojson, csv, nmea, ais, gtfs_rt, gpx, cap); taken from --feed when given.
    #[arg(long)]
    pub format: Option<String>,
    /// A catalog name (`feeds/<name>.yaml`), a catalog file, or a feed spec file (YAML or JSON)
    /// whose format, mapping and options to use. With a catalog entry and no FILE, its sample is
    /// decoded.
    #[arg(long)]
    pub feed: Option<String>,
    /// Where catalog names are looked up.
    #[arg(long, env = "GEOSTREAM_CATALOG", default_value = "feeds")]
    pub catalog: PathBuf,
    /// Feed id written into the observations when no --feed is given.
    #[arg(long, default_value = "decode")]
    pub feed_id: String,
    /// JSON/GeoJSON: one record per line instead of one document.
    #[arg(long)]
    pub lines: bool,
    /// JSON: path of the records inside the document, e.g. `states`.
    #[arg(long)]
    pub records: Option<String>,
    /// CSV: field delimiter (one character); default `,` or the feed file's.
    #[arg(long)]
    pub delimiter: Option<char>,
    /// NMEA: accept sentences without a checksum.
    #[arg(long)]
    pub allow_missing_checksum: bool,
    /// GPX: accept points without a time.
    #[arg(long)]
    pub allow_missing_time: bool,
    /// Receive time to assume (RFC 3339); default now. Matters for formats without event times and
    /// for the future-time check on old captures.
    #[arg(long)]
    pub received: Option<String>,
    /// How many rejections to print in full on stderr.
    #[arg(long, default_value_t = 10)]
    pub show_rejects: usize,
    /// Exit with status 1 when any record was rejected.
    #[arg(long)]
    pub fail_on_reject: bool,
}

/// What went wrong before any record could be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Arguments or the feed file are not usable.
    #[error("{0}")]
    Usage(String),
    /// Reading input or writing output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `--fail-on-reject` and records were rejected.
    #[error("{0} record(s) rejected")]
    Rejected(u64),
}

/// What `--feed` named: a bare spec, or a catalog entry with the directory its sample is relative to.
struct ResolvedFeed {
    spec: FeedSpec,
    sample: Option<(CatalogSample, PathBuf)>,
}

fn parse_feed_file(path: &Path) -> Result<ResolvedFeed, DecodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DecodeError::Io { what: format!("reading feed file {}", path.display()), source })?;
    let usage = |e: String| DecodeError::Usage(format!("feed file {}: {e}", path.display()));
    let value: serde_yaml::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| usage(e.to_string()))?
    } else {
        serde_yaml::from_str(&text).map_err(|e| usage(e.to_string()))?
    };
    // A catalog entry wraps the spec under `feed`; a bare spec has `source` at the top.
    let is_catalog = value.get("feed").is_some();
    if is_catalog {
        let entry: CatalogEntry = serde_yaml::from_value(value).map_err(|e| usage(e.to_string()))?;
        entry.validate().map_err(|e| usage(e.to_string()))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(ResolvedFeed { spec: entry.feed, sample: entry.sample.map(|s| (s, dir)) })
    } else {
        let spec: FeedSpec = serde_yaml::from_value(value).map_err(|e| usage(e.to_string()))?;
        spec.validate().map_err(|e| usage(e.to_string()))?;
        Ok(ResolvedFeed { spec, sample: None })
    }
}

fn resolve_feed(feed: &str, catalog: &Path) -> Result<ResolvedFeed, DecodeError> {
    let as_path = Path::new(feed);
    if as_path.is_file() {
        return parse_feed_file(as_path);
    }
    let in_catalog = catalog.join(format!("{feed}.yaml"));
    if in_catalog.is_file() {
        return parse_feed_file(&in_catalog);
    }
    let known: Vec<String> = std::fs::read_dir(catalog)
        .map(|rd| {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".yaml")).map(str::to_owned))
                .collect();
            names.sort();
            names
        })
        .unwrap_or_default();
    Err(DecodeError::Usage(format!(
        "--feed {feed:?} is neither a file nor a catalog name in {} (known: {})",
        catalog.display(),
        if known.is_empty() { "none; set --catalog or GEOSTREAM_CATALOG".to_owned() } else { known.join(", ") }
    )))
}

/// Runs the command; returns the summary so callers (and tests) can inspect it.
pub fn run(args: &DecodeArgs) -> Result<Summary, DecodeError> {
    let mut sample = None;
    let (format, mapping, feed, mut opts) = match &args.feed {
        Some(name) => {
            let ResolvedFeed { spec, sample: s } = resolve_feed(name, &args.catalog)?;
            sample = s;
            if let Some(f) = &args.format
                && f.parse::<Format>().ok() != Some(spec.format)
            {
                return Err(DecodeError::Usage(format!(
                    "--format {f} contradicts the feed file's format {}; drop --format",
                    spec.format
                )));
            }
            (spec.format, spec.mapping, spec.id, spec.options)
        }
        None => {
            let name = args.format.as_deref().ok_or_else(|| {
                DecodeError::Usage(format!(
                    "give --format <name> or --feed <file>; formats: {}",
                    geostream_codecs::registry::SUPPORTED
                ))
            })?;
            let format: Format = name.parse().map_err(|e| DecodeError::Usage(format!("--format: {e}")))?;
            let feed: FeedId = args.feed_id.parse().map_err(|e| DecodeError::Usage(format!("--feed-id: {e}")))?;
            (format, Mapping::default(), feed, CodecOptions::default())
        }
    };
    // Flags add to what the feed file says; they never switch its options off.
    opts.lines |= args.lines;
    opts.allow_missing_checksum |= args.allow_missing_checksum;
    opts.allow_missing_time |= args.allow_missing_time;
    if args.records.is_some() {
        opts.records = args.records.clone();
    }
    if let Some(d) = args.delimiter {
        opts.delimiter = d;
    }
    let mut codec = geostream_codecs::build(format, &mapping, &opts).map_err(|e| DecodeError::Usage(e.to_string()))?;
    let received = match &args.received {
        Some(t) => OffsetDateTime::parse(t, &Rfc3339)
            .map_err(|e| DecodeError::Usage(format!("--received {t:?} is not RFC 3339: {e}")))?,
        None => match (&args.input, &sample) {
            // Decoding a catalog sample: its own receive time keeps old captures meaningful.
            (None, Some((s, _))) => s.received.unwrap_or_else(OffsetDateTime::now_utc),
            _ => OffsetDateTime::now_utc(),
        },
    };

    let (bytes, source) = match (args.input.as_deref(), &sample) {
        (None, Some((s, dir))) => {
            let p = dir.join(&s.file);
            let bytes = std::fs::read(&p)
                .map_err(|source| DecodeError::Io { what: format!("reading sample {}", p.display()), source })?;
            (bytes, p.display().to_string())
        }
        (None, None) => (read_stdin()?, "stdin".to_owned()),
        (Some(p), _) if p == Path::new("-") => (read_stdin()?, "stdin".to_owned()),
        (Some(p), _) => (
            std::fs::read(p).map_err(|source| DecodeError::Io { what: format!("reading {}", p.display()), source })?,
            p.display().to_string(),
        ),
    };

    let ctx = Context::new(feed, received);
    let outcomes = decode_all(codec.as_mut(), &bytes, &ctx);
    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut shown = 0usize;
    // A closed stdout (`| head`) ends the output, not the run: the summary still counts everything.
    let mut stdout_open = true;
    let mut write_line = |obs: &geostream_model::Observation| -> std::io::Result<()> {
        let mut line = serde_json::to_vec(obs).map_err(std::io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)
    };
    for o in &outcomes {
        summary.add(o);
        match o {
            Outcome::Observation(obs) if stdout_open => match write_line(obs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => stdout_open = false,
                Err(source) => return Err(DecodeError::Io { what: "writing to stdout".into(), source }),
            },
            Outcome::Rejected(r) if shown < args.show_rejects => {
                shown += 1;
                eprintln!("rejected [{}] {}: {}", r.reason.as_str(), source, r.detail);
            }
            _ => {}
        }
    }
    if stdout_open {
        match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(DecodeError::Io { what: "writing to stdout".into(), source: e });
            }
            _ => {}
        }
    }
    eprintln!("{}", render_summary(codec.name(), &source, &summary));
    if args.fail_on_reject && summary.rejected_total() > 0 {
        return Err(DecodeError::Rejected(summary.rejected_total()));
    }
    Ok(summary)
}

fn read_stdin() -> Result<Vec<u8>, DecodeError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|source| DecodeError::Io { what: "reading stdin".into(), source })?;
    Ok(buf)
}

fn render_summary(codec: &str, source: &str, s: &Summary) -> String {
    let rejected: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let skipped: Vec<String> = s.skipped.iter().map(|(k, v)| format!("{}={v}", k.to_lowercase())).collect();
    format!(
        "decode {codec} {source}: accepted {}, rejected {}{}, skipped {}{}, distinct tracks {}",
        s.accepted,
        s.rejected_total(),
        if rejected.is_empty() { String::new() } else { format!(" ({})", rejected.join(", ")) },
        s.skipped.values().sum::<u64>(),
        if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join(", ")) },
        s.tracks.len()
    )
}

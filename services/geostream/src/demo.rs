//! `geostream demo`: `standalone` with something to look at. It registers the demo's fences and
//! analytics and the sample feeds of the catalog (`feeds/demo/demo.yaml` says which), each
//! replayed from its sample file in a loop with its event times rebased to the wall clock, then
//! prints where the dashboard is and a one-line status until it is stopped, and a summary after.
//!
//! Registration is idempotent (unchanged specs are not written again), so a restart on the same
//! data directory registers nothing new and the feeds continue where their checkpoints are.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use geostream_ingest::pipeline::{Batch, FeedPipeline};
use geostream_model::time::OffsetDateTime;
use geostream_model::{CatalogEntry, FeedSpec, Replay, Source, TopicKind};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{CliError, StandaloneArgs, config};

/// What `demo` takes besides the configuration.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) run: StandaloneArgs,
    /// Replay speed: 1 is as fast as the samples were recorded, 10 ten times faster.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    /// Longest pass through one sample: a sample that would take longer at `--speed` (a week of
    /// earthquakes) is replayed faster, so every feed shows movement within a pass.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) max_pass: Duration,
    /// The feed catalog; its `demo/demo.yaml` lists the feeds, fences and analytics.
    #[arg(long, env = "GEOSTREAM_CATALOG", default_value = "feeds")]
    pub(crate) catalog: PathBuf,
    /// Seconds between status lines when stderr is not a terminal (on a terminal the line is
    /// redrawn every 2 s).
    #[arg(long, default_value_t = 10)]
    pub(crate) status_every_s: u64,
}

/// `feeds/demo/demo.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Catalog entry names.
    feeds: Vec<String>,
    /// Fence file, relative to the manifest.
    fences: PathBuf,
    /// Analytics file, relative to the manifest.
    analytics: PathBuf,
}

/// One sample feed as the demo registers it.
#[derive(Debug, Clone)]
pub(crate) struct DemoFeed {
    /// The spec: the catalog entry's, reading its sample file in a loop.
    pub(crate) spec: FeedSpec,
    /// Observations one pass gives.
    pub(crate) records: u64,
    /// Tracks in the sample.
    pub(crate) tracks: usize,
    /// Event time the sample spans.
    pub(crate) span: Duration,
    /// The replay speed chosen for it.
    pub(crate) speed: f64,
}

/// Everything the demo registers.
#[derive(Debug, Clone)]
pub(crate) struct DemoPlan {
    pub(crate) feeds: Vec<DemoFeed>,
    pub(crate) fences: PathBuf,
    pub(crate) analytics: PathBuf,
}

fn usage(what: impl Into<String>) -> CliError {
    CliError::Demo(what.into())
}

/// The speed a sample spanning `span` is replayed at: `speed`, or faster when one pass would
/// otherwise last longer than `max_pass`.
pub(crate) fn pass_speed(span: Duration, speed: f64, max_pass: Duration) -> f64 {
    let needed = if max_pass.is_zero() { 1.0 } else { span.as_secs_f64() / max_pass.as_secs_f64() };
    // Whole factors read better in `feeds list` and in the summary.
    speed.max(needed.ceil())
}

/// Reads the manifest and the catalog entries it names, and decodes each sample once (its span
/// sets the replay speed, and a sample that no longer decodes is reported here, by name, not as
/// a feed that silently shows nothing).
pub(crate) fn plan(catalog: &Path, speed: f64, max_pass: Duration) -> Result<DemoPlan, CliError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(usage(format!("--speed {speed}: the replay speed must be a positive number")));
    }
    let dir = catalog.join("demo");
    let manifest_path = dir.join("demo.yaml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        usage(format!(
            "{} cannot be read ({e}); run the demo from the repository root or point --catalog \
             (GEOSTREAM_CATALOG) at its feeds/ folder",
            manifest_path.display()
        ))
    })?;
    let manifest: Manifest =
        serde_yaml::from_str(&text).map_err(|e| usage(format!("{}: {e}", manifest_path.display())))?;
    let mut feeds = Vec::with_capacity(manifest.feeds.len());
    for name in &manifest.feeds {
        feeds.push(demo_feed(catalog, name, speed, max_pass)?);
    }
    Ok(DemoPlan { feeds, fences: dir.join(&manifest.fences), analytics: dir.join(&manifest.analytics) })
}

fn demo_feed(catalog: &Path, name: &str, speed: f64, max_pass: Duration) -> Result<DemoFeed, CliError> {
    let path = catalog.join(format!("{name}.yaml"));
    let at = |e: String| usage(format!("demo feed {name:?} ({}): {e}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| at(e.to_string()))?;
    let entry: CatalogEntry = serde_yaml::from_str(&text).map_err(|e| at(e.to_string()))?;
    entry.validate().map_err(|e| at(e.to_string()))?;
    let sample = entry.sample.ok_or_else(|| at("the catalog entry has no sample to replay".into()))?;
    let file = path.parent().unwrap_or(catalog).join(&sample.file);
    // An absolute path: ingest resolves it, possibly from another working directory.
    let file = std::fs::canonicalize(&file).map_err(|e| at(format!("sample {}: {e}", file.display())))?;
    let bytes = std::fs::read(&file).map_err(|e| at(format!("sample {}: {e}", file.display())))?;

    let mut pipeline = FeedPipeline::new(&entry.feed).map_err(|e| at(e.to_string()))?;
    let received = sample.received.unwrap_or_else(OffsetDateTime::now_utc);
    let ctx = pipeline.context(received, file.display().to_string());
    let mut batch = Batch::default();
    pipeline.decode_payload(&bytes, &ctx, &mut batch);
    pipeline.finish(&ctx, &mut batch);
    let times: Vec<OffsetDateTime> = batch.event_times.iter().flatten().copied().collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return Err(at(format!("sample {} decodes to no observation", file.display())));
    };
    let span = Duration::try_from(*last - *first).unwrap_or_default();
    let speed = pass_speed(span, speed, max_pass);
    let mut spec = entry.feed;
    spec.source = Source::File {
        path: file.display().to_string(),
        replay: Replay::Speed(speed),
        pattern: None,
        resume: true,
        repeat: true,
    };
    spec.validate().map_err(|e| at(e.to_string()))?;
    Ok(DemoFeed { spec, records: batch.summary.accepted, tracks: batch.summary.tracks.len(), span, speed })
}

/// Gives the demo's tenant a read token when the configuration has none: generated once and
/// kept in the data directory, so the dashboard link stays the same across restarts.
pub(crate) fn ensure_token(valid: &mut config::Validated) -> Result<Option<String>, CliError> {
    let api = &mut valid.config.api;
    if !api.tokens.is_empty() || api.tokens_file.is_some() {
        return Ok(api.tokens.get(valid.tenant.as_str()).and_then(|t| t.first().cloned()));
    }
    let path = valid.config.data_dir.join("demo-api-tokens");
    let existing = std::fs::read_to_string(&path).ok();
    let token = match existing.as_deref().and_then(|t| token_of(t, valid.tenant.as_str())) {
        Some(t) => t,
        None => {
            let token = uuid::Uuid::new_v4().simple().to_string();
            write_secret(&path, &format!("{} {token}\n", valid.tenant))
                .map_err(|e| usage(format!("{} cannot be written: {e}", path.display())))?;
            token
        }
    };
    api.tokens_file = Some(path);
    Ok(Some(token))
}

/// Writes a file only its owner can read: it holds a bearer token.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The token of `tenant` in a `<tenant> <token>` file.
fn token_of(text: &str, tenant: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(tenant)).then(|| words.next().map(str::to_owned)).flatten()
    })
}

/// Registers the fences, the analytics (both before the feeds, so the first records already meet
/// them) and the feeds. Returns what was done, one line each.
pub(crate) async fn register(valid: &config::Validated, plan: &DemoPlan) -> Result<String, CliError> {
    use crate::registry_cli::RegistryCommand;
    let apply = |file: &Path| RegistryCommand::Apply { file: file.to_path_buf(), prune: false, dry_run: false };
    let mut out = crate::fences(valid, apply(&plan.fences)).await?;
    out.push_str(&crate::analytics(valid, apply(&plan.analytics)).await?);
    let client = geostream_ingest::registry::RegistryClient::new(
        crate::feeds_cli::client_properties(valid.config.kafka_properties()),
        valid.naming.topic(&valid.tenant, TopicKind::Feeds),
    );
    client.ensure_topic().await.map_err(crate::feeds_cli::FeedsError::from)?;
    let (state, _) = client.snapshot().await.map_err(crate::feeds_cli::FeedsError::from)?;
    for feed in &plan.feeds {
        let mut spec = feed.spec.clone();
        match state.get(&spec.id) {
            Some(existing) if same_spec(existing, &spec) => {
                out.push_str(&format!("unchanged feed {}\n", spec.id));
                continue;
            }
            Some(existing) => spec.version = existing.version + 1,
            None => spec.version = 1,
        }
        client.put(&spec.id, Some(&spec)).await.map_err(crate::feeds_cli::FeedsError::from)?;
        out.push_str(&format!("registered feed {} (version {}, {}x)\n", spec.id, spec.version, feed.speed));
    }
    Ok(out)
}

fn same_spec(a: &FeedSpec, b: &FeedSpec) -> bool {
    let mut a = a.clone();
    a.version = b.version;
    a == *b
}

/// The figures of the status line and the summary, read from the process's own metrics (the
/// Prometheus text every stage registers into).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Status {
    /// Observations decoded, by feed (a document's count at its first commit, so ahead of what
    /// a paced replay has sent).
    pub(crate) accepted: BTreeMap<String, u64>,
    /// Observations acknowledged by Kafka.
    pub(crate) produced: u64,
    /// Records dead-lettered by ingest, by feed.
    pub(crate) rejected: BTreeMap<String, u64>,
    /// Observations the processor consumed.
    pub(crate) processed: u64,
    /// Events produced.
    pub(crate) events: u64,
    /// Aggregates produced.
    pub(crate) aggregates: u64,
    /// Records written to the archive.
    pub(crate) archived: u64,
}

impl Status {
    /// Parses the metrics text. Pure.
    pub(crate) fn from_metrics(text: &str) -> Self {
        let mut s = Status::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let value = value as u64;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let label = |key: &str| -> Option<String> {
                let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                let rest = &labels[start..];
                Some(rest[..rest.find('"')?].to_owned())
            };
            match name {
                "geostream_ingest_accepted_total" => {
                    *s.accepted.entry(label("feed").unwrap_or_default()).or_default() += value;
                }
                "geostream_ingest_rejected_total" => {
                    *s.rejected.entry(label("feed").unwrap_or_default()).or_default() += value;
                }
                "geostream_ingest_produced_total" if label("topic").is_some_and(|t| t.ends_with(".observations")) => {
                    s.produced += value;
                }
                "geostream_process_records_total" => s.processed += value,
                "geostream_process_produced_total" => match label("name").as_deref() {
                    Some("events") => s.events += value,
                    Some("aggregates") => s.aggregates += value,
                    _ => {}
                },
                "geostream_archive_records_total" => s.archived += value,
                _ => {}
            }
        }
        s
    }

    fn total_decoded(&self) -> u64 {
        self.accepted.values().sum()
    }

    fn total_rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The one-line status.
    pub(crate) fn line(&self) -> String {
        format!(
            "observations in {} · dead letters {} · events {} · aggregates {} · processing backlog {}",
            self.produced,
            self.total_rejected(),
            self.events,
            self.aggregates,
            self.produced.saturating_sub(self.processed)
        )
    }

    /// The summary printed when the demo stops.
    pub(crate) fn summary(&self, plan: &DemoPlan, ran: Duration) -> String {
        let mut out =
            format!("geostream demo ran {}\n", humantime::format_duration(Duration::from_secs(ran.as_secs())));
        out.push_str(&format!("{:<28} {:>8} {:>12} {:>12}\n", "feed", "speed", "decoded", "dead letters"));
        for f in &plan.feeds {
            let id = f.spec.id.as_str();
            out.push_str(&format!(
                "{id:<28} {:>7}x {:>12} {:>12}\n",
                f.speed,
                self.accepted.get(id).copied().unwrap_or(0),
                self.rejected.get(id).copied().unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "{:<28} {:>8} {:>12} {:>12}\n",
            "total",
            "",
            self.total_decoded(),
            self.total_rejected()
        ));
        out.push_str(&format!(
            "observations in Kafka {} · processed {} · events {} · aggregates {} · records archived {}\n",
            self.produced, self.processed, self.events, self.aggregates, self.archived
        ));
        out
    }
}

/// Registers everything, says where to look, and keeps the status line up to date until `stop`.
pub(crate) async fn drive(
    valid: &config::Validated,
    plan: &DemoPlan,
    token: Option<&str>,
    telemetry: &geostream_telemetry::Telemetry,
    every: Duration,
    stop: &CancellationToken,
) -> Result<(), CliError> {
    let registered = tokio::select! {
        () = stop.cancelled() => return Ok(()),
        r = register(valid, plan) => r?,
    };
    let changed = registered
        .lines()
        .filter(|l| ["added ", "updated ", "deleted ", "registered "].iter().any(|p| l.starts_with(p)))
        .count();
    let unchanged = registered.lines().filter(|l| l.starts_with("unchanged ")).count();
    tracing::info!(changes = changed, "demo: fences, analytics and feeds registered");
    let mut banner = String::from("\ngeostream demo\n");
    banner.push_str(&format!(
        "  registry   {changed} change(s) written, {unchanged} unchanged (fences, analytics, feeds)\n"
    ));
    for f in &plan.feeds {
        let pass = Duration::from_secs_f64(f.span.as_secs_f64() / f.speed);
        banner.push_str(&format!(
            "  feed {:<26} {:>6} observations, {:>4} track(s), at {}x: a pass every {}\n",
            f.spec.id.as_str(),
            f.records,
            f.tracks,
            f.speed,
            humantime::format_duration(Duration::from_secs(pass.as_secs().max(10)))
        ));
    }
    let api = format!("http://{}", local_url_host(valid.api_listen));
    match token {
        Some(t) => banner.push_str(&format!("  dashboard  {api}/dashboard/?tenant={}#token={t}\n", valid.tenant)),
        None => banner.push_str(&format!(
            "  dashboard  {api}/dashboard/?tenant={} (with a read token of api.tokens)\n",
            valid.tenant
        )),
    }
    if !valid.config.api.dashboard_dir.join("index.html").is_file() {
        banner.push_str(&format!(
            "             (not built: {} has no index.html; run ./scripts/dashboard.sh)\n",
            valid.config.api.dashboard_dir.display()
        ));
    }
    banner.push_str(&format!("  api        {api}/v1/{}/latest (Authorization: Bearer <token>)\n", valid.tenant));
    banner.push_str(&format!("  data       {}\n", valid.config.data_dir.display()));
    eprintln!("{banner}");

    let terminal = std::io::stderr().is_terminal();
    let period = if terminal { Duration::from_secs(2) } else { every.max(Duration::from_secs(1)) };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let line = Status::from_metrics(&telemetry.encode().unwrap_or_default()).line();
        let mut err = std::io::stderr().lock();
        // A terminal gets one line redrawn in place; a log file one line per period.
        let _ = if terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "demo: {line}") };
        let _ = err.flush();
    }
    if terminal {
        eprintln!();
    }
    Ok(())
}

/// Where a browser on this machine reaches a listener: an unspecified address (`0.0.0.0`) as
/// `127.0.0.1`.
fn local_url_host(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_replayed_at_the_asked_speed_unless_a_pass_would_be_too_long() {
        let ten_min = Duration::from_secs(600);
        assert_eq!(pass_speed(Duration::from_secs(300), 1.0, ten_min), 1.0);
        assert_eq!(pass_speed(Duration::from_secs(300), 4.0, ten_min), 4.0);
        // A week in ten minutes: 1008x.
        assert_eq!(pass_speed(Duration::from_secs(7 * 24 * 3600), 1.0, ten_min), 1008.0);
        // Just over: the next whole factor.
        assert_eq!(pass_speed(Duration::from_secs(601), 1.0, ten_min), 2.0);
        // A snapshot (no span) at the asked speed.
        assert_eq!(pass_speed(Duration::ZERO, 2.5, ten_min), 2.5);
        assert_eq!(pass_speed(Duration::from_secs(60), 1.0, Duration::ZERO), 1.0);
    }

    #[test]
    fn the_status_is_read_from_the_stages_metrics() {
        let text = "# HELP geostream_ingest_accepted Observations accepted.\n\
            # TYPE geostream_ingest_accepted counter\n\
            geostream_ingest_accepted_total{stage=\"standalone\",tenant=\"demo\",feed=\"ais\"} 2938\n\
            geostream_ingest_accepted_total{stage=\"standalone\",tenant=\"demo\",feed=\"gps\"} 12\n\
            geostream_ingest_rejected_total{stage=\"standalone\",tenant=\"demo\",feed=\"ais\",reason=\"checksum\"} 80\n\
            geostream_ingest_rejected_total{stage=\"standalone\",tenant=\"demo\",feed=\"ais\",reason=\"unsupported\"} 5\n\
            geostream_ingest_produced_total{stage=\"standalone\",tenant=\"demo\",topic=\"demo.observations\"} 2950\n\
            geostream_ingest_produced_total{stage=\"standalone\",tenant=\"demo\",topic=\"demo.deadletter\"} 85\n\
            geostream_process_records_total{stage=\"standalone\",tenant=\"demo\",partition=\"0\"} 2900\n\
            geostream_process_produced_total{stage=\"standalone\",tenant=\"demo\",name=\"events\"} 31\n\
            geostream_process_produced_total{stage=\"standalone\",tenant=\"demo\",name=\"aggregates\"} 7\n\
            geostream_archive_records_total{stage=\"standalone\",tenant=\"demo\",topic=\"demo.observations\"} 2000\n\
            geostream_sink_documents_total{stage=\"standalone\"} 99\n";
        let s = Status::from_metrics(text);
        assert_eq!(s.accepted, BTreeMap::from([("ais".to_owned(), 2938), ("gps".to_owned(), 12)]));
        assert_eq!(s.rejected, BTreeMap::from([("ais".to_owned(), 85)]));
        assert_eq!((s.produced, s.processed, s.events, s.aggregates, s.archived), (2950, 2900, 31, 7, 2000));
        assert_eq!(
            s.line(),
            "observations in 2950 · dead letters 85 · events 31 · aggregates 7 · processing backlog 50"
        );
        assert_eq!(Status::from_metrics(""), Status::default());
    }

    #[test]
    fn a_token_is_found_by_tenant() {
        assert_eq!(token_of("acme a1\ndemo d1 \n", "demo").as_deref(), Some("d1"));
        assert_eq!(token_of("acme a1\n", "demo"), None);
        assert_eq!(token_of("demo\n", "demo"), None);
    }

    #[test]
    fn the_repositorys_demo_plan_replays_every_listed_sample_in_a_loop() {
        let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../feeds");
        let demo = plan(&catalog, 1.0, Duration::from_secs(600)).unwrap();
        // Every fence and analytic passes the checks registration applies.
        let fences = crate::analyze::read_fence_specs(&demo.fences).unwrap();
        assert_eq!(fences.len(), 218);
        for f in &fences {
            f.validate().unwrap();
        }
        geostream_analytics::fence_index::FenceIndex::build(&fences).unwrap();
        let analytics = crate::analyze::load_specs(&demo.analytics).unwrap();
        assert_eq!(analytics.len(), 4);
        for a in &analytics {
            a.validate().unwrap();
        }
        let ids: Vec<&str> = demo.feeds.iter().map(|f| f.spec.id.as_str()).collect();
        assert_eq!(
            ids,
            ["ais-nmea-tcp", "opensky-csv-file", "gtfs-rt-vehicle-positions", "nmea-gps-tcp", "usgs-earthquakes"]
        );
        for f in &demo.feeds {
            let Source::File { path, replay, repeat, resume, .. } = &f.spec.source else { panic!("{f:?}") };
            assert!(Path::new(path).is_absolute() && Path::new(path).is_file(), "{path}");
            assert!(*repeat && *resume, "{f:?}");
            assert_eq!(*replay, Replay::Speed(f.speed));
            assert!(f.records > 0 && f.tracks > 0, "{f:?}");
            // No pass lasts longer than the limit.
            assert!(f.span.as_secs_f64() / f.speed <= 600.0, "{f:?}");
        }
        // The catalog's promised counts, as a cross-check of the decode here.
        let ais = &demo.feeds[0];
        assert_eq!((ais.records, ais.tracks), (2938, 998));
        let quakes = &demo.feeds[4];
        assert_eq!(quakes.records, 1707);
        assert!(quakes.speed > 1000.0, "a week in at most ten minutes: {quakes:?}");
        assert!(plan(&catalog, 0.0, Duration::from_secs(600)).is_err());
        let e = plan(Path::new("/nonexistent"), 1.0, Duration::from_secs(600)).unwrap_err().to_string();
        assert!(e.contains("--catalog"), "{e}");
    }
}

//! The `file` source: one file, or every matching file of a folder (in name order, and the folder
//! is watched for new and grown files by polling every [`SCAN_INTERVAL`]).
//!
//! `pattern` applies to folders only. Framing follows the codec: line codecs (NMEA, AIS, JSON Lines) get the file line by line,
//! document codecs (GeoJSON, GPX, CSV, ...) the whole file as one payload. `replay` paces records by
//! their event times ([`Pacer`]); `fast` reads as fast as the spool takes it.
//!
//! Progress is a [`Checkpoint`] per file, written atomically to the feed's state directory after
//! every commit (and only then), so with `resume` a restart continues right after the last
//! committed record: no loss, no duplicates. Line files checkpoint the byte offset after the last
//! committed line. A line codec can hold state across lines (a multi-part AIS message, an NMEA
//! epoch whose observation is emitted by the next epoch's first sentence), so on resume the lines
//! just before the offset are decoded again and their output thrown away (a warm-up): the codec is
//! then in the state it had, and emits exactly what the first run had not. Document files
//! checkpoint how many of the document's records are committed, which makes a paced replay of one
//! large document resumable too. A checkpoint also identifies the file (inode, a hash of its first
//! bytes), so a file replaced under the same name is read from the start.
//!
//! A single file read to its end ends the source. In a folder, a file is picked up once it has
//! stopped changing (unchanged for one scan, or last modified [`SETTLE`] ago), so a file being
//! copied in is not read half-written; a line file that grows later is read on from its offset, a
//! document file that changes is read again (its records keep their ids). Names starting with `.`
//! are skipped unless the pattern starts with `.`, as writers use them for temporary files.
//!
//! With `repeat` a single file is read again from the start each time its end is reached: a
//! [`Pass`]. Each pass is rebased to the wall clock by a [`Retime`] (the file's earliest event on
//! the pass's anchor), so its records get times, and ids, of their own; records are due when the
//! wall clock reaches their rebased time ([`wall_delay`]), not relative to the first record as the
//! [`Pacer`] has it, and a document's records are taken in time order ([`sort_by_event_time`]).
//! The checkpoint carries the pass, its anchor and origin: a restart mid-pass continues the pass
//! with the same times (no record lost or given a second id), one after a pass's end starts the
//! next pass ([`next_anchor`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geostream_codecs::Framing;
use geostream_model::time::{Duration as TimeDuration, OffsetDateTime};
use geostream_model::{ReasonCode, Replay, Source};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::lines::{Line, LineKind, LineSplitter, MAX_LINE_BYTES, decode_line};
use super::{BATCH_MAX_UNITS, commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::metrics::FeedLabel;
use crate::pipeline::{Batch, FeedPipeline, Retime};
use geostream_model::backoff::Backoff;

/// How often a folder is listed for new or grown files.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// A folder file last modified this long ago counts as complete without waiting for a second scan.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Largest file read as one document; a larger one becomes a single `too_large` dead letter
/// instead of taking the stage's memory.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes read from a line file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Window decoded again before a resumed offset to restore a line codec's state.
const WARM_UP_BYTES: u64 = 64 * 1024;

/// Most lines of that window decoded again (enough for any AIS multi-part message and NMEA epoch).
const WARM_UP_LINES: usize = 256;

/// Bytes at the start of a file hashed to recognise it again.
const HEAD_BYTES: u64 = 4096;

/// A wait shorter than this is not worth committing early for: a paced record may go out this much
/// before it is due.
pub const PACING_SLACK: Duration = Duration::from_millis(20);

/// Shortest time between the anchors of two passes of a repeated file. A file whose records all
/// share one time (a GTFS-rt snapshot) would otherwise loop as fast as it can be read.
pub const MIN_PASS: Duration = Duration::from_secs(10);

/// A wait this long means "not in this lifetime" (until cancelled), without overflowing an Instant.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How far one file has been read, stored as JSON in the feed's state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file (for people reading the state directory; the checkpoint's name is its hash).
    pub path: String,
    /// Size of the file when its end was reached (bytes read); at a mid-file checkpoint, the size
    /// when reading began.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch, when the checkpoint was written.
    pub mtime_ns: u64,
    /// Inode (0 where there is none), to tell a replaced file from a grown one.
    pub inode: u64,
    /// Bytes covered by `head`.
    pub head_len: u64,
    /// SHA-256 (first 16 bytes, hex) of the file's first `head_len` bytes.
    pub head: String,
    /// Line files: byte offset just after the last committed line.
    pub offset: u64,
    /// Line files: number of the last committed line.
    pub line: u64,
    /// Document files: records of the document committed so far.
    pub records: u64,
    /// The file was read to its end.
    pub done: bool,
    /// Repeated files: the pass this checkpoint belongs to (from 1; 0 without `repeat`).
    #[serde(default)]
    pub pass: u64,
    /// Repeated files: the wall-clock time the pass's origin was placed at.
    #[serde(default, with = "geostream_model::rfc3339::option")]
    pub anchor: Option<OffsetDateTime>,
    /// Repeated files: the event time placed at `anchor` (none until the first observation of a
    /// line file passed).
    #[serde(default, with = "geostream_model::rfc3339::option")]
    pub origin: Option<OffsetDateTime>,
    /// Repeated files: the latest rebased event time committed in the pass, so the next pass
    /// starts after it.
    #[serde(default, with = "geostream_model::rfc3339::option")]
    pub last: Option<OffsetDateTime>,
}

impl Checkpoint {
    /// The JSON form.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of plain numbers and strings always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses [`Checkpoint::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// What is known about a file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// Inode, 0 where there is none.
    pub inode: u64,
}

impl FileState {
    fn of(meta: &std::fs::Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self { size: meta.len(), mtime_ns, inode }
    }
}

/// Where to start reading a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing new since it was read to its end.
    Skip,
    /// From the start.
    Start,
    /// Line file: from byte `offset`, after line `line`.
    Lines {
        /// Byte offset.
        offset: u64,
        /// Lines before it.
        line: u64,
    },
    /// Document file: skip the first `records` records of the (unchanged) document.
    Records(u64),
}

/// Decides where reading continues, from the file's checkpoint (if any), its current state, and
/// whether its first `head_len` bytes still hash to the checkpoint's `head`. With `repeat`, a file
/// read to its end starts again (the next pass). Pure.
pub fn plan(ck: Option<&Checkpoint>, now: FileState, head_matches: bool, framing: Framing, repeat: bool) -> Plan {
    let Some(ck) = ck else { return Plan::Start };
    let same_file = head_matches && (ck.inode == 0 || now.inode == 0 || ck.inode == now.inode);
    let unchanged = now.size == ck.size && now.mtime_ns == ck.mtime_ns;
    match framing {
        _ if !same_file => Plan::Start,
        _ if ck.done && repeat => Plan::Start,
        _ if ck.done && unchanged => Plan::Skip,
        Framing::Lines if now.size >= ck.offset => Plan::Lines { offset: ck.offset, line: ck.line },
        Framing::Lines => Plan::Start,
        // A document that changed is a new document: all of it again. A repeat pass takes the
        // records in time order, so a count from the other mode would name other records.
        Framing::Document if unchanged && !ck.done && ck.anchor.is_some() == repeat => Plan::Records(ck.records),
        Framing::Document => Plan::Start,
    }
}

/// `*` (any run of characters, also none) and `?` (one character) against a whole file name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy with backtracking to the last `*`: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// Whether a folder's file `name` is read under `pattern`.
pub fn selected(pattern: Option<&str>, name: &str) -> bool {
    let hidden_ok = pattern.is_some_and(|p| p.starts_with('.'));
    if name.starts_with('.') && !hidden_ok {
        return false;
    }
    pattern.is_none_or(|p| glob_match(p, name))
}

/// Whether a folder file is complete enough to read: unchanged since the previous scan, or not
/// modified for [`SETTLE`] (by the wall clock `now_ns`).
pub fn settled(previous: Option<FileState>, current: FileState, now_ns: u64) -> bool {
    previous == Some(current) || now_ns.saturating_sub(current.mtime_ns) >= SETTLE.as_nanos() as u64
}

/// One pass of a repeated file: its number (from 1) and how its event times map to the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Passes started so far, this one included.
    pub number: u64,
    /// When the pass's origin happens.
    pub anchor: OffsetDateTime,
    /// The event time placed at `anchor`, once known.
    pub origin: Option<OffsetDateTime>,
    /// The latest rebased event time committed in this pass.
    pub last: Option<OffsetDateTime>,
}

/// Where the pass after one anchored at `previous_anchor` (whose latest committed rebased time
/// was `previous_last`) is anchored: now, but no sooner than [`MIN_PASS`] after the previous
/// anchor, and not before the previous pass's last record, so a track's times never go back.
pub fn next_anchor(
    now: OffsetDateTime,
    previous_anchor: OffsetDateTime,
    previous_last: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let spaced =
        TimeDuration::try_from(MIN_PASS).ok().and_then(|d| previous_anchor.checked_add(d)).unwrap_or(previous_anchor);
    now.max(spaced).max(previous_last.unwrap_or(now))
}

/// The pass a read following `plan` belongs to. Resuming mid-file continues the checkpoint's pass
/// with its anchor and origin, so the records still to come get the ids they would have had;
/// reading from the start begins the next pass. A checkpoint without a pass (written without
/// `repeat`) begins pass 1 at `now`, wherever the plan resumes. Pure.
pub fn pass_for(ck: Option<&Checkpoint>, plan: Plan, now: OffsetDateTime) -> Pass {
    let previous = ck.and_then(|c| c.anchor.map(|anchor| (c, anchor)));
    match (plan, previous) {
        (Plan::Lines { .. } | Plan::Records(_), Some((c, anchor))) => {
            Pass { number: c.pass.max(1), anchor, origin: c.origin, last: c.last }
        }
        (_, Some((c, anchor))) => {
            Pass { number: c.pass + 1, anchor: next_anchor(now, anchor, c.last), origin: None, last: None }
        }
        (_, None) => Pass { number: ck.map_or(0, |c| c.pass) + 1, anchor: now, origin: None, last: None },
    }
}

/// How long from the wall-clock time `now` until a record rebased to `due` is due (zero when it
/// is). Repeated files pace by this instead of a [`Pacer`]: a restart mid-pass then catches up at
/// once on what fell due while it was down. Pure.
pub fn wall_delay(due: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let gap = due - now;
    if !gap.is_positive() {
        return Duration::ZERO;
    }
    Duration::try_from(gap).unwrap_or(FAR).min(FAR)
}

/// Orders a document's records by event time, dead letters (no time) first; records with equal
/// times keep their document order. The order depends on the document alone, so a checkpoint's
/// record count means the same records after a restart.
pub fn sort_by_event_time(batch: &mut Batch) {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch.event_times.get(i).copied().flatten());
    let mut envelopes: Vec<_> = std::mem::take(&mut batch.envelopes).into_iter().map(Some).collect();
    let times = std::mem::take(&mut batch.event_times);
    let fingerprints = std::mem::take(&mut batch.fingerprints);
    for i in order {
        if let Some(e) = envelopes.get_mut(i).and_then(Option::take) {
            batch.envelopes.push(e);
            batch.event_times.push(times.get(i).copied().flatten());
            batch.fingerprints.push(fingerprints.get(i).copied().unwrap_or_default());
        }
    }
}

/// `t` cut to whole milliseconds: anchors read better in records and checkpoints.
fn whole_millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(u32::from(t.millisecond()) * 1_000_000).unwrap_or(t)
}

/// Paces records by their event times: the first record is due at once, each later one when the
/// wall clock has advanced as far as its event time did (divided by the speed factor). Records
/// whose time lies before the first one's are due at once. Pure: the caller passes the clock.
#[derive(Debug, Clone)]
pub struct Pacer {
    speed: Option<f64>,
    anchor: Option<(OffsetDateTime, Instant)>,
}

impl Pacer {
    /// A pacer for `replay`.
    pub fn new(replay: Replay) -> Self {
        let speed = match replay {
            Replay::Fast => None,
            Replay::Original => Some(1.0),
            Replay::Speed(f) if f.is_finite() && f > 0.0 => Some(f),
            Replay::Speed(_) => None,
        };
        Self { speed, anchor: None }
    }

    /// Whether records wait for their time at all.
    pub fn paced(&self) -> bool {
        self.speed.is_some()
    }

    /// The speed factor, `None` for `fast` (or an invalid factor).
    pub fn speed(&self) -> Option<f64> {
        self.speed
    }

    /// How long from `now` until a record with event time `event` is due (zero when it is).
    pub fn delay(&mut self, event: OffsetDateTime, now: Instant) -> Duration {
        let Some(speed) = self.speed else { return Duration::ZERO };
        let (first_event, first_wall) = *self.anchor.get_or_insert((event, now));
        let gap = (event - first_event).as_seconds_f64() / speed;
        if gap.is_nan() || gap <= 0.0 {
            return Duration::ZERO;
        }
        // A gap beyond what an Instant can hold waits "forever" (until cancelled), without panic.
        let wall = Duration::try_from_secs_f64(gap).unwrap_or(FAR).min(FAR);
        first_wall.checked_add(wall).map_or(FAR, |due| due.saturating_duration_since(now))
    }
}

/// The checkpoint file of `path` in `state_dir`.
fn checkpoint_path(state_dir: &Path, path: &Path) -> PathBuf {
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    state_dir.join(format!("file-{hex}.json"))
}

fn load_checkpoint(state_dir: &Path, path: &Path) -> Option<Checkpoint> {
    let file = checkpoint_path(state_dir, path);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(checkpoint = %file.display(), error = %e, "file: checkpoint unreadable; reading from the start");
            return None;
        }
    };
    match Checkpoint::decode(&bytes) {
        Ok(ck) => Some(ck),
        Err(e) => {
            tracing::error!(checkpoint = %file.display(), error = %e, "file: checkpoint corrupt; reading from the start");
            None
        }
    }
}

/// Writes the checkpoint atomically: a temporary file, fsynced, renamed over the old one, and the
/// directory fsynced so the rename itself survives a crash.
fn store_checkpoint(state_dir: &Path, path: &Path, ck: &Checkpoint) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(state_dir)?;
    let target = checkpoint_path(state_dir, path);
    let tmp = target.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&ck.encode())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &target)?;
    std::fs::File::open(state_dir)?.sync_all()
}

/// Hex SHA-256 (16 bytes) of the first `len` bytes of `path`; `None` if they cannot be read.
async fn head_hash(path: &Path, len: u64) -> Option<String> {
    let mut f = tokio::fs::File::open(path).await.ok()?;
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut buf).await.ok()?;
    Some(Sha256::digest(&buf).iter().take(16).map(|b| format!("{b:02x}")).collect())
}

/// Runs the source until the single file is read, or until `cancel` (a folder is watched).
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::File { path, replay, pattern, resume, repeat } = &handle.spec.source else {
        return Err(handle.config_error("not a file source"));
    };
    let framing = handle.pipeline()?.framing();
    let pacer = Pacer::new(*replay);
    let repeat = match (*repeat, pacer.speed()) {
        (false, _) => None,
        (true, Some(speed)) => Some(speed),
        (true, None) => {
            return Err(
                handle.config_error("source.repeat needs a paced replay (`original` or a speed factor), not `fast`")
            );
        }
    };
    let mut reader = Reader {
        handle: &handle,
        cancel: &cancel,
        framing,
        pacer,
        resume: *resume,
        progress: HashMap::new(),
        repeat,
        pass: None,
    };
    let path = PathBuf::from(path);
    let id = handle.id().to_owned();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let result = loop {
        let meta = tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            m = tokio::fs::metadata(&path) => m,
        };
        let outcome = match meta {
            Ok(m) if m.is_dir() && repeat.is_some() => {
                break Err(handle.config_error(format!(
                    "source.repeat applies to a single file, but source.path {} is a folder; \
                     point source.path at one file or remove source.repeat",
                    path.display()
                )));
            }
            Ok(m) if m.is_dir() => reader.watch(&path, pattern.as_deref()).await,
            Ok(_) => reader.read(&path).await,
            Err(e) => Err(Fail::Io(format!("{} cannot be opened: {e}", path.display()))),
        };
        match outcome {
            // The next pass; the file is looked up again, as it may have been replaced.
            Ok(End::Done) if repeat.is_some() => backoff.reset(),
            Ok(_) => break Ok(()),
            Err(Fail::Source(e)) => break Err(e),
            Err(Fail::Io(detail)) => {
                handle.metrics.source_error(&id);
                let delay = backoff.next_delay();
                tracing::warn!(
                    feed = %id, error = %detail, failures = backoff.failures(), retry_in_ms = delay.as_millis() as u64,
                    "file: read failed; retrying from the last committed position"
                );
                if !sleep_or_cancel(delay, &cancel).await {
                    break Ok(());
                }
            }
        }
    };
    handle.metrics.set_up(&id, false);
    result
}

/// Why reading stopped early.
enum Fail {
    /// An I/O problem: retried with backoff from the last checkpoint.
    Io(String),
    /// The spool failed: the source stops.
    Source(SourceError),
}

impl From<SourceError> for Fail {
    fn from(e: SourceError) -> Self {
        Fail::Source(e)
    }
}

/// How reading one file ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Done,
    Cancelled,
}

struct Reader<'a> {
    handle: &'a FeedHandle,
    cancel: &'a CancellationToken,
    framing: Framing,
    pacer: Pacer,
    resume: bool,
    /// Checkpoints of the files seen (also kept, not stored, without `resume`).
    progress: HashMap<PathBuf, Checkpoint>,
    /// `repeat`'s speed factor; `None` without `repeat`.
    repeat: Option<f64>,
    /// The pass being read, with `repeat`.
    pass: Option<Pass>,
}

impl Reader<'_> {
    fn io(what: &str, path: &Path, e: &std::io::Error) -> Fail {
        Fail::Io(format!("{what} {}: {e}", path.display()))
    }

    /// Watches a folder until cancelled.
    async fn watch(&mut self, dir: &Path, pattern: Option<&str>) -> Result<End, Fail> {
        let id = self.handle.id().to_owned();
        tracing::info!(feed = %id, folder = %dir.display(), pattern = pattern.unwrap_or("*"), "file: watching folder");
        let mut previous: HashMap<PathBuf, FileState> = HashMap::new();
        loop {
            let files = list(dir, pattern).await.map_err(|e| Self::io("listing of folder", dir, &e))?;
            self.handle.metrics.set_up(&id, true);
            let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            for (path, state) in &files {
                if !settled(previous.get(path).copied(), *state, now_ns) || !self.needs_reading(path, *state) {
                    continue;
                }
                match self.read(path).await {
                    Ok(End::Done) => {}
                    Ok(End::Cancelled) => return Ok(End::Cancelled),
                    // One unreadable file must not hold up the others; the next scan retries it.
                    Err(Fail::Io(detail)) => {
                        self.handle.metrics.source_error(&id);
                        tracing::warn!(feed = %id, error = %detail, "file: read failed; retried at the next scan");
                    }
                    Err(e) => return Err(e),
                }
            }
            previous = files.into_iter().collect();
            if !sleep_or_cancel(SCAN_INTERVAL, self.cancel).await {
                return Ok(End::Cancelled);
            }
        }
    }

    /// A cheap check before opening a file: is there anything new in it?
    fn needs_reading(&mut self, path: &Path, state: FileState) -> bool {
        let ck = self.checkpoint(path);
        !ck.is_some_and(|ck| ck.done && ck.size == state.size && ck.mtime_ns == state.mtime_ns)
    }

    fn checkpoint(&mut self, path: &Path) -> Option<&Checkpoint> {
        if !self.progress.contains_key(path)
            && self.resume
            && let Some(ck) = load_checkpoint(&self.handle.state_dir, path)
        {
            self.progress.insert(path.to_path_buf(), ck);
        }
        self.progress.get(path)
    }

    /// Reads one file from where its checkpoint says, to its end or until cancelled.
    async fn read(&mut self, path: &Path) -> Result<End, Fail> {
        let id = self.handle.id().to_owned();
        let (state, ck, plan) = loop {
            let meta = tokio::fs::metadata(path).await.map_err(|e| Self::io("stat of", path, &e))?;
            let state = FileState::of(&meta);
            let ck = self.checkpoint(path).cloned();
            let head_matches = match &ck {
                Some(ck) if state.size >= ck.head_len => {
                    head_hash(path, ck.head_len).await.as_deref() == Some(&ck.head)
                }
                _ => false,
            };
            let plan = plan(ck.as_ref(), state, head_matches, self.framing, self.repeat.is_some());
            self.pass = self.repeat.map(|_| pass_for(ck.as_ref(), plan, whole_millis(now())));
            // A pass anchored ahead (MIN_PASS, or the previous pass's last record) starts then; the
            // file is looked at again after the wait, as it may have changed meanwhile.
            let wait = self.pass.map_or(Duration::ZERO, |p| wall_delay(p.anchor, now()));
            if wait <= PACING_SLACK {
                break (state, ck, plan);
            }
            if !sleep_or_cancel(wait, self.cancel).await {
                return Ok(End::Cancelled);
            }
        };
        if let Some(p) = self.pass {
            let continued = ck.as_ref().is_some_and(|c| c.pass == p.number);
            if !continued {
                self.handle.metrics.file_passes.get_or_create(&FeedLabel { feed: id.clone() }).inc();
            }
            tracing::info!(feed = %id, file = %path.display(), pass = p.number, anchor = %p.anchor, continued, "file: pass");
        }
        let repeat_start = self.repeat.is_some() && ck.as_ref().is_some_and(|c| c.done);
        if ck.is_some() && plan == Plan::Start && !repeat_start {
            tracing::warn!(
                feed = %id, file = %path.display(),
                "file: the checkpoint does not apply (the file was replaced or truncated, or the document changed); \
                 reading from the start"
            );
        }
        let head_len = state.size.min(HEAD_BYTES);
        let head = match plan {
            Plan::Skip => {
                tracing::info!(feed = %id, file = %path.display(), "file: already read to its end");
                return Ok(End::Done);
            }
            Plan::Start => head_hash(path, head_len).await.unwrap_or_default(),
            _ => ck.as_ref().map(|c| c.head.clone()).unwrap_or_default(),
        };
        let base = Checkpoint {
            path: path.display().to_string(),
            size: state.size,
            mtime_ns: state.mtime_ns,
            inode: state.inode,
            head_len: if plan == Plan::Start { head_len } else { ck.as_ref().map_or(head_len, |c| c.head_len) },
            head,
            offset: 0,
            line: 0,
            records: 0,
            done: false,
            pass: 0,
            anchor: None,
            origin: None,
            last: None,
        };
        tracing::info!(feed = %id, file = %path.display(), from = ?plan, size = state.size, "file: reading");
        self.handle.metrics.set_up(&id, true);
        match (self.framing, plan) {
            (Framing::Lines, Plan::Lines { offset, line }) => self.read_lines(path, base, offset, line).await,
            (Framing::Lines, _) => self.read_lines(path, base, 0, 0).await,
            (Framing::Document, Plan::Records(n)) => self.read_document(path, base, n).await,
            (Framing::Document, _) => self.read_document(path, base, 0).await,
        }
    }

    /// Records progress, durably when resuming. Called only after the records it covers are
    /// committed. With `repeat` the checkpoint carries the pass, so a restart continues it.
    async fn save(&mut self, path: &Path, mut ck: Checkpoint) -> Result<(), Fail> {
        if let Some(p) = self.pass {
            ck.pass = p.number;
            ck.anchor = Some(p.anchor);
            ck.origin = p.origin;
            ck.last = p.last;
        }
        if self.resume {
            let (dir, p, c) = (self.handle.state_dir.clone(), path.to_path_buf(), ck.clone());
            let stored = tokio::task::spawn_blocking(move || store_checkpoint(&dir, &p, &c)).await;
            match stored {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Self::io("checkpoint write for", path, &e)),
                Err(e) => return Err(Fail::Io(format!("checkpoint task for {}: {e}", path.display()))),
            }
        }
        self.progress.insert(path.to_path_buf(), ck);
        Ok(())
    }

    /// Commits `batch`; `false` when cancelled before it was durable.
    async fn commit(&mut self, batch: &Batch) -> Result<bool, Fail> {
        let durable = commit(self.handle, batch, self.cancel).await?;
        if durable && let Some(p) = &mut self.pass {
            p.last = p.last.max(batch.event_times.iter().flatten().max().copied());
        }
        Ok(durable)
    }

    /// Whether records wait for their time.
    fn paced(&self) -> bool {
        self.pass.is_some() || self.pacer.paced()
    }

    /// How long after `at` (a monotonic and a wall-clock reading of the same moment) a record with
    /// event time `event` is due: by the wall clock in a pass of a repeated file (its times are
    /// rebased), else by the [`Pacer`].
    fn delay_at(&mut self, event: OffsetDateTime, at: (Instant, OffsetDateTime)) -> Duration {
        if self.pass.is_some() { wall_delay(event, at.1) } else { self.pacer.delay(event, at.0) }
    }

    /// The rebasing of the current pass, if any.
    fn retime(&self) -> Option<Retime> {
        let speed = self.repeat?;
        self.pass.map(|p| Retime { origin: p.origin, anchor: p.anchor, speed })
    }

    /// Takes over the origin a line file's first observation gave the pass's rebasing.
    fn note_origin(&mut self, pipeline: &FeedPipeline) {
        if let Some(p) = &mut self.pass
            && p.origin.is_none()
        {
            p.origin = pipeline.retime().and_then(|r| r.origin);
        }
    }

    async fn read_lines(&mut self, path: &Path, base: Checkpoint, offset: u64, line: u64) -> Result<End, Fail> {
        let name = file_name(path);
        let mut file = tokio::fs::File::open(path).await.map_err(|e| Self::io("open of", path, &e))?;
        let mut pipeline = self.handle.pipeline()?;
        if offset > 0 {
            warm_up(&mut file, offset, &mut pipeline).await.map_err(|e| Self::io("read (warm-up) of", path, &e))?;
        }
        // After the warm-up, whose output is thrown away: it must not take the origin.
        pipeline.set_retime(self.retime());
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| Self::io("seek in", path, &e))?;
        let mut splitter = LineSplitter::starting_at(MAX_LINE_BYTES, offset, line);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut batch = Batch::default();
        // Position after the last line decoded into `batch`.
        let mut pos = (offset, line);
        let paced = self.paced();
        loop {
            if self.cancel.is_cancelled() {
                // Complete lines already decoded are committed; the codec's pending state is not
                // flushed (the file goes on; a resume warms it up again).
                if self.commit(&batch).await? {
                    self.save(path, Checkpoint { offset: pos.0, line: pos.1, ..base.clone() }).await?;
                }
                return Ok(End::Cancelled);
            }
            let n = tokio::select! {
                () = self.cancel.cancelled() => continue,
                r = file.read(&mut buf) => r.map_err(|e| Self::io("read of", path, &e))?,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let eof = n == 0;
            let mut ctx = pipeline.context(now(), String::new());
            let mut lines: Vec<(Batch, u64, u64)> = Vec::new();
            let mut decode = |l: Line<'_>| {
                ctx.location = format!("{name} line {}", l.number);
                if paced {
                    let mut one = Batch::default();
                    decode_line(&mut pipeline, l.kind, &ctx, &mut one);
                    lines.push((one, l.end, l.number));
                } else {
                    decode_line(&mut pipeline, l.kind, &ctx, &mut batch);
                    pos = (l.end, l.number);
                }
            };
            if eof {
                splitter.finish(&mut decode);
            } else {
                splitter.push(chunk, &mut decode);
            }
            self.note_origin(&pipeline);
            for (one, end, number) in lines {
                let at = (Instant::now(), now());
                let due = one.event_times.iter().flatten().max().map(|t| self.delay_at(*t, at));
                if let Some(wait) = due.filter(|d| *d > PACING_SLACK) {
                    if batch.inputs > 0 {
                        if !self.commit(&batch).await? {
                            return Ok(End::Cancelled);
                        }
                        self.save(path, Checkpoint { offset: pos.0, line: pos.1, ..base.clone() }).await?;
                        batch = Batch::default();
                    }
                    if !sleep_or_cancel(wait, self.cancel).await {
                        return Ok(End::Cancelled);
                    }
                }
                batch.extend(one);
                pos = (end, number);
            }
            if eof {
                let ctx = pipeline.context(now(), name.clone());
                pipeline.finish(&ctx, &mut batch);
                self.note_origin(&pipeline);
                if !self.commit(&batch).await? {
                    return Ok(End::Cancelled);
                }
                // The size and time the end was reached at: a file that grows later differs.
                let state = match file.metadata().await {
                    Ok(m) => FileState::of(&m),
                    Err(e) => return Err(Self::io("stat of", path, &e)),
                };
                let done = Checkpoint {
                    size: splitter.offset(),
                    mtime_ns: state.mtime_ns,
                    offset: splitter.offset(),
                    line: pos.1,
                    done: true,
                    ..base
                };
                self.save(path, done).await?;
                let (feed, file) = (self.handle.id(), path.display());
                match self.pass {
                    Some(p) => {
                        tracing::info!(%feed, %file, pass = p.number, lines = pos.1, "file: pass read to its end")
                    }
                    None => tracing::info!(%feed, %file, lines = pos.1, "file: read to its end"),
                }
                return Ok(End::Done);
            }
            if batch.inputs >= BATCH_MAX_UNITS as u64 {
                if !self.commit(&batch).await? {
                    return Ok(End::Cancelled);
                }
                self.save(path, Checkpoint { offset: pos.0, line: pos.1, ..base.clone() }).await?;
                batch = Batch::default();
            }
        }
    }

    async fn read_document(&mut self, path: &Path, base: Checkpoint, skip: u64) -> Result<End, Fail> {
        let name = file_name(path);
        let mut pipeline = self.handle.pipeline()?;
        let mut batch = Batch::default();
        let ctx = pipeline.context(now(), name.clone());
        if base.size > MAX_DOCUMENT_BYTES {
            let mut head = vec![0u8; 512 * 1024];
            let mut f = tokio::fs::File::open(path).await.map_err(|e| Self::io("open of", path, &e))?;
            let n = f.read(&mut head).await.map_err(|e| Self::io("read of", path, &e))?;
            head.truncate(n);
            let detail = format!(
                "the file is {} bytes, over the {MAX_DOCUMENT_BYTES} byte limit of one document; its first bytes are kept",
                base.size
            );
            pipeline.reject_unit(&head, ReasonCode::TooLarge, &detail, &ctx, &mut batch);
            batch.input_bytes = base.size;
        } else {
            let bytes = tokio::fs::read(path).await.map_err(|e| Self::io("read of", path, &e))?;
            if let Some(p) = &mut self.pass
                && p.origin.is_none()
            {
                p.origin = earliest_event(self.handle.pipeline()?, &bytes, &ctx);
            }
            pipeline.set_retime(self.retime());
            pipeline.decode_unit(&bytes, &ctx, &mut batch);
        }
        pipeline.finish(&ctx, &mut batch);
        if self.pass.is_some() {
            // Paced by the wall clock, records must come in time order, or an early record
            // behind a late one (a newest-first feed) would wait for it.
            sort_by_event_time(&mut batch);
        }
        let total = batch.len() as u64;
        // Records committed by an earlier run of this same document.
        let skip = usize::try_from(skip.min(total)).unwrap_or(batch.len());
        batch.envelopes.drain(..skip);
        batch.event_times.drain(..skip);
        batch.fingerprints.drain(..skip);
        let mut committed = skip as u64;
        let mut first = true;
        while !batch.envelopes.is_empty() || first {
            let mut take = batch.envelopes.len().min(BATCH_MAX_UNITS);
            if self.paced() {
                // Wait until the next record is due, then take the ones due by now.
                let next = batch.event_times.first().copied().flatten();
                let at = (Instant::now(), now());
                if let Some(wait) = next.map(|t| self.delay_at(t, at)).filter(|w| *w > PACING_SLACK)
                    && !sleep_or_cancel(wait, self.cancel).await
                {
                    return Ok(End::Cancelled);
                }
                let at = (Instant::now(), now());
                let not_due = batch
                    .event_times
                    .iter()
                    .take(take)
                    .position(|t| t.is_some_and(|t| self.delay_at(t, at) > PACING_SLACK));
                take = not_due.unwrap_or(take).max(1).min(batch.envelopes.len());
            }
            let part = split_front(&mut batch, take, first);
            first = false;
            if !self.commit(&part).await? {
                return Ok(End::Cancelled);
            }
            committed += part.len() as u64;
            let done = batch.envelopes.is_empty();
            self.save(
                path,
                Checkpoint { records: committed, offset: if done { base.size } else { 0 }, done, ..base.clone() },
            )
            .await?;
            if self.cancel.is_cancelled() && !done {
                return Ok(End::Cancelled);
            }
        }
        let (feed, file) = (self.handle.id(), path.display());
        match self.pass {
            Some(p) => tracing::info!(%feed, %file, pass = p.number, records = total, "file: pass read to its end"),
            None => tracing::info!(%feed, %file, records = total, "file: read to its end"),
        }
        Ok(End::Done)
    }
}

/// Moves the first `n` records of `batch` into a batch of their own; the tallies of the whole
/// decode (`with_tallies`) go with the first part so metrics count the file once.
fn split_front(batch: &mut Batch, n: usize, with_tallies: bool) -> Batch {
    let n = n.min(batch.envelopes.len());
    let mut part = Batch {
        envelopes: batch.envelopes.drain(..n).collect(),
        event_times: batch.event_times.drain(..n).collect(),
        fingerprints: batch.fingerprints.drain(..n).collect(),
        ..Batch::default()
    };
    if with_tallies {
        part.summary = std::mem::take(&mut batch.summary);
        part.inputs = std::mem::take(&mut batch.inputs);
        part.input_bytes = std::mem::take(&mut batch.input_bytes);
    }
    part
}

/// The earliest event time of a document, decoded by a pipeline of its own (its records are
/// thrown away): the origin of a repeat pass.
fn earliest_event(mut pipeline: FeedPipeline, bytes: &[u8], ctx: &geostream_codecs::Context) -> Option<OffsetDateTime> {
    let mut batch = Batch::default();
    pipeline.decode_unit(bytes, ctx, &mut batch);
    pipeline.finish(ctx, &mut batch);
    batch.event_times.into_iter().flatten().min()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Decodes the lines just before `offset` again, discarding the output, so the codec holds the
/// state it had when it decoded them (see the module documentation).
async fn warm_up(file: &mut tokio::fs::File, offset: u64, pipeline: &mut FeedPipeline) -> std::io::Result<()> {
    let start = offset.saturating_sub(WARM_UP_BYTES);
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut window = vec![0u8; usize::try_from(offset - start).unwrap_or(0)];
    file.read_exact(&mut window).await?;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut keep = |l: Line<'_>| {
        // The window's first line is cut unless the window starts the file. An over-long line
        // never reached the codec (it was dead-lettered), so it does not now either.
        if let LineKind::Line(b) = l.kind
            && (start == 0 || l.number > 1)
        {
            lines.push(b.to_vec());
        }
    };
    splitter.push(&window, &mut keep);
    splitter.finish(&mut keep);
    let from = lines.len().saturating_sub(WARM_UP_LINES);
    let mut discard = Batch::default();
    let ctx = pipeline.context(now(), "warm-up");
    for line in lines.get(from..).unwrap_or_default() {
        pipeline.decode_unit(line, &ctx, &mut discard);
    }
    Ok(())
}

/// The folder's selected regular files, in name order.
async fn list(dir: &Path, pattern: Option<&str>) -> std::io::Result<Vec<(PathBuf, FileState)>> {
    let mut out = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !selected(pattern, name) {
            continue;
        }
        // Follows symlinks: a link to a file is read like the file.
        let Ok(meta) = tokio::fs::metadata(entry.path()).await else { continue };
        if meta.is_file() {
            out.push((entry.path(), FileState::of(&meta)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::Duration as TimeDuration;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn fast_never_waits() {
        let mut p = Pacer::new(Replay::Fast);
        let now = Instant::now();
        assert!(!p.paced());
        assert_eq!(p.delay(t(0), now), Duration::ZERO);
        assert_eq!(p.delay(t(3600), now), Duration::ZERO);
    }

    #[test]
    fn original_follows_event_time_from_the_first_record() {
        let mut p = Pacer::new(Replay::Original);
        let start = Instant::now();
        assert_eq!(p.delay(t(0), start), Duration::ZERO, "the first record anchors the clock");
        assert_eq!(p.delay(t(10), start), Duration::from_secs(10));
        assert_eq!(p.delay(t(10), start + Duration::from_secs(4)), Duration::from_secs(6));
        assert_eq!(p.delay(t(10), start + Duration::from_secs(12)), Duration::ZERO, "late: due at once");
        assert_eq!(p.delay(t(-5), start + Duration::from_secs(1)), Duration::ZERO, "before the anchor: at once");
        let half = p.delay(t(0) + TimeDuration::milliseconds(500), start);
        assert_eq!(half, Duration::from_millis(500));
    }

    #[test]
    fn a_speed_factor_divides_the_gaps() {
        let mut p = Pacer::new(Replay::Speed(10.0));
        let start = Instant::now();
        p.delay(t(100), start);
        assert_eq!(p.delay(t(160), start), Duration::from_secs(6));
        assert_eq!(p.delay(t(160), start + Duration::from_secs(1)), Duration::from_secs(5));
        let mut slow = Pacer::new(Replay::Speed(0.5));
        slow.delay(t(0), start);
        assert_eq!(slow.delay(t(3), start), Duration::from_secs(6), "below 1 slows down");
    }

    #[test]
    fn absurd_gaps_and_factors_do_not_panic() {
        let start = Instant::now();
        let mut p = Pacer::new(Replay::Speed(1e-300));
        p.delay(t(0), start);
        assert!(p.delay(t(1), start) >= Duration::from_secs(3600 * 24 * 365));
        let mut bad = Pacer::new(Replay::Speed(f64::NAN));
        assert!(!bad.paced(), "an invalid factor means fast");
        assert_eq!(bad.delay(t(10), start), Duration::ZERO);
        let mut p = Pacer::new(Replay::Original);
        p.delay(OffsetDateTime::UNIX_EPOCH, start);
        assert!(p.delay(t(0), start) > Duration::from_secs(1_000_000_000));
    }

    fn ck(done: bool) -> Checkpoint {
        Checkpoint {
            path: "/data/a.nmea".into(),
            size: 1000,
            mtime_ns: 5,
            inode: 77,
            head_len: 1000,
            head: "abcd".into(),
            offset: 600,
            line: 12,
            records: 40,
            done,
            pass: 0,
            anchor: None,
            origin: None,
            last: None,
        }
    }

    /// A checkpoint of pass 3 of a repeated file, anchored at `t(1000)`.
    fn ck_pass(done: bool) -> Checkpoint {
        Checkpoint { pass: 3, anchor: Some(t(1000)), origin: Some(t(-50)), last: Some(t(1020)), ..ck(done) }
    }

    fn st(size: u64, mtime_ns: u64, inode: u64) -> FileState {
        FileState { size, mtime_ns, inode }
    }

    #[test]
    fn checkpoints_round_trip_and_garbage_is_an_error() {
        let c = ck(true);
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        let mut p = ck_pass(false);
        p.anchor = p.anchor.map(|a| a + TimeDuration::nanoseconds(123_456_789));
        assert_eq!(Checkpoint::decode(&p.encode()).unwrap(), p, "pass fields, to the nanosecond");
        let text = String::from_utf8(p.encode()).unwrap();
        assert!(text.contains("\"anchor\": \"2023-11-14T22:30:00.123456789Z\""), "readable by people: {text}");
        let text = String::from_utf8(c.encode()).unwrap();
        assert!(text.contains("\"offset\": 600"), "readable by people: {text}");
        assert!(Checkpoint::decode(b"{\"path\":\"x\"}").is_err());
        assert!(Checkpoint::decode(b"").is_err());
    }

    #[test]
    fn checkpoints_written_before_repeat_existed_still_load() {
        let old = br#"{"path": "/data/a.nmea", "size": 1000, "mtime_ns": 5, "inode": 77, "head_len": 1000,
            "head": "abcd", "offset": 600, "line": 12, "records": 40, "done": true}"#;
        assert_eq!(Checkpoint::decode(old).unwrap(), ck(true));
    }

    #[test]
    fn with_repeat_a_file_read_to_its_end_starts_again() {
        for framing in [Framing::Lines, Framing::Document] {
            let done = Some(&ck(true));
            assert_eq!(plan(done, st(1000, 5, 77), true, framing, true), Plan::Start, "{framing:?}: the next pass");
            assert_eq!(plan(done, st(1000, 5, 77), true, framing, false), Plan::Skip, "{framing:?}: no repeat");
            assert_eq!(plan(done, st(1500, 9, 77), true, framing, true), Plan::Start, "{framing:?}: grew");
            assert_eq!(plan(done, st(1000, 5, 78), true, framing, true), Plan::Start, "{framing:?}: replaced");
            assert_eq!(plan(None, st(1000, 5, 77), false, framing, true), Plan::Start);
        }
        let mid = Some(&ck(false));
        assert_eq!(plan(mid, st(1000, 5, 77), true, Framing::Lines, true), Plan::Lines { offset: 600, line: 12 });
        let pass = Some(&ck_pass(false));
        assert_eq!(plan(pass, st(1000, 5, 77), true, Framing::Document, true), Plan::Records(40), "mid-pass resumes");
        assert_eq!(plan(pass, st(1000, 5, 77), true, Framing::Lines, true), Plan::Lines { offset: 600, line: 12 });
        // Documents count records in time order in a pass, in document order otherwise.
        assert_eq!(plan(mid, st(1000, 5, 77), true, Framing::Document, true), Plan::Start, "repeat turned on");
        assert_eq!(plan(pass, st(1000, 5, 77), true, Framing::Document, false), Plan::Start, "repeat turned off");
    }

    #[test]
    fn a_resume_continues_the_pass_and_a_start_begins_the_next() {
        let now = t(5000);
        let lines = Plan::Lines { offset: 600, line: 12 };
        let same = Pass { number: 3, anchor: t(1000), origin: Some(t(-50)), last: Some(t(1020)) };
        assert_eq!(pass_for(Some(&ck_pass(false)), lines, now), same, "same anchor and origin: same ids");
        assert_eq!(pass_for(Some(&ck_pass(false)), Plan::Records(40), now), same);
        let next = Pass { number: 4, anchor: now, origin: None, last: None };
        assert_eq!(pass_for(Some(&ck_pass(true)), Plan::Start, now), next, "done: the next pass");
        assert_eq!(pass_for(Some(&ck_pass(false)), Plan::Start, now), next, "replaced mid-pass: the next pass");
        let soon = pass_for(Some(&ck_pass(true)), Plan::Start, t(1003));
        assert_eq!(soon.anchor, t(1020), "not before the previous pass's last record");
        let first = Pass { number: 1, anchor: now, origin: None, last: None };
        assert_eq!(pass_for(None, Plan::Start, now), first);
        assert_eq!(pass_for(Some(&ck(false)), lines, now), first, "a checkpoint from before repeat: pass 1 from it");
        assert_eq!(pass_for(Some(&ck(true)), Plan::Start, now), first);
    }

    #[test]
    fn passes_are_anchored_now_but_spaced_and_never_before_the_previous_end() {
        let min = TimeDuration::try_from(MIN_PASS).unwrap();
        assert_eq!(next_anchor(t(100), t(0), Some(t(60))), t(100), "the wall clock when it is latest");
        assert_eq!(next_anchor(t(3), t(0), Some(t(0))), t(0) + min, "a one-instant snapshot loops once per MIN_PASS");
        assert_eq!(next_anchor(t(3), t(0), None), t(0) + min, "an empty pass too");
        assert_eq!(next_anchor(t(20), t(0), Some(t(45))), t(45), "a track never goes back in time");
        assert_eq!(next_anchor(t(3), OffsetDateTime::UNIX_EPOCH, None), t(3));
    }

    #[test]
    fn repeated_records_are_due_by_the_wall_clock() {
        assert_eq!(wall_delay(t(10), t(4)), Duration::from_secs(6));
        assert_eq!(wall_delay(t(10) + TimeDuration::milliseconds(250), t(10)), Duration::from_millis(250));
        assert_eq!(wall_delay(t(10), t(10)), Duration::ZERO, "due now");
        assert_eq!(wall_delay(t(10), t(70)), Duration::ZERO, "overdue (a restart catching up): at once");
        let far_future = OffsetDateTime::from_unix_timestamp(250_000_000_000).unwrap();
        assert_eq!(wall_delay(far_future, t(0)), FAR, "capped, no overflow");
    }

    #[test]
    fn documents_are_sorted_by_event_time_dead_letters_first_ties_in_order() {
        let mut b = Batch::default();
        for (i, time) in [Some(30), None, Some(10), Some(30), Some(20), None, Some(10)].into_iter().enumerate() {
            b.envelopes.push(crate::pipeline::Envelope {
                route: crate::pipeline::Route::Observations,
                key: vec![i as u8],
                value: vec![],
            });
            b.event_times.push(time.map(t));
            b.fingerprints.push([i as u8; 16]);
        }
        sort_by_event_time(&mut b);
        let keys: Vec<u8> = b.envelopes.iter().map(|e| e.key[0]).collect();
        assert_eq!(keys, [1, 5, 2, 6, 4, 0, 3]);
        let fps: Vec<u8> = b.fingerprints.iter().map(|f| f[0]).collect();
        assert_eq!(fps, keys, "fingerprints move with their records");
        assert_eq!(b.event_times, [None, None, Some(t(10)), Some(t(10)), Some(t(20)), Some(t(30)), Some(t(30))]);
    }

    #[test]
    fn line_files_continue_at_the_offset_when_they_are_the_same_file() {
        let lines = Framing::Lines;
        assert_eq!(plan(None, st(10, 1, 1), false, lines, false), Plan::Start);
        assert_eq!(plan(Some(&ck(false)), st(1000, 5, 77), true, lines, false), Plan::Lines { offset: 600, line: 12 });
        assert_eq!(plan(Some(&ck(true)), st(1000, 5, 77), true, lines, false), Plan::Skip, "done and unchanged");
        assert_eq!(
            plan(Some(&ck(true)), st(1500, 9, 77), true, lines, false),
            Plan::Lines { offset: 600, line: 12 },
            "grew"
        );
        assert_eq!(
            plan(Some(&ck(false)), st(599, 9, 77), true, lines, false),
            Plan::Start,
            "truncated below the offset"
        );
        assert_eq!(plan(Some(&ck(false)), st(1000, 5, 78), true, lines, false), Plan::Start, "another inode: replaced");
        assert_eq!(
            plan(Some(&ck(false)), st(1000, 5, 77), false, lines, false),
            Plan::Start,
            "other first bytes: replaced"
        );
        assert_eq!(plan(Some(&ck(false)), st(1000, 5, 0), true, lines, false), Plan::Lines { offset: 600, line: 12 });
    }

    #[test]
    fn document_files_resume_by_record_only_while_unchanged() {
        let doc = Framing::Document;
        assert_eq!(plan(Some(&ck(false)), st(1000, 5, 77), true, doc, false), Plan::Records(40));
        assert_eq!(plan(Some(&ck(false)), st(1000, 6, 77), true, doc, false), Plan::Start, "changed mid-way");
        assert_eq!(plan(Some(&ck(true)), st(1000, 5, 77), true, doc, false), Plan::Skip);
        assert_eq!(plan(Some(&ck(true)), st(1200, 8, 77), true, doc, false), Plan::Start, "a changed document is new");
    }

    #[test]
    fn checkpoints_are_stored_atomically_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, b) = (Path::new("/in/a.nmea"), Path::new("/in/b.nmea"));
        assert_eq!(load_checkpoint(&state, a), None);
        store_checkpoint(&state, a, &ck(false)).unwrap();
        store_checkpoint(&state, a, &ck(true)).unwrap();
        assert_eq!(load_checkpoint(&state, a), Some(ck(true)));
        assert_eq!(load_checkpoint(&state, b), None, "each file has its own checkpoint");
        let names: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        std::fs::write(checkpoint_path(&state, b), b"{torn").unwrap();
        assert_eq!(load_checkpoint(&state, b), None, "a corrupt checkpoint reads as none");
    }

    #[test]
    fn glob_patterns() {
        for (p, n, want) in [
            ("*.nmea", "a.nmea", true),
            ("*.nmea", "a.nmea.tmp", false),
            ("*", "anything", true),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxx", false),
            ("data_*_202?.csv", "data_x_y_2024.csv", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "ab", true),
            ("é?", "éü", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn hidden_files_need_a_pattern_that_asks_for_them() {
        assert!(selected(None, "a.gpx"));
        assert!(!selected(None, ".a.gpx.part"));
        assert!(!selected(Some("*.gpx"), ".a.gpx"));
        assert!(selected(Some(".*.gpx"), ".a.gpx"));
        assert!(!selected(Some("*.gpx"), "a.csv"));
    }

    #[test]
    fn files_settle_when_unchanged_across_scans_or_old_enough() {
        let s = st(10, 1_000_000_000_000, 1);
        let soon = 1_000_000_000_000 + 100;
        assert!(!settled(None, s, soon), "new and just written");
        assert!(!settled(Some(st(5, 999, 1)), s, soon), "changed since the last scan");
        assert!(settled(Some(s), s, soon), "unchanged for one scan");
        assert!(settled(None, s, 1_000_000_000_000 + SETTLE.as_nanos() as u64), "old enough");
        assert!(!settled(None, st(1, u64::MAX, 1), soon), "a future mtime waits for a second scan");
    }

    #[test]
    fn split_front_moves_records_and_the_tallies_once() {
        let mut b = Batch::default();
        for i in 0..5u8 {
            b.envelopes.push(crate::pipeline::Envelope {
                route: crate::pipeline::Route::Observations,
                key: vec![i],
                value: vec![],
            });
            b.event_times.push(None);
            b.fingerprints.push([i; 16]);
        }
        b.inputs = 1;
        b.summary.accepted = 5;
        let first = split_front(&mut b, 2, true);
        assert_eq!((first.len(), first.inputs, first.summary.accepted), (2, 1, 5));
        let second = split_front(&mut b, 10, false);
        assert_eq!((second.len(), second.inputs, second.summary.accepted), (3, 0, 0));
        assert_eq!(second.envelopes[0].key, [2]);
        assert!(b.is_empty());
    }
}

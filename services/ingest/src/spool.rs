//! The ingest stage's disk spool: an append-only, fsync-backed queue of opaque payloads that holds
//! records while Kafka is unreachable (BRIEF §1, "Every stage is restartable").
//!
//! A record may be acknowledged to its source once [`Spool::append`] has returned: by then it is
//! fsynced. When Kafka is back, the shell drains the spool in order ([`Spool::peek`] /
//! [`Spool::read_from`]) and calls [`Spool::ack`] once Kafka acked the records. The spool is bounded
//! by [`SpoolConfig::max_bytes`] of unacknowledged data; when full, [`Spool::append`] fails with
//! [`SpoolError::Full`] without writing anything, and the caller applies backpressure.
//!
//! This module is synchronous `std::fs` code; the async shell runs it on a blocking thread.
//!
//! # On-disk format
//!
//! The spool directory holds:
//!
//! - Segment files `<first_seq>.seg`, where `<first_seq>` is the sequence number of the segment's
//!   first record, zero-padded to 20 decimal digits (so lexical order is numeric order). Records
//!   carry no stored sequence number: record `i` of a segment has sequence `first_seq + i`, and the
//!   segments are contiguous (each begins where the previous ended; open checks this).
//! - Each record is framed as `[u32 LE payload length][u32 LE CRC-32][payload bytes]`. The CRC-32
//!   (IEEE, crate `crc32fast`) covers the record's implied sequence number (u64 LE), the length
//!   field and the payload, so a record read at the wrong position or a zero-filled tail never
//!   passes as valid.
//! - `ack`: 12 bytes, the next unacknowledged sequence number (u64 LE) followed by the CRC-32 of
//!   those 8 bytes (u32 LE). It is replaced atomically: written to `ack.tmp`, fsynced, renamed over
//!   `ack`, then the directory is fsynced. A missing `ack` means nothing was ever acknowledged.
//!
//! - `lock`: empty; an open spool holds an exclusive `flock` on it, so a second writer (another
//!   process on the same volume, or a stage that did not stop) fails to open instead of
//!   interleaving segments.
//!
//! Other files in the directory are ignored; a stale `ack.tmp` is removed on open.
//!
//! # Durability and recovery
//!
//! [`Spool::append`] writes the whole batch and then fsyncs (group commit: one `fdatasync` per
//! segment the batch touched, plus a directory fsync when it created a segment). A crash can
//! therefore only tear records of a batch whose `append` never returned, and those live in the last
//! segment. On open, a bad frame in the last segment (short header, short payload, CRC mismatch)
//! is truncated away together with everything after it and reported in [`RecoveryReport`]; a bad
//! frame in any other segment is corruption of acknowledged data and fails the open with the file
//! and offset. Segments wholly below the ack position (left over from a crash during
//! [`Spool::ack`]) are deleted on open.
//!
//! If a write fails mid-batch, the spool rolls the batch back (truncating what it wrote, removing
//! segments it created). If even that fails the spool refuses further appends
//! ([`SpoolError::Poisoned`]) until it is reopened; recovery may then surface part of the failed
//! batch, which the caller will also re-append: at-least-once, never lost.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use geostream_model::{Classify, ErrorClass};

/// Bytes of framing in front of every payload: length and CRC.
pub const FRAME_HEADER: u64 = 8;
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
const LOCK_FILE: &str = "lock";
const SEG_EXT: &str = ".seg";

/// Size limits of a [`Spool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Upper bound on unacknowledged data (payloads plus [`FRAME_HEADER`] per record), in bytes.
    pub max_bytes: u64,
    /// A segment is rolled once the next record would take it past this size (a single record
    /// larger than this gets a segment of its own).
    pub segment_bytes: u64,
}

/// What [`Spool::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files found (before deleting fully acknowledged ones).
    pub segments: usize,
    /// Unacknowledged records present after recovery.
    pub records: u64,
    /// Records dropped from a torn tail of the last segment: 1 when a tail was cut (the frame that
    /// failed to verify; bytes after it cannot be parsed and are counted in `torn_bytes`), else 0.
    pub torn_records: u64,
    /// Bytes truncated from the last segment.
    pub torn_bytes: u64,
    /// The segment that was truncated, if any.
    pub torn_segment: Option<PathBuf>,
    /// Fully acknowledged segments deleted during recovery.
    pub deleted_segments: usize,
}

/// One spooled record, as returned by [`Spool::read_from`] and [`Spool::peek`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number, continuous across segments and restarts.
    pub seq: u64,
    /// The payload as appended.
    pub payload: Vec<u8>,
}

/// Errors of the disk spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file system operation failed.
    #[error("spool: {what} {path} failed: {source}")]
    Io {
        /// The operation, e.g. "fsync of segment".
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Data on disk does not verify where it must (anywhere but the torn tail of the last segment).
    #[error("spool: corrupt data in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file holding the bad data.
        path: PathBuf,
        /// Byte offset of the bad frame or field.
        offset: u64,
        /// What did not verify.
        reason: String,
    },
    /// The batch does not fit in the remaining capacity; nothing was written. Retry after an ack.
    #[error(
        "spool: full: batch needs {needed} bytes but only {available} of max_bytes are free until records are acknowledged"
    )]
    Full {
        /// Bytes the batch needs on disk, framing included.
        needed: u64,
        /// Bytes free below `max_bytes`.
        available: u64,
    },
    /// The batch (or a record in it) can never fit, however much is acknowledged.
    #[error("spool: batch of {needed} bytes (framing included) exceeds the spool's max_bytes {max}; split it")]
    TooLarge {
        /// Bytes the batch needs, framing included (or the size of a record over 4 GiB).
        needed: u64,
        /// The configured limit.
        max: u64,
    },
    /// [`Spool::ack`] named a sequence number that was never appended.
    #[error("spool: cannot acknowledge through sequence {through}: the last appended sequence is {last:?}")]
    AckBeyondEnd {
        /// The requested sequence.
        through: u64,
        /// The last appended sequence, if any.
        last: Option<u64>,
    },
    /// The configuration is unusable.
    #[error("spool: invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// An earlier append failed and could not be rolled back; reopen the spool to recover.
    #[error("spool: an earlier failed append could not be rolled back; reopen the spool in {0}")]
    Poisoned(PathBuf),
    /// Another open spool (this process or another) holds the directory; two writers would
    /// interleave segments.
    #[error(
        "spool: {0} is in use by another spool (another ingest process on the same volume, or an earlier stage in this process that has not stopped); only one writer may own a spool"
    )]
    Locked(PathBuf),
}

impl Classify for SpoolError {
    fn class(&self) -> ErrorClass {
        match self {
            SpoolError::Io { .. } | SpoolError::Full { .. } | SpoolError::Poisoned(_) | SpoolError::Locked(_) => {
                ErrorClass::External
            }
            SpoolError::TooLarge { .. } | SpoolError::InvalidConfig(_) => ErrorClass::User,
            SpoolError::Corrupt { .. } | SpoolError::AckBeyondEnd { .. } => ErrorClass::Internal,
        }
    }

    fn retryable(&self) -> bool {
        // Poisoned needs a reopen, not a retry of the same call.
        matches!(self, SpoolError::Io { .. } | SpoolError::Full { .. })
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io { what, path: path.to_path_buf(), source }
}

/// The CRC of a record: over its sequence number, length field and payload.
fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn frame_len(payload: &[u8]) -> u64 {
    FRAME_HEADER + payload.len() as u64
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEG_EXT}"))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync of directory", dir))
}

/// In-memory index of one segment file.
#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Byte offset of each record's frame.
    offsets: Vec<u64>,
    /// File length (end of the last frame).
    len: u64,
}

impl Segment {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.offsets.len() as u64
    }

    /// Frame size of record `i` of this segment.
    fn frame(&self, i: usize) -> u64 {
        self.offsets.get(i + 1).copied().unwrap_or(self.len) - self.offsets[i]
    }
}

/// Outcome of scanning a segment file.
enum Scan {
    Clean,
    /// The first bad frame starts at `offset`.
    Bad {
        offset: u64,
        reason: String,
    },
}

fn scan_segment(path: &Path, first_seq: u64) -> Result<(Segment, Scan), SpoolError> {
    let data = fs::read(path).map_err(io_err("read of segment", path))?;
    let mut seg = Segment { first_seq, path: path.to_path_buf(), offsets: Vec::new(), len: 0 };
    let mut pos = 0usize;
    while pos < data.len() {
        let seq = first_seq + seg.offsets.len() as u64;
        let rest = &data[pos..];
        let bad = |reason: String| Scan::Bad { offset: pos as u64, reason };
        if rest.len() < FRAME_HEADER as usize {
            return Ok((seg, bad(format!("short frame header ({} of 8 bytes)", rest.len()))));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let body = &rest[FRAME_HEADER as usize..];
        if body.len() < len {
            return Ok((seg, bad(format!("short payload ({} of {len} bytes) for sequence {seq}", body.len()))));
        }
        if record_crc(seq, &body[..len]) != crc {
            return Ok((seg, bad(format!("CRC mismatch for sequence {seq}"))));
        }
        seg.offsets.push(pos as u64);
        pos += FRAME_HEADER as usize + len;
        seg.len = pos as u64;
    }
    Ok((seg, Scan::Clean))
}

fn read_ack(dir: &Path) -> Result<Option<u64>, SpoolError> {
    let path = dir.join(ACK_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read of ack file", &path)(e)),
    };
    let corrupt = |reason: String| SpoolError::Corrupt { path: path.clone(), offset: 0, reason };
    let Ok(bytes) = <[u8; 12]>::try_from(data.as_slice()) else {
        return Err(corrupt(format!("ack file is {} bytes, expected 12", data.len())));
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if crc32fast::hash(&seq) != crc {
        return Err(corrupt("ack file CRC mismatch".to_owned()));
    }
    Ok(Some(u64::from_le_bytes(seq)))
}

fn write_ack(dir: &Path, next_unacked: u64) -> Result<(), SpoolError> {
    let tmp = dir.join(ACK_TMP);
    let path = dir.join(ACK_FILE);
    let seq = next_unacked.to_le_bytes();
    let mut buf = Vec::with_capacity(12);
    buf.extend_from_slice(&seq);
    buf.extend_from_slice(&crc32fast::hash(&seq).to_le_bytes());
    let mut f = File::create(&tmp).map_err(io_err("create of ack temp file", &tmp))?;
    f.write_all(&buf).map_err(io_err("write of ack temp file", &tmp))?;
    f.sync_all().map_err(io_err("fsync of ack temp file", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("rename of ack temp file to", &path))?;
    sync_dir(dir)
}

/// A size-bounded, crash-safe FIFO of payloads on disk. See the [module docs](self) for the format.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segments: VecDeque<Segment>,
    /// Next unacknowledged sequence.
    ack: u64,
    /// Sequence the next appended record gets.
    next_seq: u64,
    /// Bytes (framing included) of records in `ack..next_seq`.
    unacked_bytes: u64,
    /// Open append handle on the last segment.
    writer: Option<File>,
    poisoned: bool,
    /// Held (flock) for as long as the spool is open.
    _lock: File,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers it after a crash.
    pub fn open(dir: impl AsRef<Path>, config: SpoolConfig) -> Result<(Spool, RecoveryReport), SpoolError> {
        if config.max_bytes == 0 {
            return Err(SpoolError::InvalidConfig("max_bytes must be positive"));
        }
        if config.segment_bytes == 0 {
            return Err(SpoolError::InvalidConfig("segment_bytes must be positive"));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("creation of spool directory", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open of lock file", &lock_path))?;
        match fs4::FileExt::try_lock(&lock) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(fs4::TryLockError::Error(e)) => return Err(io_err("lock of", &lock_path)(e)),
        }
        let tmp = dir.join(ACK_TMP);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("removal of stale", &tmp)(e)),
            _ => {}
        }
        let ack_file = read_ack(&dir)?;

        let mut firsts = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing of spool directory", &dir))? {
            let entry = entry.map_err(io_err("listing of spool directory", &dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEG_EXT)) else { continue };
            if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(first) = stem.parse::<u64>() {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut report = RecoveryReport { segments: firsts.len(), ..RecoveryReport::default() };
        let mut segments = VecDeque::with_capacity(firsts.len());
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(&dir, first);
            let prev = segments.back().map_or(first, Segment::end_seq);
            if prev != first {
                return Err(SpoolError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("segment should start at sequence {prev} (a segment is missing or misnamed)"),
                });
            }
            let (seg, scan) = scan_segment(&path, first)?;
            if let Scan::Bad { offset, reason } = scan {
                if i + 1 < firsts.len() {
                    return Err(SpoolError::Corrupt { path, offset, reason });
                }
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open of segment", &path))?;
                let file_len = f.metadata().map_err(io_err("stat of segment", &path))?.len();
                f.set_len(offset).map_err(io_err("truncation of torn tail in", &path))?;
                f.sync_all().map_err(io_err("fsync of segment", &path))?;
                report.torn_records = 1;
                report.torn_bytes = file_len - offset;
                report.torn_segment = Some(path);
            }
            segments.push_back(seg);
        }

        let first_seq = segments.front().map(|s| s.first_seq);
        let end_seq = segments.back().map(Segment::end_seq);
        let ack = match (ack_file, first_seq) {
            (None, first) => first.unwrap_or(0),
            (Some(a), Some(first)) if a < first => {
                return Err(SpoolError::Corrupt {
                    path: segment_path(&dir, first),
                    offset: 0,
                    reason: format!("records {a}..{first} are unacknowledged but their segment is missing"),
                });
            }
            (Some(a), _) => a,
        };
        let mut spool = Spool {
            dir,
            config,
            segments,
            ack,
            next_seq: end_seq.unwrap_or(ack),
            unacked_bytes: 0,
            writer: None,
            poisoned: false,
            _lock: lock,
        };
        report.deleted_segments = spool.delete_acked_segments()?;
        if spool.segments.is_empty() {
            spool.next_seq = ack;
        } else if ack > spool.next_seq {
            return Err(SpoolError::Corrupt {
                path: spool.dir.join(ACK_FILE),
                offset: 0,
                reason: format!("acknowledged through {ack} but the segments end at {}", spool.next_seq),
            });
        }
        spool.unacked_bytes = spool.bytes_in(ack, spool.next_seq);
        report.records = spool.len();
        Ok((spool, report))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unacknowledged records.
    pub fn len(&self) -> u64 {
        self.next_seq - self.ack
    }

    /// Whether every appended record has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes on disk (framing included) of unacknowledged records; bounded by `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.unacked_bytes
    }

    /// The next unacknowledged sequence number (the oldest record [`Spool::peek`] returns).
    pub fn ack_position(&self) -> u64 {
        self.ack
    }

    /// The sequence number the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `payloads` in order as one group commit and returns their sequence numbers; once it
    /// returns `Ok` the records are fsynced. An empty batch is a no-op (empty range). Fails with
    /// [`SpoolError::Full`], writing nothing, when the batch would take unacknowledged data past
    /// `max_bytes`.
    pub fn append(&mut self, payloads: &[&[u8]]) -> Result<Range<u64>, SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned(self.dir.clone()));
        }
        let start = self.next_seq;
        if payloads.is_empty() {
            return Ok(start..start);
        }
        let mut needed = 0u64;
        for p in payloads {
            if p.len() > u32::MAX as usize {
                return Err(SpoolError::TooLarge { needed: frame_len(p), max: self.config.max_bytes });
            }
            needed += frame_len(p);
        }
        if needed > self.config.max_bytes {
            return Err(SpoolError::TooLarge { needed, max: self.config.max_bytes });
        }
        let available = self.config.max_bytes.saturating_sub(self.unacked_bytes);
        if needed > available {
            return Err(SpoolError::Full { needed, available });
        }

        // Plan: which records go to which segment (existing last one or new ones).
        struct Chunk {
            first_seq: u64,
            is_new: bool,
            base_len: u64,
            buf: Vec<u8>,
            offsets: Vec<u64>,
        }
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut seq = start;
        for p in payloads {
            let frame = frame_len(p);
            let cur_len = match chunks.last() {
                Some(c) => Some(c.base_len + c.buf.len() as u64),
                None => self.segments.back().map(|s| s.len),
            };
            let roll = match cur_len {
                None => true,
                Some(len) => len > 0 && len + frame > self.config.segment_bytes,
            };
            if roll {
                chunks.push(Chunk { first_seq: seq, is_new: true, base_len: 0, buf: Vec::new(), offsets: Vec::new() });
            } else if chunks.is_empty() {
                let last = self.segments.back().map_or((seq, 0), |s| (s.first_seq, s.len));
                chunks.push(Chunk {
                    first_seq: last.0,
                    is_new: false,
                    base_len: last.1,
                    buf: Vec::new(),
                    offsets: Vec::new(),
                });
            }
            let Some(c) = chunks.last_mut() else { unreachable!("a chunk was just pushed") };
            c.offsets.push(c.base_len + c.buf.len() as u64);
            c.buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            c.buf.extend_from_slice(&record_crc(seq, p).to_le_bytes());
            c.buf.extend_from_slice(p);
            seq += 1;
        }

        // Execute; on failure roll back what was written.
        let mut written: Vec<(PathBuf, bool, u64)> = Vec::new(); // path, is_new, base_len
        let mut writer = self.writer.take();
        let result = (|| -> Result<Option<File>, SpoolError> {
            let mut created = false;
            for c in &chunks {
                let path = segment_path(&self.dir, c.first_seq);
                let mut f = if c.is_new {
                    written.push((path.clone(), true, 0));
                    created = true;
                    OpenOptions::new()
                        .create_new(true)
                        .append(true)
                        .open(&path)
                        .map_err(io_err("creation of segment", &path))?
                } else {
                    written.push((path.clone(), false, c.base_len));
                    match writer.take() {
                        Some(f) => f,
                        None => {
                            OpenOptions::new().append(true).open(&path).map_err(io_err("open of segment", &path))?
                        }
                    }
                };
                f.write_all(&c.buf).map_err(io_err("write to segment", &path))?;
                f.sync_data().map_err(io_err("fsync of segment", &path))?;
                writer = Some(f);
            }
            if created {
                sync_dir(&self.dir)?;
            }
            Ok(writer)
        })();
        match result {
            Ok(w) => self.writer = w,
            Err(e) => {
                self.writer = None;
                if !Self::rollback(&written) {
                    self.poisoned = true;
                }
                return Err(e);
            }
        }

        for c in chunks {
            let len = c.base_len + c.buf.len() as u64;
            if c.is_new {
                self.segments.push_back(Segment {
                    first_seq: c.first_seq,
                    path: segment_path(&self.dir, c.first_seq),
                    offsets: c.offsets,
                    len,
                });
            } else if let Some(s) = self.segments.back_mut() {
                s.offsets.extend(c.offsets);
                s.len = len;
            }
        }
        self.next_seq = seq;
        self.unacked_bytes += needed;
        Ok(start..seq)
    }

    /// Undoes a partially written batch; returns whether that succeeded.
    fn rollback(written: &[(PathBuf, bool, u64)]) -> bool {
        let mut ok = true;
        for (path, is_new, base_len) in written.iter().rev() {
            let r = if *is_new {
                fs::remove_file(path)
            } else {
                OpenOptions::new().write(true).open(path).and_then(|f| {
                    f.set_len(*base_len)?;
                    f.sync_all()
                })
            };
            ok &= r.is_ok();
        }
        ok
    }

    /// Up to `max` unacknowledged records in order, starting at sequence `from` (records before the
    /// ack position are never returned; `from` below it starts at the ack position).
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, SpoolError> {
        let mut seq = from.max(self.ack);
        let end = self.next_seq.min(seq.saturating_add(max as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(seq) as usize);
        if seq >= end {
            return Ok(out);
        }
        let idx = self.segments.partition_point(|s| s.end_seq() <= seq);
        for seg in self.segments.iter().skip(idx) {
            if seq >= end {
                break;
            }
            let i = (seq - seg.first_seq) as usize;
            let last = (end.min(seg.end_seq()) - seg.first_seq) as usize;
            if i >= last {
                continue;
            }
            let from_off = seg.offsets[i];
            let to_off = seg.offsets.get(last).copied().unwrap_or(seg.len);
            let mut f = File::open(&seg.path).map_err(io_err("open of segment", &seg.path))?;
            f.seek(SeekFrom::Start(from_off)).map_err(io_err("seek in segment", &seg.path))?;
            let mut buf = vec![0u8; (to_off - from_off) as usize];
            f.read_exact(&mut buf).map_err(io_err("read of segment", &seg.path))?;
            let mut pos = 0usize;
            for k in i..last {
                let off = seg.offsets[k];
                let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
                let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
                let corrupt = |reason: String| SpoolError::Corrupt { path: seg.path.clone(), offset: off, reason };
                if FRAME_HEADER + len as u64 != seg.frame(k) {
                    return Err(corrupt(format!(
                        "length field changed since the segment was indexed (sequence {seq})"
                    )));
                }
                let payload = &buf[pos + FRAME_HEADER as usize..pos + FRAME_HEADER as usize + len];
                if record_crc(seq, payload) != crc {
                    return Err(corrupt(format!("CRC mismatch for sequence {seq}")));
                }
                out.push(Record { seq, payload: payload.to_vec() });
                pos += FRAME_HEADER as usize + len;
                seq += 1;
            }
        }
        Ok(out)
    }

    /// The oldest `n` unacknowledged records, in order.
    pub fn peek(&self, n: usize) -> Result<Vec<Record>, SpoolError> {
        self.read_from(self.ack, n)
    }

    /// Acknowledges every record up to and including `through_seq`: persists the new ack position
    /// atomically, then deletes segments that hold only acknowledged records. Acknowledging an
    /// already acknowledged position is a no-op; beyond the last appended record is an error.
    pub fn ack(&mut self, through_seq: u64) -> Result<(), SpoolError> {
        if through_seq >= self.next_seq {
            return Err(SpoolError::AckBeyondEnd { through: through_seq, last: self.next_seq.checked_sub(1) });
        }
        let new_ack = through_seq + 1;
        if new_ack <= self.ack {
            return Ok(());
        }
        write_ack(&self.dir, new_ack)?;
        self.unacked_bytes -= self.bytes_in(self.ack, new_ack);
        self.ack = new_ack;
        self.delete_acked_segments()?;
        Ok(())
    }

    /// Deletes leading segments whose records are all below the ack position; returns how many.
    fn delete_acked_segments(&mut self) -> Result<usize, SpoolError> {
        let mut n = 0;
        while let Some(seg) = self.segments.front() {
            if seg.end_seq() > self.ack {
                break;
            }
            if self.segments.len() == 1 {
                self.writer = None;
            }
            match fs::remove_file(&seg.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("removal of acknowledged segment", &seg.path)(e));
                }
                _ => {}
            }
            self.segments.pop_front();
            n += 1;
        }
        Ok(n)
    }

    /// Bytes (framing included) of records in `from..to` per the index.
    fn bytes_in(&self, from: u64, to: u64) -> u64 {
        let mut total = 0;
        for seg in &self.segments {
            let lo = from.max(seg.first_seq);
            let hi = to.min(seg.end_seq());
            if lo >= hi {
                continue;
            }
            let a = seg.offsets[(lo - seg.first_seq) as usize];
            let b = seg.offsets.get((hi - seg.first_seq) as usize).copied().unwrap_or(seg.len);
            total += b - a;
        }
        total
    }
}

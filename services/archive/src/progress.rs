//! Exactly-once bookkeeping, as pure state: one progress object per Kafka partition is the source
//! of truth for what the archive holds; Kafka's committed offsets only make restarts start near it.
//!
//! A flush of one partition's buffered records goes:
//! 1. write the progress object with `pending` = the flush's offset range and the files it will write
//!    (the intent);
//! 2. write each file (whole objects: a local temporary file renamed into place, or one S3 PUT);
//! 3. write the progress object with `next_offset` = last + 1 and no `pending` (the commit point);
//! 4. commit `next_offset` to Kafka.
//!
//! A crash anywhere leaves one of: intent not written (nothing happened); intent written and some
//! files written; progress committed but Kafka not (Kafka redelivers records below `next_offset`;
//! they are skipped). An interrupted flush is **redone**, not undone: after a restart the
//! partition buffers exactly the intent's offset range again (Kafka's records at those offsets do
//! not change) and flushes it as one flush, which writes the same files under the same names.
//! Undoing (deleting the intent's files and flushing whatever comes) would be wrong on object
//! stores: a PUT the dead process sent can still land after the restart's clean-up, and its file
//! would then hold records a differently cut flush archives again. A redo makes such a late write
//! an overwrite with the same records. Only when the records no longer fit the intent (retention
//! removed them, or a newer build cuts files differently) is the flush abandoned: its files are
//! deleted and the records flushed as new ones ([`Progress::abandon`]).
//!
//! A flush with no files (only unparseable records) skips the intent.

use std::collections::BTreeMap;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::kind::ArchiveKind;
use crate::layout::{FileName, HourKey, Layout};
use crate::rows::Row;

/// Format version of the progress object.
pub const FORMAT: u32 = 1;

/// The stored progress of one Kafka partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// [`FORMAT`].
    pub format: u32,
    /// The topic (for people reading the object; the path already says which).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Every record below this offset is in committed files; the next flush starts at or after it.
    pub next_offset: i64,
    /// A flush that started and has not committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// The intent of a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// First offset of the flush.
    pub first: i64,
    /// Last offset of the flush.
    pub last: i64,
    /// The files it writes, as store paths.
    pub files: Vec<String>,
}

/// A progress object that is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// Not JSON of the expected shape.
    #[error("progress object is unreadable: {0}")]
    Unreadable(String),
    /// Another format version.
    #[error("progress object has format {found}, this build reads {FORMAT}")]
    Format {
        /// The version found.
        found: u32,
    },
    /// A flush that does not fit the progress (a bug if it ever happens).
    #[error("flush {first}..={last} does not fit progress at {next_offset} (pending: {pending})")]
    Order {
        /// The flush's first offset.
        first: i64,
        /// The flush's last offset.
        last: i64,
        /// The progress.
        next_offset: i64,
        /// Whether a flush was pending.
        pending: bool,
    },
}

impl Progress {
    /// A partition nothing was archived from.
    pub fn empty(topic: &str, partition: i32) -> Progress {
        Progress { format: FORMAT, topic: topic.to_owned(), partition, next_offset: 0, pending: None }
    }

    /// Parses a stored object.
    pub fn from_bytes(bytes: &[u8]) -> Result<Progress, ProgressError> {
        let p: Progress = serde_json::from_slice(bytes).map_err(|e| ProgressError::Unreadable(e.to_string()))?;
        if p.format != FORMAT {
            return Err(ProgressError::Format { found: p.format });
        }
        Ok(p)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// An interrupted flush gives up on redoing: the progress without it, and its files to
    /// delete before anything else is written (they may exist in part, or not at all).
    pub fn abandon(&self) -> (Progress, Vec<Path>) {
        let files = self.pending.iter().flat_map(|p| p.files.iter().map(|f| Path::from(f.as_str()))).collect();
        (Progress { pending: None, ..self.clone() }, files)
    }

    /// The intent of flushing `first..=last` into `files`.
    pub fn begin(&self, first: i64, last: i64, files: &[Path]) -> Result<Progress, ProgressError> {
        if self.pending.is_some() || first < self.next_offset || last < first {
            return Err(ProgressError::Order {
                first,
                last,
                next_offset: self.next_offset,
                pending: self.pending.is_some(),
            });
        }
        Ok(Progress {
            pending: Some(Pending { first, last, files: files.iter().map(|p| p.as_ref().to_owned()).collect() }),
            ..self.clone()
        })
    }

    /// The commit of the pending flush (or of an offset range without files, from `last`).
    pub fn finish(&self, last: i64) -> Progress {
        Progress { next_offset: self.next_offset.max(last + 1), pending: None, ..self.clone() }
    }

    /// Whether a data file's records are committed: compacted files always are; a batch file of
    /// this partition when its range is below `next_offset` and it is not part of a pending flush.
    pub fn is_committed(&self, name: &FileName) -> bool {
        match name {
            FileName::Compacted { .. } => true,
            FileName::Batch { partition, last, first } => {
                *partition == self.partition
                    && *last < self.next_offset
                    && self.pending.as_ref().is_none_or(|p| p.first != *first)
            }
        }
    }
}

/// Where a partition's consumer stands relative to its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Progress loaded; no record seen since the partition was assigned.
    Fresh {
        /// The progress's next offset.
        next: i64,
    },
    /// A seek back to `target` was requested because the first record, `seen`, was beyond it.
    Seeking {
        /// The offset asked for.
        target: i64,
        /// The first offset delivered before the seek.
        seen: i64,
    },
    /// Records are flowing in order.
    Positioned {
        /// The last offset taken.
        last: i64,
    },
}

/// What to do with a consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Buffer it.
    Take,
    /// Already archived (or a stale delivery): drop it.
    Skip,
    /// Kafka started past the progress (its committed offset is ahead of the archive, e.g. a
    /// wiped archive): seek the partition back to this offset and drop the record.
    SeekTo(i64),
}

impl Cursor {
    /// The decision for the next delivered offset, updating the cursor.
    pub fn admit(&mut self, offset: i64) -> Admit {
        match *self {
            Cursor::Fresh { next } if offset < next => Admit::Skip,
            Cursor::Fresh { next } if offset == next => {
                *self = Cursor::Positioned { last: offset };
                Admit::Take
            }
            Cursor::Fresh { next } => {
                *self = Cursor::Seeking { target: next, seen: offset };
                Admit::SeekTo(next)
            }
            // Records from before the seek may still arrive: only ones at or before the first
            // delivered offset are from the re-read.
            Cursor::Seeking { target, seen } => {
                if offset < target || offset > seen {
                    Admit::Skip
                } else {
                    *self = Cursor::Positioned { last: offset };
                    Admit::Take
                }
            }
            Cursor::Positioned { last } if offset <= last => Admit::Skip,
            Cursor::Positioned { .. } => {
                *self = Cursor::Positioned { last: offset };
                Admit::Take
            }
        }
    }
}

/// One file of a flush.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Its path.
    pub path: Path,
    /// Its hour.
    pub hour: HourKey,
    /// Its rows, in offset order.
    pub rows: Vec<Row>,
}

/// What one partition's flush writes: the intent (when there are files), the files, the commit.
#[derive(Debug, Clone)]
pub struct FlushPlan {
    /// The progress with the intent; `None` when there are no files.
    pub intent: Option<Progress>,
    /// The files, one per hour.
    pub files: Vec<PlannedFile>,
    /// The committed progress.
    pub done: Progress,
}

/// Plans the flush of records `first..=last` of one partition (`rows` are the parseable ones).
pub fn plan_flush(
    layout: &Layout,
    kind: ArchiveKind,
    progress: &Progress,
    first: i64,
    last: i64,
    rows: Vec<Row>,
) -> Result<FlushPlan, ProgressError> {
    let mut by_hour: BTreeMap<HourKey, Vec<Row>> = BTreeMap::new();
    for r in rows {
        by_hour.entry(r.hour()).or_default().push(r);
    }
    let name = FileName::Batch { partition: progress.partition, first, last };
    let files: Vec<PlannedFile> = by_hour
        .into_iter()
        .map(|(hour, rows)| PlannedFile { path: layout.file(kind, hour, &name), hour, rows })
        .collect();
    let paths: Vec<Path> = files.iter().map(|f| f.path.clone()).collect();
    // A redo of the pending flush must be that flush: same range, same files.
    let base = match &progress.pending {
        Some(p) if p.first == first && p.last == last => {
            let same = p.files.len() == paths.len() && paths.iter().all(|f| p.files.iter().any(|g| g == f.as_ref()));
            if !same {
                return Err(ProgressError::Order { first, last, next_offset: progress.next_offset, pending: true });
            }
            Progress { pending: None, ..progress.clone() }
        }
        _ => progress.clone(),
    };
    let intent = if files.is_empty() { None } else { Some(base.begin(first, last, &paths)?) };
    if intent.is_none() && (base.pending.is_some() || first < base.next_offset) {
        return Err(ProgressError::Order {
            first,
            last,
            next_offset: base.next_offset,
            pending: base.pending.is_some(),
        });
    }
    let done = intent.as_ref().unwrap_or(&base).finish(last);
    Ok(FlushPlan { intent, files, done })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;
    use crate::rows::Row;
    use geostream_model::geojson::Geometry;
    use geostream_model::{FeedId, Observation, TrackId};
    use time::macros::datetime;

    fn row(offset: i64) -> Row {
        // Records spread over three hours so a flush writes several files.
        let t = datetime!(2026-11-26 10:59 UTC) + time::Duration::minutes(offset % 3 * 60);
        let o = Observation::try_new(
            FeedId::new("f").unwrap(),
            Some(TrackId::new(format!("t{offset}")).unwrap()),
            t,
            t,
            Geometry::new_point([offset as f64 * 1e-3, 1.0]),
            Default::default(),
        )
        .unwrap();
        Row::parse(ArchiveKind::Observations, 0, offset, &serde_json::to_vec(&o).unwrap()).unwrap()
    }

    #[test]
    fn progress_round_trips_and_refuses_other_formats() {
        let p = Progress::empty("acme.observations", 3).begin(0, 9, &[Path::from("a/b.parquet")]).unwrap();
        assert_eq!(Progress::from_bytes(&p.to_bytes()).unwrap(), p);
        let mut other = serde_json::to_value(&p).unwrap();
        other["format"] = 2.into();
        assert!(matches!(Progress::from_bytes(other.to_string().as_bytes()), Err(ProgressError::Format { found: 2 })));
        assert!(Progress::from_bytes(b"{").is_err());
    }

    #[test]
    fn begin_refuses_overlaps_and_a_second_intent() {
        let p = Progress { next_offset: 10, ..Progress::empty("t", 0) };
        assert!(p.begin(9, 12, &[]).is_err());
        assert!(p.begin(12, 11, &[]).is_err());
        let i = p.begin(10, 12, &[]).unwrap();
        assert!(i.begin(13, 14, &[]).is_err());
        assert_eq!(i.finish(12).next_offset, 13);
        assert_eq!(i.finish(12).pending, None);
    }

    #[test]
    fn committed_files_are_below_the_progress_and_not_pending() {
        let p = Progress { next_offset: 100, ..Progress::empty("t", 2) }.begin(100, 150, &[]).unwrap();
        assert!(p.is_committed(&FileName::Batch { partition: 2, first: 0, last: 99 }));
        assert!(!p.is_committed(&FileName::Batch { partition: 2, first: 100, last: 150 }));
        assert!(!p.is_committed(&FileName::Batch { partition: 3, first: 0, last: 5 }));
        assert!(p.is_committed(&FileName::Compacted { hash: "ab".into() }));
    }

    #[test]
    fn the_cursor_skips_what_is_archived_and_seeks_back_when_kafka_is_ahead() {
        let mut c = Cursor::Fresh { next: 10 };
        assert_eq!(c.admit(7), Admit::Skip);
        assert_eq!(c.admit(10), Admit::Take);
        assert_eq!(c.admit(10), Admit::Skip);
        assert_eq!(c.admit(12), Admit::Take, "gaps (transaction markers) are normal");
        let mut c = Cursor::Fresh { next: 10 };
        assert_eq!(c.admit(20), Admit::SeekTo(10));
        assert_eq!(c.admit(21), Admit::Skip, "fetched before the seek");
        assert_eq!(c.admit(9), Admit::Skip);
        assert_eq!(c.admit(11), Admit::Take, "10 was a marker");
        assert_eq!(c.admit(12), Admit::Take);
        // A new partition: the first record is taken wherever Kafka starts after a reset to 0.
        let mut c = Cursor::Fresh { next: 0 };
        assert_eq!(c.admit(0), Admit::Take);
        let mut c = Cursor::Fresh { next: 0 };
        assert_eq!(c.admit(5), Admit::SeekTo(0));
        assert_eq!(c.admit(3), Admit::Take, "retention removed 0..3");
    }

    /// The store as the simulation sees it: files (path → offsets in it) and progress objects.
    #[derive(Default, Clone)]
    struct Sim {
        files: BTreeMap<String, Vec<i64>>,
        progress: Option<Progress>,
        kafka_committed: i64,
    }

    /// The files a flush plans, as the simulation stores them.
    type Files = Vec<(String, Vec<i64>)>;

    /// One step of a flush, in order; `crash_after` steps run, then the process dies. Returns
    /// whether it completed, and the files it planned.
    fn flush(sim: &mut Sim, layout: &Layout, first: i64, last: i64, crash_after: usize) -> (bool, Files) {
        let progress = sim.progress.clone().unwrap_or_else(|| Progress::empty("acme.observations", 0));
        let rows: Vec<Row> = (first..=last).filter(|o| o % 5 != 4).map(row).collect(); // every fifth is malformed
        let plan = plan_flush(layout, ArchiveKind::Observations, &progress, first, last, rows).unwrap();
        let files: Files = plan
            .files
            .iter()
            .map(|f| (f.path.as_ref().to_owned(), f.rows.iter().map(|r| r.offset).collect()))
            .collect();
        let mut steps = 0;
        let mut step = |sim: &mut Sim, f: &dyn Fn(&mut Sim)| {
            if steps >= crash_after {
                return false;
            }
            f(sim);
            steps += 1;
            true
        };
        if let Some(intent) = &plan.intent
            && !step(sim, &|s| s.progress = Some(intent.clone()))
        {
            return (false, files);
        }
        for (path, offsets) in &files {
            if !step(sim, &|s| {
                s.files.insert(path.clone(), offsets.clone());
            }) {
                return (false, files);
            }
        }
        if !step(sim, &|s| s.progress = Some(plan.done.clone())) {
            return (false, files);
        }
        let next = plan.done.next_offset;
        (step(sim, &|s| s.kafka_committed = next), files)
    }

    /// Runs the archive over offsets 0..n in flushes of `size`, crashing at `crash_after` steps of
    /// flush number `crash_flush`, then restarting (redelivery from Kafka's committed offset, the
    /// interrupted flush redone, then other flush boundaries). Every file the dead process planned
    /// lands late, after the redo, as a PUT it sent before dying would. Returns how often each
    /// offset is archived.
    fn run(n: i64, size: i64, crash_flush: usize, crash_after: usize) -> BTreeMap<i64, usize> {
        let layout = Layout::new(Path::from("root"), "acme");
        let mut sim = Sim::default();
        let mut offset = 0;
        let mut flushes = 0;
        let mut size = size;
        let mut late: Option<Files> = None;
        while offset < n {
            let mut last = (offset + size - 1).min(n - 1);
            if late.is_none() && flushes == crash_flush {
                let (done, files) = flush(&mut sim, &layout, offset, last, crash_after);
                late = Some(files);
                if !done {
                    // Restart: Kafka redelivers from its committed offset; the cursor skips what
                    // the progress covers.
                    let stored = sim.progress.clone().unwrap_or_else(|| Progress::empty("t", 0));
                    let mut cursor = Cursor::Fresh { next: stored.next_offset };
                    offset = sim.kafka_committed;
                    while offset < n && cursor.admit(offset) == Admit::Skip {
                        offset += 1;
                    }
                    size += 2;
                    if let Some(p) = &stored.pending {
                        assert_eq!(p.first, offset, "the redo starts where the intent did");
                        last = p.last;
                        assert!(flush(&mut sim, &layout, offset, last, usize::MAX).0);
                        for (path, offsets) in late.iter().flatten() {
                            sim.files.insert(path.clone(), offsets.clone());
                        }
                        offset = last + 1;
                    }
                    flushes += 1;
                    continue;
                }
            } else {
                assert!(flush(&mut sim, &layout, offset, last, usize::MAX).0);
            }
            flushes += 1;
            offset = last + 1;
        }
        let mut seen = BTreeMap::new();
        let p = sim.progress.unwrap();
        for (path, offsets) in &sim.files {
            let name = FileName::parse(path.rsplit('/').next().unwrap()).unwrap();
            assert!(p.is_committed(&name), "{path} left behind");
            for o in offsets {
                *seen.entry(*o).or_default() += 1;
            }
        }
        assert_eq!(p.next_offset, n);
        seen
    }

    #[test]
    fn a_crash_at_any_step_of_any_flush_neither_loses_nor_duplicates() {
        let n = 40;
        let want: BTreeSet<i64> = (0..n).filter(|o| o % 5 != 4).collect();
        for size in [1, 3, 7] {
            for crash_flush in 0..4 {
                // Up to 1 intent + 3 hour files + progress + Kafka commit, and "no crash" beyond.
                for crash_after in 0..=7 {
                    let seen = run(n, size, crash_flush, crash_after);
                    assert_eq!(
                        seen.keys().copied().collect::<BTreeSet<_>>(),
                        want,
                        "size {size} crash {crash_flush}/{crash_after}"
                    );
                    assert!(
                        seen.values().all(|&c| c == 1),
                        "duplicates: size {size} crash {crash_flush}/{crash_after}: {seen:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_redo_must_be_the_interrupted_flush_and_abandoning_lists_its_files() {
        let layout = Layout::new(Path::default(), "acme");
        let p = Progress::empty("t", 0);
        let first = plan_flush(&layout, ArchiveKind::Observations, &p, 0, 5, (0..6).map(row).collect()).unwrap();
        let interrupted = first.intent.clone().unwrap();
        let redo =
            plan_flush(&layout, ArchiveKind::Observations, &interrupted, 0, 5, (0..6).map(row).collect()).unwrap();
        assert_eq!(redo.intent, first.intent);
        assert_eq!(redo.done, first.done);
        // Another range, or the same range cut into other files, is not the interrupted flush.
        assert!(plan_flush(&layout, ArchiveKind::Observations, &interrupted, 0, 4, (0..5).map(row).collect()).is_err());
        assert!(plan_flush(&layout, ArchiveKind::Observations, &interrupted, 0, 5, vec![row(0)]).is_err());
        let (abandoned, delete) = interrupted.abandon();
        assert_eq!(abandoned, p);
        assert_eq!(delete.len(), 3);
        assert!(plan_flush(&layout, ArchiveKind::Observations, &abandoned, 0, 4, (0..5).map(row).collect()).is_ok());
    }

    #[test]
    fn a_flush_of_only_malformed_records_commits_without_files_or_intent() {
        let layout = Layout::new(Path::default(), "acme");
        let p = Progress { next_offset: 4, ..Progress::empty("t", 0) };
        let plan = plan_flush(&layout, ArchiveKind::Observations, &p, 4, 4, vec![]).unwrap();
        assert!(plan.intent.is_none() && plan.files.is_empty());
        assert_eq!(plan.done.next_offset, 5);
        assert!(plan_flush(&layout, ArchiveKind::Observations, &p, 2, 4, vec![]).is_err());
    }

    #[test]
    fn a_flush_writes_one_file_per_hour_named_by_its_range() {
        let layout = Layout::new(Path::default(), "acme");
        let p = Progress::empty("t", 0);
        let plan = plan_flush(&layout, ArchiveKind::Observations, &p, 0, 5, (0..6).map(row).collect()).unwrap();
        assert_eq!(plan.files.len(), 3);
        assert!(
            plan.files
                .iter()
                .all(|f| f.path.as_ref().ends_with("p00000-00000000000000000000-00000000000000000005.parquet"))
        );
        assert_eq!(plan.intent.unwrap().pending.unwrap().files.len(), 3);
    }
}

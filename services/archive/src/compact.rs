//! Small-file compaction, planned and merged without I/O.
//!
//! An hour is closed once its end plus a grace period has passed (late records may still add a
//! small file afterwards; the next round picks it up). Per kind and closed hour, committed files
//! (compacted ones always, batch files once their partition's progress covers them) are packed in
//! name order into groups of at most `target_bytes`; every group of two or more files becomes one
//! file named after the group. The new file is written first, then the inputs are deleted: a crash
//! in between leaves the records twice (in the new file and in the inputs) until the next round
//! merges them again, so readers dedupe by `id` (for aggregates: the highest `version`).

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{AsArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use object_store::path::Path;
use time::OffsetDateTime;

use crate::kind::ArchiveKind;
use crate::layout::{DataFile, HourKey, Layout};
use crate::rows::schema;

/// When and how much to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long after an hour ends before it is compacted.
    pub grace: time::Duration,
    /// Largest compacted file (sum of its inputs' sizes).
    pub target_bytes: u64,
}

/// One compaction: `inputs` (all of one kind and hour) into `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The kind.
    pub kind: ArchiveKind,
    /// The hour.
    pub hour: HourKey,
    /// The files merged, in name order.
    pub inputs: Vec<DataFile>,
    /// The new file.
    pub output: Path,
}

/// The jobs for `files` at `now`; `committed` says whether a file's records are committed.
pub fn plan(
    layout: &Layout,
    files: &[DataFile],
    committed: impl Fn(&DataFile) -> bool,
    now: OffsetDateTime,
    policy: Policy,
) -> Vec<Job> {
    let mut by_hour: BTreeMap<(ArchiveKind, HourKey), Vec<&DataFile>> = BTreeMap::new();
    for f in files {
        if f.hour.end() + policy.grace <= now && committed(f) {
            by_hour.entry((f.kind, f.hour)).or_default().push(f);
        }
    }
    let mut jobs = Vec::new();
    for ((kind, hour), mut group) in by_hour {
        group.sort_by(|a, b| a.path.cmp(&b.path));
        let mut packs: Vec<(Vec<DataFile>, u64)> = Vec::new();
        for f in group {
            if f.size >= policy.target_bytes {
                continue;
            }
            match packs.last_mut() {
                Some((pack, size)) if *size + f.size <= policy.target_bytes => {
                    pack.push(f.clone());
                    *size += f.size;
                }
                _ => packs.push((vec![f.clone()], f.size)),
            }
        }
        for (inputs, _) in packs.into_iter().filter(|(p, _)| p.len() >= 2) {
            let paths: Vec<Path> = inputs.iter().map(|f| f.path.clone()).collect();
            let output = layout.file(kind, hour, &Layout::compacted_name(&paths));
            jobs.push(Job { kind, hour, inputs, output });
        }
    }
    jobs
}

/// Merges the inputs' batches into one, keeping one row per `id` (for aggregates the highest
/// `version`, otherwise the first seen), ordered by time.
pub fn merge(kind: ArchiveKind, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let schema = schema(kind);
    // Files of older builds may carry schema metadata; the columns are what must match.
    let aligned: Vec<RecordBatch> =
        batches.iter().map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec())).collect::<Result<_, _>>()?;
    let all = concat_batches(&schema, &aligned)?;
    let ids = all
        .column_by_name("id")
        .ok_or_else(|| ArrowError::SchemaError("no id column".into()))?
        .as_string::<i32>()
        .clone();
    let versions = all.column_by_name("version").map(|c| c.as_primitive::<Int64Type>().clone());
    let times = all
        .column_by_name("time")
        .ok_or_else(|| ArrowError::SchemaError("no time column".into()))?
        .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
        .clone();
    let mut best: HashMap<&str, usize> = HashMap::with_capacity(all.num_rows());
    for i in 0..all.num_rows() {
        let id = ids.value(i);
        match best.get(id) {
            None => {
                best.insert(id, i);
            }
            Some(&j) => {
                if let Some(v) = &versions
                    && v.value(i) > v.value(j)
                {
                    best.insert(id, i);
                }
            }
        }
    }
    let mut keep: Vec<usize> = best.into_values().collect();
    keep.sort_by_key(|&i| (times.value(i), i));
    let indices = UInt32Array::from_iter_values(keep.into_iter().map(|i| u32::try_from(i).unwrap_or(u32::MAX)));
    take_record_batch(&all, &indices)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::layout::FileName;
    use crate::rows::{Row, to_batch};
    use geostream_model::geojson::Geometry;
    use geostream_model::{Aggregate, AggregateKind, AnalyticId, FeedId, Observation, TrackId, Window};
    use time::macros::datetime;

    fn file(layout: &Layout, kind: ArchiveKind, hour: HourKey, name: FileName, size: u64) -> DataFile {
        DataFile { path: layout.file(kind, hour, &name), kind, hour, name, size }
    }

    fn batch(p: i32, first: i64) -> FileName {
        FileName::Batch { partition: p, first, last: first + 9 }
    }

    const POLICY: Policy = Policy { grace: time::Duration::minutes(10), target_bytes: 100 };

    #[test]
    fn only_closed_hours_with_committed_small_files_are_compacted() {
        let l = Layout::new(Path::default(), "acme");
        let h9 = HourKey::of(datetime!(2026-11-26 09:30 UTC));
        let h10 = HourKey::of(datetime!(2026-11-26 10:30 UTC));
        let files = vec![
            file(&l, ArchiveKind::Observations, h9, batch(0, 0), 10),
            file(&l, ArchiveKind::Observations, h9, batch(1, 0), 10),
            file(&l, ArchiveKind::Observations, h9, batch(0, 10), 10), // not committed
            file(&l, ArchiveKind::Observations, h9, batch(2, 0), 150), // already big
            file(&l, ArchiveKind::Events, h9, batch(0, 0), 10),        // alone in its kind
            file(&l, ArchiveKind::Observations, h10, batch(0, 20), 10), // hour open
            file(&l, ArchiveKind::Observations, h10, batch(1, 20), 10),
        ];
        let committed = |f: &DataFile| !matches!(f.name, FileName::Batch { partition: 0, first: 10, .. });
        // 11:05: hour 9 is closed (10:00 + 10 min grace), hour 10 is not.
        let jobs = plan(&l, &files, committed, datetime!(2026-11-26 11:05 UTC), POLICY);
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!((j.kind, j.hour), (ArchiveKind::Observations, h9));
        assert_eq!(j.inputs.iter().map(|f| f.size).collect::<Vec<_>>(), [10, 10]);
        assert!(j.output.as_ref().starts_with("acme/observations/date=2026-11-26/hour=09/c-"));
        // 10:05: nothing closed yet.
        assert!(plan(&l, &files, committed, datetime!(2026-11-26 10:05 UTC), POLICY).is_empty());
        // Later: hour 10 too.
        assert_eq!(plan(&l, &files, committed, datetime!(2026-11-26 12:00 UTC), POLICY).len(), 2);
    }

    #[test]
    fn groups_stay_under_the_target_and_a_compacted_file_joins_late_files() {
        let l = Layout::new(Path::default(), "acme");
        let h = HourKey::of(datetime!(2026-11-26 09:30 UTC));
        let files: Vec<DataFile> = (0..7).map(|i| file(&l, ArchiveKind::Events, h, batch(0, i * 10), 30)).collect();
        let jobs = plan(&l, &files, |_| true, datetime!(2026-11-27 00:00 UTC), POLICY);
        // 30+30+30 = 90 ≤ 100: packs of 3, 3 and a lone 1 (left alone).
        assert_eq!(jobs.iter().map(|j| j.inputs.len()).collect::<Vec<_>>(), [3, 3]);
        // A round after a crash: the compacted file plus its leftover inputs merge again.
        let mut again = vec![file(&l, ArchiveKind::Events, h, FileName::Compacted { hash: "aa".into() }, 60)];
        again.push(files[0].clone());
        let jobs = plan(&l, &again, |_| true, datetime!(2026-11-27 00:00 UTC), POLICY);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].inputs.len(), 2);
    }

    fn obs_row(i: i64, offset: i64) -> Row {
        let t = datetime!(2026-11-26 09:00 UTC) + time::Duration::seconds(60 - i);
        let o = Observation::try_new(
            FeedId::new("f").unwrap(),
            Some(TrackId::new("t").unwrap()),
            t,
            t,
            Geometry::new_point([1.0, 2.0]),
            Default::default(),
        )
        .unwrap();
        Row::parse(ArchiveKind::Observations, 0, offset, &serde_json::to_vec(&o).unwrap()).unwrap()
    }

    #[test]
    fn merging_dedupes_by_id_and_orders_by_time() {
        let a = to_batch(ArchiveKind::Observations, &[obs_row(1, 0), obs_row(2, 1)]).unwrap();
        let b = to_batch(ArchiveKind::Observations, &[obs_row(2, 7), obs_row(3, 8)]).unwrap();
        let m = merge(ArchiveKind::Observations, &[a, b]).unwrap();
        assert_eq!(m.num_rows(), 3);
        let offsets = m.column_by_name("kafka_offset").unwrap().as_primitive::<Int64Type>();
        // Times descend with i, so the merged order is 3, 2 (first copy, offset 1), 1.
        assert_eq!(offsets.values().to_vec(), [8, 1, 0]);
    }

    #[test]
    fn merging_aggregates_keeps_the_highest_version() {
        let w = Window::new(datetime!(2026-11-26 09:00 UTC), datetime!(2026-11-26 09:05 UTC)).unwrap();
        let rows: Vec<Row> = [2u32, 5, 3]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut a = Aggregate::new(AggregateKind::Bin, AnalyticId::new("b").unwrap(), w, "cell");
                a.version = *v;
                Row::parse(ArchiveKind::Aggregates, 0, i as i64, &serde_json::to_vec(&a).unwrap()).unwrap()
            })
            .collect();
        let one = to_batch(ArchiveKind::Aggregates, &rows[..1]).unwrap();
        let two = to_batch(ArchiveKind::Aggregates, &rows[1..]).unwrap();
        let m = merge(ArchiveKind::Aggregates, &[one, two]).unwrap();
        assert_eq!(m.num_rows(), 1);
        assert_eq!(m.column_by_name("version").unwrap().as_primitive::<Int64Type>().value(0), 5);
    }
}

//! Where things live in the store:
//!
//! ```text
//! <root>/<tenant>/<kind>/date=YYYY-MM-DD/hour=HH/p<partition>-<first>-<last>.parquet   a flushed batch
//! <root>/<tenant>/<kind>/date=YYYY-MM-DD/hour=HH/c-<hash>.parquet                      a compacted hour
//! <root>/<tenant>/_progress/<kind>/p<partition>.json                                 exactly-once progress
//! ```
//!
//! Date and hour come from the record's event time in UTC (an aggregate's window start). A batch
//! file's name carries the Kafka partition and the first and last offset of the flush it belongs
//! to (zero-padded, so names sort by offset); a compacted file's name hashes the names it replaced,
//! so a compaction repeated after a crash writes the same name again.

use object_store::path::Path;
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::kind::ArchiveKind;

/// One UTC hour: the partition directory a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourKey {
    /// The UTC date.
    pub date: Date,
    /// The UTC hour, 0–23.
    pub hour: u8,
}

impl HourKey {
    /// The hour `t` falls in, in UTC.
    pub fn of(t: OffsetDateTime) -> HourKey {
        let t = t.to_offset(UtcOffset::UTC);
        HourKey { date: t.date(), hour: t.hour() }
    }

    /// The first instant of the hour.
    pub fn start(self) -> OffsetDateTime {
        self.date.with_hms(self.hour, 0, 0).map(|dt| dt.assume_utc()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The first instant after the hour.
    pub fn end(self) -> OffsetDateTime {
        self.start() + time::Duration::HOUR
    }

    /// `date=YYYY-MM-DD`.
    pub fn date_dir(self) -> String {
        format!("date={:04}-{:02}-{:02}", self.date.year(), u8::from(self.date.month()), self.date.day())
    }

    /// `hour=HH`.
    pub fn hour_dir(self) -> String {
        format!("hour={:02}", self.hour)
    }

    /// Parses the two directory names back.
    pub fn parse(date_dir: &str, hour_dir: &str) -> Option<HourKey> {
        let date = date_dir.strip_prefix("date=")?;
        let hour: u8 = hour_dir.strip_prefix("hour=")?.parse().ok()?;
        if hour > 23 {
            return None;
        }
        let mut it = date.split('-');
        let (y, m, d) = (it.next()?.parse().ok()?, it.next()?.parse::<u8>().ok()?, it.next()?.parse().ok()?);
        if it.next().is_some() {
            return None;
        }
        let date = Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
        Some(HourKey { date, hour })
    }
}

/// What a data file's name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    /// A flushed batch of one Kafka partition covering offsets `first..=last`.
    Batch {
        /// The Kafka partition.
        partition: i32,
        /// First offset of the flush.
        first: i64,
        /// Last offset of the flush.
        last: i64,
    },
    /// A compacted file (always made of committed batches).
    Compacted {
        /// Hash of the inputs' names.
        hash: String,
    },
}

impl FileName {
    /// The file name (last path segment).
    pub fn render(&self) -> String {
        match self {
            FileName::Batch { partition, first, last } => format!("p{partition:05}-{first:020}-{last:020}.parquet"),
            FileName::Compacted { hash } => format!("c-{hash}.parquet"),
        }
    }

    /// Parses a file name; anything else (temporary files, foreign files) is `None`.
    pub fn parse(name: &str) -> Option<FileName> {
        let stem = name.strip_suffix(".parquet")?;
        if let Some(hash) = stem.strip_prefix("c-") {
            return (!hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| FileName::Compacted { hash: hash.to_owned() });
        }
        let rest = stem.strip_prefix('p')?;
        let mut it = rest.split('-');
        let partition = it.next()?.parse().ok()?;
        let first = it.next()?.parse().ok()?;
        let last = it.next()?.parse().ok()?;
        if it.next().is_some() || first > last {
            return None;
        }
        Some(FileName::Batch { partition, first, last })
    }
}

/// A data file found in the store, located by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Its full path.
    pub path: Path,
    /// Kind, from the path.
    pub kind: ArchiveKind,
    /// Hour, from the path.
    pub hour: HourKey,
    /// What its name says.
    pub name: FileName,
    /// Size in bytes (0 when unknown).
    pub size: u64,
}

/// The archive's paths for one tenant under a root prefix of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: Path,
    tenant: String,
}

impl Layout {
    /// `root` is the prefix inside the store (empty for the store's top).
    pub fn new(root: Path, tenant: &str) -> Layout {
        Layout { root, tenant: tenant.to_owned() }
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn join(&self, parts: &[&str]) -> Path {
        let mut p = self.root.clone();
        for part in std::iter::once(self.tenant.as_str()).chain(parts.iter().copied()) {
            p = p.join(part);
        }
        p
    }

    /// `<root>/<tenant>/<kind>`: the table's directory.
    pub fn kind_dir(&self, kind: ArchiveKind) -> Path {
        self.join(&[kind.as_str()])
    }

    /// `<root>/<tenant>/<kind>/date=…/hour=…`.
    pub fn hour_dir(&self, kind: ArchiveKind, hour: HourKey) -> Path {
        self.join(&[kind.as_str(), &hour.date_dir(), &hour.hour_dir()])
    }

    /// A data file's path.
    pub fn file(&self, kind: ArchiveKind, hour: HourKey, name: &FileName) -> Path {
        self.hour_dir(kind, hour).join(name.render())
    }

    /// The progress object of one Kafka partition.
    pub fn progress(&self, kind: ArchiveKind, partition: i32) -> Path {
        self.join(&["_progress", kind.as_str(), &format!("p{partition:05}.json")])
    }

    /// The progress directory of a kind.
    pub fn progress_dir(&self, kind: ArchiveKind) -> Path {
        self.join(&["_progress", kind.as_str()])
    }

    /// The name of the file compacting `inputs` (their paths, in any order).
    pub fn compacted_name(inputs: &[Path]) -> FileName {
        let mut names: Vec<&str> = inputs.iter().map(Path::as_ref).collect();
        names.sort_unstable();
        let mut h = Sha256::new();
        for n in names {
            h.update(n.as_bytes());
            h.update([0]);
        }
        FileName::Compacted { hash: hex::encode(&h.finalize()[..8]) }
    }

    /// Recognises a data file of this tenant: `<kind>/date=…/hour=…/<name>.parquet` below the
    /// tenant's directory. Temporary and foreign files are `None`.
    pub fn parse_data_file(&self, path: &Path, size: u64) -> Option<DataFile> {
        let base = self.join(&[]);
        let rest: Vec<_> = path.prefix_match(&base)?.collect();
        let [kind, date, hour, name] = rest.as_slice() else { return None };
        let kind = ArchiveKind::from_name(kind.as_ref())?;
        let hour = HourKey::parse(date.as_ref(), hour.as_ref())?;
        let name = FileName::parse(name.as_ref())?;
        Some(DataFile { path: path.clone(), kind, hour, name, size })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn hours_come_from_utc_event_time() {
        let h = HourKey::of(datetime!(2026-11-26 00:30 +02:00));
        assert_eq!((h.date_dir(), h.hour_dir()), ("date=2026-11-25".to_owned(), "hour=22".to_owned()));
        assert_eq!(h.start(), datetime!(2026-11-25 22:00 UTC));
        assert_eq!(h.end(), datetime!(2026-11-25 23:00 UTC));
        assert_eq!(HourKey::parse("date=2026-11-25", "hour=22"), Some(h));
        for (d, hh) in [("date=2026-13-01", "hour=01"), ("date=2026-11-25", "hour=24"), ("2026-11-25", "hour=1")] {
            assert_eq!(HourKey::parse(d, hh), None, "{d} {hh}");
        }
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let l = Layout::new(Path::from("archive/v1"), "acme");
        let h = HourKey::of(datetime!(2026-01-02 03:04:05 UTC));
        let f = l.file(ArchiveKind::Events, h, &FileName::Batch { partition: 3, first: 10, last: 99 });
        assert_eq!(
            f.as_ref(),
            "archive/v1/acme/events/date=2026-01-02/hour=03/p00003-00000000000000000010-00000000000000000099.parquet"
        );
        assert_eq!(l.progress(ArchiveKind::Aggregates, 7).as_ref(), "archive/v1/acme/_progress/aggregates/p00007.json");
        let parsed = l.parse_data_file(&f, 5).unwrap();
        assert_eq!((parsed.kind, parsed.hour, parsed.size), (ArchiveKind::Events, h, 5));
        assert_eq!(parsed.name, FileName::Batch { partition: 3, first: 10, last: 99 });
        // Empty root: paths start at the tenant.
        let top = Layout::new(Path::default(), "acme");
        assert_eq!(top.kind_dir(ArchiveKind::Observations).as_ref(), "acme/observations");
    }

    #[test]
    fn only_our_file_names_are_recognised() {
        let l = Layout::new(Path::default(), "acme");
        for bad in [
            "acme/events/date=2026-01-02/hour=03/p1-2-3.parquet#1",
            "acme/events/date=2026-01-02/hour=03/x.parquet",
            "acme/events/date=2026-01-02/hour=03/p1-9-3.parquet",
            "acme/latest/date=2026-01-02/hour=03/p1-2-3.parquet",
            "other/events/date=2026-01-02/hour=03/p1-2-3.parquet",
            "acme/_progress/events/p00001.json",
            "acme/events/date=2026-01-02/p1-2-3.parquet",
        ] {
            assert!(l.parse_data_file(&Path::from(bad), 0).is_none(), "{bad}");
        }
        let ok = l.parse_data_file(&Path::from("acme/events/date=2026-01-02/hour=03/c-00ff.parquet"), 0).unwrap();
        assert_eq!(ok.name, FileName::Compacted { hash: "00ff".into() });
    }

    #[test]
    fn compacted_names_depend_on_the_input_set_only() {
        let a = Path::from("t/k/date=2026-01-01/hour=00/p00000-1-2.parquet");
        let b = Path::from("t/k/date=2026-01-01/hour=00/p00001-1-2.parquet");
        let n1 = Layout::compacted_name(&[a.clone(), b.clone()]);
        assert_eq!(n1, Layout::compacted_name(&[b.clone(), a.clone()]));
        assert_ne!(n1, Layout::compacted_name(&[a]));
        assert!(FileName::parse(&n1.render()).is_some());
    }
}

//! SnapshotSchedule decisions, pure: which PVCs are due for a snapshot, and which snapshots the
//! retention removes. Times are the operator's own (`geostream.io/taken-at`, unix seconds), so the
//! decisions do not depend on the apiserver's clock.

/// One scheduled snapshot as found on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// VolumeSnapshot name.
    pub name: String,
    /// The PVC it is of.
    pub pvc: String,
    /// When the operator took it (unix seconds).
    pub taken_at: i64,
}

/// Whether a PVC whose newest snapshot was taken at `newest` is due at `now`.
pub fn due(interval_s: i64, newest: Option<i64>, now: i64) -> bool {
    newest.is_none_or(|t| now - t >= interval_s)
}

/// The snapshots of one PVC that retention removes: beyond the newest `keep`, and older than
/// `max_age_s`; the newest one always stays (a schedule never leaves a volume without a snapshot).
pub fn prune(snaps: &[Snap], keep: u32, max_age_s: Option<i64>, now: i64) -> Vec<String> {
    let mut sorted: Vec<&Snap> = snaps.iter().collect();
    sorted.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then_with(|| b.name.cmp(&a.name)));
    let keep = keep.max(1) as usize;
    sorted
        .iter()
        .enumerate()
        .filter(|(i, s)| *i > 0 && (*i >= keep || max_age_s.is_some_and(|age| now - s.taken_at > age)))
        .map(|(_, s)| s.name.clone())
        .collect()
}

/// The name of a snapshot of `pvc` by `schedule` at `now`: unique per instant, a DNS subdomain
/// (at most 253 characters).
pub fn snapshot_name(schedule: &str, pvc: &str, now: i64) -> String {
    let suffix = format!("-{now}");
    let mut base = format!("{schedule}-{pvc}");
    base.truncate(253 - suffix.len());
    format!("{}{suffix}", base.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(name: &str, t: i64) -> Snap {
        Snap { name: name.into(), pvc: "data-0".into(), taken_at: t }
    }

    #[test]
    fn due_after_the_interval() {
        assert!(due(3600, None, 0), "never snapshotted");
        assert!(!due(3600, Some(1000), 4599));
        assert!(due(3600, Some(1000), 4600));
    }

    #[test]
    fn retention_by_count_and_age_keeps_the_newest() {
        let snaps = [s("a", 100), s("b", 300), s("c", 200), s("d", 400)];
        let mut gone = prune(&snaps, 2, None, 500);
        gone.sort();
        assert_eq!(gone, ["a", "c"]);
        assert!(prune(&snaps, 10, None, 500).is_empty());
        let mut gone = prune(&snaps, 10, Some(250), 500);
        gone.sort();
        assert_eq!(gone, ["a", "c"], "older than 250 s");
        assert_eq!(prune(&snaps, 10, Some(1), 10_000), ["b", "c", "a"], "the newest stays however old");
        assert_eq!(prune(&snaps, 0, None, 500).len(), 3, "keep 0 means keep the newest");
    }

    #[test]
    fn names_are_bounded_and_unique_per_instant() {
        assert_eq!(snapshot_name("nightly", "data-ingest-0", 1_700_000_000), "nightly-data-ingest-0-1700000000");
        let long = snapshot_name(&"s".repeat(200), &"p".repeat(200), 1);
        assert!(long.len() <= 253 && long.ends_with("-1"));
    }
}

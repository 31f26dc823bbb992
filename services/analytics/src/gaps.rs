//! Gaps: a track silent for longer than a threshold emits `gap`; its next report emits `resumed`.
//!
//! Silence is measured in event time against the watermark, not the wall clock: a gap is declared
//! once the watermark has passed `last report + threshold`, so a replay of history finds the same
//! gaps as the live run, and a slow partition cannot fake one (the watermark waits for it).
//! Deadlines sit in an ordered set, so advancing the watermark costs only the gaps it declares.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A gap or its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapSignal {
    /// The track has reported nothing since `last_ns`; declared at `last_ns + threshold`.
    Gap {
        /// The track.
        track: String,
        /// Its last report before the silence (ns).
        last_ns: i128,
        /// When the silence became a gap (ns).
        at_ns: i128,
    },
    /// The track reported again after a gap.
    Resumed {
        /// The track.
        track: String,
        /// The report that ended the gap (ns).
        at_ns: i128,
        /// How long it was silent (ns).
        silent_ns: i128,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct TrackState {
    last_ns: i128,
    in_gap: bool,
}

/// Gap state of the tracks of one partition; serialisable for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapDetector {
    threshold_ns: i128,
    tracks: BTreeMap<String, TrackState>,
    /// (deadline, track) for tracks not in a gap.
    deadlines: BTreeSet<(i128, String)>,
}

impl GapDetector {
    /// Declares a gap after `threshold_ns` of event time without a report.
    pub fn new(threshold_ns: i128) -> Self {
        Self { threshold_ns, tracks: BTreeMap::new(), deadlines: BTreeSet::new() }
    }

    /// A report of `track` at event time `time_ns` (reports of one track in event-time order; an
    /// older one than the last is ignored). Returns `Resumed` if it ends a gap.
    pub fn observe(&mut self, track: &str, time_ns: i128) -> Option<GapSignal> {
        let threshold = self.threshold_ns;
        match self.tracks.get_mut(track) {
            None => {
                self.tracks.insert(track.to_owned(), TrackState { last_ns: time_ns, in_gap: false });
                self.deadlines.insert((time_ns + threshold, track.to_owned()));
                None
            }
            Some(st) if time_ns <= st.last_ns => None,
            Some(st) => {
                let was = *st;
                st.last_ns = time_ns;
                st.in_gap = false;
                if !was.in_gap {
                    self.deadlines.remove(&(was.last_ns + threshold, track.to_owned()));
                }
                self.deadlines.insert((time_ns + threshold, track.to_owned()));
                was.in_gap.then(|| GapSignal::Resumed {
                    track: track.to_owned(),
                    at_ns: time_ns,
                    silent_ns: time_ns - was.last_ns,
                })
            }
        }
    }

    /// Declares the gaps whose deadline the watermark passed, oldest first.
    pub fn advance(&mut self, watermark_ns: i128) -> Vec<GapSignal> {
        let mut out = Vec::new();
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline >= watermark_ns {
                break;
            }
            let Some((deadline, track)) = self.deadlines.pop_first() else { break };
            if let Some(st) = self.tracks.get_mut(&track) {
                st.in_gap = true;
                out.push(GapSignal::Gap { track, last_ns: st.last_ns, at_ns: deadline });
            }
        }
        out
    }

    /// Forgets the tracks whose last report is older than `cutoff_ns` and returns them. Meant for
    /// a cutoff past the threshold (the spec checks it), so the tracks forgotten are in a gap and
    /// hold no deadline; a track that reports again later is new, with no `resumed`.
    pub fn forget_before(&mut self, cutoff_ns: i128) -> Vec<String> {
        let threshold = self.threshold_ns;
        let mut gone = Vec::new();
        let deadlines = &mut self.deadlines;
        self.tracks.retain(|track, st| {
            if st.last_ns >= cutoff_ns {
                return true;
            }
            if !st.in_gap {
                deadlines.remove(&(st.last_ns + threshold, track.clone()));
            }
            gone.push(track.clone());
            false
        });
        gone
    }

    /// Tracks known.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track is known.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn gap_after_the_threshold_then_resumed() {
        let mut g = GapDetector::new(60 * S);
        assert_eq!(g.observe("a", 0), None);
        assert_eq!(g.observe("b", 30 * S), None);
        assert!(g.advance(60 * S).is_empty(), "exactly at the threshold is not yet a gap");
        assert_eq!(g.advance(61 * S), vec![GapSignal::Gap { track: "a".into(), last_ns: 0, at_ns: 60 * S }]);
        assert!(g.advance(61 * S).is_empty(), "declared once");
        assert_eq!(g.observe("b", 80 * S), None, "b reported in time");
        assert_eq!(
            g.observe("a", 100 * S),
            Some(GapSignal::Resumed { track: "a".into(), at_ns: 100 * S, silent_ns: 100 * S })
        );
        assert_eq!(g.advance(141 * S), vec![GapSignal::Gap { track: "b".into(), last_ns: 80 * S, at_ns: 140 * S }]);
        assert_eq!(g.observe("b", 10 * S), None, "older than the last report: ignored");
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<GapDetector>(&json).unwrap(), g);
    }

    #[test]
    fn forgotten_tracks_leave_no_state_and_come_back_as_new() {
        let mut g = GapDetector::new(60 * S);
        g.observe("old", 0);
        g.observe("quiet", 10 * S);
        g.observe("live", 500 * S);
        assert_eq!(g.advance(501 * S).len(), 2, "old and quiet are in a gap");
        assert_eq!(g.forget_before(10 * S), vec!["old".to_owned()], "strictly older than the cutoff");
        assert_eq!(g.len(), 2);
        // A cutoff below the threshold (refused by the spec) still leaves consistent state: a
        // forgotten track not yet in a gap takes its deadline with it.
        assert_eq!(g.forget_before(501 * S), vec!["live".to_owned(), "quiet".to_owned()]);
        assert!(g.is_empty() && g.deadlines.is_empty());
        assert_eq!(g.observe("old", 600 * S), None, "reporting again is a new track, not a resumption");
        assert_eq!(g.advance(661 * S), vec![GapSignal::Gap { track: "old".into(), last_ns: 600 * S, at_ns: 660 * S }]);
    }

    proptest! {
        #[test]
        fn prop_gap_and_resumed_alternate_per_track(
            steps in prop::collection::vec((0usize..5, 1i128..200, 0u8..3), 1..300)
        ) {
            let mut g = GapDetector::new(60 * S);
            let mut t = 0i128;
            let mut in_gap: BTreeMap<String, bool> = BTreeMap::new();
            for (track, dt, op) in steps {
                t += dt * S;
                let name = format!("t{track}");
                let mut signals = Vec::new();
                match op {
                    0 => signals.extend(g.observe(&name, t)),
                    1 => signals.extend(g.advance(t)),
                    // Forgetting past the threshold, as the spec requires: a forgotten track
                    // starts again outside any gap.
                    _ => {
                        for gone in g.forget_before(t - 120 * S) {
                            in_gap.remove(&gone);
                        }
                    }
                }
                for s in signals {
                    match s {
                        GapSignal::Gap { track, last_ns, at_ns } => {
                            prop_assert!(at_ns - last_ns == 60 * S && at_ns < t);
                            let e = in_gap.entry(track).or_insert(false);
                            prop_assert!(!*e);
                            *e = true;
                        }
                        GapSignal::Resumed { track, silent_ns, .. } => {
                            prop_assert!(silent_ns > 60 * S);
                            let e = in_gap.entry(track).or_insert(false);
                            prop_assert!(*e);
                            *e = false;
                        }
                    }
                }
            }
        }
    }
}

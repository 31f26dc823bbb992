//! The observations of the open event-time windows of one `sql` analytic, kept until the
//! watermark closes a window and the query runs over it.
//!
//! A window runs when the watermark passes its end. It is kept for the allowed lateness after
//! that: a late observation in that time makes it run again over everything it holds, and the
//! results are emitted as corrections (same aggregate ids, version + 1). After the lateness the
//! window is dropped and older observations are `late`. The observations themselves are the state
//! (not partial aggregates), since a query may need every row; a checkpoint therefore holds every
//! observation of the open windows.

use std::collections::BTreeMap;

use geostream_model::Observation;
use serde::{Deserialize, Serialize};

use crate::bins::WindowSpec;

/// One window's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlWindow {
    /// Window start (ns).
    pub start_ns: i128,
    /// Times the query ran over it; the next run's results carry version `runs + 1`.
    pub runs: u32,
    /// Whether rows arrived since the last run.
    pub dirty: bool,
    /// Its observations in arrival order.
    pub observations: Vec<Observation>,
}

/// The checkpointable state of [`SqlWindows`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlWindowsState {
    windows: Vec<SqlWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watermark_ns: Option<i128>,
}

/// A window ready to run: its bounds, its rows sorted by (time, id) without repeats, and the
/// version its results get.
#[derive(Debug)]
pub struct Due<'a> {
    /// Start (ns).
    pub start_ns: i128,
    /// End (ns, exclusive).
    pub end_ns: i128,
    /// The rows.
    pub observations: &'a [Observation],
    /// 1 for the first run, higher for corrections.
    pub version: u32,
}

/// The open windows of one analytic.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlWindows {
    windows: WindowSpec,
    lateness_ns: i128,
    open: BTreeMap<i128, SqlWindow>,
    watermark_ns: Option<i128>,
}

impl SqlWindows {
    /// No windows yet.
    pub fn new(windows: WindowSpec, lateness_ns: i128) -> Self {
        SqlWindows { windows, lateness_ns, open: BTreeMap::new(), watermark_ns: None }
    }

    /// Continues from a checkpoint.
    pub fn restore(windows: WindowSpec, lateness_ns: i128, state: SqlWindowsState) -> Self {
        let open = state.windows.into_iter().map(|w| (w.start_ns, w)).collect();
        SqlWindows { windows, lateness_ns, open, watermark_ns: state.watermark_ns }
    }

    /// The state, for a checkpoint.
    pub fn state(&self) -> SqlWindowsState {
        SqlWindowsState { windows: self.open.values().cloned().collect(), watermark_ns: self.watermark_ns }
    }

    /// Adds an observation at `t` (ns) to its windows; false if every one of them is past the
    /// allowed lateness.
    pub fn add(&mut self, obs: &Observation, t: i128) -> bool {
        let horizon = self.watermark_ns.map(|w| w - self.lateness_ns);
        let mut counted = false;
        let starts: Vec<i128> = self.windows.windows_of(t).collect();
        for start in starts {
            if horizon.is_some_and(|h| start + self.windows.size_ns <= h) {
                continue;
            }
            let w = self.open.entry(start).or_insert_with(|| SqlWindow {
                start_ns: start,
                runs: 0,
                dirty: false,
                observations: Vec::new(),
            });
            w.observations.push(obs.clone());
            w.dirty = true;
            counted = true;
        }
        counted
    }

    /// Moves the watermark: calls `run` for every window that ended and has new rows (oldest
    /// first), then drops the windows past the allowed lateness.
    pub fn advance(&mut self, watermark_ns: i128, mut run: impl FnMut(Due<'_>)) {
        let w = self.watermark_ns.map_or(watermark_ns, |old| old.max(watermark_ns));
        self.watermark_ns = Some(w);
        let size = self.windows.size_ns;
        for (start, win) in self.open.iter_mut() {
            if *start + size > w {
                break; // ordered by start: the rest are still open
            }
            if !win.dirty {
                continue;
            }
            win.dirty = false;
            win.runs = win.runs.saturating_add(1);
            // The query sees a stable order whatever the arrival order was; a redelivered
            // observation (same id) counts once.
            win.observations.sort_by_key(|o| (o.time, o.id));
            win.observations.dedup_by(|a, b| a.id == b.id);
            run(Due { start_ns: *start, end_ns: *start + size, observations: &win.observations, version: win.runs });
        }
        let lateness = self.lateness_ns;
        self.open.retain(|start, _| *start + size + lateness > w);
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

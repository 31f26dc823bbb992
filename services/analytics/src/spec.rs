//! Analytic definitions: what the processor (and `geostream analyze`) runs for a tenant. Written
//! as YAML or JSON files, stored on the compacted topic `<tenant>.analytics` keyed by id.

use geostream_model::AnalyticId;
use serde::{Deserialize, Serialize};

use crate::bins::{BinError, CellSpec, WindowSpec};
use crate::motion::MotionConfig;

const NS: i128 = 1_000_000_000;

fn yes() -> bool {
    true
}

/// One analytic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticSpec {
    /// Unique within the tenant; part of every result's id.
    pub id: AnalyticId,
    /// Raised on every change.
    #[serde(default)]
    pub version: u64,
    /// Disabled analytics stay registered but do not run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only observations of these feeds; empty = all.
    #[serde(default)]
    pub feeds: Vec<String>,
    /// What it computes.
    pub analytic: AnalyticKind,
}

/// The kinds of analytic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalyticKind {
    /// `stop`, `moving` and `jump` events per track.
    Motion {
        /// Below this speed a track is not moving (m/s).
        #[serde(default = "default_stop_speed")]
        stop_speed_mps: f64,
        /// How long below the stop speed makes a stop (s).
        #[serde(default = "default_stop_after")]
        stop_after_s: u64,
        /// Above this implied speed a fix is a jump (m/s)...
        #[serde(default = "default_max_speed")]
        max_speed_mps: f64,
        /// ...if it is also further than this from the last fix (m).
        #[serde(default = "default_jump_min_distance")]
        jump_min_distance_m: f64,
    },
    /// `gap` when a track is silent for `threshold_s` of event time, `resumed` when it reports.
    Gaps {
        /// Silence that makes a gap (s).
        threshold_s: u64,
    },
    /// Spatial bins over event-time windows.
    Bins {
        /// The cells.
        cells: CellSpec,
        /// Window length (s).
        window_s: u64,
        /// Distance between window starts (s); default = `window_s` (tumbling).
        #[serde(default)]
        hop_s: Option<u64>,
        /// How long after a window's end late records still correct it (s).
        #[serde(default)]
        allowed_lateness_s: u64,
        /// Numeric observation attributes to summarise (count, sum, avg, min, max each).
        #[serde(default)]
        properties: Vec<String>,
    },
}

fn default_stop_speed() -> f64 {
    MotionConfig::default().stop_speed_mps
}
fn default_stop_after() -> u64 {
    (MotionConfig::default().stop_after_ns / NS) as u64
}
fn default_max_speed() -> f64 {
    MotionConfig::default().max_speed_mps
}
fn default_jump_min_distance() -> f64 {
    MotionConfig::default().jump_min_distance_m
}

/// What is wrong with a spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("analytic {id}: {problem}")]
pub struct SpecError {
    /// The analytic.
    pub id: String,
    /// What to fix.
    pub problem: String,
}

impl AnalyticSpec {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |problem: String| SpecError { id: self.id.to_string(), problem };
        match &self.analytic {
            AnalyticKind::Motion { stop_speed_mps, max_speed_mps, jump_min_distance_m, .. } => {
                if !(jump_min_distance_m.is_finite() && *jump_min_distance_m >= 0.0) {
                    return Err(err(format!("analytic.jump_min_distance_m is {jump_min_distance_m}; use metres >= 0")));
                }
                if !(stop_speed_mps.is_finite() && *stop_speed_mps >= 0.0) {
                    return Err(err(format!("analytic.stop_speed_mps is {stop_speed_mps}; use a speed >= 0")));
                }
                if !(max_speed_mps.is_finite() && max_speed_mps > stop_speed_mps) {
                    return Err(err(format!(
                        "analytic.max_speed_mps is {max_speed_mps}; it must exceed stop_speed_mps ({stop_speed_mps})"
                    )));
                }
            }
            AnalyticKind::Gaps { threshold_s } => {
                if *threshold_s == 0 {
                    return Err(err("analytic.threshold_s is 0; a gap needs at least a second of silence".into()));
                }
            }
            AnalyticKind::Bins { cells, .. } => {
                let map = |e: BinError| err(format!("analytic: {e}"));
                cells.validate().map_err(map)?;
                self.window_spec().ok_or_else(|| err("analytic.window_s is 0".into()))?.validate().map_err(map)?;
            }
        }
        Ok(())
    }

    /// The window of a `bins` analytic.
    pub fn window_spec(&self) -> Option<WindowSpec> {
        match &self.analytic {
            AnalyticKind::Bins { window_s, hop_s, .. } if *window_s > 0 => Some(WindowSpec {
                size_ns: i128::from(*window_s) * NS,
                hop_ns: i128::from(hop_s.unwrap_or(*window_s)) * NS,
            }),
            _ => None,
        }
    }

    /// Whether observations of `feed` are for this analytic.
    pub fn wants_feed(&self, feed: &str) -> bool {
        self.feeds.is_empty() || self.feeds.iter().any(|f| f == feed)
    }
}

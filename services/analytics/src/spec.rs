//! Analytic definitions: what the processor (and `geostream analyze`) runs for a tenant. Written
//! as YAML or JSON files, stored on the compacted topic `<tenant>.analytics` keyed by id.

use std::collections::BTreeSet;

use geostream_model::{AnalyticId, FenceId, Observation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bins::{BinError, CellSpec, WindowSpec};
use crate::geofence::GeofenceConfig;
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
        /// Tracks silent this long in event time are forgotten (s): their state is dropped once the
        /// watermark passes their last report by this much, so memory follows the tracks that are
        /// still reporting, not every track ever seen. A forgotten track that reports again starts
        /// afresh. Default 7 days.
        #[serde(default = "default_forget_after")]
        forget_after_s: u64,
    },
    /// `gap` when a track is silent for `threshold_s` of event time, `resumed` when it reports.
    Gaps {
        /// Silence that makes a gap (s).
        threshold_s: u64,
        /// Tracks silent this long in event time are forgotten (s): their state is dropped once the
        /// watermark passes their last report by this much, so memory follows the tracks that are
        /// still reporting, not every track ever seen. A forgotten track that reports again starts
        /// afresh, with no `resumed`; must exceed `threshold_s`. Default 7 days.
        #[serde(default = "default_forget_after")]
        forget_after_s: u64,
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
    /// `enter`, `exit` and optionally `cross`, `dwell`, `inside`, `outside` against the engine's
    /// fence set ([`crate::geofence`] gives the semantics).
    Geofence {
        /// The fences to evaluate; every enabled fence of the set when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fences: Option<Vec<FenceId>>,
        /// Emit `inside` for every observation inside a fence.
        #[serde(default)]
        inside: bool,
        /// Emit `outside` for every observation outside a listed fence (needs `fences`).
        #[serde(default)]
        outside: bool,
        /// Emit `cross` when a segment passes through a fence without a position inside it.
        #[serde(default)]
        cross: bool,
        /// Emit `dwell` once per visit after this many seconds inside.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dwell_s: Option<u64>,
        /// Copy the fence's properties into events as `fence_properties`.
        #[serde(default)]
        copy_properties: bool,
        /// Tracks silent this long in event time are forgotten (s): their state is dropped once the
        /// watermark passes their last report by this much, so memory follows the tracks that are
        /// still reporting, not every track ever seen. A forgotten track that reports again starts
        /// afresh: its open visits end with no `exit`, and inside a fence it `enter`s again. Default 7 days.
        #[serde(default = "default_forget_after")]
        forget_after_s: u64,
    },
    /// Roaming fences: `near` when a track comes within `distance_m` of another track, emitted
    /// once per pair and re-armed only when the pair separates beyond `distance_m * 1.1`
    /// (hysteresis). It compares the tracks of the stream it is given: in the processor, one
    /// input partition. [`crate::near`] gives the semantics.
    Near {
        /// How close makes `near` (metres, great-circle).
        distance_m: f64,
        /// Which tracks count as the other side; every track when empty.
        #[serde(default)]
        targets: TrackFilter,
        /// Which tracks are watched for coming near a target; every track when empty.
        #[serde(default)]
        sources: TrackFilter,
        /// A target whose last fix is older than this (event time, against the observation) is
        /// ignored (s).
        #[serde(default = "default_max_age")]
        max_age_s: u64,
    },
    /// Enriches observations with the fences containing them: every observation of the
    /// analytic's feeds comes out as `Output::Joined`, a copy with the attribute `attribute` set
    /// to a list of `{id, version, name, properties}` of the fences containing its position, by
    /// fence id; an observation in no fence (or not a Point) gets an empty list, so the enriched
    /// stream holds every observation. An attribute of the same name is replaced. Each `join`
    /// analytic emits its own copy.
    Join {
        /// The attribute that receives the list of fences.
        #[serde(default = "default_join_attribute")]
        attribute: String,
        /// Fence properties to copy into each list entry; none when empty.
        #[serde(default)]
        properties: Vec<String>,
        /// Only these fences; every enabled fence of the set when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fences: Option<Vec<FenceId>>,
    },
    /// A SQL query over the observations of each closed event-time window (run by the
    /// `geostream-sql` runner; see [`crate::engine::WindowSql`]).
    Sql {
        /// The query.
        query: String,
        /// Window length (s).
        window_s: u64,
        /// Distance between window starts (s); default = `window_s` (tumbling).
        #[serde(default)]
        hop_s: Option<u64>,
        /// How long after a window's end late records still correct it (s).
        #[serde(default)]
        allowed_lateness_s: u64,
    },
}

/// Which tracks a `near` analytic takes on one side: those of the listed feeds and/or those whose
/// attribute equals a value. Both conditions must hold when both are given; an empty filter takes
/// every track.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFilter {
    /// Only tracks of these feeds; empty = any feed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<String>,
    /// Only observations whose attribute `name` equals `value` (JSON equality).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<AttributeMatch>,
}

/// An attribute equality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    /// The observation attribute.
    pub name: String,
    /// The value it must have.
    pub value: Value,
}

impl TrackFilter {
    /// Whether `obs` passes.
    pub fn matches(&self, obs: &Observation) -> bool {
        (self.feeds.is_empty() || self.feeds.iter().any(|f| f == obs.feed.as_str()))
            && self.attribute.as_ref().is_none_or(|a| obs.attributes.get(&a.name) == Some(&a.value))
    }

    fn validate(&self, field: &str) -> Result<(), String> {
        if let Some(a) = &self.attribute
            && a.name.is_empty()
        {
            return Err(format!("analytic.{field}.attribute.name is empty; name an observation attribute"));
        }
        Ok(())
    }
}

/// Seven days: long past any gap threshold or dwell a feed is likely to use, short enough that
/// tracks which stop reporting for good (vessels leaving the area, trips that ended) do not pile up.
pub const DEFAULT_FORGET_AFTER_S: u64 = 7 * 24 * 3600;

fn default_forget_after() -> u64 {
    DEFAULT_FORGET_AFTER_S
}

fn default_max_age() -> u64 {
    300
}

fn default_join_attribute() -> String {
    "fences".into()
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

/// Largest `near` distance (m): a quarter of the Earth's circumference.
pub const MAX_NEAR_M: f64 = 10_000_000.0;

impl AnalyticKind {
    /// The `kind` tag, as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            AnalyticKind::Motion { .. } => "motion",
            AnalyticKind::Gaps { .. } => "gaps",
            AnalyticKind::Bins { .. } => "bins",
            AnalyticKind::Geofence { .. } => "geofence",
            AnalyticKind::Near { .. } => "near",
            AnalyticKind::Join { .. } => "join",
            AnalyticKind::Sql { .. } => "sql",
        }
    }

    /// `forget_after_s` of the kinds that keep per-track state with no end of their own (`near`
    /// forgets by `max_age_s`; bins and SQL keep only open windows).
    pub fn forget_after_s(&self) -> Option<u64> {
        match self {
            AnalyticKind::Motion { forget_after_s, .. }
            | AnalyticKind::Gaps { forget_after_s, .. }
            | AnalyticKind::Geofence { forget_after_s, .. } => Some(*forget_after_s),
            _ => None,
        }
    }
}

fn check_fence_list(list: Option<&[FenceId]>) -> Result<(), String> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() {
        return Err("analytic.fences is an empty list; leave it out to use every fence".into());
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = list.iter().find(|f| !seen.insert(*f)) {
        return Err(format!("analytic.fences lists {:?} twice", dup.as_str()));
    }
    Ok(())
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
        if let Some(f) = self.analytic.forget_after_s() {
            if f == 0 {
                return Err(err("analytic.forget_after_s is 0; give at least a second or leave it out".into()));
            }
            // Kept as i128 nanoseconds beside event times: beyond i64 seconds it means "never".
            if i64::try_from(f).is_err() {
                return Err(err(format!("analytic.forget_after_s is {f}; at most {}", i64::MAX)));
            }
        }
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
            AnalyticKind::Gaps { threshold_s, forget_after_s } => {
                if *threshold_s == 0 {
                    return Err(err("analytic.threshold_s is 0; a gap needs at least a second of silence".into()));
                }
                if forget_after_s <= threshold_s {
                    return Err(err(format!(
                        "analytic.forget_after_s is {forget_after_s}, not more than threshold_s ({threshold_s}): a \
                         silent track would be forgotten before its gap is declared; raise it or leave it out \
                         (default {DEFAULT_FORGET_AFTER_S})"
                    )));
                }
            }
            AnalyticKind::Bins { cells, .. } => {
                let map = |e: BinError| err(format!("analytic: {e}"));
                cells.validate().map_err(map)?;
                self.window_spec().ok_or_else(|| err("analytic.window_s is 0".into()))?.validate().map_err(map)?;
            }
            AnalyticKind::Geofence { .. } => {
                if let Some(cfg) = self.geofence_config() {
                    cfg.validate().map_err(|e| err(format!("analytic.{} {}", e.field, e.problem)))?;
                }
            }
            AnalyticKind::Near { distance_m, targets, sources, max_age_s } => {
                if !(distance_m.is_finite() && *distance_m > 0.0) {
                    return Err(err(format!("analytic.distance_m is {distance_m}; use metres > 0")));
                }
                // Beyond a quarter of the globe "near" means nothing, and the search box would wrap.
                if *distance_m > MAX_NEAR_M {
                    return Err(err(format!("analytic.distance_m is {distance_m}; at most {MAX_NEAR_M} m")));
                }
                if *max_age_s == 0 {
                    return Err(err("analytic.max_age_s is 0; give at least a second or leave it out".into()));
                }
                if i64::try_from(*max_age_s).is_err() {
                    return Err(err("analytic.max_age_s is too large".into()));
                }
                targets.validate("targets").map_err(err)?;
                sources.validate("sources").map_err(err)?;
            }
            AnalyticKind::Join { attribute, fences, .. } => {
                if attribute.is_empty() {
                    return Err(err("analytic.attribute is empty; name the attribute for the fence list".into()));
                }
                if Observation::RESERVED_PROPERTIES.contains(&attribute.as_str()) {
                    return Err(err(format!(
                        "analytic.attribute {attribute:?} is reserved by observations ({}); choose another name",
                        Observation::RESERVED_PROPERTIES.join(", ")
                    )));
                }
                check_fence_list(fences.as_deref()).map_err(err)?;
            }
            AnalyticKind::Sql { query, .. } => {
                if query.trim().is_empty() {
                    return Err(err("analytic.query is empty".into()));
                }
                let map = |e: BinError| err(format!("analytic: {e}"));
                self.window_spec().ok_or_else(|| err("analytic.window_s is 0".into()))?.validate().map_err(map)?;
            }
        }
        Ok(())
    }

    /// The window of a `bins` or `sql` analytic.
    pub fn window_spec(&self) -> Option<WindowSpec> {
        match &self.analytic {
            AnalyticKind::Bins { window_s, hop_s, .. } | AnalyticKind::Sql { window_s, hop_s, .. } if *window_s > 0 => {
                Some(WindowSpec {
                    size_ns: i128::from(*window_s) * NS,
                    hop_ns: i128::from(hop_s.unwrap_or(*window_s)) * NS,
                })
            }
            _ => None,
        }
    }

    /// The [`GeofenceConfig`] of a `geofence` analytic.
    pub fn geofence_config(&self) -> Option<GeofenceConfig> {
        match &self.analytic {
            AnalyticKind::Geofence { fences, inside, outside, cross, dwell_s, copy_properties, .. } => {
                Some(GeofenceConfig {
                    analytic: self.id.clone(),
                    fences: fences.clone(),
                    inside: *inside,
                    outside: *outside,
                    cross: *cross,
                    dwell_s: *dwell_s,
                    copy_properties: *copy_properties,
                })
            }
            _ => None,
        }
    }

    /// Whether observations of `feed` are for this analytic.
    pub fn wants_feed(&self, feed: &str) -> bool {
        self.feeds.is_empty() || self.feeds.iter().any(|f| f == feed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(json: &str) -> AnalyticSpec {
        serde_json::from_str(json).unwrap()
    }

    fn problem(json: &str) -> String {
        spec(json).validate().unwrap_err().problem
    }

    #[test]
    fn forget_after_defaults_to_a_week_and_is_checked() {
        for kind in [r#"{"kind": "motion"}"#, r#"{"kind": "gaps", "threshold_s": 60}"#, r#"{"kind": "geofence"}"#] {
            let s = spec(&format!(r#"{{"id": "a", "analytic": {kind}}}"#));
            assert_eq!(s.analytic.forget_after_s(), Some(DEFAULT_FORGET_AFTER_S), "{kind}");
            s.validate().unwrap();
        }
        let near = spec(r#"{"id": "a", "analytic": {"kind": "near", "distance_m": 10}}"#);
        assert_eq!(near.analytic.forget_after_s(), None, "near forgets by max_age_s");
        let p = problem(r#"{"id": "a", "analytic": {"kind": "motion", "forget_after_s": 0}}"#);
        assert!(p.contains("forget_after_s is 0"), "{p}");
        let p = problem(r#"{"id": "a", "analytic": {"kind": "gaps", "threshold_s": 600, "forget_after_s": 600}}"#);
        assert!(p.contains("not more than threshold_s (600)"), "{p}");
        let p = problem(r#"{"id": "a", "analytic": {"kind": "geofence", "forget_after_s": 18446744073709551615}}"#);
        assert!(p.contains("at most"), "{p}");
    }
}

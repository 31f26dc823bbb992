//! Track motion: speed, heading, distance and acceleration between consecutive fixes of a track,
//! stop/idle detection, and implausible jumps.
//!
//! The caller feeds one track's fixes in event-time order (the runtime releases them sorted once
//! the watermark passed them). Distances and headings are great-circle (`geo`'s haversine measure);
//! speeds are derived from them, not taken from the device, so every feed is judged the same way.
//!
//! A fix whose implied speed from the last accepted fix exceeds `max_speed_mps` is a `jump`: it is
//! reported and not used as the reference for the next fix (one bad GPS or AIS position must not
//! produce two impossible legs). If the next fix agrees with the jumped one (a plausible leg from
//! it) the track really moved, e.g. a receiver that was off; the track re-anchors there.

use geo::{Bearing, Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

const NS_PER_S: f64 = 1e9;

/// Settings of the motion analytic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MotionConfig {
    /// Below this speed (m/s) a track counts as not moving.
    pub stop_speed_mps: f64,
    /// How long (ns of event time) a track must stay below `stop_speed_mps` to be `stop`ped.
    pub stop_after_ns: i128,
    /// Above this implied speed (m/s) a leg is an implausible `jump`...
    pub max_speed_mps: f64,
    /// ...if it is also longer than this (m): two reports of one position a few milliseconds
    /// apart (satellite AIS heard twice) imply absurd speeds over a few metres of GPS noise.
    pub jump_min_distance_m: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        // 0.5 m/s is about 1 knot: drifting at anchor or a vehicle in a queue; 300 m/s is above
        // any airliner's ground speed, so only real errors are flagged.
        Self {
            stop_speed_mps: 0.5,
            stop_after_ns: 120 * 1_000_000_000,
            max_speed_mps: 300.0,
            jump_min_distance_m: 500.0,
        }
    }
}

/// One position of a track.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Event time, ns since the Unix epoch.
    pub time_ns: i128,
    /// Longitude, degrees.
    pub lon: f64,
    /// Latitude, degrees.
    pub lat: f64,
}

/// The leg from the previous accepted fix to this one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leg {
    /// Great-circle distance, metres.
    pub distance_m: f64,
    /// Seconds between the fixes.
    pub dt_s: f64,
    /// Average speed over the leg, m/s.
    pub speed_mps: f64,
    /// Initial bearing, degrees clockwise from north in [0, 360); none when the track did not move.
    pub heading_deg: Option<f64>,
    /// Change of speed against the previous leg per second of this leg; none on the first leg.
    pub accel_mps2: Option<f64>,
}

/// A change of state worth an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// The track has been below the stop speed since `since_ns`.
    Stop {
        /// When it slowed down.
        since_ns: i128,
    },
    /// A stopped track moves again.
    Moving,
    /// The fix is implausibly far from the last accepted one.
    Jump {
        /// Distance from the last accepted fix, metres.
        distance_m: f64,
        /// Speed that would have needed, m/s.
        implied_speed_mps: f64,
    },
}

/// What one fix produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// The leg it completed, if it was accepted and had a predecessor.
    pub leg: Option<Leg>,
    /// State changes.
    pub signals: Vec<Signal>,
}

/// Why a fix was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Older than the last fix: the caller broke event-time order.
    OutOfOrder,
    /// Same time as the last fix (a redelivery or a duplicate report).
    SameTime,
}

/// Motion state of one track; serialisable for checkpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrackMotion {
    last: Option<Fix>,
    last_speed_mps: Option<f64>,
    /// A fix that jumped, kept to see whether the next one confirms it.
    jumped: Option<Fix>,
    slow_since_ns: Option<i128>,
    stopped: bool,
}

fn leg(from: &Fix, to: &Fix) -> (f64, f64) {
    let a = Point::new(from.lon, from.lat);
    let b = Point::new(to.lon, to.lat);
    let d = Haversine.distance(a, b);
    let dt = (to.time_ns - from.time_ns) as f64 / NS_PER_S;
    (d, dt)
}

impl TrackMotion {
    /// Whether the track is currently stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The last accepted fix.
    pub fn last(&self) -> Option<&Fix> {
        self.last.as_ref()
    }

    /// Event time of the newest fix taken, a pending jump included (ns); what the engine forgets
    /// silent tracks by.
    pub fn last_time_ns(&self) -> Option<i128> {
        match (self.last, self.jumped) {
            (Some(a), Some(b)) => Some(a.time_ns.max(b.time_ns)),
            (a, b) => a.or(b).map(|f| f.time_ns),
        }
    }

    /// Takes the next fix of the track.
    pub fn update(&mut self, fix: Fix, cfg: &MotionConfig) -> Result<Update, Ignored> {
        let Some(prev) = self.last else {
            self.last = Some(fix);
            return Ok(Update::default());
        };
        if fix.time_ns < prev.time_ns {
            return Err(Ignored::OutOfOrder);
        }
        if fix.time_ns == prev.time_ns {
            return Err(Ignored::SameTime);
        }
        let (distance_m, dt_s) = leg(&prev, &fix);
        let speed = distance_m / dt_s;
        let mut update = Update::default();
        if speed > cfg.max_speed_mps && distance_m > cfg.jump_min_distance_m {
            // Confirmed by the previous jumped fix? Then the track moved; re-anchor.
            let confirmed = self.jumped.is_some_and(|j| {
                let (d, dt) = leg(&j, &fix);
                dt > 0.0 && (d / dt <= cfg.max_speed_mps || d <= cfg.jump_min_distance_m)
            });
            if !confirmed {
                self.jumped = Some(fix);
                update.signals.push(Signal::Jump { distance_m, implied_speed_mps: speed });
                return Ok(update);
            }
            let Some(j) = self.jumped.take() else { return Ok(update) };
            self.last = Some(j);
            self.last_speed_mps = None;
            return self.update(fix, cfg);
        }
        self.jumped = None;
        let heading_deg = (distance_m > 0.0).then(|| {
            let b = Haversine.bearing(Point::new(prev.lon, prev.lat), Point::new(fix.lon, fix.lat));
            b.rem_euclid(360.0)
        });
        let accel_mps2 = self.last_speed_mps.map(|s| (speed - s) / dt_s);
        update.leg = Some(Leg { distance_m, dt_s, speed_mps: speed, heading_deg, accel_mps2 });

        if speed < cfg.stop_speed_mps {
            let since = *self.slow_since_ns.get_or_insert(prev.time_ns);
            if !self.stopped && fix.time_ns - since >= cfg.stop_after_ns {
                self.stopped = true;
                update.signals.push(Signal::Stop { since_ns: since });
            }
        } else {
            self.slow_since_ns = None;
            if self.stopped {
                self.stopped = false;
                update.signals.push(Signal::Moving);
            }
        }
        self.last = Some(fix);
        self.last_speed_mps = Some(speed);
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const S: i128 = 1_000_000_000;

    fn fix(t: i128, lon: f64, lat: f64) -> Fix {
        Fix { time_ns: t * S, lon, lat }
    }

    #[test]
    fn speed_heading_and_acceleration_of_legs() {
        let cfg = MotionConfig::default();
        let mut m = TrackMotion::default();
        assert_eq!(m.update(fix(0, 0.0, 0.0), &cfg).unwrap(), Update::default());
        // One thousandth of a degree of latitude north in 10 s: ~111 m, ~11.1 m/s, heading 0.
        let u = m.update(fix(10, 0.0, 0.001), &cfg).unwrap();
        let l = u.leg.unwrap();
        assert!((l.distance_m - 111.19).abs() < 0.1, "{l:?}");
        assert!((l.speed_mps - 11.119).abs() < 0.01, "{l:?}");
        assert!(l.heading_deg.unwrap().abs() < 1e-6);
        assert_eq!(l.accel_mps2, None);
        // Due east, twice as fast.
        let u = m.update(fix(20, 0.002, 0.001), &cfg).unwrap();
        let l = u.leg.unwrap();
        assert!((l.heading_deg.unwrap() - 90.0).abs() < 0.01, "{l:?}");
        assert!((l.accel_mps2.unwrap() - 1.1119).abs() < 0.01, "{l:?}");
        assert_eq!(m.update(fix(20, 1.0, 1.0), &cfg), Err(Ignored::SameTime));
        assert_eq!(m.update(fix(5, 1.0, 1.0), &cfg), Err(Ignored::OutOfOrder));
    }

    #[test]
    fn stop_after_the_stop_time_then_moving() {
        let cfg = MotionConfig::default();
        let mut m = TrackMotion::default();
        let mut signals = Vec::new();
        for t in 0..20 {
            // 0.1 m per 10 s: parked.
            let u = m.update(fix(t * 10, 0.0, t as f64 * 1e-6), &cfg).unwrap();
            signals.extend(u.signals);
        }
        assert_eq!(signals, [Signal::Stop { since_ns: 0 }], "one stop, 120 s after slowing down");
        assert!(m.is_stopped());
        let u = m.update(fix(210, 0.01, 0.0), &cfg).unwrap();
        assert_eq!(u.signals, [Signal::Moving]);
    }

    #[test]
    fn a_single_bad_fix_is_a_jump_and_is_not_the_next_reference() {
        let cfg = MotionConfig::default();
        let mut m = TrackMotion::default();
        m.update(fix(0, 10.0, 50.0), &cfg).unwrap();
        let u = m.update(fix(10, 20.0, 50.0), &cfg).unwrap();
        assert!(matches!(u.signals[..], [Signal::Jump { .. }]), "{u:?}");
        assert_eq!(u.leg, None);
        let u = m.update(fix(20, 10.001, 50.0), &cfg).unwrap();
        assert!(u.signals.is_empty());
        let l = u.leg.unwrap();
        assert!(l.distance_m < 100.0, "measured from the last good fix: {l:?}");
    }

    #[test]
    fn two_reports_milliseconds_apart_are_noise_not_a_jump() {
        let cfg = MotionConfig::default();
        let mut m = TrackMotion::default();
        m.update(Fix { time_ns: 0, lon: 92.2, lat: -65.1 }, &cfg).unwrap();
        // 12 m in 64 ms: ~196 m/s, but within GPS noise.
        let u = m.update(Fix { time_ns: 64_000_000, lon: 92.20025, lat: -65.1 }, &cfg).unwrap();
        assert!(u.signals.is_empty(), "{u:?}");
        assert!(u.leg.is_some());
    }

    #[test]
    fn a_confirmed_jump_re_anchors_the_track() {
        let cfg = MotionConfig::default();
        let mut m = TrackMotion::default();
        m.update(fix(0, 10.0, 50.0), &cfg).unwrap();
        assert!(!m.update(fix(10, 20.0, 50.0), &cfg).unwrap().signals.is_empty());
        let u = m.update(fix(20, 20.0001, 50.0), &cfg).unwrap();
        assert!(u.signals.is_empty(), "{u:?}");
        assert!(u.leg.unwrap().distance_m < 10.0);
        assert_eq!(m.last().unwrap().lon, 20.0001);
    }

    proptest! {
        #[test]
        fn prop_stop_and_moving_alternate_and_legs_are_finite(
            steps in prop::collection::vec((1i128..120, -0.001f64..0.001, -0.001f64..0.001, prop::bool::ANY), 1..300)
        ) {
            let cfg = MotionConfig::default();
            let mut m = TrackMotion::default();
            let (mut t, mut lon, mut lat) = (0i128, 5.0f64, 45.0f64);
            let mut stopped = false;
            for (dt, dlon, dlat, still) in steps {
                t += dt;
                if !still {
                    lon += dlon;
                    lat += dlat;
                }
                let u = m.update(fix(t, lon, lat), &cfg).unwrap();
                if let Some(l) = u.leg {
                    prop_assert!(l.distance_m.is_finite() && l.speed_mps.is_finite() && l.speed_mps >= 0.0);
                    if let Some(h) = l.heading_deg {
                        prop_assert!((0.0..360.0).contains(&h));
                    }
                }
                for s in u.signals {
                    match s {
                        Signal::Stop { .. } => { prop_assert!(!stopped); stopped = true; }
                        Signal::Moving => { prop_assert!(stopped); stopped = false; }
                        Signal::Jump { .. } => prop_assert!(false, "no leg here is implausible"),
                    }
                }
                prop_assert_eq!(stopped, m.is_stopped());
            }
            let restored: TrackMotion = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            prop_assert_eq!(restored, m);
        }
    }
}

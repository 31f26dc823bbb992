//! One input partition's analytics: a reorder buffer in front of the engine, driven by the
//! partition's event-time watermark. Pure: no I/O, no clock.
//!
//! # Event time
//!
//! The partition's watermark is the largest event time it has delivered minus the allowed
//! lateness, and never goes back. A record older than the watermark is *late*: the caller sends it
//! to the dead-letter topic with reason `late` and it changes nothing. Every other record waits in
//! the buffer until the watermark passes it and is then handed to the engine in (event time,
//! record id) order. So the engine sees the same sequence whatever the arrival order within the
//! lateness, and its events and aggregates are the same: no retraction is ever needed, at the price
//! of results trailing the newest data by the lateness. Per partition rather than per instance,
//! because state is per partition (observations are keyed by track): an idle partition holds back
//! only its own results, never another partition's.
//!
//! # State
//!
//! [`TaskState`] is the whole task as plain data, tied to the input offset it reflects
//! (`next_offset`: every record before it is in the state, none after). The processor writes it in
//! the same Kafka transaction as the outputs and the input offsets, so a restored task continues
//! exactly where the committed offsets say.

use std::collections::BTreeMap;
use std::sync::Arc;

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{Engine, EngineConfig, EngineState, Output};
use geostream_analytics::spec::SpecError;
use geostream_model::Observation;
use geostream_model::time::OffsetDateTime;
use serde::{Deserialize, Serialize};

/// A partition's task as plain data, for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The input partition.
    pub partition: i32,
    /// The input offset this state reflects: records before it are in, none after.
    pub next_offset: i64,
    /// Largest event time delivered (ns since the epoch).
    pub max_event_ns: Option<i128>,
    /// The watermark (ns since the epoch).
    pub watermark_ns: Option<i128>,
    /// Observations waiting for the watermark, in release order.
    pub buffer: Vec<Observation>,
    /// The analytics' state.
    pub engine: EngineState,
}

/// What [`PartitionTask::accept`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Waiting for the watermark.
    Buffered,
    /// The same observation (id and time) is already waiting; dropped as a duplicate.
    Duplicate,
    /// Older than the watermark; the caller dead-letters it.
    Late {
        /// The watermark it missed.
        watermark: OffsetDateTime,
    },
}

/// One input partition's analytics.
pub struct PartitionTask {
    partition: i32,
    lateness_ns: i128,
    next_offset: i64,
    max_event_ns: Option<i128>,
    watermark_ns: Option<i128>,
    buffer: BTreeMap<(i128, String), Observation>,
    engine: Engine,
    /// `engine.forgotten()` at the last [`PartitionTask::take_forgotten`].
    forgotten_reported: u64,
}

fn time_of(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn key(obs: &Observation) -> (i128, String) {
    (obs.time.unix_timestamp_nanos(), obs.id.to_string())
}

impl PartitionTask {
    /// An empty task starting at input offset `next_offset` (-1: wherever the consumer starts).
    pub fn new(
        partition: i32,
        lateness_ns: i128,
        next_offset: i64,
        config: EngineConfig<'_>,
    ) -> Result<Self, SpecError> {
        Ok(Self {
            partition,
            lateness_ns: lateness_ns.max(0),
            next_offset,
            max_event_ns: None,
            watermark_ns: None,
            buffer: BTreeMap::new(),
            engine: Engine::build(config, None)?,
            forgotten_reported: 0,
        })
    }

    /// A task from a checkpoint, running the analytics of `config` (whose state is kept where the
    /// analytic did not change; see [`Engine::build`]).
    pub fn restore(state: TaskState, lateness_ns: i128, config: EngineConfig<'_>) -> Result<Self, SpecError> {
        Ok(Self {
            partition: state.partition,
            lateness_ns: lateness_ns.max(0),
            next_offset: state.next_offset,
            max_event_ns: state.max_event_ns,
            watermark_ns: state.watermark_ns,
            buffer: state.buffer.into_iter().map(|o| (key(&o), o)).collect(),
            engine: Engine::build(config, Some(state.engine))?,
            forgotten_reported: 0,
        })
    }

    /// The task as plain data.
    pub fn state(&self) -> TaskState {
        TaskState {
            partition: self.partition,
            next_offset: self.next_offset,
            max_event_ns: self.max_event_ns,
            watermark_ns: self.watermark_ns,
            buffer: self.buffer.values().cloned().collect(),
            engine: self.engine.state(),
        }
    }

    /// The input partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The input offset the state reflects (the next record to read).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The watermark, once the partition delivered a record.
    pub fn watermark(&self) -> Option<OffsetDateTime> {
        self.watermark_ns.map(time_of)
    }

    /// Observations waiting for the watermark.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Takes the record at `offset`. Nothing reaches the engine before [`PartitionTask::release`].
    pub fn accept(&mut self, offset: i64, obs: Observation) -> Accepted {
        self.next_offset = self.next_offset.max(offset + 1);
        let t = obs.time.unix_timestamp_nanos();
        if let Some(w) = self.watermark_ns
            && t < w
        {
            return Accepted::Late { watermark: time_of(w) };
        }
        self.max_event_ns = Some(self.max_event_ns.map_or(t, |m| m.max(t)));
        let k = key(&obs);
        if self.buffer.contains_key(&k) {
            return Accepted::Duplicate;
        }
        self.buffer.insert(k, obs);
        Accepted::Buffered
    }

    /// Moves past a record at `offset` that is not an observation (dead-lettered by the caller).
    pub fn skip(&mut self, offset: i64) {
        self.next_offset = self.next_offset.max(offset + 1);
    }

    /// Advances the watermark to what the records so far allow and runs the engine over every
    /// observation it passed, in (time, id) order.
    pub fn release(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(max) = self.max_event_ns else { return out };
        let candidate = max - self.lateness_ns;
        if self.watermark_ns.is_some_and(|w| w >= candidate) {
            return out;
        }
        self.watermark_ns = Some(candidate);
        // Records at the watermark itself may still arrive on time, so only strictly older ones go.
        let waiting = self.buffer.split_off(&(candidate, String::new()));
        let ready = std::mem::replace(&mut self.buffer, waiting);
        for obs in ready.into_values() {
            // Windows and gaps that end before this observation close first, exactly as they
            // would in `geostream analyze` over the sorted file.
            out.extend(self.engine.advance(obs.time));
            out.extend(self.engine.observe(&obs));
        }
        out.extend(self.engine.advance(time_of(candidate)));
        out
    }

    /// Swaps the fence set; exits for fences that went away are stamped at the watermark.
    pub fn replace_fences(&mut self, fences: Arc<FenceIndex>) -> Vec<Output> {
        let at = self.watermark_ns.map_or(OffsetDateTime::UNIX_EPOCH, time_of);
        self.engine.replace_fences(fences, at)
    }

    /// Runs a new set of analytics, keeping the state of those that did not change.
    pub fn reconfigure(&mut self, config: EngineConfig<'_>) -> Result<(), SpecError> {
        self.engine = Engine::build(config, Some(self.engine.state()))?;
        self.forgotten_reported = 0;
        Ok(())
    }

    /// Tracks the analytics forgot (`forget_after_s`) since the last call.
    pub fn take_forgotten(&mut self) -> u64 {
        let now = self.engine.forgotten();
        let new = now.saturating_sub(self.forgotten_reported);
        self.forgotten_reported = now;
        new
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_analytics::spec::AnalyticSpec;
    use geostream_model::geojson::{Geometry, GeometryValue};
    use geostream_model::{FeedId, TrackId};
    use proptest::prelude::*;

    const S: i128 = 1_000_000_000;

    fn specs() -> Vec<AnalyticSpec> {
        serde_json::from_value(serde_json::json!([
            {"id": "motion", "analytic": {"kind": "motion", "max_speed_mps": 50.0}},
            {"id": "gaps", "analytic": {"kind": "gaps", "threshold_s": 120}},
            {"id": "bins", "analytic": {"kind": "bins", "cells": {"kind": "geohash", "precision": 5},
             "window_s": 300, "properties": ["speed"]}}
        ]))
        .unwrap()
    }

    fn config(specs: &[AnalyticSpec]) -> EngineConfig<'_> {
        EngineConfig { specs, fences: Arc::new(FenceIndex::build([]).unwrap()), sql: None }
    }

    fn obs(track: u8, t: i64, lon: f64) -> Observation {
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000 + t).unwrap();
        let mut attrs = serde_json::Map::new();
        attrs.insert("speed".into(), serde_json::Value::from(t as f64 / 10.0));
        Observation::try_new(
            FeedId::new("ships").unwrap(),
            Some(TrackId::new(format!("t{track}")).unwrap()),
            time,
            time,
            Geometry::new(GeometryValue::new_point([lon, 50.0])),
            attrs,
        )
        .unwrap()
    }

    /// A track-interleaved stream in event-time order: three tracks, one silent for a while.
    fn stream(n: i64) -> Vec<Observation> {
        let mut v = Vec::new();
        for i in 0..n {
            for track in 0..3u8 {
                if track == 2 && (40..60).contains(&i) {
                    continue;
                }
                v.push(obs(track, i * 30 + i64::from(track), 10.0 + (i as f64) * 0.001 * f64::from(track + 1)));
            }
        }
        v
    }

    fn outputs_json(outs: &[Output]) -> Vec<String> {
        outs.iter()
            .map(|o| match o {
                Output::Event(e) => serde_json::to_string(e).unwrap(),
                Output::Aggregate(a) => serde_json::to_string(a).unwrap(),
                Output::Joined(j) => serde_json::to_string(j).unwrap(),
                Output::Failed { analytic, message } => format!("failed {analytic} {message}"),
            })
            .collect()
    }

    fn run(records: &[Observation], lateness_s: i128) -> (Vec<String>, usize) {
        let specs = specs();
        let mut task = PartitionTask::new(0, lateness_s * S, 0, config(&specs)).unwrap();
        let mut out = Vec::new();
        let mut late = 0;
        for (i, r) in records.iter().enumerate() {
            if let Accepted::Late { .. } = task.accept(i as i64, r.clone()) {
                late += 1;
            }
            if i % 7 == 0 {
                out.extend(task.release());
            }
        }
        out.extend(task.release());
        (outputs_json(&out), late)
    }

    /// Shuffles within a bound: each record moves at most `max_shift_s` of event time earlier in
    /// the arrival order than its place, so none arrives later than the lateness.
    fn reorder(records: &[Observation], seed: u64, max_shift_s: i64) -> Vec<Observation> {
        let mut keyed: Vec<(i128, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let jitter =
                    (seed.wrapping_mul(6364136223846793005).wrapping_add((i as u64).wrapping_mul(1442695040888963407))
                        >> 33) as i64
                        % (max_shift_s + 1);
                (r.time.unix_timestamp_nanos() + i128::from(jitter) * S, i)
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, i)| records[i].clone()).collect()
    }

    #[test]
    fn in_order_input_produces_events_and_aggregates() {
        let (out, late) = run(&stream(100), 60);
        assert_eq!(late, 0);
        assert!(out.iter().any(|o| o.contains("\"gap\"")), "track 2's silence is a gap");
        assert!(out.iter().any(|o| o.contains("\"resumed\"")));
        assert!(out.iter().any(|o| o.contains("\"bin\"")), "windows closed");
    }

    #[test]
    fn late_records_are_refused_and_change_nothing() {
        let specs = specs();
        let mut task = PartitionTask::new(3, 10 * S, 0, config(&specs)).unwrap();
        assert_eq!(task.accept(0, obs(0, 100, 10.0)), Accepted::Buffered);
        task.release();
        let before = task.state();
        let Accepted::Late { watermark } = task.accept(1, obs(1, 50, 10.0)) else { panic!("50 s is before 90 s") };
        assert_eq!(watermark, OffsetDateTime::from_unix_timestamp(1_700_000_090).unwrap());
        let after = task.state();
        assert_eq!(after.next_offset, 2, "the late record is consumed");
        assert_eq!(TaskState { next_offset: 1, ..after }, before, "and changes nothing else");
        assert_eq!(task.accept(2, obs(1, 95, 10.0)), Accepted::Buffered, "within the lateness");
        assert_eq!(task.accept(3, obs(1, 95, 10.0)), Accepted::Duplicate);
    }

    #[test]
    fn a_restored_task_continues_exactly_like_one_that_never_stopped() {
        let input = stream(120);
        let (whole, _) = run(&input, 90);
        let specs = specs();
        for cut in [1, 50, 200, input.len() - 1] {
            let mut task = PartitionTask::new(0, 90 * S, 0, config(&specs)).unwrap();
            let mut out = Vec::new();
            for (i, r) in input.iter().enumerate() {
                if i == cut {
                    let bytes = serde_json::to_vec(&task.state()).unwrap();
                    let state: TaskState = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(state.next_offset, cut as i64);
                    task = PartitionTask::restore(state, 90 * S, config(&specs)).unwrap();
                }
                task.accept(i as i64, r.clone());
                if i % 7 == 0 {
                    out.extend(task.release());
                }
            }
            out.extend(task.release());
            assert_eq!(outputs_json(&out), whole, "cut at {cut}");
        }
    }

    #[test]
    fn silent_tracks_are_forgotten_alike_whatever_the_arrival_order_and_batches() {
        let specs: Vec<AnalyticSpec> = serde_json::from_value(serde_json::json!([
            {"id": "motion", "analytic": {"kind": "motion", "max_speed_mps": 50.0, "forget_after_s": 300}},
            {"id": "gaps", "analytic": {"kind": "gaps", "threshold_s": 120, "forget_after_s": 300}}
        ]))
        .unwrap();
        let drive = |records: &[Observation], every: usize| {
            let mut task = PartitionTask::new(0, 90 * S, 0, config(&specs)).unwrap();
            let mut out = Vec::new();
            let mut forgotten = 0;
            for (i, r) in records.iter().enumerate() {
                task.accept(i as i64, r.clone());
                if i % every == 0 {
                    out.extend(task.release());
                    forgotten += task.take_forgotten();
                }
            }
            out.extend(task.release());
            forgotten += task.take_forgotten();
            assert_eq!(task.take_forgotten(), 0, "each forgotten track is counted once");
            (outputs_json(&out), forgotten)
        };
        let input = stream(100);
        let (expected, forgotten) = drive(&input, 7);
        assert_eq!(forgotten, 2, "track 2, silent for 600 s, forgotten by motion and by gaps");
        assert!(expected.iter().any(|o| o.contains("\"gap\"")), "its gap was declared first");
        assert!(!expected.iter().any(|o| o.contains("\"resumed\"")), "and forgotten with it");
        for (seed, every) in [(1, 1), (2, 13), (3, 50)] {
            let (got, n) = drive(&reorder(&input, seed, 60), every);
            assert_eq!(got, expected, "seed {seed}, a release every {every} records");
            assert_eq!(n, 2);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn results_do_not_depend_on_arrival_order_within_the_lateness(seed in any::<u64>(), shift in 0i64..90) {
            let input = stream(80);
            let (expected, late) = run(&input, 90);
            prop_assert_eq!(late, 0);
            let (got, late) = run(&reorder(&input, seed, shift), 90);
            prop_assert_eq!(late, 0, "every record within the lateness");
            prop_assert_eq!(got, expected);
        }
    }
}

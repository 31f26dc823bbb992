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
//! [`TaskState`] is the task as plain data, tied to two input offsets: `next_offset` (every record
//! before it was read) and `resume_offset` (the oldest record still in the reorder buffer, or
//! `next_offset` when it is empty). The buffer itself is not in the state: it is the input between
//! the two offsets, read again on restore. The processor commits `resume_offset` as the group's
//! offset (with `next_offset` in the commit's metadata, see [`CommitMark`]) in the same Kafka
//! transaction as the outputs and the state, so a restored task reads from `resume_offset` on and
//! [`PartitionTask::accept`] sorts the records it already saw from the new ones.
//!
//! Why re-reading is exact: a record read before the checkpoint with event time at or after the
//! checkpoint's watermark `W` was in the buffer then. It cannot have been late (it was at or after
//! the watermark of its arrival, which is at most `W`), nor released (release takes only times
//! before the new watermark, at most `W`). A record before `W` was released or dead-lettered as
//! late then; either way it is done. So on replay the first kind goes back into the buffer and the
//! second is skipped without a second dead letter, and the buffer is what it was. Checkpoints stay
//! the size of the analytics' state, not of `lateness` worth of input.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Every input record before this offset was read (-1: none yet).
    pub next_offset: i64,
    /// Where reading starts again on restore: the offset of the oldest record still waiting for
    /// the watermark, or `next_offset` when none waits. The group's committed offset.
    pub resume_offset: i64,
    /// Largest event time delivered (ns since the epoch).
    pub max_event_ns: Option<i128>,
    /// The watermark (ns since the epoch).
    pub watermark_ns: Option<i128>,
    /// The analytics' state.
    pub engine: EngineState,
}

/// What the processor commits as a partition's group offset: the offset to read from again
/// (`resume`, Kafka's committed offset) and, in the commit's metadata, how far the state has read
/// (`next`). A state matches a commit when both are equal; the resume offset alone repeats while
/// the oldest buffered record stays, so it could match an older state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark {
    /// The committed offset: reading starts here again.
    pub resume: i64,
    /// Every record before it is reflected by the state.
    pub next: i64,
}

const MARK_PREFIX: &str = "geostream-process next=";

impl CommitMark {
    /// The commit mark of a state.
    pub fn of(state: &TaskState) -> Self {
        Self { resume: state.resume_offset, next: state.next_offset }
    }

    /// The offset commit's metadata.
    pub fn metadata(&self) -> String {
        format!("{MARK_PREFIX}{}", self.next)
    }
}

/// A partition's group offset as read back from the broker: the resume offset and, when the broker
/// kept the commit's metadata, the read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The committed offset.
    pub resume: i64,
    /// The read position from the metadata; None when the commit has none (an offset set by hand
    /// with `kafka-consumer-groups.sh --reset-offsets`, or a broker that drops offset metadata,
    /// like the embedded one of `geostream standalone`).
    pub next: Option<i64>,
}

impl Committed {
    /// Reads a committed offset and its metadata.
    pub fn parse(offset: i64, metadata: &str) -> Self {
        let next = metadata.strip_prefix(MARK_PREFIX).and_then(|n| n.parse::<i64>().ok()).filter(|n| *n >= offset);
        Self { resume: offset, next }
    }

    /// How far the processor has read: the metadata's position, else the offset itself.
    pub fn position(&self) -> i64 {
        self.next.unwrap_or(self.resume)
    }

    /// Whether `state` is the one committed with this offset. With the read position both offsets
    /// must match. Without it only the changelog's newest state (`newest_in_changelog`) can be
    /// trusted on the resume offset alone: it was written in the same transaction as the offset,
    /// where an older copy on the volume may share the resume offset.
    pub fn matches(&self, state: &TaskState, newest_in_changelog: bool) -> bool {
        match self.next {
            Some(next) => state.resume_offset == self.resume && state.next_offset == next,
            None => newest_in_changelog && state.resume_offset == self.resume,
        }
    }
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
    /// Read before the state's checkpoint: back in the buffer if it was waiting then, else
    /// skipped (it was released or dead-lettered then). The caller emits nothing for it.
    Replayed,
}

/// One input partition's analytics.
pub struct PartitionTask {
    partition: i32,
    lateness_ns: i128,
    next_offset: i64,
    max_event_ns: Option<i128>,
    watermark_ns: Option<i128>,
    /// Waiting for the watermark, in release order, each with its input offset.
    buffer: BTreeMap<(i128, String), (i64, Observation)>,
    /// The input offsets of the buffer's records; the first is the resume offset.
    buffered_offsets: BTreeSet<i64>,
    /// After a restore, until the first record past the restored `next_offset`: the restored
    /// resume offset. The buffer is incomplete until the replay ends, so the resume offset may not
    /// move past it (a commit during the replay would otherwise skip records still to re-read).
    replay_floor: Option<i64>,
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
            buffered_offsets: BTreeSet::new(),
            replay_floor: None,
            engine: Engine::build(config, None)?,
            forgotten_reported: 0,
        })
    }

    /// A task from a checkpoint, running the analytics of `config` (whose state is kept where the
    /// analytic did not change; see [`Engine::build`]). The caller reads the input again from
    /// `state.resume_offset`.
    pub fn restore(state: TaskState, lateness_ns: i128, config: EngineConfig<'_>) -> Result<Self, SpecError> {
        Ok(Self {
            partition: state.partition,
            lateness_ns: lateness_ns.max(0),
            next_offset: state.next_offset,
            max_event_ns: state.max_event_ns,
            watermark_ns: state.watermark_ns,
            buffer: BTreeMap::new(),
            buffered_offsets: BTreeSet::new(),
            replay_floor: (state.resume_offset < state.next_offset).then_some(state.resume_offset),
            engine: Engine::build(config, Some(state.engine))?,
            forgotten_reported: 0,
        })
    }

    /// The task as plain data.
    pub fn state(&self) -> TaskState {
        TaskState {
            partition: self.partition,
            next_offset: self.next_offset,
            resume_offset: self.resume_offset(),
            max_event_ns: self.max_event_ns,
            watermark_ns: self.watermark_ns,
            engine: self.engine.state(),
        }
    }

    /// Where reading must start again to rebuild the buffer: the oldest buffered record's offset,
    /// else `next_offset`.
    pub fn resume_offset(&self) -> i64 {
        let oldest = self.buffered_offsets.first().copied().unwrap_or(self.next_offset);
        self.replay_floor.map_or(oldest, |floor| oldest.min(floor))
    }

    /// What to commit for this partition.
    pub fn commit_mark(&self) -> CommitMark {
        CommitMark { resume: self.resume_offset(), next: self.next_offset }
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
    /// Records before `next_offset` are replays after a restore (see the module docs).
    pub fn accept(&mut self, offset: i64, obs: Observation) -> Accepted {
        let t = obs.time.unix_timestamp_nanos();
        if offset < self.next_offset {
            if self.watermark_ns.is_none_or(|w| t >= w) {
                let k = key(&obs);
                if !self.buffer.contains_key(&k) {
                    self.buffered_offsets.insert(offset);
                    self.buffer.insert(k, (offset, obs));
                }
            }
            return Accepted::Replayed;
        }
        self.next_offset = offset + 1;
        self.replay_floor = None;
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
        self.buffered_offsets.insert(offset);
        self.buffer.insert(k, (offset, obs));
        Accepted::Buffered
    }

    /// Moves past a record at `offset` that is not an observation (dead-lettered by the caller).
    /// Returns false for a replay: it was dead-lettered before the checkpoint already.
    pub fn skip(&mut self, offset: i64) -> bool {
        if offset < self.next_offset {
            return false;
        }
        self.next_offset = offset + 1;
        self.replay_floor = None;
        true
    }

    /// Advances the watermark to what the records so far allow and runs the engine over every
    /// observation it passed, in (time, id) order.
    pub fn release(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        // During a replay the buffer is incomplete; a lateness lowered since the checkpoint would
        // otherwise release past records not read again yet.
        if self.replay_floor.is_some() {
            return out;
        }
        let Some(max) = self.max_event_ns else { return out };
        let candidate = max - self.lateness_ns;
        if self.watermark_ns.is_some_and(|w| w >= candidate) {
            return out;
        }
        self.watermark_ns = Some(candidate);
        // Records at the watermark itself may still arrive on time, so only strictly older ones go.
        let waiting = self.buffer.split_off(&(candidate, String::new()));
        let ready = std::mem::replace(&mut self.buffer, waiting);
        for (offset, obs) in ready.into_values() {
            self.buffered_offsets.remove(&offset);
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

    /// Runs `records` (offset = index) the way the processor does, with a crash and restore after
    /// each step number in `cuts` (steps count replays too, so a cut can fall inside a replay):
    /// the state goes through its byte format, and reading starts again at its resume offset.
    /// Returns the outputs, the offsets reported late, and the largest number of records re-read
    /// by one restore.
    fn drive(
        records: &[Observation],
        lateness_s: i128,
        every: usize,
        cuts: &[usize],
        restored_lateness_s: i128,
    ) -> (Vec<String>, Vec<i64>, usize) {
        let specs = specs();
        let mut task = PartitionTask::new(0, lateness_s * S, -1, config(&specs)).unwrap();
        let (mut out, mut late, mut replayed, mut most) = (Vec::new(), Vec::new(), 0, 0);
        let mut pos = 0usize;
        let mut step = 0usize;
        while pos < records.len() {
            match task.accept(pos as i64, records[pos].clone()) {
                Accepted::Late { .. } => late.push(pos as i64),
                Accepted::Replayed => replayed += 1,
                Accepted::Buffered | Accepted::Duplicate => {}
            }
            pos += 1;
            if pos.is_multiple_of(every) {
                out.extend(task.release());
            }
            step += 1;
            if cuts.contains(&step) {
                let state = crate::checkpoint::decode(&crate::checkpoint::encode(&task.state()), "test").unwrap();
                assert_eq!(state.resume_offset, task.commit_mark().resume);
                assert!(state.resume_offset <= state.next_offset.max(0));
                most = most.max(replayed);
                replayed = 0;
                pos = usize::try_from(state.resume_offset.max(0)).unwrap();
                task = PartitionTask::restore(state, restored_lateness_s * S, config(&specs)).unwrap();
            }
        }
        out.extend(task.release());
        (outputs_json(&out), late, most.max(replayed))
    }

    /// Copies of every 11th record 20 minutes older (late by any lateness here), and of every
    /// 13th unchanged (duplicates), mixed into the stream a little after their originals.
    fn with_stragglers_and_duplicates(records: &[Observation]) -> Vec<Observation> {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            out.push(r.clone());
            if i % 11 == 5 {
                let mut old = r.clone();
                old.time -= geostream_model::time::Duration::minutes(20);
                old.refresh_id();
                out.push(old);
            }
            if i % 13 == 7 {
                out.push(r.clone());
            }
        }
        out
    }

    #[test]
    fn a_restored_task_continues_exactly_like_one_that_never_stopped() {
        let input = with_stragglers_and_duplicates(&reorder(&stream(120), 7, 60));
        let (whole, late, _) = drive(&input, 90, 7, &[], 90);
        assert!(!late.is_empty() && whole.iter().any(|o| o.contains("\"bin\"")));
        for cuts in [vec![1], vec![50], vec![200], vec![input.len() - 1], vec![100, 103], vec![60, 61, 62, 300]] {
            let (got, got_late, replayed) = drive(&input, 90, 7, &cuts, 90);
            assert_eq!(got, whole, "cuts at {cuts:?}");
            assert_eq!(got_late, late, "each late record reported once, cuts at {cuts:?}");
            if cuts[0] >= 50 {
                assert!(replayed > 0, "the buffer was read again, cuts at {cuts:?}");
            }
        }
    }

    #[test]
    fn a_checkpoint_does_not_grow_with_the_buffer() {
        let specs = specs();
        let mut task = PartitionTask::new(0, 3600 * S, -1, config(&specs)).unwrap();
        let input = stream(100);
        task.accept(0, input[0].clone());
        task.release();
        let small = crate::checkpoint::encode(&task.state()).len();
        for (i, r) in input.iter().enumerate().skip(1) {
            task.accept(i as i64, r.clone());
        }
        assert_eq!(task.buffered(), input.len(), "an hour's lateness holds everything");
        let state = task.state();
        assert_eq!((state.resume_offset, state.next_offset), (0, input.len() as i64));
        assert!(crate::checkpoint::encode(&state).len() < small + 64, "the buffer is not in the checkpoint");

        // Restored, the task commits the same mark until the replay has rebuilt the buffer (a
        // fence change can make it commit before any record is read again).
        let mut task = PartitionTask::restore(state.clone(), 3600 * S, config(&specs)).unwrap();
        assert_eq!(task.commit_mark(), CommitMark::of(&state));
        assert!(task.release().is_empty());
        task.accept(0, input[0].clone());
        assert_eq!(task.commit_mark(), CommitMark::of(&state));
        assert_eq!(task.buffered(), 1);
    }

    #[test]
    fn a_lateness_lowered_across_a_restore_waits_for_the_replay() {
        let mut input = reorder(&stream(120), 3, 60);
        // A record a day later closes every window, so bins account for every observation.
        input.push(obs(9, 90_000, 10.0));
        let observed = |out: &[String]| {
            out.iter()
                .map(|o| serde_json::from_str::<serde_json::Value>(o).unwrap())
                .filter(|o| o["properties"]["kind"] == "bin")
                .map(|o| o["properties"]["count"].as_u64().unwrap())
                .sum::<u64>()
        };
        let (whole, late, _) = drive(&input, 90, 5, &[], 90);
        assert!(late.is_empty());
        assert_eq!(observed(&whole), input.len() as u64 - 1);
        // Restored with half the lateness, records may turn late from then on, but none that was
        // waiting in the buffer is lost while it is read again.
        let (got, got_late, replayed) = drive(&input, 90, 5, &[150], 45);
        assert!(replayed > 0);
        assert_eq!(observed(&got) + got_late.len() as u64, input.len() as u64 - 1, "none lost, late ones reported");
    }

    #[test]
    fn commits_read_back_and_match_only_their_own_state() {
        let mark = CommitMark { resume: 40, next: 97 };
        let back = Committed::parse(40, &mark.metadata());
        assert_eq!(back, Committed { resume: 40, next: Some(97) });
        assert_eq!(back.position(), 97);
        let specs = specs();
        let state = |resume_offset, next_offset| TaskState {
            partition: 0,
            next_offset,
            resume_offset,
            max_event_ns: None,
            watermark_ns: None,
            engine: PartitionTask::new(0, 0, -1, config(&specs)).unwrap().state().engine,
        };
        assert!(back.matches(&state(40, 97), false), "the volume copy of this commit");
        assert!(!back.matches(&state(40, 90), true), "an older state with the same resume offset");
        // No metadata: read up to the offset, and only the changelog's newest state is trusted.
        for metadata in ["", "something else", "geostream-process next=12"] {
            let bare = Committed::parse(40, metadata);
            assert_eq!((bare.next, bare.position()), (None, 40), "{metadata:?}");
            assert!(bare.matches(&state(40, 97), true));
            assert!(!bare.matches(&state(40, 97), false), "a volume copy may be older");
            assert!(!bare.matches(&state(39, 97), true));
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
        fn crashes_anywhere_change_nothing(
            seed in any::<u64>(),
            every in 1usize..40,
            cuts in proptest::collection::vec(1usize..900, 0..4),
        ) {
            let input = with_stragglers_and_duplicates(&reorder(&stream(80), seed, 80));
            let (whole, late, _) = drive(&input, 90, every, &[], 90);
            let (got, got_late, _) = drive(&input, 90, every, &cuts, 90);
            prop_assert_eq!(got, whole);
            prop_assert_eq!(got_late, late);
        }

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

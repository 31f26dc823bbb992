//! Bytes of processor state per track (issue 8), measured in the real partition core.
//!
//! A [`PartitionTask`] runs the demo's analytics (`feeds/demo/analytics.yaml`: geofence `zones`
//! with a 600 s dwell over the 218 fences of `feeds/demo/fences.geojson`, `motion`, gaps
//! `silence`, bins `density`) and takes `BENCH_STATE_TRACKS` (default 1,000,000) simulated tracks
//! of the feed `ais-nmea-tcp` (a feed every one of those analytics takes), each [`FIXES`] fixes
//! [`FIX_INTERVAL_S`] s apart: start points uniform in the bounding box of a fence picked at
//! random (so many tracks are inside a port limit or a country), 20% of them stationary, 50%
//! moving at vessel speeds (3 to 12 m/s), 30% at vehicle speeds (10 to 30 m/s), each on a fixed
//! heading, with the speed as `sog_mps`. Observations come in event-time order (tracks
//! interleaved, a millisecond apart) and the task releases after every [`BATCH`] records, as the
//! stage does after a poll. A last record of one more track, [`LATENESS_S`] + 1 s after the
//! others, moves the watermark past every fix, so the reorder buffer is empty but for that record,
//! no gap is declared (the watermark is within every track's 120 s threshold) and the bins window
//! of the last minute is still open. What remains is what a partition holds for a million active
//! tracks: per track the geofence state (last fix, open visits), the motion state, the gap
//! detector's entry and deadline and the gap position, plus the open bins.
//!
//! Figures, divided by the number of tracks:
//! - heap bytes: a counting `#[global_allocator]` around the system allocator; live bytes after
//!   the run minus live bytes after the task was built (requested sizes: the allocator's own
//!   overhead per allocation is not in it, so `allocations_per_track` is given too);
//! - checkpoint bytes: `checkpoint::encode(&task.state()).len()`, the bytes written to the state
//!   topic and the volume.
//!
//! The reference, in the same run with the same allocator: a minimal hand-written tracker,
//! `HashMap<String, (f64, f64, i64)>` keyed by the same track ids holding the last position and
//! time, fed the same fixes; its JSON (`serde_json`) for the checkpoint figure.
//!
//! Then, unless `BENCH_STATE_BREAKDOWN=0`, the same run with one analytic at a time, and the
//! reorder buffer's cost per waiting observation (observations accepted, none released).
//!
//! Prints one JSON line per figure, in the shape of `scripts/bench.sh`, on stdout, and appends
//! them to `BENCH_REPORT` when set. Not criterion: one deterministic run measures it exactly.
//! Run: `cargo bench -p geostream-processor --bench state_per_track`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{EngineConfig, Output};
use geostream_analytics::spec::AnalyticSpec;
use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::OffsetDateTime;
use geostream_model::{EventKind, FeedId, FenceSpec, Observation, TrackId};
use geostream_processor::checkpoint;
use geostream_processor::task::PartitionTask;
use serde_json::{Value, json};

/// The system allocator, counting live bytes and live allocations (requested sizes).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

// The one piece of unsafe code in this crate (see Cargo.toml): the allocator contract is
// System's, to which every call is passed unchanged; only counters are added.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s guarantees
// hold; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes and allocations now.
fn live() -> (isize, isize) {
    (LIVE_BYTES.load(Ordering::Relaxed), LIVE_ALLOCS.load(Ordering::Relaxed))
}

/// Fixes per track.
const FIXES: i64 = 4;
/// Seconds between a track's fixes.
const FIX_INTERVAL_S: i64 = 10;
/// Tracks are spread over this many one-millisecond slots within each interval.
const SLOTS: usize = 10_000;
/// The task's allowed lateness (s). It only sets how many observations wait in the reorder
/// buffer during the run (measured separately per observation), not what remains after it.
const LATENESS_S: i64 = 10;
/// Records between two releases.
const BATCH: usize = 10_000;
/// Event time of the first fixes: 10 s past a minute, so the run ends inside an open minute.
const T0: i64 = 1_699_999_990;
/// The feed: every analytic of the demo takes it.
const FEED: &str = "ais-nmea-tcp";
const NS: i128 = 1_000_000_000;

struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// The fences of the demo and the bounding boxes of those the index took.
struct Fences {
    index: Arc<FenceIndex>,
    boxes: Vec<[f64; 4]>,
}

fn bbox(coords: &Value, b: &mut [f64; 4]) {
    match coords.as_array() {
        Some(a) if a.len() >= 2 && a[0].is_number() => {
            let (x, y) = (a[0].as_f64().unwrap_or(0.0), a[1].as_f64().unwrap_or(0.0));
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
        Some(a) => a.iter().for_each(|c| bbox(c, b)),
        None => {}
    }
}

/// `feeds/demo/fences.geojson` as `geostream analyze --fences` reads it (`properties.id`,
/// `properties.name`, the other properties kept).
fn demo_fences() -> Fences {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../feeds/demo/fences.geojson");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).expect("feeds/demo/fences.geojson")).expect("JSON");
    let specs = FenceSpec::from_feature_collection(&doc).expect("demo fences");
    let boxes: Vec<[f64; 4]> = doc["features"]
        .as_array()
        .expect("a FeatureCollection")
        .iter()
        .map(|f| {
            let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
            bbox(&f["geometry"]["coordinates"], &mut b);
            b
        })
        .collect();
    let (index, refused) = FenceIndex::build_skipping_invalid(&specs);
    if !refused.is_empty() {
        eprintln!("state_per_track: {} demo fences refused by the index", refused.len());
    }
    let boxes = specs.iter().zip(boxes).filter(|(s, _)| index.position(&s.id).is_some()).map(|(_, b)| b).collect();
    Fences { index: Arc::new(index), boxes }
}

fn demo_analytics() -> Vec<AnalyticSpec> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../feeds/demo/analytics.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("feeds/demo/analytics.yaml")).expect("analytic specs")
}

/// A simulated track: start, velocity in degrees per second, speed.
struct Track {
    lon: f64,
    lat: f64,
    dlon: f64,
    dlat: f64,
    speed_mps: f64,
}

fn track(i: usize, boxes: &[[f64; 4]]) -> Track {
    let mut r = SplitMix(0x5EED ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let b = boxes[(r.next_u64() % boxes.len() as u64) as usize];
    let lon = r.range(b[0], b[2]).clamp(-179.0, 179.0);
    let lat = r.range(b[1], b[3]).clamp(-80.0, 80.0);
    let class = r.range(0.0, 1.0);
    let speed_mps = if class < 0.2 {
        0.0
    } else if class < 0.7 {
        r.range(3.0, 12.0)
    } else {
        r.range(10.0, 30.0)
    };
    let heading = r.range(0.0, std::f64::consts::TAU);
    let m_per_deg = 111_320.0;
    Track {
        lon,
        lat,
        dlon: speed_mps * heading.sin() / (m_per_deg * lat.to_radians().cos()),
        dlat: speed_mps * heading.cos() / m_per_deg,
        speed_mps,
    }
}

fn track_id(i: usize) -> String {
    // MMSI-like: nine digits.
    (200_000_000 + i).to_string()
}

/// Event time (ns) and position of fix `k` of track `i`.
fn fix(i: usize, k: i64, t: &Track) -> (i128, f64, f64) {
    let offset_ms = k * FIX_INTERVAL_S * 1000 + (i % SLOTS) as i64;
    let s = (k * FIX_INTERVAL_S) as f64;
    (
        i128::from(T0) * NS + i128::from(offset_ms) * 1_000_000,
        (t.lon + t.dlon * s).clamp(-180.0, 180.0),
        (t.lat + t.dlat * s).clamp(-90.0, 90.0),
    )
}

/// Every fix of `n` tracks in event-time order (fix by fix, then by slot).
fn for_each_fix(n: usize, mut f: impl FnMut(usize, i64)) {
    for k in 0..FIXES {
        for slot in 0..SLOTS.min(n) {
            let mut i = slot;
            while i < n {
                f(i, k);
                i += SLOTS;
            }
        }
    }
}

fn observation(track: String, t_ns: i128, lon: f64, lat: f64, speed_mps: f64) -> Observation {
    let time = OffsetDateTime::from_unix_timestamp_nanos(t_ns).expect("a time");
    let mut attrs = serde_json::Map::new();
    attrs.insert("sog_mps".into(), Value::from(speed_mps));
    Observation::try_new(
        FeedId::new(FEED).expect("a feed id"),
        Some(TrackId::new(track).expect("a track id")),
        time,
        time,
        Geometry::new(GeometryValue::new_point([lon, lat])),
        attrs,
    )
    .expect("a valid observation")
}

/// What one run of the task measured.
#[derive(Default)]
struct Measured {
    heap_bytes: f64,
    allocations: f64,
    checkpoint_bytes: f64,
    enters: u64,
    exits: u64,
    events: u64,
    aggregates: u64,
    seconds: f64,
}

fn count(outputs: Vec<Output>, m: &mut Measured) {
    for o in outputs {
        match o {
            Output::Event(e) => {
                m.events += 1;
                match e.kind {
                    EventKind::Enter => m.enters += 1,
                    EventKind::Exit => m.exits += 1,
                    _ => {}
                }
            }
            Output::Aggregate(_) => m.aggregates += 1,
            Output::Joined(_) | Output::Failed { .. } => {}
        }
    }
}

/// Runs a task with `specs` over `n` tracks (see the module documentation).
fn run_task(specs: &[AnalyticSpec], fences: &Fences, n: usize) -> Measured {
    let start = Instant::now();
    let config = EngineConfig { specs, fences: Arc::clone(&fences.index), sql: None };
    let mut task = PartitionTask::new(0, i128::from(LATENESS_S) * NS, 0, config).expect("the demo analytics");
    let mut m = Measured::default();
    let (bytes0, allocs0) = live();
    let mut offset = 0i64;
    for_each_fix(n, |i, k| {
        let t = track(i, &fences.boxes);
        let (t_ns, lon, lat) = fix(i, k, &t);
        task.accept(offset, observation(track_id(i), t_ns, lon, lat, t.speed_mps));
        offset += 1;
        if (offset as usize).is_multiple_of(BATCH) {
            count(task.release(), &mut m);
        }
    });
    // One more track reporting LATENESS_S + 1 s after the last fix: the watermark passes every fix.
    let last_ms = (FIXES - 1) * FIX_INTERVAL_S * 1000 + SLOTS.min(n) as i64 - 1;
    let end = i128::from(T0) * NS + i128::from(last_ms) * 1_000_000 + i128::from(LATENESS_S + 1) * NS;
    let t = track(n, &fences.boxes);
    task.accept(offset, observation("199999999".into(), end, t.lon, t.lat, t.speed_mps));
    count(task.release(), &mut m);
    assert_eq!(task.buffered(), 1, "only the last record waits for the watermark");
    let (bytes1, allocs1) = live();
    m.heap_bytes = (bytes1 - bytes0) as f64 / n as f64;
    m.allocations = (allocs1 - allocs0) as f64 / n as f64;
    m.checkpoint_bytes = checkpoint::encode(&task.state()).len() as f64 / n as f64;
    drop(task);
    m.seconds = start.elapsed().as_secs_f64();
    m
}

/// The minimal tracker of the reference: last position and time per track id.
fn run_reference(fences: &Fences, n: usize) -> (f64, f64, f64) {
    let (bytes0, allocs0) = live();
    let mut last: HashMap<String, (f64, f64, i64)> = HashMap::new();
    for_each_fix(n, |i, k| {
        let t = track(i, &fences.boxes);
        let (t_ns, lon, lat) = fix(i, k, &t);
        let id = track_id(i);
        let v = (lon, lat, (t_ns / 1_000_000) as i64);
        match last.get_mut(&id) {
            Some(slot) => *slot = v,
            None => {
                last.insert(id, v);
            }
        }
    });
    let (bytes1, allocs1) = live();
    let json = serde_json::to_vec(&last).expect("JSON").len();
    ((bytes1 - bytes0) as f64 / n as f64, (allocs1 - allocs0) as f64 / n as f64, json as f64 / n as f64)
}

/// Heap and checkpoint bytes per observation waiting in the reorder buffer (none released).
fn run_buffer(specs: &[AnalyticSpec], fences: &Fences, n: usize) -> (f64, f64) {
    let config = EngineConfig { specs, fences: Arc::clone(&fences.index), sql: None };
    let mut task = PartitionTask::new(0, 3_600 * NS, 0, config).expect("the demo analytics");
    let empty = checkpoint::encode(&task.state()).len();
    let (bytes0, _) = live();
    for i in 0..n {
        let t = track(i, &fences.boxes);
        let (t_ns, lon, lat) = fix(i, 0, &t);
        task.accept(i as i64, observation(track_id(i), t_ns, lon, lat, t.speed_mps));
    }
    let (bytes1, _) = live();
    let encoded = checkpoint::encode(&task.state()).len();
    ((bytes1 - bytes0) as f64 / n as f64, (encoded - empty) as f64 / n as f64)
}

/// A field of /proc/self/status in bytes (`VmHWM`: peak resident set).
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

struct Report {
    lines: Vec<Value>,
}

impl Report {
    fn line(&mut self, name: &str, value: f64, reference: &str, reference_value: f64, extra: Value) {
        let mut line = json!({
            "name": name,
            "value": round(value, 1),
            "unit": "bytes/track",
            "reference": reference,
            "reference_value": round(reference_value, 1),
            "ratio": round(value / reference_value, 2),
            "target_ratio": null,
            "target_value": null,
            "per_core": null,
            "meets_target": null,
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        self.lines.push(line);
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_STATE_TRACKS")
        .ok()
        .map(|v| v.parse().expect("BENCH_STATE_TRACKS is a number of tracks"))
        .unwrap_or(1_000_000)
        .max(1);
    let breakdown = !std::env::var("BENCH_STATE_BREAKDOWN").is_ok_and(|v| v == "0");
    let fences = demo_fences();
    let specs = demo_analytics();
    let ids: Vec<String> = specs.iter().map(|s| s.id.to_string()).collect();
    eprintln!("state_per_track: {n} tracks x {FIXES} fixes, analytics {ids:?}, {} fences", fences.index.len());

    let (ref_heap, ref_allocs, ref_json) = run_reference(&fences, n);
    eprintln!(
        "state_per_track: reference HashMap<String, (f64, f64, i64)>: {ref_heap:.1} heap bytes/track, {ref_json:.1} JSON bytes/track"
    );
    let all = run_task(&specs, &fences, n);
    let peak_rss = proc_status_bytes("VmHWM:");
    eprintln!(
        "state_per_track: all analytics: {:.1} heap bytes/track, {:.2} allocations/track, {:.1} checkpoint bytes/track ({:.1} s; {} enters, {} exits, {} events, {} aggregates)",
        all.heap_bytes,
        all.allocations,
        all.checkpoint_bytes,
        all.seconds,
        all.enters,
        all.exits,
        all.events,
        all.aggregates
    );
    let buffered = n.min(100_000);
    let (buffer_heap, buffer_ckpt) = run_buffer(&specs, &fences, buffered);
    eprintln!(
        "state_per_track: reorder buffer: {buffer_heap:.1} heap bytes, {buffer_ckpt:.1} checkpoint bytes per waiting observation"
    );

    let common = json!({
        "tracks": n,
        "fixes_per_track": FIXES,
        "analytics": ids,
        "fences": fences.index.len(),
        "open_visits": all.enters.saturating_sub(all.exits),
        "peak_rss_bytes": peak_rss,
    });
    let mut report = Report { lines: Vec::new() };
    let mut extra = common.clone();
    extra["allocations_per_track"] = json!(round(all.allocations, 2));
    extra["reference_allocations_per_track"] = json!(round(ref_allocs, 2));
    extra["reorder_buffer_bytes_per_observation"] = json!(round(buffer_heap, 1));
    report.line(
        "state/heap_bytes_per_track",
        all.heap_bytes,
        "state/minimal_tracker_heap_bytes_per_track",
        ref_heap,
        extra,
    );
    let mut extra = common;
    extra["reorder_buffer_bytes_per_observation"] = json!(round(buffer_ckpt, 1));
    report.line(
        "state/checkpoint_bytes_per_track",
        all.checkpoint_bytes,
        "state/minimal_tracker_json_bytes_per_track",
        ref_json,
        extra,
    );

    if breakdown {
        for spec in &specs {
            let one = run_task(std::slice::from_ref(spec), &fences, n);
            let kind = spec.analytic.name();
            eprintln!(
                "state_per_track: {} ({kind}) alone: {:.1} heap bytes/track, {:.2} allocations/track, {:.1} checkpoint bytes/track ({:.1} s)",
                spec.id, one.heap_bytes, one.allocations, one.checkpoint_bytes, one.seconds
            );
            let extra = json!({"tracks": n, "analytics": [spec.id.as_str()], "allocations_per_track": round(one.allocations, 2)});
            report.line(
                &format!("state/heap_bytes_per_track/{kind}"),
                one.heap_bytes,
                "state/minimal_tracker_heap_bytes_per_track",
                ref_heap,
                extra.clone(),
            );
            report.line(
                &format!("state/checkpoint_bytes_per_track/{kind}"),
                one.checkpoint_bytes,
                "state/minimal_tracker_json_bytes_per_track",
                ref_json,
                extra,
            );
        }
    }

    let mut out = String::new();
    for line in &report.lines {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_REPORT") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("BENCH_REPORT");
        f.write_all(out.as_bytes()).expect("writing BENCH_REPORT");
    }
}

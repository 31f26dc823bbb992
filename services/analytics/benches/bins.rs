//! Spatial-bin throughput (BRIEF section 6: >= 3M observations/s per core), with a reference
//! measured in the same run so the figures read as ratios.
//!
//! Input: the real AIS positions of the codecs samples (3,038 position reports), repeated ten
//! times with the event times shifted past the capture's span each round, so one iteration bins
//! about 30,000 observations into 5-minute tumbling windows.
//!
//! - `bins/<cells>_aggregator`: [`BinAggregator::add`] for every observation (with one property
//!   summarised) and the watermark moved every 1,000 observations, as the processor does; windows
//!   are emitted and dropped along the way.
//! - `bins/<cells>_hashmap_reference`: the naive design over the same observations: compute the
//!   same cell id and count it in a `HashMap<(window start, cell), u64>`; no statistics, no
//!   ordering, no emission. The ratio is what windows, statistics and ordered state cost on top
//!   of the cell computation, which dominates both.
//! - `bins/engine_h3`: the same through [`Engine::observe`]/[`Engine::advance`] with a `bins` spec,
//!   i.e. with the per-observation work of the engine (attribute lookup, Aggregate records).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geostream_analytics::bins::{BinAggregator, CellSpec, WindowSpec};
use geostream_analytics::engine::Engine;
use geostream_analytics::spec::AnalyticSpec;
use geostream_model::Observation;
use geostream_model::time::Duration;
use serde_json::Value;

const S: i128 = 1_000_000_000;
const WINDOW: i128 = 300 * S;

struct Point {
    t: i128,
    lon: f64,
    lat: f64,
    sog: f64,
}

fn observations() -> Vec<Observation> {
    let mut base = common::ais_observations();
    base.retain(|o| common::lon_lat(o).is_some());
    base.sort_by_key(|o| o.time);
    let (Some(first), Some(last)) = (base.first(), base.last()) else { panic!("the AIS samples have positions") };
    let span = last.time - first.time + Duration::seconds(1);
    let mut out = Vec::with_capacity(base.len() * 10);
    for round in 0..10 {
        for o in &base {
            let mut o = o.clone();
            o.time += span * round;
            o.refresh_id();
            out.push(o);
        }
    }
    out
}

fn points(obs: &[Observation]) -> Vec<Point> {
    obs.iter()
        .filter_map(|o| {
            let [lon, lat] = common::lon_lat(o)?;
            let sog = o.attributes.get("sog_mps").and_then(Value::as_f64).unwrap_or(0.0);
            Some(Point { t: o.time.unix_timestamp_nanos(), lon, lat, sog })
        })
        .collect()
}

fn run_aggregator(cells: CellSpec, points: &[Point]) -> usize {
    let mut agg = BinAggregator::new(cells, WindowSpec::tumbling(WINDOW), 0).expect("valid bins");
    let mut emitted = 0;
    for (i, p) in points.iter().enumerate() {
        agg.add(p.t, p.lon, p.lat, &[("sog_mps", p.sog)]);
        if i % 1000 == 999 {
            emitted += agg.advance(p.t).len();
        }
    }
    emitted + agg.advance(i128::from(i64::MAX)).len()
}

fn run_hashmap(cells: CellSpec, points: &[Point]) -> usize {
    let mut counts: HashMap<(i128, String), u64> = HashMap::new();
    for p in points {
        if let Some(cell) = cells.cell(p.lon, p.lat) {
            *counts.entry((p.t.div_euclid(WINDOW) * WINDOW, cell)).or_default() += 1;
        }
    }
    counts.len()
}

fn run_engine(specs: &[AnalyticSpec], obs: &[Observation]) -> usize {
    let mut e = Engine::new(specs).expect("valid specs");
    let mut n = 0;
    for (i, o) in obs.iter().enumerate() {
        n += e.observe(o).len();
        if i % 1000 == 999 {
            n += e.advance(o.time).len();
        }
    }
    n + e.finish().len()
}

fn bins(c: &mut Criterion) {
    let obs = observations();
    let pts = points(&obs);
    let systems = [
        ("geohash", CellSpec::Geohash { precision: 6 }),
        ("h3", CellSpec::H3 { resolution: 7 }),
        ("grid", CellSpec::Grid { size_m: 500.0 }),
    ];
    for (name, cells) in systems {
        // Same cells and windows, or the comparison is meaningless.
        assert_eq!(run_aggregator(cells, &pts), run_hashmap(cells, &pts), "{name}: bin counts differ");
    }
    let specs: Vec<AnalyticSpec> = serde_json::from_str(
        r#"[{"id": "density", "analytic": {"kind": "bins", "cells": {"kind": "h3", "resolution": 7},
             "window_s": 300, "properties": ["sog_mps"]}}]"#,
    )
    .expect("a valid spec");

    let mut g = c.benchmark_group("bins");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.throughput(Throughput::Elements(pts.len() as u64));
    for (name, cells) in systems {
        g.bench_function(format!("{name}_aggregator"), |b| b.iter(|| black_box(run_aggregator(cells, &pts))));
        g.bench_function(format!("{name}_hashmap_reference"), |b| b.iter(|| black_box(run_hashmap(cells, &pts))));
    }
    g.throughput(Throughput::Elements(obs.len() as u64));
    g.bench_function("engine_h3", |b| b.iter(|| black_box(run_engine(&specs, &obs))));
    g.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, bins);
}
criterion_main!(group::benches);

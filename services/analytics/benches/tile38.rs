//! Geofencing side by side with Tile38 (BRIEF section 6: ">= 10x Tile38 on the same data").
//!
//! Loads the fence sets of the `geofence` bench into a running Tile38 (`SET <key> <id> OBJECT
//! <geojson>`) and sends the same point sets as `INTERSECTS <key> LIMIT .. IDS POINT <lat> <lon>`,
//! pipelined: [`BATCH`] commands written before the replies are read, over loopback. One
//! evaluation is one point against the whole set, as in `geofence_real/index_*` and
//! `geofence_10k/index_*`, which `scripts/bench.sh` reports as the references.
//!
//! `INTERSECTS` with a point is Tile38's "which objects contain this point". Its sets are closed (a
//! point on an edge is inside; sides decided in plain floating point), ours are open (exact
//! predicates, on the edge is outside), so points on or within rounding of a boundary may be
//! answered differently. Circle fences cannot go to Tile38 as circles (see [`tile38_object`]); they
//! go as 64-gons on the circle, so points in the slivers between chord and arc differ by
//! construction. Before timing, every point of every set is asked of both and the disagreements
//! are counted, the sliver ones apart (and written to `TILE38_REPORT`, if set); more than 1 in
//! 1,000 points otherwise answered differently fails the bench, since then the two would not be
//! doing the same work.
//!
//! Tile38 is multi-threaded: the points are split over `TILE38_CONNECTIONS` connections (default:
//! the machine's cores), each driven by its own client thread, so Tile38 can use every core; the
//! client threads share those cores. Our figures are single-threaded (one core). To put Tile38 on
//! the same per-core footing, the server's own CPU time (from `/proc/<TILE38_PID>/stat`, when
//! given) is summed over every timed iteration: points per second of Tile38 CPU.
//!
//! Env: `TILE38_ADDR` (host:port; without it the bench prints why and measures nothing),
//! `TILE38_CONNECTIONS`, `TILE38_PID` (the server's pid, on this machine), `TILE38_REPORT` (a file
//! to write JSON lines to: agreement counts per set, and Tile38's points per CPU second).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geostream_analytics::FenceIndex;
use geostream_model::{FenceId, FenceShape, FenceSpec};
use redis::{Connection, Value};

/// Commands written before reading their replies.
const BATCH: usize = 1_000;
/// Tile38 returns at most 100 objects per search by default; far above any point's fence count.
const LIMIT: u32 = 100_000;

/// Vertices of the polygon that stands in for a circle fence in Tile38: the step count Tile38 uses
/// for its own circles.
const CIRCLE_VERTICES: usize = 64;

/// A fence as Tile38 reads it. Polygons go as they are. Circles become polygons with
/// [`CIRCLE_VERTICES`] vertices on the circle (our haversine sphere), because Tile38 does not
/// search stored circles: its Circle feature (`properties.type = "Circle"`) is accepted by SET but
/// kept as a non-spatial object (STATS counts it under `num_strings`) that INTERSECTS never
/// returns; circles only work there as query areas. The chords cut up to r(1 - cos(pi/64)), about
/// 0.12 % of the radius, off the circle: points in that sliver are in our circle, not in Tile38's.
fn tile38_object(spec: &FenceSpec) -> String {
    match &spec.geometry {
        FenceShape::Geometry(g) => serde_json::to_string(g).expect("a geometry serialises"),
        FenceShape::Circle { center, radius_m } => {
            use geo::{Destination, Haversine, Point};
            let c = Point::new(center[0], center[1]);
            let mut ring: Vec<[f64; 2]> = (0..CIRCLE_VERTICES)
                .map(|i| {
                    let p = Haversine.destination(c, 360.0 * i as f64 / CIRCLE_VERTICES as f64, *radius_m);
                    [p.x(), p.y()]
                })
                .collect();
            ring.push(ring[0]);
            serde_json::json!({"type": "Polygon", "coordinates": [ring]}).to_string()
        }
    }
}

fn load(con: &mut Connection, key: &str, specs: &[&FenceSpec]) {
    redis::cmd("DROP").arg(key).query::<Value>(con).expect("DROP");
    // Small batches: a few real fences are megabytes of GeoJSON.
    for chunk in specs.chunks(100) {
        let mut pipe = redis::pipe();
        for s in chunk {
            pipe.cmd("SET").arg(key).arg(s.id.as_str()).arg("OBJECT").arg(tile38_object(s)).ignore();
        }
        pipe.query::<()>(con).unwrap_or_else(|e| panic!("loading {key} into Tile38: {e}"));
    }
}

/// The ids of one `INTERSECTS .. IDS` reply (`[cursor, [id, ...]]`); a non-zero cursor would mean
/// a truncated answer.
fn reply_ids(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => match a.as_slice() {
            [Value::Int(0), Value::Array(ids)] => ids,
            _ => panic!("unexpected INTERSECTS reply {v:?}"),
        },
        _ => panic!("unexpected INTERSECTS reply {v:?}"),
    }
}

/// Asks Tile38 for `points` on one connection, pipelined, and hands each reply to `each`.
fn ask(con: &mut Connection, key: &str, points: &[[f64; 2]], mut each: impl FnMut(usize, &[Value])) {
    for (b, batch) in points.chunks(BATCH).enumerate() {
        let mut pipe = redis::pipe();
        for p in batch {
            pipe.cmd("INTERSECTS").arg(key).arg("LIMIT").arg(LIMIT).arg("IDS").arg("POINT").arg(p[1]).arg(p[0]);
        }
        let replies: Vec<Value> = pipe.query(con).unwrap_or_else(|e| panic!("INTERSECTS on {key}: {e}"));
        for (i, r) in replies.iter().enumerate() {
            each(b * BATCH + i, reply_ids(r));
        }
    }
}

/// All points over all connections at once, one client thread each; returns the number of hits.
fn run(cons: &mut [Connection], key: &str, points: &[[f64; 2]]) -> usize {
    let per = points.len().div_ceil(cons.len()).max(1);
    thread::scope(|s| {
        let workers: Vec<_> = cons
            .iter_mut()
            .zip(points.chunks(per))
            .map(|(con, pts)| {
                s.spawn(move || {
                    let mut hits = 0;
                    ask(con, key, pts, |_, ids| hits += ids.len());
                    hits
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client thread")).sum()
    })
}

/// Whether `p` lies in the sliver between circle fence `spec` and its Tile38 polygon (see
/// [`tile38_object`]): our answer and Tile38's may differ there by construction.
fn in_chord_sliver(spec: &FenceSpec, p: [f64; 2]) -> bool {
    use geo::{Distance, Haversine, Point};
    match &spec.geometry {
        FenceShape::Circle { center, radius_m } => {
            let d = Haversine.distance(Point::new(center[0], center[1]), Point::new(p[0], p[1]));
            // A little slack below the exact chord distance: the chords are straight in lon/lat,
            // not on the sphere.
            d >= radius_m * (std::f64::consts::PI / CIRCLE_VERTICES as f64).cos() * 0.999
        }
        FenceShape::Geometry(_) => false,
    }
}

/// Compares Tile38's answers with the index's for every point; returns the agreement summary line.
/// Disagreements explained by the circle polygons are counted apart; more than 1 in 1,000 points
/// otherwise answered differently fails the bench.
fn agreement(
    con: &mut Connection,
    key: &str,
    index: &FenceIndex,
    specs: &HashMap<&str, &FenceSpec>,
    set: &str,
    points: &[[f64; 2]],
) -> String {
    let mut theirs: Vec<Vec<u32>> = vec![Vec::new(); points.len()];
    ask(con, key, points, |i, ids| {
        theirs[i] = ids
            .iter()
            .map(|v| {
                let id = match v {
                    Value::BulkString(b) => std::str::from_utf8(b).expect("a UTF-8 id"),
                    _ => panic!("unexpected id {v:?}"),
                };
                index.position(&FenceId::new(id).expect("a fence id")).unwrap_or_else(|| panic!("unknown id {id}"))
            })
            .collect();
        theirs[i].sort_unstable();
    });
    let spec = |n: u32| {
        let id = index.fence(n).expect("a fence number").id.as_str();
        *specs.get(id).unwrap_or_else(|| panic!("no spec for {id}"))
    };
    let (mut differ, mut chord, mut ours_only, mut tile38_only, mut hits) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut ours = Vec::new();
    for (p, t) in points.iter().zip(&theirs) {
        index.query(p[0], p[1], &mut ours);
        hits += ours.len();
        if ours != *t {
            let only_ours: Vec<u32> = ours.iter().copied().filter(|n| !t.contains(n)).collect();
            let only_tile38: Vec<u32> = t.iter().copied().filter(|n| !ours.contains(n)).collect();
            ours_only += only_ours.len();
            tile38_only += only_tile38.len();
            if only_ours.iter().chain(&only_tile38).all(|&n| in_chord_sliver(spec(n), *p)) {
                chord += 1;
                continue;
            }
            differ += 1;
            if differ <= 5 {
                let name = |n: &u32| index.fence(*n).map_or("?".to_owned(), |f| f.id.to_string());
                eprintln!(
                    "tile38/{set}: point ({}, {}): ours {:?}, Tile38 {:?}",
                    p[0],
                    p[1],
                    ours.iter().map(name).collect::<Vec<_>>(),
                    t.iter().map(name).collect::<Vec<_>>()
                );
            }
        }
    }
    eprintln!(
        "tile38/{set}: {} points, {hits} hits (ours); answers differ on {differ} points, and on {chord} more \
         in the slivers between circles and their polygons ({ours_only} fence hits only ours, {tile38_only} only \
         Tile38's)",
        points.len()
    );
    assert!(differ * 1000 <= points.len(), "tile38/{set}: {differ} of {} points answered differently", points.len());
    serde_json::json!({
        "name": format!("tile38/{set}"),
        "points": points.len(),
        "disagreements": differ,
        "circle_sliver_disagreements": chord,
        "fence_hits_only_ours": ours_only,
        "fence_hits_only_tile38": tile38_only,
    })
    .to_string()
}

/// CPU time (user + system) the process `pid` has used so far, in clock ticks; None when it cannot
/// be read (no /proc, another machine's pid).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing ')' are fixed:
    // utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(rest.next()?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?)
}

/// Clock ticks per second of /proc's CPU times: USER_HZ, 100 on every Linux architecture we build
/// for (`getconf CLK_TCK`); `TILE38_CLK_TCK` overrides it.
fn clk_tck() -> f64 {
    std::env::var("TILE38_CLK_TCK").ok().and_then(|s| s.parse().ok()).unwrap_or(100.0)
}

fn tile38(c: &mut Criterion) {
    let Ok(addr) = std::env::var("TILE38_ADDR") else {
        eprintln!("tile38: TILE38_ADDR is not set, so nothing is measured; scripts/bench.sh starts Tile38 and sets it");
        return;
    };
    let client = redis::Client::open(format!("redis://{addr}/")).expect("a Tile38 address");
    let n = std::env::var("TILE38_CONNECTIONS")
        .ok()
        .map(|s| s.parse().expect("TILE38_CONNECTIONS is a number"))
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    let mut cons: Vec<Connection> =
        (0..n).map(|_| client.get_connection().unwrap_or_else(|e| panic!("Tile38 at {addr}: {e}"))).collect();
    eprintln!("tile38: {addr}, {n} connections, pipelines of {BATCH}");

    let real = common::real_set();
    let (generated, gen_index, gen_boxes) = common::generated_set();
    let gen_specs: Vec<&FenceSpec> = generated.iter().map(|f| &f.spec).collect();
    let workloads = [
        ("real", "fences_real", &real.index, real.specs.iter().collect::<Vec<_>>(), common::real_points(&real.boxes)),
        ("10k", "fences_10k", &gen_index, gen_specs, common::generated_points(&gen_boxes)),
    ];

    let mut report = Vec::new();
    for (set, key, index, specs, points) in &workloads {
        load(&mut cons[0], key, specs);
        let by_id: HashMap<&str, &FenceSpec> = specs.iter().map(|s| (s.id.as_str(), *s)).collect();
        for (name, pts) in points {
            report.push(agreement(&mut cons[0], key, index, &by_id, &format!("{set}_{name}"), pts));
        }
    }
    if let Ok(path) = std::env::var("TILE38_REPORT") {
        let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in &report {
            writeln!(f, "{line}").expect("writing the report");
        }
    }

    let pid: Option<u32> = std::env::var("TILE38_PID").ok().map(|s| s.parse().expect("TILE38_PID is a pid"));
    let mut cpu_report = Vec::new();
    let mut g = c.benchmark_group("tile38");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (set, key, _, _, points) in &workloads {
        for (name, pts) in points {
            let (mut ticks, mut asked) = (0u64, 0u64);
            g.throughput(Throughput::Elements(pts.len() as u64));
            g.bench_function(format!("{set}_{name}"), |b| {
                b.iter_custom(|iters| {
                    let before = pid.and_then(cpu_ticks);
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(run(&mut cons, key, pts));
                    }
                    let elapsed: Duration = start.elapsed();
                    if let (Some(b), Some(a)) = (before, pid.and_then(cpu_ticks)) {
                        ticks += a - b;
                        asked += iters * pts.len() as u64;
                    }
                    elapsed
                })
            });
            if ticks > 0 {
                let per_cpu_s = asked as f64 / (ticks as f64 / clk_tck());
                eprintln!("tile38/{set}_{name}: {per_cpu_s:.0} points per second of Tile38 CPU");
                cpu_report.push(
                    serde_json::json!({"name": format!("tile38/{set}_{name}"), "tile38_cpu_points_per_s": per_cpu_s.round() as u64})
                        .to_string(),
                );
            }
        }
    }
    g.finish();
    if let Ok(path) = std::env::var("TILE38_REPORT") {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in &cpu_report {
            writeln!(f, "{line}").expect("writing the report");
        }
    }
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, tile38);
}
criterion_main!(group::benches);

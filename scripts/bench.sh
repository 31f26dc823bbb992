#!/usr/bin/env bash
# Throughput benchmarks (BRIEF section 6): runs the criterion targets
# `cargo bench -p geostream-codecs --bench codecs` (decoders on the real sample files) and
# `cargo bench -p geostream-analytics --bench geofence` (fence index on the real fence sets and on
# 10,000 generated fences) and `cargo bench -p geostream-analytics --bench bins` (spatial bins over
# the real AIS positions), then prints one JSON line per figure:
#
#   {"name": "ais/geostream_decode", "value": <records/s>, "unit": "records/s",
#    "reference": "ais/nmea_parser_reference", "reference_value": <records/s>, "ratio": value/reference,
#    "target_ratio": 2.0, "target_value": 2000000, "per_core": true}
#
# Values are records (for the geofence figures: point evaluations, or fences built) per second on
# one core (criterion's mean time per iteration, counts from its Throughput::Elements). Missed
# targets are reported, not failed on (an extra "meets_target" field says whether each given target
# is met); a benchmark that fails to build or run fails the script.
#
# Usage: scripts/bench.sh [criterion filter...]
# Env:   BENCH_ARGS   criterion options (default: --warm-up-time 1 --measurement-time 3)
#        CARGO_TARGET_DIR is respected (criterion writes under $CARGO_TARGET_DIR/criterion).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_ARGS=${BENCH_ARGS:---warm-up-time 1 --measurement-time 3}

# Criterion appends to, and compares with, earlier runs in the same directory; start clean so
# every figure printed comes from this run.
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}
criterion_dir="${target_dir:?no cargo target directory}/criterion"
rm -rf "$criterion_dir"

# shellcheck disable=SC2086
cargo bench -p geostream-codecs --bench codecs -- $BENCH_ARGS "$@" >&2
# shellcheck disable=SC2086
cargo bench -p geostream-analytics --bench geofence -- $BENCH_ARGS "$@" >&2
# shellcheck disable=SC2086
cargo bench -p geostream-analytics --bench bins -- $BENCH_ARGS "$@" >&2

python3 - "$criterion_dir" <<'EOF'
import json, os, sys

root = sys.argv[1]

# name -> (reference name or None, target ratio or None, absolute target in records/s or None)
FIGURES = {
    "ais/geostream_decode": ("ais/nmea_parser_reference", 2.0, 2_000_000),
    "ais/geostream_decode_only": ("ais/nmea_parser_reference", 2.0, None),
    "ais/nmea_parser_reference": (None, None, None),
    "ais/geostream_decode_exactearth": (None, None, 2_000_000),
    "geojson/geostream_decode": ("geojson/serde_json_reference", None, 1_000_000),
    "geojson/serde_json_reference": (None, None, None),
    "geojson/geojson_crate_reference": (None, None, None),
    "nmea/geostream_decode": (None, None, None),
    "csv/geostream_decode": (None, None, None),
    "gtfs_rt/geostream_decode": (None, None, None),
    "esri_json/geostream_decode": (None, None, None),
    "cot/geostream_decode": (None, None, None),
    # One evaluation = one point against the whole fence set. The reference is an rstar R-tree of
    # fence boxes plus geo's Contains (haversine for circles) on each candidate, same points.
    "geofence_real/index_near": ("geofence_real/rtree_contains_near", 10.0, 5_000_000),
    "geofence_real/index_world": ("geofence_real/rtree_contains_world", 10.0, 5_000_000),
    "geofence_real/index_ais": ("geofence_real/rtree_contains_ais", 10.0, 5_000_000),
    "geofence_real/rtree_contains_near": (None, None, None),
    "geofence_real/rtree_contains_world": (None, None, None),
    "geofence_real/rtree_contains_ais": (None, None, None),
    # geo's own edge index (IntervalTreeMultiPolygon) in place of Contains, against the baseline.
    "geofence_real/rtree_intervaltree_near": ("geofence_real/rtree_contains_near", None, None),
    "geofence_10k/index_near": ("geofence_10k/rtree_contains_near", None, 5_000_000),
    "geofence_10k/index_world": ("geofence_10k/rtree_contains_world", None, 5_000_000),
    "geofence_10k/index_ais": ("geofence_10k/rtree_contains_ais", None, 5_000_000),
    "geofence_10k/rtree_contains_near": (None, None, None),
    "geofence_10k/rtree_contains_world": (None, None, None),
    "geofence_10k/rtree_contains_ais": (None, None, None),
    "geofence_build/real": (None, None, None),
    # Observations binned per second (real AIS positions, 5-minute tumbling windows, one property
    # summarised). The reference computes the same cells and counts them in a plain HashMap (no
    # statistics, ordering or emission) in the same run, so the ratio is the cost of the rest.
    "bins/geohash_aggregator": ("bins/geohash_hashmap_reference", None, 3_000_000),
    "bins/h3_aggregator": ("bins/h3_hashmap_reference", None, 3_000_000),
    "bins/grid_aggregator": ("bins/grid_hashmap_reference", None, 3_000_000),
    "bins/geohash_hashmap_reference": (None, None, None),
    "bins/h3_hashmap_reference": (None, None, None),
    "bins/grid_hashmap_reference": (None, None, None),
    # The same through the engine (Observation in, Aggregate records out).
    "bins/engine_h3": ("bins/h3_hashmap_reference", None, 3_000_000),
}

# Unit per figure family (records/s unless listed).
UNITS = {"geofence_real": "points/s", "geofence_10k": "points/s", "geofence_build": "fences/s"}


def rate(name):
    """Records/s of one benchmark from this run, or None if it did not run."""
    d = os.path.join(root, name, "new")
    try:
        with open(os.path.join(d, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(d, "estimates.json")) as f:
            est = json.load(f)
    except FileNotFoundError:
        return None
    elements = (bench.get("throughput") or {}).get("Elements")
    mean_ns = est["mean"]["point_estimate"]
    if not elements or not mean_ns:
        sys.exit(f"bench.sh: {name}: no element throughput or zero time in criterion output")
    return elements / (mean_ns / 1e9)


def rounded(x, digits=0):
    return None if x is None else round(x, digits) if digits else round(x)


found = 0
for name, (ref, target_ratio, target_value) in FIGURES.items():
    value = rate(name)
    if value is None:
        continue  # filtered out by the caller's criterion filter
    found += 1
    ref_value = rate(ref) if ref else None
    ratio = value / ref_value if ref_value else None
    line = {
        "name": name,
        "value": rounded(value),
        "unit": UNITS.get(name.split("/")[0], "records/s"),
        "reference": ref,
        "reference_value": rounded(ref_value),
        "ratio": rounded(ratio, 3),
        "target_ratio": target_ratio,
        "target_value": target_value,
        "per_core": True,
    }
    checks = []
    if target_ratio is not None and ratio is not None:
        checks.append(ratio >= target_ratio)
    if target_value is not None:
        checks.append(value >= target_value)
    line["meets_target"] = all(checks) if checks else None
    print(json.dumps(line))

if found == 0:
    sys.exit(f"bench.sh: no criterion results under {root}")
EOF

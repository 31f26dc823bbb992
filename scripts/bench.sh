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
# Then `cargo bench -p geostream-processor --bench state_per_track` (not criterion: one exact run):
# bytes of processor state per track at 1,000,000 tracks (`BENCH_STATE_TRACKS`) in the real
# partition core running the demo's analytics, counted by a counting global allocator
# (`state/heap_bytes_per_track`) and as checkpoint bytes (`state/checkpoint_bytes_per_track`),
# against a minimal HashMap tracker in the same run, then the same with one analytic at a time
# (`state/heap_bytes_per_track/<kind>`, ...). Unit "bytes/track"; "per_core" is null and no
# target is set (docs/benchmarks.md). It takes about 4 minutes and 5 GB of memory.
#
# Then Tile38 side by side (`--bench tile38`): scripts/tile38.sh builds and starts a Tile38 on
# 127.0.0.1 (stopped on exit), the bench loads the same fence sets and asks for the same points
# over loopback, pipelined. Its lines, `tile38/<fences>_<points>`, give Tile38's points/s as value
# and our index's figure of the same run as reference (so "ratio" is Tile38 over ours), plus
# "speedup" (ours over Tile38) against "target_speedup" 10; "per_core" is false there: Tile38 could
# use every core of the machine ("tile38_cores"), over "connections" client connections, while the
# reference runs on one. "points", "disagreements" and "circle_sliver_disagreements" come from the
# bench's answer check (see services/analytics/benches/tile38.rs); "tile38_cpu_points_per_s" is
# Tile38's per-core figure, points per second of the server's own CPU time, and
# "speedup_per_core" our figure over that. If Tile38 cannot be built or
# run, the script says so, still prints the other figures, and exits 1.
#
# Then the benchmarks against real services (`cargo bench -p geostream-benches`, see
# docs/benchmarks.md): `ingest_vs_producer_perf/ingest` (the ingest stage delivering a file feed to
# Kafka, records/s) against `ingest_vs_producer_perf/producer_perf` (Kafka's own ProducerPerformance
# sending the same values to the same broker, no target), `sink_vs_bulk/sink` (the sink stage draining Kafka into Elasticsearch,
# records/s) against `sink_vs_bulk/raw_bulk` (a raw `_bulk` loader sending the same documents to the
# same Elasticsearch in the same run; target ratio 0.8), and the latest-in-bbox query under
# concurrent load: `latest_latency/api` against `latest_latency/search` (queries/s), and
# `latest_latency/api_p50`, `latest_latency/api_p99` (ms) against the same queries sent straight to
# Elasticsearch's `_search` ("ratio" is the API's latency over the engine's: its overhead). These
# lines have "per_core": false. Kafka and Elasticsearch come from scripts/testenv.sh: when they
# are not running, the script says so and starts them (`scripts/testenv.sh up kafka elasticsearch`;
# they are left running).
#
# Last, the end-to-end load generator (`cargo bench -p geostream-benches --bench e2e_load`, not
# criterion, about 10 minutes; docs/benchmarks.md): the release `geostream` binary (built here) runs
# `ingest`, `process` and `sink` as processes on the same Kafka and Elasticsearch while simulated
# sensors push the real OpenSky tracks over HTTP. Lines: `e2e/ceiling` (records/s the whole
# pipeline sustains) against `e2e/raw_bulk` (a raw `_bulk` loader writing the same kind of
# documents), `e2e/latency_p50_at_<25|50|75>pct` and `..._p99_...` (ms from a record being due to
# it being searchable) against `e2e/engine_floor_...` (the same for a document indexed straight
# into the engine: its refresh), with the BRIEF's 2,000 ms target on p99 at half the ceiling, and
# `e2e/peak_rss/<stage>` (MiB, no reference). It fails if any record is lost or stored twice.
#
# Usage: scripts/bench.sh [criterion filter...]
# Env:   BENCH_ARGS   criterion options (default: --warm-up-time 1 --measurement-time 3)
#        BENCH_TILE38=0  leave the Tile38 comparison out (said on stderr; the default runs it)
#        TILE38_CONNECTIONS  client connections to Tile38 (default: the number of cores)
#        TILE38_SRC   see scripts/tile38.sh (where the Go module proxy does not serve Tile38)
#        BENCH_SERVICES=0  leave the benchmarks against Kafka and Elasticsearch out (said on stderr)
#        BENCH_TRACKS, BENCH_CLIENTS, BENCH_QUERIES  see benches/benches/latest_latency.rs (10000, 16, 25)
#        BENCH_E2E=0  leave the end-to-end load run out (said on stderr; also left out when the
#                     first argument is a filter that does not match "e2e/...")
#        BENCH_E2E_SENSORS, BENCH_E2E_SECONDS, BENCH_E2E_CEILING_RECORDS, BENCH_E2E_REFERENCE_RECORDS
#                     see benches/benches/e2e_load.rs (10000, 60, 150000, 50000)
#        BENCH_STATE=0  leave the state_per_track figures out (said on stderr; also left out when
#                       the first argument is a filter that does not match "state/...")
#        BENCH_STATE_TRACKS, BENCH_STATE_BREAKDOWN  see services/processor/benches/state_per_track.rs
#                       (1000000; 0 leaves the one-analytic-at-a-time lines out)
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

state_report="$target_dir/state-per-track.jsonl"
rm -f "$state_report"
if [ "${BENCH_STATE:-1}" = 0 ]; then
  echo "bench.sh: BENCH_STATE=0: the state_per_track figures are left out of this run" >&2
elif [ $# -gt 0 ] && [[ $1 != -* ]] && ! grep -Eq -- "$1" <<<"state/heap_bytes_per_track state/checkpoint_bytes_per_track"; then
  echo "bench.sh: the filter '$1' leaves the state_per_track figures out" >&2
else
  BENCH_REPORT=$state_report cargo bench -p geostream-processor --bench state_per_track >&2
fi

cores=$(nproc)
export TILE38_CONNECTIONS=${TILE38_CONNECTIONS:-$cores}
tile38_report="$target_dir/tile38-agreement.jsonl"
rm -f "$tile38_report"
tile38_failed=
tile38_run=
stop_tile38() { [ -z "$tile38_run" ] || scripts/tile38.sh stop "$tile38_run"; }
trap stop_tile38 EXIT
if [ "${BENCH_TILE38:-1}" = 0 ]; then
  echo "bench.sh: BENCH_TILE38=0: the Tile38 comparison is left out of this run" >&2
elif ! scripts/tile38.sh install; then
  tile38_failed="Tile38 could not be built here (see above)"
elif ! tile38_env=$(scripts/tile38.sh start); then
  tile38_failed="Tile38 did not start (see above)"
else
  tile38_addr=$(sed -n 's/^TILE38_ADDR=//p' <<<"$tile38_env")
  tile38_run=$(sed -n 's/^TILE38_RUN=//p' <<<"$tile38_env")
  # shellcheck disable=SC2086
  TILE38_ADDR=$tile38_addr TILE38_PID=$(cat "$tile38_run/pid") TILE38_CLK_TCK=$(getconf CLK_TCK) \
    TILE38_REPORT=$tile38_report \
    cargo bench -p geostream-analytics --bench tile38 -- $BENCH_ARGS "$@" >&2 ||
    tile38_failed="the tile38 bench failed (see above)"
fi

latency_report="$target_dir/latest-latency.jsonl"
rm -f "$latency_report"
if [ "${BENCH_SERVICES:-1}" = 0 ]; then
  echo "bench.sh: BENCH_SERVICES=0: the sink_vs_bulk and latest_latency benchmarks are left out of this run" >&2
else
  if ! scripts/testenv.sh status kafka elasticsearch >/dev/null 2>&1; then
    echo "bench.sh: Kafka or Elasticsearch is not running: starting them with 'scripts/testenv.sh up kafka elasticsearch' (left running afterwards; 'scripts/testenv.sh down' stops them)" >&2
    scripts/testenv.sh up kafka elasticsearch >&2
  fi
  eval "$(scripts/testenv.sh env)"
  # shellcheck disable=SC2086
  cargo bench -p geostream-benches --bench ingest_vs_producer_perf -- $BENCH_ARGS "$@" >&2
  # shellcheck disable=SC2086
  cargo bench -p geostream-benches --bench sink_vs_bulk -- $BENCH_ARGS "$@" >&2
  # shellcheck disable=SC2086
  BENCH_REPORT=$latency_report cargo bench -p geostream-benches --bench latest_latency -- $BENCH_ARGS "$@" >&2
fi

e2e_report="$target_dir/e2e-load.jsonl"
rm -f "$e2e_report"
if [ "${BENCH_SERVICES:-1}" = 0 ] || [ "${BENCH_E2E:-1}" = 0 ]; then
  echo "bench.sh: BENCH_SERVICES=0 or BENCH_E2E=0: the end-to-end load run is left out" >&2
elif [ $# -gt 0 ] && [[ $1 != -* ]] && ! grep -Eq -- "$1" <<<"e2e/ceiling e2e/latency e2e/peak_rss"; then
  echo "bench.sh: the filter '$1' leaves the end-to-end load run out" >&2
else
  cargo build --release -p geostream --bin geostream >&2
  # The services' pids (scripts/testenv/common.sh keeps them), so the run reports their CPU too.
  peers=
  for svc in kafka elasticsearch; do
    pidfile="${GEOSTREAM_RUN:-${GEOSTREAM_CACHE:-$HOME/.cache/geostream}/run}/pids/$svc.pid"
    [ ! -f "$pidfile" ] || peers+="$svc=$(cut -d' ' -f1 "$pidfile"),"
  done
  GEOSTREAM_BIN="$target_dir/release/geostream" BENCH_REPORT=$e2e_report BENCH_E2E_PEERS=$peers CLK_TCK=$(getconf CLK_TCK) \
    cargo bench -p geostream-benches --bench e2e_load >&2
fi

python3 - "$criterion_dir" "$tile38_report" "$cores" "$TILE38_CONNECTIONS" "$latency_report" "$state_report" "$e2e_report" <<'EOF'
import json, os, sys

root = sys.argv[1]
tile38_report, cores, connections = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
latency_report, state_report, e2e_report = sys.argv[5], sys.argv[6], sys.argv[7]

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
    # Against real Kafka and Elasticsearch (benches/benches/*.rs): records/s written by the sink
    # (each an observation document and its `latest` document) against a raw _bulk loader sending
    # the same documents in the same run; queries/s of the latest-in-bbox query through the API
    # against the same queries sent straight to _search.
    # Records/s the ingest stage delivers to Kafka from a file feed (decode, spool, produce)
    # against Kafka's ProducerPerformance sending the same values to the same broker.
    "ingest_vs_producer_perf/ingest": ("ingest_vs_producer_perf/producer_perf", None, None),
    "ingest_vs_producer_perf/producer_perf": (None, None, None),
    "sink_vs_bulk/sink": ("sink_vs_bulk/raw_bulk", 0.8, None),
    "sink_vs_bulk/raw_bulk": (None, None, None),
    "latest_latency/api": ("latest_latency/search", None, None),
    "latest_latency/search": (None, None, None),
}
# Figures of services (several processes, all cores), not of one core.
NOT_PER_CORE = {"sink_vs_bulk", "latest_latency", "ingest_vs_producer_perf"}

# Tile38 doing the same work (same fences, same points) over loopback -> our index's figure.
TILE38 = {
    f"tile38/{fences}_{points}": f"geofence_{fences}/index_{points}"
    for fences in ("real", "10k")
    for points in ("near", "world", "ais")
}
TILE38_TARGET_SPEEDUP = 10.0
agreement = {}
if os.path.exists(tile38_report):
    with open(tile38_report) as f:
        for line in f:
            a = json.loads(line)
            agreement.setdefault(a.pop("name"), {}).update(a)

# Unit per figure family (records/s unless listed).
UNITS = {"geofence_real": "points/s", "geofence_10k": "points/s", "geofence_build": "fences/s",
         "latest_latency": "queries/s"}


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
        "per_core": name.split("/")[0] not in NOT_PER_CORE,
    }
    checks = []
    if target_ratio is not None and ratio is not None:
        checks.append(ratio >= target_ratio)
    if target_value is not None:
        checks.append(value >= target_value)
    line["meets_target"] = all(checks) if checks else None
    print(json.dumps(line))

for name, ref in TILE38.items():
    value = rate(name)
    if value is None:
        continue
    found += 1
    ref_value = rate(ref)
    extra = agreement.get(name, {})
    per_cpu = extra.get("tile38_cpu_points_per_s")
    speedup = ref_value / value if ref_value else None
    line = {
        "name": name,
        "value": rounded(value),
        "unit": "points/s",
        "reference": ref,
        "reference_value": rounded(ref_value),
        "ratio": rounded(value / ref_value, 4) if ref_value else None,
        "speedup": rounded(speedup, 1),
        "speedup_per_core": rounded(ref_value / per_cpu, 1) if ref_value and per_cpu else None,
        "target_speedup": TILE38_TARGET_SPEEDUP,
        "per_core": False,
        "tile38_cores": cores,
        "connections": connections,
        "reference_per_core": True,
        **extra,
        "meets_target": None if speedup is None else speedup >= TILE38_TARGET_SPEEDUP,
    }
    print(json.dumps(line))

# Latency percentiles of the latest-in-bbox query, written by the latest_latency bench: the API's
# against _search's with the same concurrency; "ratio" is the API's overhead (1.0 = none).
if os.path.exists(latency_report):
    with open(latency_report) as f:
        for raw in f:
            if raw.strip():
                found += 1
                line = json.loads(raw)
                line.update({"target_ratio": None, "target_value": None, "per_core": False, "meets_target": None})
                print(json.dumps(line))

# Bytes of processor state per track (state_per_track) and the end-to-end load figures
# (e2e_load), written complete with their references by those benches.
for report in (state_report, e2e_report):
    if os.path.exists(report):
        with open(report) as f:
            for raw in f:
                if raw.strip():
                    found += 1
                    print(json.dumps(json.loads(raw)))

if found == 0:
    sys.exit(f"bench.sh: no criterion results under {root}")
EOF

if [ -n "$tile38_failed" ]; then
  printf '\nbench.sh: FAILED: %s; no tile38/* figures in this run.\n' "$tile38_failed" >&2
  printf 'bench.sh: (BENCH_TILE38=0 leaves the comparison out on purpose.)\n' >&2
  exit 1
fi

#!/usr/bin/env bash
# Runs every cargo-fuzz target (decoders, feed definitions, the mapping, fence and analytic
# definitions, the SQL of `sql` analytics) for a fixed time each, seeded from the repository's real
# samples.
#
#   ./scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 20) seconds each
#   ./scripts/fuzz.sh --seconds 600 cot    one target for ten minutes (a long local run)
#   ./scripts/fuzz.sh --list               the targets
#   ./scripts/fuzz.sh --build-only         build every fuzz crate, run nothing (test.sh does this
#                                          in the background while the suite runs)
#
# The working corpus of each target lives in ~/.cache/geostream/fuzz-corpus/<target> and grows
# from run to run; builds go to ~/.cache/geostream/fuzz-target so reruns are warm. Exits non-zero
# if any target crashed, after running all of them, naming each crash input and how to replay it.
#
# Environment: FUZZ_SECONDS, FUZZ_JOBS (targets fuzzed at once, default 2: each run is one
# single-threaded libFuzzer process), GEOSTREAM_CACHE (default ~/.cache/geostream), FUZZ_SANITIZER
# (default none: the code under test has no unsafe; `address` for a slower, stricter run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.1
CACHE="${GEOSTREAM_CACHE:-$HOME/.cache/geostream}"
TOOLS="$CACHE/cargo-tools"
CORPORA="$CACHE/fuzz-corpus"
LOGS="$CACHE/fuzz-logs"
export CARGO_TARGET_DIR="$CACHE/fuzz-target"
export PATH="$TOOLS/bin:$PATH"
seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-2}"
build_only=0

# target | fuzz crate | -max_len | seed directories (repository paths; libFuzzer reads them
# recursively and truncates each file to -max_len, so large samples act as prefixes).
TARGETS="
ais        services/codecs/fuzz    8192   services/codecs/tests/data
nmea       services/codecs/fuzz    8192   services/codecs/tests/data
json       services/codecs/fuzz    65536  services/codecs/tests/data
ndjson     services/codecs/fuzz    65536  services/codecs/tests/data
geojson    services/codecs/fuzz    65536  services/codecs/tests/data
csv        services/codecs/fuzz    8192   services/codecs/tests/data
gtfs_rt    services/codecs/fuzz    65536  services/codecs/tests/data/gtfs_rt
gpx        services/codecs/fuzz    65536  services/codecs/tests/data/gpx
cap        services/codecs/fuzz    65536  services/codecs/tests/data/alerts
esri_json  services/codecs/fuzz    65536  services/codecs/tests/data/esri
cot        services/codecs/fuzz    65536  services/codecs/tests/data/cot
feed       services/codecs/fuzz    16384  feeds
mapping    services/codecs/fuzz    16384  services/codecs/fuzz/seeds/mapping
fence      services/analytics/fuzz 16384  services/analytics/fuzz/seeds/fence
analytic   services/analytics/fuzz 8192   services/analytics/fuzz/seeds/analytic
sql        services/sql/fuzz       4096   services/sql/fuzz/seeds/sql
"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

selected=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    --build-only) build_only=1; shift ;;
    --list) awk 'NF {print $1}' <<<"$TARGETS"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) selected+=("$1"); shift ;;
  esac
done
case "$seconds" in ''|*[!0-9]*|0) echo "fuzz.sh: --seconds must be a positive whole number, not '$seconds'" >&2; exit 2 ;; esac
case "$jobs" in ''|*[!0-9]*|0) echo "fuzz.sh: FUZZ_JOBS must be a positive whole number, not '$jobs'" >&2; exit 2 ;; esac

rows=()
if [ ${#selected[@]} -eq 0 ]; then
  while read -r line; do [ -n "$line" ] && rows+=("$line"); done <<<"$TARGETS"
else
  for t in "${selected[@]}"; do
    line="$(awk -v t="$t" '$1 == t' <<<"$TARGETS")"
    if [ -z "$line" ]; then
      echo "fuzz.sh: no target '$t'; targets: $(awk 'NF {printf "%s ", $1}' <<<"$TARGETS")" >&2
      exit 2
    fi
    rows+=("$line")
  done
fi

# The toolchain and cargo-fuzz, pinned, installed once into the cache.
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo-fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi

host="$(rustc +nightly -vV | awk '/^host:/ {print $2}')"
bins="$CARGO_TARGET_DIR/$host/release"

# Release with debug assertions and overflow checks, as cargo-fuzz does by default: an overflow
# is a bug the fuzzer should report, not wrap past.
crates=()
for row in "${rows[@]}"; do
  read -r _ crate _ <<<"$row"
  [[ " ${crates[*]-} " == *" $crate "* ]] || crates+=("$crate")
done
for crate in "${crates[@]}"; do
  echo "==> building $crate (sanitizer $sanitizer)" >&2
  t0=$SECONDS
  cargo +nightly fuzz build --fuzz-dir "$crate" -O -a -s "$sanitizer"
  echo "    built in $((SECONDS - t0))s" >&2
done

[ "$build_only" = 1 ] && exit 0

# One target: its outcome goes to $results/<index> ("ok|crashed<TAB>summary line"), its messages
# to $results/<index>.err, so runs side by side do not interleave their reports.
fuzz_one() {
  local idx="$1" target="$2" crate="$3" max_len="$4" seeds="$5"
  local corpus="$CORPORA/$target" artifacts="$ROOT/$crate/artifacts/$target/" log="$LOGS/$target.log"
  local err="$results/$idx.err" t0=$SECONDS status=0 runs cov line artifact
  local -a seed_dirs
  mkdir -p "$corpus" "$artifacts"
  read -r -a seed_dirs <<<"$seeds"
  # -timeout: one input that takes this long is a hang, reported like a crash. 120 s leaves room
  # for a loaded CI machine; the one slow input found so far (28 s: copies of one polygon, fixed
  # in the fence index) is now a seed of the `fence` target and takes milliseconds.
  "$bins/$target" "$corpus" "${seed_dirs[@]}" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=120 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs="$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)"
  line="$(printf '%-10s %9s execs in %3ss  %s' "$target" "${runs:-?}" "$((SECONDS - t0))" "${cov:-}")"
  if [ "$status" -ne 0 ]; then
    {
      echo "fuzz.sh: $target FAILED (exit $status); from $log:"
      # The panic message first: the backtrace after it is long and the same for every target.
      grep -A 3 -m 1 "panicked at" "$log" | cut -c 1-2000 || true
      grep -v '^#[0-9]' "$log" | grep -v '^ \{2,\}' | tail -15
      artifact="$(grep -Eo '(Test unit|artifact) written to [^ ]+' "$log" | awk '{print $NF}' | tail -1)"
      if [ -n "$artifact" ]; then
        echo "fuzz.sh: crash input: $artifact"
        echo "fuzz.sh: replay it:   CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo +nightly fuzz run --fuzz-dir $crate -O -a -s $sanitizer $target $artifact"
        echo "fuzz.sh:          or: $bins/$target $artifact"
      fi
    } >"$err" 2>&1
    printf 'crashed\t%s  CRASHED\n' "$line" >"$results/$idx"
  else
    printf 'ok\t%s\n' "$line" >"$results/$idx"
  fi
}

mkdir -p "$CORPORA" "$LOGS"
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
idx=0
for row in "${rows[@]}"; do
  read -r target crate max_len seeds <<<"$row"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "==> fuzzing $target for ${seconds}s (corpus $CORPORA/$target)" >&2
  fuzz_one "$idx" "$target" "$crate" "$max_len" "$seeds" &
  idx=$((idx + 1))
done
wait

failed=()
summary=()
for ((i = 0; i < idx; i++)); do
  if [ ! -s "$results/$i" ]; then
    read -r target _ <<<"${rows[$i]}"
    failed+=("$target")
    summary+=("$target: no result (the script's own run of it ended early)")
    continue
  fi
  IFS=$'\t' read -r outcome line <"$results/$i"
  summary+=("$line")
  if [ "$outcome" != ok ]; then
    failed+=("${line%% *}")
    cat "$results/$i.err" >&2
  fi
done

echo "==> fuzz summary (${seconds}s per target; logs in $LOGS)" >&2
printf '  %s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi

#!/usr/bin/env bash
# The one test command (README, .ci/run): bring up the real services, then run every check.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh --no-env   skip `testenv.sh up` (services already running; env read from testenv)
#
# Exits non-zero on the first failing step and says which one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/testenv/common.sh

start_env=1
for arg in "$@"; do
  case "$arg" in
    --no-env) start_env=0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*" >&2; }
t_start=$SECONDS
declare -a timings=()
timed() {
  local name="$1"; shift
  local t0=$SECONDS
  current_step="$name"
  step "$name"
  if ! "$@"; then
    echo "test.sh: step '$name' FAILED" >&2
    exit 1
  fi
  timings+=("$name: $((SECONDS - t0))s")
}

# Build prerequisites a fresh Debian machine may lack (rdkafka builds librdkafka with cmake).
# chromium, nodejs and npm: the dashboard's build (scripts/dashboard.sh) and its browser test.
system_packages() {
  gs_apt build-essential cmake pkg-config curl openssl unzip zlib1g-dev libssl-dev libcurl4-openssl-dev libzstd-dev python3-venv chromium
  # node and npm may come from elsewhere than Debian (e.g. NodeSource, whose nodejs conflicts with
  # Debian's npm package): only a missing command is installed.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then gs_apt nodejs npm; fi
}
timed "system packages" system_packages

rust_components() {
  local c
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
}
timed "rust components" rust_components

# Work that does not need the services or the test build runs beside them, so a new machine's
# run fits CI's budget (docs/testenv.md has the timings):
# - the services' installs and starts (Go builds of kube-apiserver and MinIO on a new machine),
#   at a lower priority than the test build, which is the longer chain;
# - clippy (its own target dir: check artifacts share nothing with the test build's, and
#   `cargo test` holds the test target dir's lock while tests run) and the fuzz builds, at the
#   lowest priority, so they take only CPU the build and the tests leave idle.
CACHE="${GEOSTREAM_CACHE:-$HOME/.cache/geostream}"
BG_LOGS="$CACHE/test-logs"
mkdir -p "$BG_LOGS"
declare -A bg_pid=() bg_t0=()
bg_start() {
  local name="$1" niceness="$2"; shift 2
  step "$name: started in the background (log $BG_LOGS/$name.log)"
  # renice the subshell, not `nice CMD`: CMD may be a function of this script. Job control on
  # while it starts puts the job in a process group of its own, which bg_stop_all can end whole
  # (cargo, rustc, go) when this script stops early.
  set -m
  ( renice -n "$niceness" -p "$BASHPID" >/dev/null; "$@" ) >"$BG_LOGS/$name.log" 2>&1 &
  bg_pid[$name]=$!
  set +m
  bg_t0[$name]=$SECONDS
}
bg_stop_all() {
  local name
  for name in "${!bg_pid[@]}"; do
    kill -TERM -- "-${bg_pid[$name]}" 2>/dev/null || true
  done
}
# A failed step must not leave a background build running after the script ends.
trap bg_stop_all EXIT
bg_wait() {
  local name="$1" t0=$SECONDS
  step "$name: waiting for the background job"
  if ! wait "${bg_pid[$name]}"; then
    echo "test.sh: background step '$name' FAILED; the end of $BG_LOGS/$name.log:" >&2
    tail -n 60 "$BG_LOGS/$name.log" >&2
    exit 1
  fi
  unset "bg_pid[$name]"
  timings+=("$name: done within $((SECONDS - bg_t0[$name]))s of its start, in the background; $((SECONDS - t0))s waited for")
}
# CI's time budget (.ci/run) ends this script with SIGTERM: say where it was, so the log of a run
# that ran out of time tells what was slow.
on_term() {
  echo "test.sh: stopped by a signal after $((SECONDS - t_start))s, in step: ${current_step:-?}" >&2
  local name
  for name in "${!bg_pid[@]}"; do
    kill -0 "${bg_pid[$name]}" 2>/dev/null || continue
    echo "test.sh: background '$name' still running after $((SECONDS - bg_t0[$name]))s; the end of its log:" >&2
    tail -n 15 "$BG_LOGS/$name.log" >&2
  done
  printf '  %s\n' "${timings[@]}" >&2
  exit 124
}
trap on_term TERM INT

export CLIPPY_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}-clippy"
clippy_then_fuzz_build() {
  CARGO_TARGET_DIR="$CLIPPY_TARGET_DIR" cargo clippy --workspace --all-targets --locked -- -D warnings \
    && ./scripts/fuzz.sh --build-only
}

if [ "$start_env" = 1 ]; then
  bg_start test-services 5 ./scripts/testenv.sh up
fi
bg_start clippy-and-fuzz-build 19 clippy_then_fuzz_build

timed "dashboard (scripts/dashboard.sh)" ./scripts/dashboard.sh
timed "cargo fmt --check" cargo fmt --all -- --check
timed "cargo test build" cargo test --workspace --locked --no-run --timings
if [ "$start_env" = 1 ]; then
  bg_wait test-services
fi
eval "$(./scripts/testenv.sh env)"
./scripts/testenv.sh status

timed "cargo test" cargo test --workspace --locked
# The chaos tests restart Kafka and stop Elasticsearch, so they run after the suite, alone. Under
# CI they start on an empty broker, as on a new machine: once, on a test broker holding weeks of
# runs (3,491 topics, 385 transactional ids), the processor restarted by the chaos test never got
# stable committed offsets back after Kafka's restart (docs/testenv.md).
if [ -n "${CI:-}" ] && [ "$start_env" = 1 ]; then
  timed "empty test broker (scripts/testenv.sh fresh kafka)" ./scripts/testenv.sh fresh kafka
fi
timed "chaos (scripts/chaos.sh)" ./scripts/chaos.sh --no-env
bg_wait clippy-and-fuzz-build
timed "fuzz (scripts/fuzz.sh)" ./scripts/fuzz.sh

step "timings"
printf '  %s\n' "${timings[@]}" >&2
echo "test.sh: all steps passed in $((SECONDS - t_start))s" >&2

#!/usr/bin/env bash
# The newcomer's one command: builds the map dashboard and the geostream binary, then runs
# `geostream demo` (every stage in one process on an embedded broker, the sample feeds of feeds/
# replayed in a loop, example fences and analytics) and prints the dashboard's address.
#
#   ./scripts/demo.sh                       Ctrl-C stops it; run it again to continue
#   ./scripts/demo.sh --speed 4             replay four times faster
#   ./scripts/demo.sh --exit-after 10m      stop by itself and print a summary
#   ./scripts/demo.sh --fresh               start from an empty data directory
#
# Any other argument goes to `geostream demo` (see `geostream demo --help`). Needs Rust (rustup,
# 1.91 or newer), a C toolchain with cmake (librdkafka is built from source), node and npm; on
# Debian the missing system packages are installed when run as root. Data lives in
# ~/.cache/geostream/demo (GEOSTREAM_DEMO_DIR moves it). Ports: the embedded broker on
# 127.0.0.1:29092, the API and dashboard on 8080, metrics on 9464, HTTP push on 8088 (set
# GEOSTREAM_* to move them, e.g. GEOSTREAM_API__LISTEN=127.0.0.1:18080).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/testenv/common.sh

data="${GEOSTREAM_DEMO_DIR:-$GS_CACHE/demo}"
args=()
for arg in "$@"; do
  case "$arg" in
    --fresh) rm -rf "$data" ;;
    *) args+=("$arg") ;;
  esac
done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  gs_apt build-essential cmake pkg-config curl libssl-dev zlib1g-dev libzstd-dev libcurl4-openssl-dev
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then gs_apt nodejs npm; fi
fi
for tool in cargo cmake node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "demo.sh: $tool is missing (Rust: https://rustup.rs; Debian: apt-get install cmake nodejs npm)" >&2
    exit 1
  fi
done

echo "demo.sh: building the dashboard" >&2
./scripts/dashboard.sh
echo "demo.sh: building geostream (release; the first build takes a while)" >&2
cargo build --release --locked -p geostream
bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/geostream"

export GEOSTREAM_KAFKA__BOOTSTRAP="${GEOSTREAM_KAFKA__BOOTSTRAP:-127.0.0.1:29092}"
export GEOSTREAM_CATALOG="${GEOSTREAM_CATALOG:-$ROOT/feeds}"
export GEOSTREAM_API__DASHBOARD_DIR="${GEOSTREAM_API__DASHBOARD_DIR:-$ROOT/web/dist}"
exec "$bin" demo --data-dir "$data" ${args[@]+"${args[@]}"}

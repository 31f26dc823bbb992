#!/usr/bin/env bash
# Builds the map dashboard (web/) into web/dist, which `geostream api` serves at /dashboard/
# (api.dashboard_dir). Idempotent and quick when nothing changed: `npm ci` runs only when
# package-lock.json changed since the last install, the bundle only when a source is newer than it.
# The npm cache lives under ~/.cache/geostream/npm (GEOSTREAM_CACHE moves it).
#
#   ./scripts/dashboard.sh           install if needed, build if needed
#   ./scripts/dashboard.sh --force   rebuild the bundle even if it looks current
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
export npm_config_cache="${GEOSTREAM_CACHE:-$HOME/.cache/geostream}/npm"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    *) echo "dashboard.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "dashboard.sh: $tool is missing; install it (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
  fi
done

cd "$WEB"
stamp="node_modules/.geostream-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "dashboard.sh: npm ci" >&2
  npm ci --prefer-offline --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi

if [ "$force" = 0 ] && [ -f dist/app.js ] && [ -f dist/index.html ] && [ -f dist/data/countries.geojson ] \
  && [ -z "$(find src data build.mjs package-lock.json -newer dist/app.js -print -quit)" ]; then
  echo "dashboard.sh: web/dist is current" >&2
  exit 0
fi
echo "dashboard.sh: building web/dist" >&2
node build.mjs
echo "dashboard.sh: built $(du -sh dist | cut -f1) in web/dist" >&2

# shellcheck shell=bash
# Service "browser": Debian's chromium plus node and npm for the dashboard's browser test
# (tests/integration/dashboard.rs drives chromium with playwright-core; `npx playwright install`
# cannot download browsers here, so the distribution's chromium is used). Nothing to run.
# The dashboard itself (npm ci, bundle) is built by scripts/dashboard.sh, which the test calls.

_browser_chromium() { command -v chromium 2>/dev/null || printf '/usr/bin/chromium'; }

browser_install() {
  gs_apt chromium
  # node/npm from another source than Debian (e.g. NodeSource) conflict with Debian's npm package.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then gs_apt nodejs npm; fi
}

browser_start() { :; }

browser_health() {
  "$(_browser_chromium)" --headless --no-sandbox --version >/dev/null 2>&1 \
    && node --version >/dev/null 2>&1 \
    && npm --version >/dev/null 2>&1
}

browser_env() {
  # Only when present: a missing browser must fail the test that needs it, not pass unnoticed.
  if browser_health; then
    printf 'export GEOSTREAM_CHROMIUM=%s\n' "$(_browser_chromium)"
  fi
}

browser_stop() { :; }

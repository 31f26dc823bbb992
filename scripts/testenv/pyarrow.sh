# shellcheck shell=bash
# Service "pyarrow": an independent GeoParquet reader for the archive tests (nothing to run): a venv
# under $GS_CACHE/venv/pyarrow with pyarrow and geopandas from PyPI (pip). The archive test runs
# its python (ARCHIVE_PYTHON) on the files the Rust writer made. geopandas is optional: when its
# wheels do not install, pyarrow alone is kept and the test checks the `geo` metadata itself.

GS_PYARROW_VERSION="${GS_PYARROW_VERSION:-21.0.0}"
GS_GEOPANDAS_VERSION="${GS_GEOPANDAS_VERSION:-1.1.1}"

_pyarrow_venv() { printf '%s/venv/pyarrow' "$GS_CACHE"; }

pyarrow_install() {
  local venv py log stamp
  venv="$(_pyarrow_venv)"; log="$(gs_logfile pyarrow)"
  stamp="pyarrow==$GS_PYARROW_VERSION geopandas==$GS_GEOPANDAS_VERSION"
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.geostream-version" 2>/dev/null)" = "$stamp" ] && return 0
  : >"$log"
  py="$(command -v python3 || true)"
  [ -n "$py" ] || { gs_apt python3 python3-venv >>"$log" 2>&1 && py="$(command -v python3)"; } \
    || gs_fail pyarrow install "no python3 found"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >>"$log" 2>&1; then
      gs_apt python3-venv >>"$log" 2>&1 || return 1
      rm -rf "$venv"
      "$py" -m venv "$venv" >>"$log" 2>&1 || return 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "pyarrow==$GS_PYARROW_VERSION" >>"$log" 2>&1 || return 1
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "geopandas==$GS_GEOPANDAS_VERSION" >>"$log" 2>&1; then
    gs_log "pyarrow: geopandas wheels did not install; pyarrow alone is used"
  fi
  printf '%s\n' "$stamp" >"$venv/.geostream-version"
}

pyarrow_start() { :; }

pyarrow_health() {
  "$(_pyarrow_venv)/bin/python" -c 'import pyarrow.parquet' >/dev/null 2>&1
}

pyarrow_env() {
  printf 'export ARCHIVE_PYTHON=%s/bin/python\n' "$(_pyarrow_venv)"
}

pyarrow_stop() { :; }

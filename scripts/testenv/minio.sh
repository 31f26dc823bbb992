# shellcheck shell=bash
# Service "minio": an S3-compatible object store for the archive tests, on 127.0.0.1:$GS_MINIO_PORT.
#
# Built from source through the Go module proxy (the ordinary `go install`, CGO off) and cached in
# $GS_CACHE/bin/minio with a version stamp; module and build caches under $GS_CACHE/go like the kube
# tools. A cold build takes several minutes on 2 cores; afterwards `up` takes seconds.
# Runs as our own process on a data directory under $GS_RUN/minio with a root user `geostream` and a
# random password made once; the bucket $GS_MINIO_BUCKET is created with a SigV4-signed PUT (curl).

GS_MINIO_VERSION="${GS_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
GS_MINIO_PORT="${GS_MINIO_PORT:-19000}"
GS_MINIO_CONSOLE_PORT="${GS_MINIO_CONSOLE_PORT:-19001}"
GS_MINIO_BUCKET="${GS_MINIO_BUCKET:-geostream-test}"
GS_MINIO_DIR="$GS_RUN/minio"

_minio_go() {
  local gobin
  gobin="$(command -v go || true)"
  [ -n "$gobin" ] || { [ -x /usr/local/go/bin/go ] && gobin=/usr/local/go/bin/go; }
  [ -n "$gobin" ] || { echo "no go toolchain found" >&2; return 1; }
  GOMODCACHE="$GS_CACHE/go/mod" GOCACHE="$GS_CACHE/go/build" GOPATH="$GS_CACHE/go/path" \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$GS_CACHE/bin" "$gobin" "$@"
}

minio_install() {
  local bin="$GS_CACHE/bin/minio" log
  log="$(gs_logfile minio)"
  if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$GS_MINIO_VERSION" ]; then return 0; fi
  mkdir -p "$GS_CACHE/bin"
  gs_log "minio: building $GS_MINIO_VERSION from source (cold: several minutes; cached afterwards)"
  (cd "$GS_CACHE" && _minio_go install -p 1 "github.com/minio/minio@$GS_MINIO_VERSION") >>"$log" 2>&1 || return 1
  "$bin" --version >/dev/null 2>&1 || return 1
  printf '%s\n' "$GS_MINIO_VERSION" >"$bin.version"
}

_minio_password() {
  mkdir -p "$GS_MINIO_DIR"
  [ -s "$GS_MINIO_DIR/password" ] || openssl rand -hex 16 >"$GS_MINIO_DIR/password"
  cat "$GS_MINIO_DIR/password"
}

_minio_url() { printf 'http://127.0.0.1:%s' "$GS_MINIO_PORT"; }

# Healthy: the liveness endpoint answers and the bucket exists (a signed HEAD).
minio_health() {
  curl -sf "$(_minio_url)/minio/health/live" >/dev/null 2>&1 || return 1
  curl -sf -o /dev/null -I --aws-sigv4 "aws:amz:us-east-1:s3" --user "geostream:$(_minio_password)" \
    "$(_minio_url)/$GS_MINIO_BUCKET/"
}

minio_start() {
  local pw; pw="$(_minio_password)"
  mkdir -p "$GS_MINIO_DIR/data"
  if ! gs_pid_alive minio; then
    MINIO_ROOT_USER=geostream MINIO_ROOT_PASSWORD="$pw" MINIO_BROWSER=off \
      gs_spawn minio "$GS_CACHE/bin/minio" server "$GS_MINIO_DIR/data" \
        --address "127.0.0.1:$GS_MINIO_PORT" --console-address "127.0.0.1:$GS_MINIO_CONSOLE_PORT" --quiet
  fi
  local _
  for _ in $(seq 1 60); do
    curl -sf "$(_minio_url)/minio/health/live" >/dev/null 2>&1 && break
    gs_pid_alive minio || gs_fail minio start "process exited before answering"
    sleep 1
  done
  # Create the bucket (an existing one answers 409, which is fine).
  curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "geostream:$pw" \
    "$(_minio_url)/$GS_MINIO_BUCKET/" >>"$(gs_logfile minio)" 2>&1 || true
  gs_wait minio 30 minio_health
}

minio_env() {
  echo "export S3_ENDPOINT=$(_minio_url)"
  echo "export S3_BUCKET=$GS_MINIO_BUCKET"
  echo "export S3_ACCESS_KEY_ID=geostream"
  echo "export S3_SECRET_ACCESS_KEY_FILE=$GS_MINIO_DIR/password"
}

minio_stop() {
  gs_stop_pid minio
}

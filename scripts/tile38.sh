#!/usr/bin/env bash
# Tile38 for the side-by-side geofence benchmark (services/analytics/benches/tile38.rs).
#
#   scripts/tile38.sh install      build tile38-server into ~/.cache/geostream/bin (cached by version)
#   scripts/tile38.sh start        start it on 127.0.0.1 on a free port, data in a fresh temp dir;
#                                  prints `TILE38_ADDR=127.0.0.1:<port>` and `TILE38_RUN=<dir>`
#   scripts/tile38.sh stop DIR     stop the server that `start` recorded in DIR, remove DIR
#
# The version is pinned: tag 1.37.0, commit 48aa3d2f (2026-01-06). Tile38 tags releases without
# the "v" Go expects, so the module proxy can only serve it by pseudo-version; that is what
# `install` asks for first. Where the proxy refuses the module (this workplace's proxy answers 403
# for github.com/tidwall/tile38, while serving every one of its dependencies), set TILE38_SRC to a
# git clone (bare or not) of github.com/tidwall/tile38 that holds the pinned commit: the build then
# takes that commit's tree and fetches the dependencies through the proxy as usual. Without either,
# `install` fails, loudly, with exit status 1.
#
# Env: GEOSTREAM_CACHE (default ~/.cache/geostream), TILE38_SRC (see above),
#      TILE38_PORT (default: a free port picked by the kernel).
set -euo pipefail

TILE38_VERSION=1.37.0
TILE38_COMMIT=48aa3d2f303447513bbc9dc06dedac42269f4ad2
TILE38_PSEUDO=v0.0.0-20260106163517-48aa3d2f3034
TILE38_MODULE=github.com/tidwall/tile38

CACHE="${GEOSTREAM_CACHE:-$HOME/.cache/geostream}"
BIN="$CACHE/bin/tile38-server"
STAMP="$TILE38_VERSION $TILE38_COMMIT"

log() { printf '[tile38] %s\n' "$*" >&2; }
fail() {
  printf '[tile38] FAILED: %s\n' "$*" >&2
  exit 1
}

# Module and build caches under the project cache (shared with testenv's Go builds); never switch
# toolchains behind our back.
go_() {
  local gobin
  gobin="$(command -v go || true)"
  [ -n "$gobin" ] || { [ -x /usr/local/go/bin/go ] && gobin=/usr/local/go/bin/go; }
  [ -n "$gobin" ] || fail "no Go toolchain (go on PATH or /usr/local/go/bin/go)"
  GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOPATH="$CACHE/go/path" \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 nice -n 10 "$gobin" "$@"
}

# Upstream's release build sets these through ldflags; `tile38-server -h` then names the version.
LDFLAGS="-s -w -X $TILE38_MODULE/core.Version=$TILE38_VERSION -X $TILE38_MODULE/core.GitSHA=${TILE38_COMMIT:0:7}"

installed() { [ -x "$BIN" ] && [ "$(cat "$BIN.version" 2>/dev/null)" = "$STAMP" ]; }

install() {
  installed && return 0
  mkdir -p "$CACHE/bin" "$CACHE/build"
  local tmp t0=$SECONDS out
  tmp="$(mktemp -d "$CACHE/build/tile38.XXXXXX")"
  BUILD_DIR="$tmp"
  trap 'rm -rf "$BUILD_DIR"' EXIT
  log "building tile38-server $TILE38_VERSION ($TILE38_PSEUDO) through the Go module proxy"
  if out="$(cd "$tmp" && GOBIN="$tmp" go_ install -trimpath -ldflags "$LDFLAGS" \
    "$TILE38_MODULE/cmd/tile38-server@$TILE38_PSEUDO" 2>&1)"; then
    :
  elif [ -n "${TILE38_SRC:-}" ]; then
    log "the module proxy did not serve $TILE38_MODULE@$TILE38_PSEUDO:"
    printf '%s\n' "$out" | tail -n 3 | sed 's/^/[tile38]   | /' >&2
    log "building commit ${TILE38_COMMIT:0:12} from TILE38_SRC=$TILE38_SRC (dependencies through the proxy)"
    local gitdir
    gitdir="$(git -C "$TILE38_SRC" rev-parse --absolute-git-dir 2>/dev/null)" ||
      fail "TILE38_SRC=$TILE38_SRC is not a git repository"
    git --git-dir="$gitdir" cat-file -e "$TILE38_COMMIT^{commit}" 2>/dev/null ||
      fail "TILE38_SRC=$TILE38_SRC lacks the pinned commit $TILE38_COMMIT (tag $TILE38_VERSION)"
    mkdir "$tmp/src"
    git --git-dir="$gitdir" archive "$TILE38_COMMIT" | tar -x -C "$tmp/src"
    (cd "$tmp/src" && go_ build -trimpath -ldflags "$LDFLAGS" -o "$tmp/tile38-server" ./cmd/tile38-server) ||
      fail "building tile38-server from TILE38_SRC failed (output above)"
  else
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/[tile38]   | /' >&2
    fail "cannot build Tile38 here: the Go module proxy does not serve $TILE38_MODULE@$TILE38_PSEUDO" \
      "(output above). Set TILE38_SRC to a git clone of $TILE38_MODULE holding commit $TILE38_COMMIT" \
      "(tag $TILE38_VERSION) to build from that source instead."
  fi
  mv -f "$tmp/tile38-server" "$BIN"
  printf '%s\n' "$STAMP" >"$BIN.version"
  log "tile38-server $TILE38_VERSION built in $((SECONDS - t0))s: $BIN"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True once the server answers PING with +PONG over RESP.
answers() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || reply=
  exec 3>&-
  [ "${reply%$'\r'}" = "+PONG" ]
}

start() {
  installed || fail "tile38-server $TILE38_VERSION is not installed; run: $0 install"
  local dir port pid
  dir="$(mktemp -d "${TMPDIR:-/tmp}/geostream-tile38.XXXXXX")"
  port="${TILE38_PORT:-$(free_port)}"
  # No AOF: the benchmark measures queries, and the fences are reloaded on every run anyway.
  "$BIN" -h 127.0.0.1 -p "$port" -d "$dir/data" --appendonly no -q >"$dir/server.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$dir/pid"
  for _ in $(seq 100); do
    if answers "$port"; then
      printf 'TILE38_ADDR=127.0.0.1:%s\nTILE38_RUN=%s\n' "$port" "$dir"
      log "tile38-server $TILE38_VERSION (pid $pid) on 127.0.0.1:$port, data in $dir"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  tail -n 20 "$dir/server.log" | sed 's/^/[tile38]   | /' >&2
  fail "tile38-server did not answer on 127.0.0.1:$port (log above, kept in $dir)"
}

stop() {
  local dir="${1:?usage: $0 stop DIR (the TILE38_RUN that start printed)}" pid
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  # Only the process start recorded, and only while it still is a tile38-server (pids get reused).
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^$BIN "; then
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -rf "$dir"
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop "${2:-}" ;;
*)
  echo "usage: $0 install | start | stop DIR" >&2
  exit 2
  ;;
esac

# shellcheck shell=bash
# Shared helpers for scripts/testenv.sh and the per-service files beside this one.
#
# Contract for a service file scripts/testenv/<svc>.sh (sourced, never executed):
# (a "-" in a service name becomes "_" in its function names, e.g. kafka_secure_start)
#   <svc>_install   download/build into $GS_CACHE (idempotent, safe to re-run, cache-aware)
#   <svc>_start     start on 127.0.0.1 if not already running; write $GS_RUN/pids/<svc>.pid
#   <svc>_health    return 0 when the service answers (may be called repeatedly)
#   <svc>_env       print `export NAME=value` lines
#   <svc>_stop      stop only what the pid file names
# Failures call `gs_fail <svc> <step> <message>`, which names the log file.

GS_CACHE="${GEOSTREAM_CACHE:-$HOME/.cache/geostream}"
GS_RUN="${GEOSTREAM_RUN:-$GS_CACHE/run}"
GS_LOGS="$GS_RUN/logs"
GS_PIDS="$GS_RUN/pids"
mkdir -p "$GS_CACHE/dl" "$GS_LOGS" "$GS_PIDS"

# Fixed, non-default loopback ports so a developer's own services on the usual ports never clash.
GS_KAFKA_PORT="${GS_KAFKA_PORT:-19092}"
GS_KAFKA_CONTROLLER_PORT="${GS_KAFKA_CONTROLLER_PORT:-19093}"
GS_KAFKA_SECURE_PORT="${GS_KAFKA_SECURE_PORT:-19095}"
GS_KAFKA_SECURE_CONTROLLER_PORT="${GS_KAFKA_SECURE_CONTROLLER_PORT:-19096}"
GS_ES_PORT="${GS_ES_PORT:-19200}"
GS_ES_TRANSPORT_PORT="${GS_ES_TRANSPORT_PORT:-19300}"
GS_OS_PORT="${GS_OS_PORT:-19201}"
GS_OS_TRANSPORT_PORT="${GS_OS_TRANSPORT_PORT:-19301}"
GS_MQTT_PORT="${GS_MQTT_PORT:-11883}"
GS_MQTTS_PORT="${GS_MQTTS_PORT:-11884}"
GS_KINE_PORT="${GS_KINE_PORT:-12379}"
GS_APISERVER_PORT="${GS_APISERVER_PORT:-16443}"

gs_log() { printf '[testenv] %s\n' "$*" >&2; }

gs_logfile() { printf '%s/%s.log' "$GS_LOGS" "$1"; }

# gs_fail SERVICE STEP MESSAGE: report which service failed at which step, with its log, and abort.
gs_fail() {
  local svc="$1" step="$2"; shift 2
  local log; log="$(gs_logfile "$svc")"
  printf '[testenv] FAILED: service=%s step=%s: %s\n[testenv]   log: %s\n' "$svc" "$step" "$*" "$log" >&2
  if [ -f "$log" ]; then
    printf '[testenv]   last lines of the log:\n' >&2
    tail -n 20 "$log" | sed 's/^/[testenv]   | /' >&2
  fi
  exit 1
}

# A process's start time (clock ticks since boot, field 22 of /proc/PID/stat): with the pid it
# identifies the process, so a pid reused after a reboot or a killed session is not taken for ours.
gs_proc_start() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # The command name (field 2) may hold spaces; fields after the last ')' are fixed.
  stat="${stat##*) }"
  set -- $stat
  printf '%s' "${20}"
}

# gs_pid_alive SERVICE: true when the pid file names a live process that is the one we started.
gs_pid_alive() {
  local f="$GS_PIDS/$1.pid" pid want have
  [ -f "$f" ] || return 1
  read -r pid want <"$f" || true
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -z "$want" ] && return 0
  have="$(gs_proc_start "$pid")" || return 1
  [ "$have" = "$want" ]
}

# gs_spawn SERVICE CMD...: start CMD detached in its own session, log to the service log, record its pid.
gs_spawn() {
  local svc="$1"; shift
  local log; log="$(gs_logfile "$svc")"
  : >"$log"
  setsid "$@" >>"$log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid $(gs_proc_start "$pid")" >"$GS_PIDS/$svc.pid"
}

# gs_stop_pid SERVICE: TERM the recorded process group, wait, then KILL; only ever what we started.
gs_stop_pid() {
  local svc="$1" f="$GS_PIDS/$1.pid" pid i
  [ -f "$f" ] || return 0
  read -r pid _ <"$f" || true
  if gs_pid_alive "$svc"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
  gs_log "$svc stopped"
}

# gs_wait SERVICE SECONDS CHECK...: poll CHECK until it succeeds, the process dies, or time runs out.
gs_wait() {
  local svc="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -f "$GS_PIDS/$svc.pid" ] && ! gs_pid_alive "$svc"; then
      gs_fail "$svc" health "process exited before becoming healthy"
    fi
    sleep 1
  done
  gs_fail "$svc" health "not healthy after ${secs}s"
}

# gs_maven_fetch GROUP:ARTIFACT:VERSION[:PACKAGING[:CLASSIFIER]] DEST_DIR: resolve through Maven (its
# configured repositories; the script names no hosts) and copy the artifact file into DEST_DIR.
gs_maven_fetch() {
  local coords="$1" dest="$2"
  mkdir -p "$dest"
  mvn -q -B dependency:copy -Dartifact="$coords" -DoutputDirectory="$dest" -Dmdep.overWriteIfNewer=true
}

# gs_apt PACKAGE...: install Debian packages once (apt-get update first when needed).
gs_apt() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ ! -f "$GS_CACHE/.apt-updated" ] || [ -n "$(find "$GS_CACHE/.apt-updated" -mmin +720 2>/dev/null)" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && touch "$GS_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Newest JDK under /usr/lib/jvm with at least the given major version (ES 9 and OpenSearch 3 need 21+).
gs_java_home() {
  local want="$1" d v best="" bestv=0
  for d in /usr/lib/jvm/*/; do
    [ -x "$d/bin/java" ] || continue
    v="$("$d/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')"
    v="${v%%.*}"
    if [ -n "$v" ] && [ "$v" -ge "$want" ] && [ "$v" -gt "$bestv" ]; then best="${d%/}"; bestv="$v"; fi
  done
  [ -n "$best" ] && printf '%s' "$best"
}

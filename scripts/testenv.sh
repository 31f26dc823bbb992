#!/usr/bin/env bash
# Real services for geostream's tests, on 127.0.0.1, started idempotently.
#
#   scripts/testenv.sh up [svc...]      install (cached in ~/.cache/geostream) and start, then health-check
#   scripts/testenv.sh down [svc...]    stop only the processes this script started (pid files)
#   scripts/testenv.sh status [svc...]  one line per service: running/healthy or not
#   scripts/testenv.sh env              `export` lines for the tests (eval "$(scripts/testenv.sh env)")
#   scripts/testenv.sh freeze|thaw svc  SIGSTOP/SIGCONT a started service (chaos tests: clients see a
#                                       silent network partition; connections hang, none is reset)
#   scripts/testenv.sh fresh svc        stop it, delete its data (an empty broker, as on a new machine)
#                                       and start it again; only services with a `<svc>_wipe`
#
# Services: kafka kafka-secure (SASL/SCRAM over TLS, ACLs on) elasticsearch opensearch mosquitto kubetools kube (kine + kube-apiserver) browser
# (chromium, node, npm) minio (S3-compatible store) pyarrow (a Python GeoParquet reader).
# A failure names the service, the step and the log file, and exits non-zero.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/testenv/common.sh
. "$HERE/testenv/common.sh"

ALL_SERVICES=(kafka kafka-secure elasticsearch opensearch mosquitto kubetools kube browser minio pyarrow)
# `up` with no names starts these (all of them: every one serves a test in the suite).
DEFAULT_SERVICES=(kafka kafka-secure elasticsearch opensearch mosquitto kubetools kube browser minio pyarrow)
for svc in "${ALL_SERVICES[@]}"; do
  # shellcheck disable=SC1090
  . "$HERE/testenv/$svc.sh"
done

cmd="${1:-}"; shift || true
if [ "$#" -gt 0 ]; then services=("$@"); else services=("${DEFAULT_SERVICES[@]}"); fi
for svc in "${services[@]}"; do
  case " ${ALL_SERVICES[*]} " in *" $svc "*) ;; *) echo "unknown service '$svc' (known: ${ALL_SERVICES[*]})" >&2; exit 2 ;; esac
done

up_one() {
  local svc="$1" t0=$SECONDS
  if "${svc//-/_}_health" >/dev/null 2>&1; then
    gs_log "$svc already healthy"
    return 0
  fi
  gs_log "$svc: install"
  "${svc//-/_}_install" || gs_fail "$svc" install "installation failed"
  gs_log "$svc: start"
  "${svc//-/_}_start" || gs_fail "$svc" start "start failed"
  gs_log "$svc: healthy ($((SECONDS - t0))s)"
}

case "$cmd" in
  up)
    for svc in "${services[@]}"; do up_one "$svc"; done
    ;;
  down)
    for ((i = ${#services[@]} - 1; i >= 0; i--)); do s="${services[$i]}"; "${s//-/_}_stop"; done
    ;;
  status)
    rc=0
    for svc in "${services[@]}"; do
      if "${svc//-/_}_health" >/dev/null 2>&1; then echo "$svc: healthy"; else echo "$svc: DOWN (log: $(gs_logfile "$svc"))"; rc=1; fi
    done
    exit "$rc"
    ;;
  env)
    for svc in "${ALL_SERVICES[@]}"; do "${svc//-/_}_env"; done
    ;;
  freeze|thaw)
    sig=STOP; [ "$cmd" = thaw ] && sig=CONT
    for svc in "${services[@]}"; do
      gs_pid_alive "$svc" || gs_fail "$svc" "$cmd" "not running (started by this script)"
      read -r pid _ <"$GS_PIDS/$svc.pid"
      kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid"
      gs_log "$svc: SIG$sig"
    done
    ;;
  fresh)
    for svc in "${services[@]}"; do
      declare -F "${svc//-/_}_wipe" >/dev/null || gs_fail "$svc" fresh "has no data to wipe"
      "${svc//-/_}_stop"
      "${svc//-/_}_wipe"
      gs_log "$svc: data deleted"
      up_one "$svc"
    done
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

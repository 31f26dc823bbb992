#!/usr/bin/env bash
# Chaos tests (services/geostream/tests/chaos.rs): the ingest, process and sink processes on the real
# Kafka and Elasticsearch of scripts/testenv.sh while stages are killed with SIGKILL, Kafka is
# restarted and frozen, and Elasticsearch is stopped for 60 s; then every record is counted.
# They restart shared services, so they run alone, never beside the rest of the suite.
# scripts/test.sh runs it after the rest of the suite.
#
#   ./scripts/chaos.sh            start Kafka and Elasticsearch if needed, then run the chaos tests
#   ./scripts/chaos.sh --no-env   the services are already up
#   CHAOS_SEED=<n> ./scripts/chaos.sh   replay the fault points of an earlier run (it prints its seed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

start_env=1
for arg in "$@"; do
  case "$arg" in
    --no-env) start_env=0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ "$start_env" = 1 ]; then
  ./scripts/testenv.sh up kafka elasticsearch
fi
eval "$(./scripts/testenv.sh env)"

status=0
cargo test --workspace --locked --test chaos -- --ignored --nocapture --test-threads=1 || status=$?
# A failure can leave a service stopped or frozen: bring both back for whatever runs next.
./scripts/testenv.sh thaw kafka >/dev/null 2>&1 || true
./scripts/testenv.sh up kafka elasticsearch >&2
exit "$status"

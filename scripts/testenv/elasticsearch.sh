# shellcheck shell=bash
# Elasticsearch for the tests: the integration-test distribution that Maven Central serves
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip), unpacked once into
# $GS_CACHE/elasticsearch-<version>/ and run with a per-run config, data and logs under
# $GS_RUN/elasticsearch, so the cached install is never written to.
#
# Version: Maven Central's integ-test-zip stops at 8.19.x (no 9.x is published there), so 8.19.21
# it is. This build carries only transport-netty4, x-pack-core, x-pack-security and apm: security
# is switched off below; commercial/x-pack features such as the spatial plugin and _mvt are absent.
#
# Elasticsearch refuses to run as root. We are root on these machines, so the server runs inside a
# fresh user namespace in which root is mapped to uid 30000 (`unshare --user --map-user=30000`): it
# sees itself as an ordinary user while its files stay root's. (Unmapped, as uid 65534, the JVM's
# self-attach of the entitlement agent fails.) Nothing on the system is changed for it.

GS_ES_VERSION="${GS_ES_VERSION:-8.19.21}"
GS_ES_HOME="$GS_CACHE/elasticsearch-$GS_ES_VERSION"
GS_ES_DIR="$GS_RUN/elasticsearch"

# JDK: 8.19.21 was seen running on Debian's 17 and on Temurin 25; prefer the Debian 17 that every
# machine has, the newest 17+ otherwise. Override with GS_ES_JAVA_HOME.
_es_java_home() {
  if [ -n "${GS_ES_JAVA_HOME:-}" ]; then printf '%s' "$GS_ES_JAVA_HOME"; return 0; fi
  local d
  for d in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64; do
    [ -x "$d/bin/java" ] && { printf '%s' "$d"; return 0; }
  done
  gs_java_home 17
}

elasticsearch_install() {
  [ -f "$GS_ES_HOME/.geostream-complete" ] && return 0
  local zip="$GS_CACHE/dl/elasticsearch-$GS_ES_VERSION.zip" tmp="$GS_ES_HOME.tmp.$$"
  if [ ! -s "$zip" ]; then
    # Maven's output goes to the service log, which gs_fail shows (start truncates it later).
    gs_maven_fetch "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$GS_ES_VERSION:zip" "$GS_CACHE/dl" >"$(gs_logfile elasticsearch)" 2>&1 \
      || gs_fail elasticsearch install "maven could not resolve the integ-test zip $GS_ES_VERSION"
  fi
  command -v unzip >/dev/null 2>&1 || gs_apt unzip
  rm -rf "$tmp" && mkdir -p "$tmp"
  unzip -q "$zip" -d "$tmp" || gs_fail elasticsearch install "unzip of $zip failed"
  rm -rf "$GS_ES_HOME"
  mv "$tmp/elasticsearch-$GS_ES_VERSION" "$GS_ES_HOME" && rm -rf "$tmp"
  touch "$GS_ES_HOME/.geostream-complete"
}

_es_write_config() {
  local conf="$GS_ES_DIR/config"
  mkdir -p "$GS_ES_DIR/data" "$GS_ES_DIR/logs" "$GS_ES_DIR/tmp"
  if [ ! -f "$conf/.geostream-$GS_ES_VERSION" ]; then
    rm -rf "$conf"
    cp -r "$GS_ES_HOME/config" "$conf"
    touch "$conf/.geostream-$GS_ES_VERSION"
  fi
  {
    echo "cluster.name: geostream-es"
    echo "node.name: gs-es-1"
    echo "path.data: $GS_ES_DIR/data"
    echo "path.logs: $GS_ES_DIR/logs"
    echo "network.host: 127.0.0.1"
    echo "http.port: $GS_ES_PORT"
    echo "transport.port: $GS_ES_TRANSPORT_PORT"
    echo "discovery.type: single-node"
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
    echo "action.destructive_requires_name: false"
    # Only when the build has the security module; an unknown setting would stop the node.
    if [ -d "$GS_ES_HOME/modules/x-pack-security" ]; then echo "xpack.security.enabled: false"; fi
  } >"$conf/elasticsearch.yml"
  mkdir -p "$conf/jvm.options.d"
  # user.home: the namespace's uid has no passwd entry, so the JVM would otherwise use "?".
  mkdir -p "$GS_ES_DIR/home"
  printf '%s\n' -Xms1g -Xmx1g "-XX:HeapDumpPath=$GS_ES_DIR/data" "-Duser.home=$GS_ES_DIR/home" \
    >"$conf/jvm.options.d/geostream.options"
}

elasticsearch_health() {
  curl -fsS --max-time 5 "http://127.0.0.1:$GS_ES_PORT/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null \
    | grep -q '"cluster_name":"geostream-es"'
}

elasticsearch_start() {
  if ! gs_pid_alive elasticsearch; then
    unshare --user --map-user=30000 --map-group=30000 true 2>/dev/null \
      || gs_fail elasticsearch start "user namespaces are unavailable (needed to run Elasticsearch as non-root)"
    local jh; jh="$(_es_java_home)" || true
    [ -n "$jh" ] || gs_fail elasticsearch start "no JDK 17+ under /usr/lib/jvm"
    _es_write_config
    (
      cd "$GS_ES_DIR/logs" || exit 1
      gs_spawn elasticsearch env ES_JAVA_HOME="$jh" ES_PATH_CONF="$GS_ES_DIR/config" ES_TMPDIR="$GS_ES_DIR/tmp" \
        ES_JAVA_OPTS= JAVA_HOME= unshare --user --map-user=30000 --map-group=30000 "$GS_ES_HOME/bin/elasticsearch"
    )
  fi
  gs_wait elasticsearch 180 elasticsearch_health
}

elasticsearch_env() {
  echo "export ELASTICSEARCH_URL=http://127.0.0.1:$GS_ES_PORT"
}

elasticsearch_stop() {
  gs_stop_pid elasticsearch
}

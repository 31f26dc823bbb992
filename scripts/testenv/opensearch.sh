# shellcheck shell=bash
# OpenSearch for the tests: the integration-test distribution that Maven Central serves
# (org.opensearch.distribution.integ-test-zip:opensearch:<version>:zip), unpacked once into
# $GS_CACHE/opensearch-<version>/ and run with a per-run config, data and logs under
# $GS_RUN/opensearch, so the cached install is never written to.
#
# Version: 3.6.0, the newest that Maven Central lists for the integ-test zip (it also lists 2.x up
# to 2.19.6). OpenSearch 3 needs Java 21+: the newest JDK under /usr/lib/jvm is used. This build
# carries the core modules (geo, aggs, painless, ...) and no plugins, so no security plugin.
#
# OpenSearch refuses to run as root. We are root on these machines, so the server runs inside a
# fresh user namespace in which root is mapped to uid 30000 (`unshare --user --map-user=30000`):
# it sees itself as an ordinary user while its files stay root's. Nothing on the system changes.

GS_OS_VERSION="${GS_OS_VERSION:-3.6.0}"
GS_OS_HOME="$GS_CACHE/opensearch-$GS_OS_VERSION"
GS_OS_DIR="$GS_RUN/opensearch"

opensearch_install() {
  [ -f "$GS_OS_HOME/.geostream-complete" ] && return 0
  local zip="$GS_CACHE/dl/opensearch-$GS_OS_VERSION.zip" tmp="$GS_OS_HOME.tmp.$$"
  if [ ! -s "$zip" ]; then
    # Maven's output goes to the service log, which gs_fail shows (start truncates it later).
    gs_maven_fetch "org.opensearch.distribution.integ-test-zip:opensearch:$GS_OS_VERSION:zip" "$GS_CACHE/dl" >"$(gs_logfile opensearch)" 2>&1 \
      || gs_fail opensearch install "maven could not resolve the integ-test zip $GS_OS_VERSION"
  fi
  command -v unzip >/dev/null 2>&1 || gs_apt unzip
  rm -rf "$tmp" && mkdir -p "$tmp"
  unzip -q "$zip" -d "$tmp" || gs_fail opensearch install "unzip of $zip failed"
  rm -rf "$GS_OS_HOME"
  mv "$tmp/opensearch-$GS_OS_VERSION" "$GS_OS_HOME" && rm -rf "$tmp"
  touch "$GS_OS_HOME/.geostream-complete"
}

_os_write_config() {
  local conf="$GS_OS_DIR/config"
  mkdir -p "$GS_OS_DIR/data" "$GS_OS_DIR/logs" "$GS_OS_DIR/tmp" "$GS_OS_DIR/home"
  if [ ! -f "$conf/.geostream-$GS_OS_VERSION" ]; then
    rm -rf "$conf"
    cp -r "$GS_OS_HOME/config" "$conf"
    # The stock jvm.options names paths relative to the working directory (the java agent, the GC
    # log, heap dumps, error files): make them absolute so nothing lands in the cached install.
    sed -i \
      -e "s#-javaagent:agent/#-javaagent:$GS_OS_HOME/agent/#" \
      -e "s#file=logs/gc.log#file=$GS_OS_DIR/logs/gc.log#" \
      -e "s#^-XX:HeapDumpPath=.*#-XX:HeapDumpPath=$GS_OS_DIR/data#" \
      -e "s#^-XX:ErrorFile=logs/#-XX:ErrorFile=$GS_OS_DIR/logs/#" \
      -e "s#^-Xms.*#-Xms1g#" -e "s#^-Xmx.*#-Xmx1g#" \
      "$conf/jvm.options"
    touch "$conf/.geostream-$GS_OS_VERSION"
  fi
  {
    echo "cluster.name: geostream-os"
    echo "node.name: gs-os-1"
    echo "path.data: $GS_OS_DIR/data"
    echo "path.logs: $GS_OS_DIR/logs"
    echo "network.host: 127.0.0.1"
    echo "http.port: $GS_OS_PORT"
    echo "transport.port: $GS_OS_TRANSPORT_PORT"
    echo "discovery.type: single-node"
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
    echo "action.destructive_requires_name: false"
    # Only when a build ships the security plugin (the integ-test zip does not).
    if [ -d "$GS_OS_HOME/plugins/opensearch-security" ]; then echo "plugins.security.disabled: true"; fi
  } >"$conf/opensearch.yml"
  mkdir -p "$conf/jvm.options.d"
  printf '%s\n' -Xms1g -Xmx1g "-Duser.home=$GS_OS_DIR/home" >"$conf/jvm.options.d/geostream.options"
}

opensearch_health() {
  curl -fsS --max-time 5 "http://127.0.0.1:$GS_OS_PORT/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null \
    | grep -q '"cluster_name":"geostream-os"'
}

opensearch_start() {
  if ! gs_pid_alive opensearch; then
    unshare --user --map-user=30000 --map-group=30000 true 2>/dev/null \
      || gs_fail opensearch start "user namespaces are unavailable (needed to run OpenSearch as non-root)"
    local jh; jh="${GS_OS_JAVA_HOME:-$(gs_java_home 21)}" || true
    [ -n "$jh" ] || gs_fail opensearch start "no JDK 21+ under /usr/lib/jvm (OpenSearch 3 needs one)"
    _os_write_config
    (
      cd "$GS_OS_DIR" || exit 1
      gs_spawn opensearch env OPENSEARCH_JAVA_HOME="$jh" OPENSEARCH_PATH_CONF="$GS_OS_DIR/config" \
        OPENSEARCH_TMPDIR="$GS_OS_DIR/tmp" OPENSEARCH_JAVA_OPTS= JAVA_HOME= \
        unshare --user --map-user=30000 --map-group=30000 "$GS_OS_HOME/bin/opensearch"
    )
  fi
  gs_wait opensearch 180 opensearch_health
}

opensearch_env() {
  echo "export OPENSEARCH_URL=http://127.0.0.1:$GS_OS_PORT"
}

opensearch_stop() {
  gs_stop_pid opensearch
}

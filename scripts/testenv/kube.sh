# shellcheck shell=bash
# Service "kube": a real kube-apiserver backed by kine (sqlite), on 127.0.0.1.
#
# Both binaries are built from source through the Go module proxy (the ordinary `go` command) and
# cached in $GS_CACHE/bin with a version stamp:
#   - kube-apiserver: a throwaway module requires k8s.io/kubernetes and replaces every staging module
#     (k8s.io/api, k8s.io/apiserver, ...; read from kubernetes' own go.mod) with its published
#     v0.<minor>.<patch> twin. Built with CGO_ENABLED=0 and release-style version ldflags.
#   - kine: the etcd API over sqlite (cgo when a C compiler exists).
# A cold build (empty $GS_CACHE/go) is slow: about 20 minutes on 2 cores; afterwards `up` takes
# seconds. Override the versions with GS_KUBE_VERSION / GS_KINE_VERSION.
# Runtime state lives in $GS_RUN/kine (sqlite) and $GS_RUN/kube (pki, token file, kubeconfig).
# No kubelet, scheduler or controller-manager: enough for CRDs, RBAC, helm installs and operators'
# API-level behaviour; pods never run.

GS_KUBE_VERSION="${GS_KUBE_VERSION:-v1.36.3}"
GS_KINE_VERSION="${GS_KINE_VERSION:-v0.17.5}"
GS_KUBE_SERVICE_CIDR="${GS_KUBE_SERVICE_CIDR:-10.96.0.0/16}"

_kube_dir() { printf '%s/kube' "$GS_RUN"; }
_kine_dir() { printf '%s/kine' "$GS_RUN"; }

# Go environment for every build: module and build caches under $GS_CACHE so a fresh machine's
# (slow) build is cached too; never switch toolchains behind our back.
_kube_go() {
  local gobin
  gobin="$(command -v go || true)"
  [ -n "$gobin" ] || { [ -x /usr/local/go/bin/go ] && gobin=/usr/local/go/bin/go; }
  [ -n "$gobin" ] || { echo "no go toolchain found" >&2; return 1; }
  GOMODCACHE="$GS_CACHE/go/mod" GOCACHE="$GS_CACHE/go/build" GOPATH="$GS_CACHE/go/path" \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false "$gobin" "$@"
}

# Stamp helpers: a binary counts as installed only when its stamp matches what we would build.
_kube_stamp_ok() { [ -x "$GS_CACHE/bin/$1" ] && [ "$(cat "$GS_CACHE/bin/$1.version" 2>/dev/null)" = "$2" ]; }

# Write go.mod for the kube-apiserver build module into $1, for kubernetes version $2.
_kube_gen_gomod() {
  local dir="$1" ver="$2"
  local minor patch staging kmod gover m
  # v1.36.3 -> staging twins are v0.36.3
  minor="$(printf '%s' "$ver" | cut -d. -f2)"
  patch="$(printf '%s' "$ver" | cut -d. -f3)"
  kmod="$(cd "$dir" && _kube_go mod download -json "k8s.io/kubernetes@$ver" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  if [ -z "$kmod" ] || [ ! -f "$kmod" ]; then echo "cannot read go.mod of k8s.io/kubernetes@$ver" >&2; return 1; fi
  gover="$(awk '$1 == "go" { print $2; exit }' "$kmod")"
  # Staging modules: replaced to ./staging/... in kubernetes' go.mod AND required by it (a few
  # replaced ones, like sample-cli-plugin, are not required and not all are published).
  staging="$(awk '
    $1 == "require" && $2 == "(" { inreq = 1; next }
    inreq && $1 == ")" { inreq = 0; next }
    inreq && $2 == "v0.0.0" { req[$1] = 1 }
    $1 == "replace" && $2 == "(" { inrep = 1; next }
    inrep && $1 == ")" { inrep = 0; next }
    inrep && $2 == "=>" && $3 ~ /^\.\/staging\// { rep[$1] = 1 }
    END { for (m in rep) if (m in req) print m }' "$kmod" | sort)"
  [ -n "$staging" ] || { echo "no staging modules found in $kmod" >&2; return 1; }
  {
    printf 'module geostream.local/kube-apiserver-build\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$gover" "$ver"
    for m in $staging; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done
    printf ')\n'
  } >"$dir/go.mod"
}

_kube_build_apiserver() {
  local ver="$GS_KUBE_VERSION" dir="$GS_CACHE/build/kube-apiserver" pkgver t0=$SECONDS
  _kube_stamp_ok kube-apiserver "$ver" && return 0
  gs_log "kube: building kube-apiserver $ver from source (cold: 10-25 min on 2 cores; cached afterwards)"
  mkdir -p "$dir" "$GS_CACHE/bin"
  rm -f "$dir/go.mod" "$dir/go.sum"
  _kube_gen_gomod "$dir" "$ver" || return 1
  (cd "$dir" && _kube_go get "k8s.io/kubernetes/cmd/kube-apiserver@$ver") || return 1
  # Version information the release build would set (kubectl/helm read /version).
  local minor major x
  major="$(printf '%s' "${ver#v}" | cut -d. -f1)"
  minor="$(printf '%s' "$ver" | cut -d. -f2)"
  x=""
  for pkgver in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x="$x -X $pkgver.gitVersion=$ver -X $pkgver.gitMajor=$major -X $pkgver.gitMinor=$minor"
    x="$x -X $pkgver.gitTreeState=clean -X $pkgver.gitCommit=geostream-testenv-$ver"
    x="$x -X $pkgver.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  (cd "$dir" && CGO_ENABLED=0 _kube_go build -mod=mod -trimpath -ldflags "-s -w$x" \
    -o "$GS_CACHE/bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver) || return 1
  mv -f "$GS_CACHE/bin/kube-apiserver.tmp" "$GS_CACHE/bin/kube-apiserver"
  printf '%s\n' "$ver" >"$GS_CACHE/bin/kube-apiserver.version"
  gs_log "kube: kube-apiserver $ver built in $((SECONDS - t0))s"
}

# kine: `go install` of the published module (it has no replace directives). cgo + mattn/go-sqlite3
# when a C compiler exists (upstream's default build), otherwise the pure-Go sqlite variant.
_kube_build_kine() {
  local ver="$GS_KINE_VERSION" cgo=1 variant stamp tmp t0=$SECONDS
  command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || cgo=0
  if [ "$cgo" = 1 ]; then variant=cgo; else variant=nocgo; fi
  stamp="$ver $variant"
  _kube_stamp_ok kine "$stamp" && return 0
  gs_log "kube: building kine $ver ($variant sqlite)"
  mkdir -p "$GS_CACHE/bin" "$GS_CACHE/build"
  tmp="$(mktemp -d "$GS_CACHE/build/kine.XXXXXX")"
  (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED="$cgo" _kube_go install -trimpath \
      -tags "sqlite_unlock_notify,sqlite_preupdate_hook" \
      -ldflags "-s -w -X github.com/k3s-io/kine/pkg/version.Version=$ver -X github.com/k3s-io/kine/pkg/version.GitCommit=module-proxy" \
      "github.com/k3s-io/kine@$ver") || { rm -rf "$tmp"; return 1; }
  mv -f "$tmp/kine" "$GS_CACHE/bin/kine"
  rm -rf "$tmp"
  printf '%s\n' "$stamp" >"$GS_CACHE/bin/kine.version"
  gs_log "kube: kine $ver built in $((SECONDS - t0))s"
}

kube_install() {
  local log; log="$(gs_logfile kube)"
  mkdir -p "$GS_LOGS"
  : >"$log"
  command -v openssl >/dev/null 2>&1 || gs_apt openssl >>"$log" 2>&1 || gs_fail kube install "openssl missing"
  command -v curl >/dev/null 2>&1 || gs_apt curl >>"$log" 2>&1 || gs_fail kube install "curl missing"
  if ! _kube_stamp_ok kube-apiserver "$GS_KUBE_VERSION" || ! [ -x "$GS_CACHE/bin/kine" ]; then
    gs_log "kube: build output goes to $log"
  fi
  _kube_build_kine >>"$log" 2>&1 || gs_fail kube install "building kine $GS_KINE_VERSION failed"
  _kube_build_apiserver >>"$log" 2>&1 || gs_fail kube install "building kube-apiserver $GS_KUBE_VERSION failed"
  # Keep the build output: starting the apiserver truncates kube.log.
  if [ -s "$log" ]; then cp -f "$log" "$GS_LOGS/kube-build.log"; fi
}

# One-time PKI and credentials in $GS_RUN/kube/pki:
#   ca.crt/key      a private CA (what the kubeconfig trusts)
#   server.crt/key  the apiserver's serving cert, signed by that CA, SANs for 127.0.0.1
# A separate CA and leaf, not one self-signed cert: rustls (the `kube` crate's TLS) rejects a CA
# certificate presented as the server's end-entity certificate (CaUsedAsEndEntity), as it should.
_kube_pki() {
  local pki; pki="$(_kube_dir)/pki"
  mkdir -p "$pki"; chmod 700 "$pki"
  if [ ! -s "$pki/ca.crt" ] || [ ! -s "$pki/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=geostream-testenv-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 || return 1
    rm -f "$pki/server.crt" "$pki/server.key"
  fi
  if [ ! -s "$pki/server.crt" ] || [ ! -s "$pki/server.key" ]; then
    local ext="$pki/server.ext"
    printf '%s\n' \
      "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" >"$ext"
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$pki/server.key" -out "$pki/server.csr" \
      -subj "/CN=kube-apiserver" >/dev/null 2>&1 || return 1
    openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 3650 -sha256 -extfile "$ext" -out "$pki/server.crt" >/dev/null 2>&1 || return 1
    rm -f "$pki/server.csr"
  fi
  if [ ! -s "$pki/sa.key" ] || [ ! -s "$pki/sa.pub" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 >/dev/null 2>&1 || return 1
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" >/dev/null 2>&1 || return 1
  fi
  if [ ! -s "$pki/token" ]; then
    openssl rand -hex 32 >"$pki/token" || return 1
  fi
  printf '%s,geostream-admin,geostream-admin,"system:masters"\n' "$(cat "$pki/token")" >"$pki/tokens.csv"
  chmod 600 "$pki"/*
}

_kube_write_kubeconfig() {
  local d pki ca; d="$(_kube_dir)"; pki="$d/pki"
  ca="$(base64 -w0 <"$pki/ca.crt")"
  umask 077
  cat >"$d/kubeconfig.tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: geostream-testenv
  cluster:
    server: https://127.0.0.1:$GS_APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: geostream-admin
  user:
    token: $(cat "$pki/token")
contexts:
- name: geostream-testenv
  context:
    cluster: geostream-testenv
    user: geostream-admin
    namespace: default
current-context: geostream-testenv
KCFG
  mv -f "$d/kubeconfig.tmp" "$d/kubeconfig"
}

_kube_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_kine_health() { gs_pid_alive kine && _kube_port_open "$GS_KINE_PORT"; }

kube_start() {
  local d k; d="$(_kube_dir)"; k="$(_kine_dir)"
  mkdir -p "$d" "$k"
  _kube_pki || gs_fail kube start "generating the PKI in $d/pki failed (openssl)"
  _kube_write_kubeconfig

  if ! gs_pid_alive kine; then
    _kube_port_open "$GS_KINE_PORT" && gs_fail kine start "127.0.0.1:$GS_KINE_PORT is taken by a process we did not start"
    gs_spawn kine "$GS_CACHE/bin/kine" \
      --listen-address "127.0.0.1:$GS_KINE_PORT" \
      --endpoint "sqlite://$k/state.db?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&cache=shared" \
      --metrics-bind-address 0
  fi
  gs_wait kine 60 _kine_health

  if ! gs_pid_alive kube; then
    _kube_port_open "$GS_APISERVER_PORT" && gs_fail kube start "127.0.0.1:$GS_APISERVER_PORT is taken by a process we did not start"
    # No controller-manager runs here, so nothing creates the per-namespace "default"
    # ServiceAccount; the ServiceAccount admission plugin is off so Pods can still be created
    # (they stay Pending: no scheduler, no kubelet). The endpoint reconciler is off because the
    # only address is loopback, which Endpoints reject. GS_KUBE_EXTRA_ARGS appends/overrides flags.
    # shellcheck disable=SC2086
    gs_spawn kube "$GS_CACHE/bin/kube-apiserver" \
      --bind-address=127.0.0.1 \
      --advertise-address=127.0.0.1 \
      --secure-port="$GS_APISERVER_PORT" \
      --etcd-servers="http://127.0.0.1:$GS_KINE_PORT" \
      --tls-cert-file="$d/pki/server.crt" \
      --tls-private-key-file="$d/pki/server.key" \
      --token-auth-file="$d/pki/tokens.csv" \
      --authorization-mode=RBAC \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$d/pki/sa.pub" \
      --service-account-signing-key-file="$d/pki/sa.key" \
      --service-cluster-ip-range="$GS_KUBE_SERVICE_CIDR" \
      --disable-admission-plugins=ServiceAccount \
      --endpoint-reconciler-type=none \
      --allow-privileged=true \
      --profiling=false \
      --cert-dir="$d/pki/generated" \
      ${GS_KUBE_EXTRA_ARGS:-}
  fi
  gs_wait kube 180 kube_health
}

kube_health() {
  local pki; pki="$(_kube_dir)/pki"
  [ -s "$pki/token" ] && [ -s "$pki/ca.crt" ] || return 1
  [ "$(curl -sS --max-time 5 --cacert "$pki/ca.crt" \
        -H "Authorization: Bearer $(cat "$pki/token")" \
        "https://127.0.0.1:$GS_APISERVER_PORT/readyz" 2>/dev/null)" = "ok" ]
}

kube_env() {
  printf 'export KUBECONFIG=%s/kubeconfig\n' "$(_kube_dir)"
}

kube_stop() {
  gs_stop_pid kube
  gs_stop_pid kine
}

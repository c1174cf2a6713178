#!/usr/bin/env bash
# Re-vendors the Istio CRD schemas that the deployment checks validate against, from the
# istio.io/api Go module at ISTIO_API_VERSION (fetched through the Go module proxy and
# verified against the Go checksum database by `go mod download`), then records the
# version and the file's sha256 in VERSION, which tests/deploy/test_schemas.py checks.
#
#   tests/deploy/schemas/refresh.sh            the version in VERSION
#   ISTIO_API_VERSION=v1.31.4 tests/deploy/schemas/refresh.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
current="$(sed -n 's/^istio.io\/api //p' "$HERE/VERSION")"
version="${ISTIO_API_VERSION:-$current}"

dir="$(cd "$(mktemp -d)" && go mod download -json "istio.io/api@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "refresh: go mod download istio.io/api@$version failed" >&2; exit 1; }
cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$HERE/istio-crds.gen.yaml"
chmod 644 "$HERE/istio-crds.gen.yaml"
sum="$(sha256sum "$HERE/istio-crds.gen.yaml" | cut -d' ' -f1)"
printf 'istio.io/api %s\nsha256 %s\n' "$version" "$sum" >"$HERE/VERSION"
echo "vendored istio.io/api $version (sha256 $sum)"

#!/usr/bin/env bash
# Build helm from its Go module into a cache outside the repo (no release
# download is reachable here; the Go module proxy is). Idempotent.
#
#   scripts/build-helm.sh [CACHE_DIR]      -> CACHE_DIR/helm
set -euo pipefail
HELM_VERSION=${HELM_VERSION:-3.15.4}
CACHE=${1:-/var/cache/meshaccel/helm/v${HELM_VERSION}}
[ -x "$CACHE/helm" ] && { echo "build-helm: cached in $CACHE"; exit 0; }
command -v go >/dev/null || { echo "build-helm: go is required" >&2; exit 1; }
mkdir -p "$CACHE"
GOFLAGS=-mod=mod GOBIN="$CACHE" go install "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}"
echo "build-helm: built $CACHE/helm"

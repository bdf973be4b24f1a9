#!/usr/bin/env bash
# Build Kubernetes and etcd from their Go modules into a cache outside the
# repo (no container registry or release download is reachable here; the Go
# module proxy is). Idempotent: builds only what is missing.
#
#   scripts/build-k8s.sh [CACHE_DIR]
#     -> CACHE_DIR/{kube-apiserver,etcd}                      (the k8s tier)
#        CACHE_DIR/{kubelet,kube-proxy,kube-scheduler,
#                   kube-controller-manager,pause}            (the e2e node)
#
# k8s.io/kubernetes points at its staging modules (k8s.io/api, ...) through
# `replace ... => ./staging/...` lines, and module zips leave staging out, so
# the source is copied to a scratch directory and every staging replace is
# pointed at the published v0.X.Y module of the same release. etcd's server
# module has the same shape (replaces into sibling modules).
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-1.30.4}
ETCD_VERSION=${ETCD_VERSION:-3.5.15}
CACHE=${1:-/var/cache/meshaccel/k8s/v${K8S_VERSION}}
mkdir -p "$CACHE"
NODE_BINARIES=(kubelet kube-proxy kube-scheduler kube-controller-manager)
# A Kubernetes binary counts only if it reports its version (an older build
# of this script left kube-apiserver without one, which Helm's kubeVersion
# check rejects).
have() {
  [ -x "$CACHE/$1" ] || return 1
  case "$1" in etcd | pause) return 0 ;; esac
  "$CACHE/$1" --version 2>/dev/null | grep -q "v${K8S_VERSION}\b"
}
missing() { for b in "$@"; do have "$b" || return 0; done; return 1; }
missing kube-apiserver etcd pause "${NODE_BINARIES[@]}" || { echo "build-k8s: cached in $CACHE"; exit 0; }
command -v go >/dev/null || { echo "build-k8s: go is required" >&2; exit 1; }
# The checksum database mirror here does not know every staging module
# (404 for k8s.io/cluster-bootstrap v0.30.6). Some staging versions are not served at
# all (pod-security-admission v0.30.6, endpointslice v0.30.5); 1.30.4 lacks only the
# sample-* modules, which kube-apiserver never imports, so they are dropped.; go.sum of the release still pins
# the third-party modules, and the k8s.io ones come from the module proxy.
export GONOSUMDB="k8s.io/*,go.etcd.io/*" GONOSUMCHECK=1 GOFLAGS=-mod=mod
work=$(mktemp -d /var/tmp/meshaccel-k8s-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

# point_replaces_at VERSION: every `replace X => ../relative/path` becomes
# `X => X@VERSION`; guard replaces (`=> ./FORBIDDEN_DEPENDENCY`) are dropped.
point_replaces_at() {
  go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]["Path"]
    if new.startswith("."):
        print(("drop " if "FORBIDDEN" in new else "pin ") + r["Old"]["Path"])' | while read -r action mod; do
    if [ "$action" = drop ]; then
      go mod edit -dropreplace="$mod"
    elif [ "${mod%/client/v2}" != "$mod" ]; then
      # etcd tags its v2 client module v2.3MM.P for release 3.M.P
      IFS=. read -r _ minor patch <<<"${1#v}"
      go mod edit -replace="$mod=$mod@v2.3$(printf %02d "$minor").$patch"
    else
      go mod edit -replace="$mod=$mod@$1"
    fi
  done
}

if missing kube-apiserver pause "${NODE_BINARIES[@]}"; then
  cp -r "$(module_dir "k8s.io/kubernetes@v${K8S_VERSION}")" "$work/kubernetes"
  chmod -R u+w "$work/kubernetes"
  cd "$work/kubernetes"
  rm -f go.work go.work.sum
  for sample in k8s.io/sample-apiserver k8s.io/sample-cli-plugin k8s.io/sample-controller; do
    go mod edit -droprequire="$sample" -dropreplace="$sample"
  done
  point_replaces_at "v0.${K8S_VERSION#1.}"
  # Nodes and `kubectl version` report this version (the module zip has no git).
  minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  ldflags="-X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
  if missing kube-apiserver; then
    go build -ldflags "$ldflags" -o "$CACHE/kube-apiserver" ./cmd/kube-apiserver
  fi
  if missing "${NODE_BINARIES[@]}"; then
    # One build of the four shares the compile work; no cgo and no cloud
    # providers are needed on a local node.
    mkdir -p "$work/bin"
    CGO_ENABLED=0 go build -tags providerless -ldflags "$ldflags" -o "$work/bin/" \
      ./cmd/kubelet ./cmd/kube-proxy ./cmd/kube-scheduler ./cmd/kube-controller-manager
    for b in "${NODE_BINARIES[@]}"; do mv "$work/bin/$b" "$CACHE/$b"; done
  fi
  if missing pause; then
    # The pod sandbox process (the pause image is built from it).
    gcc -Os -static -o "$CACHE/pause" build/pause/linux/pause.c
  fi
fi
if [ ! -x "$CACHE/etcd" ]; then
  cp -r "$(module_dir "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}")" "$work/etcd-server"
  chmod -R u+w "$work/etcd-server"
  cd "$work/etcd-server"
  point_replaces_at "v${ETCD_VERSION}"
  go build -o "$CACHE/etcd" .
fi
echo "build-k8s: built into $CACHE"

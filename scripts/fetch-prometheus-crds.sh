#!/usr/bin/env bash
# The Prometheus Operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule),
# from its Go module on the module proxy, into a cache outside the repo: the
# k8s tier server-side applies the chart's monitoring scenario against them.
# Idempotent.
#
#   scripts/fetch-prometheus-crds.sh [CACHE_DIR]
set -euo pipefail
VERSION=${PROMETHEUS_OPERATOR_VERSION:-0.75.2}
CACHE=${1:-/var/cache/meshaccel/prometheus-operator/v${VERSION}}
KINDS=(servicemonitors podmonitors prometheusrules)
[ -f "$CACHE/prometheusrules.yaml" ] && { echo "fetch-prometheus-crds: cached in $CACHE"; exit 0; }
command -v go >/dev/null || { echo "fetch-prometheus-crds: go is required" >&2; exit 1; }
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@v${VERSION}" \
  | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "fetch-prometheus-crds: module download failed" >&2; exit 1; }
mkdir -p "$CACHE"
for k in "${KINDS[@]}"; do
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$CACHE/$k.yaml"
done
echo "fetch-prometheus-crds: $CACHE"

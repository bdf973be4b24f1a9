#!/usr/bin/env bash
# Install everything meshaccel's demo and tests need on a Debian 12 host, as
# root. Idempotent: a second run only checks.
#
#   scripts/setup.sh            system packages + .venv
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (BPF, network namespaces and apt need it)" >&2
  exit 1
fi

# Debian packages: BCC and generic kernel headers for the datapath, the real
# peers the tests drive (HAProxy as the sidecar, nginx, redis, wrk, sockperf,
# iperf3, curl), the tools the lab uses (iproute2, iptables, util-linux), and
# the e2e node: the offline image builder (mmdebstrap), the container runtime
# (containerd, runc, CNI plugins) and what kube-proxy needs (conntrack);
# Prometheus and promtool, which the monitoring tests evaluate the dashboards
# and alerts with; tmux, the real terminal `meshaccel top` is tested in.
PACKAGES=(
  python3-bpfcc linux-headers-amd64 python3-venv
  iproute2 iptables util-linux procps
  haproxy nginx-light redis-server redis-tools wrk sockperf iperf3 curl gcc libc6-dev
  mmdebstrap containerd runc containernetworking-plugins conntrack prometheus tmux
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The Debian packages enable services we do not want running on the host:
# the tests start their own instances inside network namespaces.
for svc in nginx redis-server haproxy containerd prometheus; do
  if command -v systemctl >/dev/null && systemctl is-enabled "$svc" >/dev/null 2>&1; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# The Python environment: Debian's interpreter, because python3-bpfcc is
# built for it, with system site-packages so the venv sees bcc.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
# The workspace's distributions, editable, and the development tools.
MEMBERS=(api node-agent operator cli images e2e lab monitoring)
stamp=.venv/.installed-$(cat pyproject.toml "${MEMBERS[@]/%//pyproject.toml}" | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
  editable=()
  for m in "${MEMBERS[@]}"; do editable+=(-e "./$m"); done
  .venv/bin/pip install -q --disable-pip-version-check "${editable[@]}" -e '.[dev,bench]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
echo "setup.sh: ready (.venv, $(.venv/bin/python -c 'import bcc, sys; print("bcc ok, python", sys.version.split()[0])'))"

#!/usr/bin/env bash
# Reproducer of a data-integrity failure, fixed by the FIN gate (README, Limitations):
# ROUNDS runs of the sidecar_to_sidecar half-close test (25 blocking clients
# of 16 MiB each through two HAProxy sidecars) while two CPU hogs run.
# Seen: 1 failing round in 80 on 2026-12-03 ("reply 16433152 bytes, digest
# differs": the tail of the request direction did not reach the server).
# Root cause (2026-12-03, README "Limitations", first entry): HAProxy takes a
# short read at the boundary between a socket's ingress queue and its TCP
# receive queue, after the peer's FIN, for EOF; fixed by the FIN gate
# (bpf/fin_gate.c). With TRACE=1 the run also records per-hop byte counts
# (scripts/trace_hop_bytes.py) and names the hop.
# Bounded: each round <= 300 s, the hogs <= 900 s and killed on exit.
#   [TRACE=1] scripts/stress-half-close.sh [ROUNDS]     (as root, after make setup)
set -u
cd "$(dirname "$0")/.."
rounds=${1:-80}
hogs=()
for _ in 1 2; do timeout 900 python3 -c "while True: pass" & hogs+=($!); done
if [ "${TRACE:-0}" = 1 ]; then
  trace=$(mktemp /tmp/stress-half-close.XXXXXX.jsonl)
  .venv/bin/python scripts/trace_hop_bytes.py record "$trace" $((rounds * 12 + 30)) >/dev/null 2>&1 &
  hogs+=($!)
  sleep 10 # the tracer compiles first
fi
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
pass=0 fail=0
for r in $(seq 1 "$rounds"); do
  log=$(mktemp /tmp/stress-half-close.XXXXXX.log)
  if timeout 300 .venv/bin/python -m pytest -q -p no:cacheprovider tests/datapath/test_flow_control.py \
      -k "half_close and sidecar_to_sidecar" >"$log" 2>&1; then
    pass=$((pass + 1)); rm -f "$log"
  else
    fail=$((fail + 1)); echo "round $r failed: $log"
  fi
done
echo "pass=$pass fail=$fail"
if [ -n "${trace:-}" ]; then .venv/bin/python scripts/trace_hop_bytes.py check "$trace" || fail=$((fail + 1)); fi
[ "$fail" -eq 0 ]

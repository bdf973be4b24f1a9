"""An Istio-style sidecar: istio-iptables capture rules and HAProxy as the proxy.

The rules follow istio-iptables (tools/istio-iptables) for the default
"REDIRECT" interception mode: outbound TCP of every process except uid 1337
(the proxy) goes to 15001; inbound TCP goes to 15006; the proxy's inbound
hop to the app leaves from 127.0.0.6. HAProxy forwards each captured
connection to its original destination (`server ... 0.0.0.0:0` reads
SO_ORIGINAL_DST), which is exactly the socket layout Envoy produces.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from meshaccel_lab.topology import Pod, wait_for

PROXY_UID = 1337
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006

#: Both files are also what the e2e workload image runs (e2e/workload/Dockerfile).
ISTIO_DIR = Path(__file__).resolve().parent / "istio"
RULES = ISTIO_DIR / "iptables.rules"
HAPROXY_CFG = ISTIO_DIR / "haproxy.cfg"


def _listening(pod: Pod, port: int) -> bool:
    return f":{port} " in pod.sh("ss", "-Hltn", check=False)


def add_sidecar(pod: Pod) -> None:
    """Install capture rules and start the proxy as uid 1337 in @pod."""
    # haproxy starts as root to bind, then drops to uid 1337 itself.
    pod.spawn(["haproxy", "-db", "-f", str(HAPROXY_CFG)], stdout=subprocess.DEVNULL)
    wait_for(lambda: _listening(pod, OUTBOUND_PORT) and _listening(pod, INBOUND_PORT), what=f"{pod.name} sidecar")
    pod.sh("iptables-restore", "--noflush", input=RULES.read_text())

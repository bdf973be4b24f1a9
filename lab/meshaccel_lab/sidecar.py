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

from meshaccel_lab.topology import Pod, wait_for

PROXY_UID = 1337
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006

_RULES = """*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

_HAPROXY = """global
    maxconn 8000
    uid {uid}
    gid {uid}
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend outbound
    bind 0.0.0.0:{outbound}
    default_backend original_destination
backend original_destination
    server upstream 0.0.0.0:0
frontend inbound
    bind 0.0.0.0:{inbound}
    default_backend local_app
backend local_app
    source 127.0.0.6
    server app 0.0.0.0:0
"""


def _listening(pod: Pod, port: int) -> bool:
    return f":{port} " in pod.sh("ss", "-Hltn", check=False)


def add_sidecar(pod: Pod) -> None:
    """Install capture rules and start the proxy as uid 1337 in @pod."""
    cfg = pod.lab.write_file(
        f"{pod.name}-haproxy.cfg", _HAPROXY.format(uid=PROXY_UID, outbound=OUTBOUND_PORT, inbound=INBOUND_PORT)
    )
    # haproxy starts as root to bind, then drops to uid 1337 itself.
    pod.spawn(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL)
    wait_for(lambda: _listening(pod, OUTBOUND_PORT) and _listening(pod, INBOUND_PORT), what=f"{pod.name} sidecar")
    pod.sh("iptables-restore", "--noflush", input=_RULES)

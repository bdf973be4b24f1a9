"""`meshaccel operator`: leader election, metrics, then kopf."""

from __future__ import annotations

import logging
import os
import socket

import kopf
from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def run(
    namespace: str,
    metrics_address: str,
    liveness_address: str,
    status_interval: float,
    lease: str = "meshaccel-operator",
) -> int:
    from meshaccel.kubeclient import api_client
    from meshaccel.operator import handlers  # registers the handlers with kopf
    from meshaccel.operator.leader import LeaseElector

    handlers.RUNTIME.status_interval = status_interval
    host, _, port = metrics_address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    identity = f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaseElector(api_client(), namespace, lease, identity)
    elector.acquire()
    elector.keep_renewing()
    handlers.RUNTIME.may_write = elector.holds
    # kopf's own liveness endpoint answers only while its event loop runs.
    try:
        kopf.run(clusterwide=True, standalone=True, liveness_endpoint=f"http://{liveness_address}/healthz")
    finally:
        elector.release()
    return 0

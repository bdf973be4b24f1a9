"""`meshaccel-operator check`: is the install working? (`helm test` runs it.)

Three things a user would look at after `helm install`, each waited for up to
--timeout, each failing with what is wrong:

1. the operator answers through its metrics Service and holds the lease;
2. every NodeAgent of the namespace has an agent Ready on every node it
   should run on;
3. every enabled AccelerationPolicy has a status the operator wrote for its
   current generation.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from kubernetes import client

from meshaccel_api.v1alpha1 import GROUP, VERSION, AccelerationPolicy, NodeAgent
from meshaccel_operator import subcommand

log = logging.getLogger(__name__)

OPERATOR_SERVICE = "meshaccel-operator-metrics"


def _until(what: str, probe: Callable[[], str], timeout: float) -> bool:
    """Retry @probe (which returns "" when fine, else what is wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        problem = probe()
        if not problem:
            log.info("ok: %s", what)
            return True
        if time.monotonic() >= deadline:
            log.error("FAILED: %s: %s", what, problem)
            return False
        time.sleep(2)


def operator_answers(core: client.CoreV1Api, namespace: str) -> str:
    try:
        svc = core.read_namespaced_service(OPERATOR_SERVICE, namespace)
    except client.exceptions.ApiException as exc:
        return f"Service {namespace}/{OPERATOR_SERVICE}: {exc.reason}"
    port = svc.spec.ports[0].port
    url = f"http://{svc.spec.cluster_ip}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    if "meshaccel_operator_leader 1.0" not in text:
        return f"{url} answers, but this operator does not hold the lease (meshaccel_operator_leader is not 1)"
    return ""


def agents_ready(custom: client.CustomObjectsApi, namespace: str) -> str:
    agents = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, NodeAgent.plural)["items"]
    if not agents:
        return f"no NodeAgent in {namespace}"
    for agent in agents:
        status = agent.get("status") or {}
        name, want, ready = agent["metadata"]["name"], status.get("nodesDesired", 0), status.get("nodesReady", 0)
        if not want or ready < want:
            return f"NodeAgent {name}: {ready} of {want} nodes have a Ready agent"
    return ""


def policies_reported(custom: client.CustomObjectsApi) -> str:
    for policy in custom.list_cluster_custom_object(GROUP, VERSION, AccelerationPolicy.plural)["items"]:
        meta, status = policy["metadata"], policy.get("status") or {}
        if (policy.get("spec") or {}).get("enabled", True) and status.get("observedGeneration") != meta["generation"]:
            return f"AccelerationPolicy {meta['name']}: no status for generation {meta['generation']} yet"
    return ""


def check(api: client.ApiClient, namespace: str, timeout: float) -> bool:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    return all(
        [
            _until("the operator answers and leads", lambda: operator_answers(core, namespace), timeout),
            _until("every node runs a Ready agent", lambda: agents_ready(custom, namespace), timeout),
            _until("every policy has a current status", lambda: policies_reported(custom), timeout),
        ]
    )


def main(argv: Sequence[str] | None = None, prog: str = "meshaccel-operator check") -> int:
    return subcommand.run(check, prog, __doc__ or "", argv)

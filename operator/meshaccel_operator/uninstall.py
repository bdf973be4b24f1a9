"""`meshaccel-operator uninstall`: what must happen before the operator and
the RBAC go (Helm's pre-delete hook runs it; so can a user of manifests/).

Helm deletes everything of a release at once, without waiting for anything.
The agents decide at SIGTERM whether they are restarting (keep the datapath)
or being removed (drain every connection to TCP and unpin); to decide they
read their DaemonSet, with their own RBAC, which Helm would already have
deleted. So, while everything still exists:

1. delete the NodeAgents of the namespace: the garbage collector deletes
   their DaemonSets, whose agents then uninstall their node's datapath;
2. wait until no agent pod is left;
3. stop the operator (scale to 0), so it does not write NodeEnrolments again;
4. delete the NodeEnrolments it wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kubernetes import client

from meshaccel_api.v1alpha1 import GROUP, VERSION, NodeAgent, NodeEnrolment
from meshaccel_operator import subcommand

log = logging.getLogger(__name__)

AGENT_PODS = "app.kubernetes.io/name=meshaccel-agent"
OPERATOR = "meshaccel-operator"
MANAGED = "app.kubernetes.io/managed-by=meshaccel-operator"


def _wait(what: str, gone: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(gone) and gone():
            return True
        time.sleep(1)
    log.error("%s still there after %.0f s", what, timeout)
    return False


def uninstall(api: client.ApiClient, namespace: str, timeout: float) -> bool:
    custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    agents = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, NodeAgent.plural)["items"]
    for agent in agents:
        name = agent["metadata"]["name"]
        log.info("deleting NodeAgent %s/%s: its agents uninstall the datapath", namespace, name)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, NodeAgent.plural, name)
    ok = _wait("agent pods", lambda: not core.list_namespaced_pod(namespace, label_selector=AGENT_PODS).items, timeout)
    try:
        apps.patch_namespaced_deployment_scale(OPERATOR, namespace, {"spec": {"replicas": 0}})
        ok &= _wait(
            "operator pods",
            lambda: not core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={OPERATOR}").items,
            timeout,
        )
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
    for obj in custom.list_cluster_custom_object(GROUP, VERSION, NodeEnrolment.plural, label_selector=MANAGED)["items"]:
        custom.delete_cluster_custom_object(GROUP, VERSION, NodeEnrolment.plural, obj["metadata"]["name"])
    log.info("uninstall %s: NodeAgents, agents and NodeEnrolments are gone", "done" if ok else "INCOMPLETE")
    return ok


def main(argv: Sequence[str] | None = None, prog: str = "meshaccel-operator uninstall") -> int:
    return subcommand.run(uninstall, prog, __doc__ or "", argv)

"""The operator's writes to the API server (kubernetes client, blocking calls
that the async code runs in threads). Reads come from kopf's watches."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from meshaccel_api.v1alpha1 import API_VERSION, GROUP, VERSION, NodeEnrolment

log = logging.getLogger(__name__)


class KubeNodeEnrolments:
    """NodeEnrolmentStore backed by the API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def create(self, node: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": NodeEnrolment.kind,
            "metadata": {"name": node, "labels": {"app.kubernetes.io/managed-by": "meshaccel-operator"}},
            "spec": spec,
        }
        self.custom.create_cluster_custom_object(GROUP, VERSION, NodeEnrolment.plural, body)

    def replace_spec(self, node: str, spec: dict[str, Any]) -> None:
        # A JSON merge patch replaces lists whole, which is what we want: the
        # operator owns the spec.
        self.custom.patch_cluster_custom_object(GROUP, VERSION, NodeEnrolment.plural, node, {"spec": spec})

    def delete(self, node: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, NodeEnrolment.plural, node)
        except ApiException as exc:
            if exc.status != 404:
                raise


def patch_status(api: client.ApiClient, plural: str, name: str, status: dict[str, Any], namespace: str = "") -> None:
    custom = client.CustomObjectsApi(api)
    body = {"status": status}
    if namespace:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body)
    else:
        custom.patch_cluster_custom_object_status(GROUP, VERSION, plural, name, body)


TEMPLATE_HASH = "meshaccel.io/template-hash"


def apply_daemonset(api: client.ApiClient, body: dict[str, Any]) -> str:
    """Create the DaemonSet or bring it to @body; returns what happened.

    The API server fills defaults into a stored spec, so "changed?" is
    decided on a hash of what we rendered, kept in an annotation: an
    unchanged NodeAgent never rolls the agents."""
    apps = client.AppsV1Api(api)
    meta = body["metadata"]
    digest = hashlib.sha256(json.dumps(body["spec"], sort_keys=True).encode()).hexdigest()[:16]
    body = {**body, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), TEMPLATE_HASH: digest}}}
    try:
        current = apps.read_namespaced_daemon_set(meta["name"], meta["namespace"])
    except ApiException as exc:
        if exc.status != 404:
            raise
        try:
            apps.create_namespaced_daemon_set(meta["namespace"], body)
            return "created"
        except ApiException as err:
            if err.status != 409:
                raise
            # Created meanwhile (the create handler and the timer race at a
            # NodeAgent's birth): compare with what is there now.
            current = apps.read_namespaced_daemon_set(meta["name"], meta["namespace"])
    if (current.metadata.annotations or {}).get(TEMPLATE_HASH) == digest:
        return "unchanged"
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    apps.replace_namespaced_daemon_set(meta["name"], meta["namespace"], body)
    return "updated"


def read_daemonset(api: client.ApiClient, name: str, namespace: str) -> dict[str, Any] | None:
    """The DaemonSet's status, or None if it does not exist."""
    try:
        ds = client.AppsV1Api(api).read_namespaced_daemon_set(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    status: dict[str, Any] = api.sanitize_for_serialization(ds.status) or {}
    return status

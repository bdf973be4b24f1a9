"""Smoke tests of the harness itself: the apiserver behaves like the parts of a
cluster the operator and agent tests rely on (admin, RBAC, pod status,
ServiceAccount tokens bound to pods, restarts, 410 Gone after compaction)."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from meshaccel_lab.kube import KubeAPI, KubectlError
from meshaccel_lab.topology import wait_for

STATUS = {"status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}], "phase": "Running"}}


def get(kube: KubeAPI, *args: str, kubeconfig: Path | None = None) -> dict[str, Any]:
    return dict(json.loads(kube.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout))


def create_pod(kube: KubeAPI, namespace: str, name: str, node: str = "node-1") -> None:
    """A pod "scheduled" to @node: no scheduler runs, so nodeName is set directly."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
        }
    )


def whoami(kube: KubeAPI, kubeconfig: Path) -> dict[str, Any]:
    review = json.loads(kube.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    return dict(review["status"]["userInfo"])


def resource_version(obj: client.V1ConfigMap | client.V1ConfigMapList) -> str:
    assert obj.metadata is not None and obj.metadata.resource_version is not None
    return str(obj.metadata.resource_version)


def watch_events(core: client.CoreV1Api, namespace: str, since: str) -> list[dict[str, Any]]:
    """Raw watch events of ConfigMaps from resourceVersion @since for up to 2 s.

    Raw, because the client's Watch helper swallows the first 410 to retry.
    The apiserver reports an expired resourceVersion as an ERROR event with
    a Status object in a 200 stream, not as an HTTP 410 response.
    """
    # With _preload_content=False the call returns the raw urllib3 response,
    # whatever its annotation says.
    resp: Any = core.list_namespaced_config_map(
        namespace, watch=True, resource_version=since, timeout_seconds=2, _preload_content=False
    )
    try:
        assert resp.status == 200, resp.data
        return [json.loads(line) for line in resp if line.strip()]
    finally:
        resp.release_conn()


def test_admin_lists_system_namespaces(kube: KubeAPI) -> None:
    names = kube.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)
    assert kube.admin_kubeconfig.is_file()
    assert kube.url == f"https://127.0.0.1:{kube.port}"


def test_ensure_namespace_is_idempotent_and_labels(kube: KubeAPI) -> None:
    kube.ensure_namespace("labelled", {"meshaccel.io/enabled": "true"})
    kube.ensure_namespace("labelled", {"meshaccel.io/enabled": "true"})
    assert get(kube, "namespace", "labelled")["metadata"]["labels"]["meshaccel.io/enabled"] == "true"
    assert get(kube, "serviceaccount", "default", "-n", "labelled")["metadata"]["name"] == "default"


def test_pod_without_default_service_account_is_refused(kube: KubeAPI) -> None:
    # Why ensure_namespace() creates the ServiceAccount: a bare namespace has
    # none, as no controller-manager runs.
    bare = "bare-" + secrets.token_hex(3)
    kube.kubectl("create", "namespace", bare)
    with pytest.raises(KubectlError, match='serviceaccount "default" not found'):
        create_pod(kube, bare, "p")


def test_pod_status_is_written_through_the_subresource(kube: KubeAPI, namespace: str) -> None:
    create_pod(kube, namespace, "web")
    pod = get(kube, "pod", "web", "-n", namespace)
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["status"]["phase"] == "Pending"
    assert "podIP" not in pod["status"]

    # A patch of the main resource ignores status, as for a real kubelet-less pod.
    kube.kubectl("patch", "pod", "web", "-n", namespace, "--type=merge", "-p", json.dumps(STATUS))
    assert "podIP" not in get(kube, "pod", "web", "-n", namespace)["status"]

    kube.kubectl(
        "patch", "pod", "web", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(STATUS)
    )
    status = get(kube, "pod", "web", "-n", namespace)["status"]
    assert status["podIP"] == "10.244.0.5"
    assert status["podIPs"] == [{"ip": "10.244.0.5"}]
    assert status["phase"] == "Running"


def test_service_account_without_rbac_is_forbidden(kube: KubeAPI, namespace: str) -> None:
    kube.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubeconfig = kube.service_account_kubeconfig(namespace, "reader")
    assert whoami(kube, kubeconfig)["username"] == f"system:serviceaccount:{namespace}:reader"

    res = kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert res.returncode != 0
    assert "Forbidden" in res.stderr and 'cannot list resource "secrets"' in res.stderr

    # The same token works once RBAC allows it: the refusal above was RBAC's.
    kube.kubectl("create", "role", "secrets", "-n", namespace, "--verb=list", "--resource=secrets")
    kube.kubectl(
        "create", "rolebinding", "secrets", "-n", namespace, "--role=secrets", f"--serviceaccount={namespace}:reader"
    )
    assert kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig).returncode == 0


def test_pod_bound_token_names_the_node(kube: KubeAPI, namespace: str) -> None:
    # ServiceAccountTokenPodNodeInfo is beta (on by default) in 1.30: no gate.
    create_pod(kube, namespace, "agent", node="node-7")
    bound = kube.service_account_kubeconfig(namespace, "default", bound_pod="agent")
    extra = whoami(kube, bound)["extra"]
    assert extra["authentication.kubernetes.io/node-name"] == ["node-7"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["agent"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [
        get(kube, "pod", "agent", "-n", namespace)["metadata"]["uid"]
    ]
    # The node's UID only when a Node object exists; none does here.
    assert "authentication.kubernetes.io/node-uid" not in extra

    unbound = kube.service_account_kubeconfig(namespace, "default")
    assert "authentication.kubernetes.io/node-name" not in whoami(kube, unbound).get("extra", {})

    # A bound token dies with its pod, once the apiserver's 10 s cache of
    # successful token authentications (fixed, no flag) has expired.
    kube.kubectl("delete", "pod", "agent", "-n", namespace, "--grace-period=0", "--force")
    wait_for(lambda: kube.kubectl("auth", "whoami", kubeconfig=bound, check=False).returncode != 0, 20, "rejection")
    assert "Unauthorized" in kube.kubectl("auth", "whoami", kubeconfig=bound, check=False).stderr


def test_restart_keeps_objects_port_and_tokens(kube: KubeAPI, namespace: str) -> None:
    kube.kubectl("create", "configmap", "keep", "-n", namespace, "--from-literal=k=v")
    meta = get(kube, "configmap", "keep", "-n", namespace)["metadata"]
    sa_kubeconfig = kube.service_account_kubeconfig(namespace, "default")
    url, pid = kube.url, kube.apiserver_proc.pid if kube.apiserver_proc else None

    kube.restart_apiserver()

    assert kube.url == url
    assert kube.apiserver_proc is not None and kube.apiserver_proc.pid != pid
    cm = get(kube, "configmap", "keep", "-n", namespace)
    assert (cm["metadata"]["uid"], cm["data"]) == (meta["uid"], {"k": "v"})
    # Same signing key: a token minted before the restart is still valid.
    assert whoami(kube, sa_kubeconfig)["username"] == f"system:serviceaccount:{namespace}:default"
    # Without the watch cache a watch resumes across the restart, no 410.
    kube.kubectl("patch", "configmap", "keep", "-n", namespace, "--type=merge", "-p", '{"data":{"k":"w"}}')
    core = client.CoreV1Api(kube.api_client())
    events = watch_events(core, namespace, meta["resourceVersion"])
    assert [(e["type"], e["object"]["data"]) for e in events] == [("MODIFIED", {"k": "w"})]


def test_compaction_expires_old_resource_versions(kube: KubeAPI, namespace: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"n": "0"})
    old_rv = resource_version(core.create_namespaced_config_map(namespace, body))
    for n in range(1, 4):
        core.patch_namespaced_config_map("w", namespace, {"data": {"n": str(n)}})

    # Before compaction the old resourceVersion replays the three updates...
    before = watch_events(core, namespace, old_rv)
    assert [(e["type"], e["object"]["data"]["n"]) for e in before] == [("MODIFIED", str(n)) for n in (1, 2, 3)]

    revision = kube.compact_etcd()
    assert revision > int(old_rv)

    # ...after it, the watch is told that it is Gone.
    after = watch_events(core, namespace, old_rv)
    assert len(after) == 1 and after[0]["type"] == "ERROR", after
    status = after[0]["object"]
    assert (status["code"], status["reason"]) == (410, "Expired"), status
    assert "too old" in status["message"]

    # A resourceVersion at the compaction point still watches normally.
    current = resource_version(core.list_namespaced_config_map(namespace))
    core.patch_namespaced_config_map("w", namespace, {"data": {"n": "4"}})
    assert [e["type"] for e in watch_events(core, namespace, current)] == ["MODIFIED"]


def _children() -> set[int]:
    """PIDs of this process's children, zombies included (not yet waited for)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            pids.add(int(stat.parent.name))
    return pids


def test_failed_start_cleans_up() -> None:
    before, children = set(Path(tempfile.gettempdir()).glob("meshaccel-kube-*")), _children()
    # etcd starts, then kube-apiserver exits on the unknown flag.
    with pytest.raises(RuntimeError, match="kube-apiserver exited") as failure:
        KubeAPI(extra_apiserver_args=["--no-such-flag"])
    assert "unknown flag: --no-such-flag" in str(failure.value)  # the log's tail is in the error
    assert set(Path(tempfile.gettempdir()).glob("meshaccel-kube-*")) <= before
    assert _children() <= children


def test_close_twice_removes_everything() -> None:
    api = KubeAPI()
    assert api.kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == "namespace/default"
    procs = [api.etcd_proc, api.apiserver_proc]
    api.close()
    api.close()
    assert not api.workdir.exists()
    assert all(p is not None and p.poll() is not None for p in procs)

"""The Helm chart renders the same objects as manifests/ and the API server
accepts them (CRDs, RBAC, operator, NodeAgent, default policy)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshaccel_lab.controlplane import get_json
from meshaccel_lab.kube import KubeAPI
from meshaccel_operator.deploy import NAMESPACE

REPO = Path(__file__).resolve().parents[2]
HELM = Path("/var/cache/meshaccel/helm/v3.15.4/helm")


def helm(*args: str) -> str:
    if not HELM.is_file():
        pytest.fail(f"{HELM} missing: run scripts/build-helm.sh", pytrace=False)
    res = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def render(*extra: str) -> list[dict[str, Any]]:
    # The test API server reports no usable version (built without version
    # ldflags), so the chart's kubeVersion constraint is checked against 1.30.4.
    text = helm("template", "meshaccel", str(REPO / "charts/meshaccel"), "-n", NAMESPACE,
                "--kube-version", "1.30.4", "--include-crds", *extra)  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def test_chart_lints_and_renders_what_manifests_hold() -> None:
    assert "0 chart(s) failed" in helm("lint", str(REPO / "charts/meshaccel"))
    docs = render()
    manifests = [
        d
        for f in ("rbac.yaml", "operator.yaml")
        for d in yaml.safe_load_all((REPO / "manifests" / f).read_text())
        if d and d["kind"] != "Namespace"
    ]
    for want in manifests:
        got = [d for d in docs if (d["kind"], d["metadata"]["name"]) == (want["kind"], want["metadata"]["name"])]
        assert got == [want], f"{want['kind']}/{want['metadata']['name']} differs between chart and manifests/"
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "NodeAgent", "AccelerationPolicy", "ValidatingAdmissionPolicy"} <= kinds


def test_chart_objects_are_accepted_by_the_api_server(kube: KubeAPI) -> None:
    docs = render("--set", "agent.spec.logLevel=debug", "--set", "agent.spec.mapSizes.sockhash=131072")
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": crds})
    kube.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=meshaccel")
    kube.ensure_namespace(NAMESPACE)
    kube.apply({"apiVersion": "v1", "kind": "List", "items": [d for d in docs if d not in crds]})
    agent = get_json(kube, "nodeagent", "meshaccel-agent", "-n", NAMESPACE)
    assert agent["spec"]["logLevel"] == "debug" and agent["spec"]["mapSizes"]["sockhash"] == 131072
    assert get_json(kube, "accelerationpolicy", "default")["spec"]["shapes"] == ["direct", "sidecar"]
    kube.kubectl("delete", "nodeagent", "meshaccel-agent", "-n", NAMESPACE, "--wait=false")

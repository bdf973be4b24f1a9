"""The Helm chart: it lints, a wrong value fails naming the field, every
`ci/` scenario renders and is accepted by a real API server (server-side
apply, with the Prometheus Operator's real CRDs for the monitors), and what
it renders for the operator and the agent parses with their own parsers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshaccel_api.agent_settings import parse as parse_agent
from meshaccel_api.v1alpha1 import NodeAgentSpec
from meshaccel_lab.kube import KubeAPI
from meshaccel_operator import settings as operator_settings
from meshaccel_operator.deploy import NAMESPACE, daemonset
from meshaccel_operator.manifests import HELM, KUBE_VERSION

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/meshaccel"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
PROMETHEUS_OPERATOR_CRDS = Path("/var/cache/meshaccel/prometheus-operator/v0.75.2")


def helm(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        pytest.fail(f"{HELM} missing: run scripts/build-helm.sh", pytrace=False)
    res = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def render(*extra: str) -> list[dict[str, Any]]:
    # The test API server reports no usable version (built without version
    # ldflags), so the chart's kubeVersion constraint is checked against 1.30.4.
    text = helm("template", "meshaccel", str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION,
                "--include-crds", *extra).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_chart_lints(scenario: Path) -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "-f", str(scenario)).stdout


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("agent.logLevel=loud", "logLevel"),
        ("agent.mapSizes.sockhash=lots", "sockhash"),
        ("agent.imag.tag=x", "imag"),
        ("operator.image.digest=latest", "digest"),
        ("metrics.serviceMonitor.enabled=maybe", "enabled"),
    ],
)
def test_a_wrong_value_fails_naming_the_field(setting: str, field: str) -> None:
    res = helm("template", "meshaccel", str(CHART), "--kube-version", KUBE_VERSION, "--set", setting, ok=False)
    assert res.returncode != 0, f"helm accepted --set {setting}"
    assert "values don't meet the specifications of the schema" in res.stderr and field in res.stderr, res.stderr


def test_monitors_render_only_when_asked() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert {"Service", "ConfigMap", "NodeAgent", "AccelerationPolicy", "Deployment"} <= kinds
    docs = render("-f", str(CHART / "ci/monitoring-values.yaml"))
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"} == {
        "meshaccel-agent",
        "meshaccel-operator",
    }
    rules = one(docs, "PrometheusRule")["spec"]
    on_disk = yaml.safe_load((CHART / "files/alerts.yaml").read_text())
    assert rules == on_disk and rules["groups"][0]["rules"], "the PrometheusRule is not the promtool-checked file"
    board = one(docs, "ConfigMap", "meshaccel-dashboard-meshaccel")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["meshaccel.json"])["uid"] == "meshaccel-overview"


def test_operator_arguments_parse_with_the_operators_parser() -> None:
    deployment = one(render("-f", str(CHART / "ci/placement-values.yaml")), "Deployment", "meshaccel-operator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = operator_settings.parse(container["args"])
    assert settings.log_level == "debug"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.metrics_address.endswith(f":{ports['metrics']}")
    assert settings.liveness_address.endswith(f":{ports['health']}")
    assert container["image"] == (
        "registry.example.com/mesh/operator:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


def test_every_agent_value_reaches_the_daemonset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NodeAgent the chart renders, through the operator's own DaemonSet
    rendering, to the arguments the agent's own parser reads."""
    agent = one(render("-f", str(CHART / "ci/placement-values.yaml")), "NodeAgent")
    spec = NodeAgentSpec.model_validate(agent["spec"])
    ds = daemonset("meshaccel-agent", NAMESPACE, spec)
    pod = ds["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/mesh/agent:0.1.0-custom"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert pod["metadata"]["annotations"] == {"example.com/owner": "platform"}
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 2
    assert container["securityContext"] == {"privileged": True, "readOnlyRootFilesystem": True}
    assert container["resources"]["limits"]["memory"] == "1Gi"
    monkeypatch.setenv("NODE_NAME", "node-1")
    parsed = parse_agent(container["args"])
    assert parsed.map_sizes.sockhash == 131072 and parsed.flow_control.boundBytes == 1 << 20
    assert parsed.log_level == "debug"
    default = daemonset("meshaccel-agent", NAMESPACE, NodeAgentSpec.model_validate(one(render(), "NodeAgent")["spec"]))
    security = default["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert security["privileged"] is False and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "SYS_ADMIN" in security["capabilities"]["add"] and security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_is_accepted_by_the_api_server(kube: KubeAPI, scenario: Path) -> None:
    docs = render("-f", str(scenario))
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": crds})
    for crd in sorted(PROMETHEUS_OPERATOR_CRDS.glob("*.yaml")):
        # Not ours: what a cluster with the Prometheus Operator has.
        kube.kubectl("apply", "--server-side", "-f", str(crd))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all")
    kube.ensure_namespace(NAMESPACE)
    # The service accounts for real: admission looks up a pod's account
    # (the helm test pod's), as it would after `helm install` made them.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                 input=json.dumps({"apiVersion": "v1", "kind": "List", "items": accounts}))  # fmt: skip
    rest = {"apiVersion": "v1", "kind": "List", "items": [d for d in docs if d not in crds]}
    # Server-side apply, dry run: every object goes through the API server's
    # schema validation, CEL rules and admission, and nothing is left behind.
    # Earlier tests applied manifests/ client-side: take their fields over.
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "--field-manager=helm-test",
                 "-f", "-", input=json.dumps(rest))  # fmt: skip

"""The Helm chart's values: one model, from which `values.yaml` (every value
with its documentation in place) and `values.schema.json` (Helm refuses a
wrong value at `helm install`, naming the field) are generated.

The agent's values are the NodeAgent's own fields (`AgentPodSpec`, from the
API model), so the chart, the CRD and the operator cannot disagree on what a
field means, its default or its bounds; only the image is spelled the
community way (repository, tag, digest) and joined by the chart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from meshaccel_api.v1alpha1 import (
    AccelerationPolicySpec,
    AgentPodSpec,
    LabelKey,
    LabelValue,
    LocalObjectReference,
    Model,
    PullPolicy,
    ResourceList,
    Resources,
    Toleration,
)

Duration = Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h)$", max_length=16)]
Labels = dict[LabelKey, LabelValue]


class Image(Model):
    repository: str = Field(min_length=1, max_length=255, description="registry and path, without tag")
    tag: str = Field(default="", max_length=128, description='"": the chart\'s appVersion')
    digest: str = Field(
        default="", pattern=r"^(sha256:[a-f0-9]{64})?$", description="sha256:...; when set it wins over the tag"
    )
    pullPolicy: PullPolicy = Field(default="IfNotPresent", description="Always, IfNotPresent or Never")


class OperatorValues(Model):
    image: Image = Field(default_factory=lambda: Image(repository="docker.io/meshaccel/operator"))
    logLevel: Literal["debug", "info", "warning", "error"] = "info"
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests=ResourceList(cpu="50m", memory="128Mi"), limits=ResourceList(memory="512Mi")
        ),
        description="the operator container's requests and limits (also the helm test's and uninstall hook's)",
    )
    nodeSelector: Labels = Field(default_factory=lambda: {"kubernetes.io/os": "linux"})
    tolerations: list[Toleration] = Field(default_factory=list, description="core/v1 Tolerations")
    affinity: dict[str, Any] = Field(default_factory=dict, description="core/v1 Affinity, as written")
    priorityClassName: str = Field(default="", max_length=253, description='"": the cluster\'s default priority')
    podAnnotations: dict[str, str] = Field(default_factory=dict, description="added to the operator pod")


class AgentValues(AgentPodSpec):
    """The NodeAgent the chart installs: the operator turns it into the agent
    DaemonSet (same name). Every field below `image` is a NodeAgent field."""

    create: bool = Field(default=True, description="false: you manage NodeAgents yourself")
    image: Image = Field(default_factory=lambda: Image(repository="docker.io/meshaccel/agent"))


class Toggle(Model):
    enabled: bool = False
    labels: Labels = Field(default_factory=dict, description="e.g. the label your Prometheus selects monitors by")


class ScrapeToggle(Toggle):
    interval: Duration = "30s"


class MetricsValues(Model):
    """Both components serve Prometheus metrics (agent :metricsPort, operator :9465)."""

    service: bool = Field(default=True, description="a headless Service per component, for discovery")
    serviceMonitor: ScrapeToggle = Field(
        default_factory=ScrapeToggle, description="a monitoring.coreos.com ServiceMonitor (needs its CRD)"
    )
    podMonitor: ScrapeToggle = Field(
        default_factory=ScrapeToggle, description="a PodMonitor instead, for Prometheus setups without Services"
    )
    prometheusRule: Toggle = Field(default_factory=Toggle, description="the alerts (needs the PrometheusRule CRD)")


class DashboardValues(Model):
    enabled: bool = Field(default=True, description="ConfigMaps the Grafana sidecar loads as dashboards")
    labels: Labels = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    annotations: dict[str, str] = Field(
        default_factory=dict, description="e.g. {grafana_folder: meshaccel} for the sidecar's folder annotation"
    )


class PolicyValues(Model):
    create: bool = True
    spec: AccelerationPolicySpec = Field(default_factory=AccelerationPolicySpec)


class ChartValues(Model):
    imagePullSecrets: list[LocalObjectReference] = Field(
        default_factory=list, description="for both components: [{name: SECRET}]"
    )
    operator: OperatorValues = Field(default_factory=OperatorValues)
    agent: AgentValues = Field(default_factory=AgentValues)
    defaultPolicy: PolicyValues = Field(
        default_factory=PolicyValues,
        description='the AccelerationPolicy "default": sidecar pods in namespaces labelled '
        "meshaccel.io/accelerate=enabled",
    )
    metrics: MetricsValues = Field(default_factory=MetricsValues)
    dashboards: DashboardValues = Field(default_factory=DashboardValues)


# --- rendering ------------------------------------------------------------------

VALUES_HEADER = """\
# meshaccel chart values. Generated from meshaccel_operator/chart_values.py
# (`make generate`; CI fails on drift), as is values.schema.json: Helm refuses
# a value of the wrong type or an unknown key, naming it.
"""


def _doc(model: type[Model], name: str) -> str:
    info = model.model_fields[name]
    text = info.description or ""
    annotation = info.annotation
    if not text and isinstance(annotation, type) and issubclass(annotation, Model) and annotation.__doc__:
        text = " ".join(annotation.__doc__.split())
    return text


def _comment(text: str, indent: str) -> list[str]:
    import textwrap

    return [f"{indent}# {line}" for line in textwrap.wrap(text, 100 - len(indent))] if text else []


def _scalar(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, default_flow_style=True, width=1000)).removesuffix("\n...\n").rstrip("\n")


def _yaml_lines(value: Model, indent: str = "") -> list[str]:
    """Block YAML with each field's documentation above it; the fields a
    class adds come before the ones it inherits (the agent's `create` and
    `image` first)."""
    import yaml

    lines: list[str] = []
    cls = type(value)
    own = [n for n in cls.model_fields if n in vars(cls).get("__annotations__", {})]
    for name in own + [n for n in cls.model_fields if n not in own]:
        field_value = getattr(value, name)
        if field_value is None:
            continue
        lines.extend(_comment(_doc(cls, name), indent))
        if isinstance(field_value, Model):
            nested = _yaml_lines(field_value, indent + "  ")
            lines.append(f"{indent}{name}:" if nested else f"{indent}{name}: {{}}")
            lines.extend(nested)
            continue
        plain = cls.__pydantic_serializer__.to_python(value, mode="json", exclude_none=True, include={name})[name]
        if isinstance(plain, (dict, list)) and plain:
            text = yaml.safe_dump({name: plain}, sort_keys=False, default_flow_style=False, width=1000)
            lines.extend(indent + line for line in text.rstrip("\n").splitlines())
        else:
            lines.append(f"{indent}{name}: {_scalar(plain)}")
    return lines


def values_yaml() -> str:
    return VALUES_HEADER + "\n".join(_yaml_lines(ChartValues())) + "\n"


def values_schema() -> dict[str, Any]:
    """Draft 7 (what Helm validates with): definitions instead of $defs."""
    schema = ChartValues.model_json_schema(ref_template="#/definitions/{model}", mode="validation")
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema, "definitions": schema.pop("$defs", {})}

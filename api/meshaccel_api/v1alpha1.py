"""The meshaccel.io/v1alpha1 API, as pydantic models.

These models are the single source of the API: the CRD schemas under
`manifests/crds/` are generated from them (`make generate`, CI fails on
drift), and the operator and the agent parse objects from the API server with
them. Rules that the API server must enforce (CEL, patterns, bounds) are
written next to the field they guard, so a bad object is rejected at
`kubectl apply` with a message that names the field, and never reaches a
controller.

Field names are the wire names (camelCase), as in Kubernetes' own Go types.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "meshaccel.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Namespaces opt in with this label (the default policy's selector); a pod
#: with it set to "disabled" (label or annotation) is never accelerated.
ACCELERATE_LABEL = "meshaccel.io/accelerate"
ENABLED = "enabled"
DISABLED = "disabled"

# A label key: optional DNS-subdomain prefix, then a name (Kubernetes' rule).
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = rf"^({_DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_IPV4 = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One x-kubernetes-validations entry; fieldPath makes the error name the field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(entries)}


class Model(BaseModel):
    """Strict about unknown fields, like a structural schema with pruning off."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


LabelKey = Annotated[str, Field(max_length=317, pattern=_LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=63, pattern=_LABEL_VALUE)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]
IPv4 = Annotated[str, Field(max_length=15, pattern=_IPV4)]
Quantity = Annotated[str, Field(max_length=32, pattern=_QUANTITY)]


# --- shared pieces -----------------------------------------------------------


class LabelSelectorRequirement(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0",
                "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            )
        )
    )

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list, max_length=64)


class LabelSelector(Model):
    """A Kubernetes label selector; empty selects everything."""

    matchLabels: dict[LabelKey, LabelValue] = Field(default_factory=dict, json_schema_extra={"maxProperties": 32})
    matchExpressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        for req in self.matchExpressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


#: At most this many ports per range: every excluded port is one entry in the
#: node's BPF exclusion map.
MAX_PORTS_PER_RANGE = 1024


class PortRange(Model):
    """One port, or ports `port`..`endPort` inclusive."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel("!has(self.endPort) || self.endPort >= self.port", "endPort must not be below port", ".endPort"),
            cel(
                f"!has(self.endPort) || self.endPort - self.port < {MAX_PORTS_PER_RANGE}",
                f"a range may span at most {MAX_PORTS_PER_RANGE} ports",
                ".endPort",
            ),
        )
    )

    port: Port
    endPort: Port | None = None

    def ports(self) -> range:
        return range(self.port, (self.endPort or self.port) + 1)


class Shape(StrEnum):
    """Which hops are accelerated.

    sidecar: app <-> its own sidecar proxy, inside one pod (loopback and the
    pod's own IP, e.g. Istio's 15001/15006 capture and 127.0.0.6 inbound hop).
    direct: pod <-> pod on the same node (including sidecar <-> sidecar).
    """

    DIRECT = "direct"
    SIDECAR = "sidecar"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """metav1.Condition."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
    lastTransitionTime: str = Field(json_schema_extra={"format": "date-time"})
    observedGeneration: Count = 0


Conditions = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class TrafficCounters(Model):
    """Datapath counters since the agent's datapath was installed."""

    socketsEnrolled: Count = Field(default=0, description="sockets currently in the redirect map")
    messagesRedirected: Count = 0
    bytesRedirected: Count = 0
    messagesPassed: Count = Field(default=0, description="messages of enrolled sockets sent through the kernel stack")
    bytesPassed: Count = 0

    def __add__(self, other: TrafficCounters) -> TrafficCounters:
        return TrafficCounters(**{k: getattr(self, k) + getattr(other, k) for k in TrafficCounters.model_fields})


# --- AccelerationPolicy --------------------------------------------------------


def _default_namespace_selector() -> LabelSelector:
    return LabelSelector(matchLabels={ACCELERATE_LABEL: ENABLED})


class AccelerationPolicySpec(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.requireSidecar || self.shapes.exists(s, s == 'direct')",
                "a policy that selects pods without a sidecar must include 'direct' "
                "(the 'sidecar' shape alone accelerates nothing for them)",
                ".shapes",
            )
        )
    )

    enabled: bool = Field(default=True, description="off switch: a disabled policy selects nothing")
    namespaceSelector: LabelSelector = Field(
        default_factory=_default_namespace_selector,
        description=f"namespaces whose pods this policy selects (default: label {ACCELERATE_LABEL}={ENABLED})",
    )
    podSelector: LabelSelector = Field(
        default_factory=lambda: LabelSelector(), description="pods selected (default: all)"
    )
    requireSidecar: bool = Field(default=True, description="select only pods that run an Istio-style sidecar proxy")
    shapes: list[Shape] = Field(
        default_factory=lambda: [Shape.DIRECT, Shape.SIDECAR],
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    excludedPorts: list[PortRange] = Field(
        default_factory=list, max_length=64, description="ports (local or remote) never accelerated"
    )


class AccelerationPolicyStatus(Model):
    observedGeneration: Count = 0
    conditions: Conditions
    matchedPods: Count = Field(default=0, description="running pods the policy selects")
    acceleratedPods: Count = Field(default=0, description="selected pods enrolled by their node's agent")
    nodes: Count = Field(default=0, description="nodes with at least one selected pod")
    nodesReady: Count = Field(default=0, description="of those, nodes whose agent is Ready")
    counters: TrafficCounters = Field(
        default_factory=lambda: TrafficCounters(), description="sum over the covered nodes"
    )


class AccelerationPolicy(Model):
    kind: ClassVar[str] = "AccelerationPolicy"
    plural: ClassVar[str] = "accelerationpolicies"
    spec: AccelerationPolicySpec = Field(default_factory=lambda: AccelerationPolicySpec())
    status: AccelerationPolicyStatus | None = None


# --- NodeEnrolment ---------------------------------------------------------------


class EnrolledPod(Model):
    """One pod the node's agent must enrol."""

    namespace: str = Field(max_length=63)
    name: str = Field(max_length=253)
    uid: str = Field(max_length=36, description="resolved to the pod's network namespace by the agent")
    ips: list[IPv4] = Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"})
    shapes: list[Shape] = Field(min_length=1, max_length=2, json_schema_extra={"x-kubernetes-list-type": "set"})
    excludedPorts: list[PortRange] = Field(default_factory=list, max_length=64)


class NodeEnrolmentSpec(Model):
    """Written by the operator: the desired enrolment of one node."""

    pods: list[EnrolledPod] = Field(
        default_factory=list,
        max_length=1024,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
    )


class PodProblem(Model):
    pod: str = Field(max_length=320, description="namespace/name")
    reason: str = Field(max_length=64, description="machine-readable, e.g. NetnsNotFound")
    message: str = Field(default="", max_length=1024)


class NodeEnrolmentStatus(Model):
    """Written by the node's agent."""

    observedGeneration: Count = 0
    kernel: str = Field(default="", max_length=256)
    features: dict[str, bool] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 64},
        description="kernel feature probes and self-test checks (true: passed)",
    )
    datapathAttached: bool = False
    podsDesired: Count = 0
    podsEnrolled: Count = 0
    enrolledPods: list[str] = Field(
        default_factory=list, max_length=1024, description="namespace/name of every enrolled pod"
    )
    problems: list[PodProblem] = Field(default_factory=list, max_length=64, description="pods not enrolled, and why")
    counters: TrafficCounters = Field(default_factory=lambda: TrafficCounters())
    lastReconcileTime: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    conditions: Conditions


class NodeEnrolment(Model):
    kind: ClassVar[str] = "NodeEnrolment"
    plural: ClassVar[str] = "nodeenrolments"
    spec: NodeEnrolmentSpec = Field(default_factory=lambda: NodeEnrolmentSpec())
    status: NodeEnrolmentStatus | None = None


# --- NodeAgent -------------------------------------------------------------------


class ResourceList(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Model):
    requests: ResourceList = Field(default_factory=lambda: ResourceList(cpu="50m", memory="192Mi"))
    limits: ResourceList = Field(default_factory=lambda: ResourceList(memory="512Mi"))


class Toleration(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "value must be empty when operator is Exists",
                ".value",
            ),
            cel("has(self.key) || self.operator == 'Exists'", "an empty key requires operator Exists", ".operator"),
        )
    )

    key: LabelKey | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None


class MapSizes(Model):
    """Capacities of the node's BPF maps (entries); changing one replaces the datapath.

    The one source of these defaults: the agent compiles bpf/ with them
    (-D MA_*_ENTRIES), its flags default to them, and the CRD schema and the
    chart are generated from this model."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.pairs >= self.sockhash / 2",
                "pairs must be at least sockhash / 2 (one handshake in flight per connection)",
                ".pairs",
            )
        )
    )

    sockhash: int = Field(default=65536, ge=2, le=1048576, description="enrolled sockets (two per connection)")
    pairs: int = Field(default=65536, ge=1, le=1048576, description="handshakes in flight")
    netns: int = Field(default=4096, ge=1, le=65536, description="enrolled pods")
    endpoints: int = Field(default=16384, ge=1, le=262144, description="pod IPs")
    excludedPorts: int = Field(default=16384, ge=1, le=262144, description="excluded (namespace, port) pairs")


class FlowControl(Model):
    """How many redirected bytes may wait for a slow reader, per connection
    and direction. Past the bound the writer's bytes take the TCP stack, whose
    receive window makes it wait as plain TCP would; once the reader has
    caught up they are redirected again. The default is below what Linux's
    TCP buffers for one slow reader by default (net.ipv4.tcp_rmem max, 6 MiB)."""

    boundBytes: int = Field(
        default=4 << 20,
        ge=64 << 10,
        le=1 << 30,
        description="bytes redirected to one socket and not yet read before its writer takes the TCP stack",
    )


class LocalObjectReference(Model):
    name: str = Field(min_length=1, max_length=253)


class UpdateStrategy(Model):
    """The DaemonSet's rolling update: how many nodes may be without a ready
    agent at once (their accelerated connections keep working: the datapath
    stays pinned and the next agent adopts it)."""

    maxUnavailable: str = Field(
        default="10%", max_length=8, pattern=r"^([1-9][0-9]*|[1-9][0-9]?%|100%)$", description="a count or a percentage"
    )


class AgentPodSpec(Model):
    """Where and how the agent pods run: every NodeAgent field except the image."""

    resources: Resources = Field(
        default_factory=lambda: Resources(), description="the agent container's requests and limits"
    )
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(operator="Exists")],
        max_length=32,
        description="default: run on every node, tainted or not",
    )
    nodeSelector: dict[LabelKey, LabelValue] = Field(
        default_factory=lambda: {"kubernetes.io/os": "linux"},
        json_schema_extra={"maxProperties": 32},
        description="the nodes that run an agent (and so are accelerated)",
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict, description="the agent pods' affinity (core/v1 Affinity), as written"
    )
    priorityClassName: str = Field(
        default="system-node-critical",
        max_length=253,
        description="the agent controls the node's datapath: system-node-critical makes it the last pod evicted",
    )
    podAnnotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 64}, description="added to every agent pod"
    )
    updateStrategy: UpdateStrategy = Field(default_factory=lambda: UpdateStrategy())
    privileged: bool = Field(
        default=False,
        description="fallback for nodes where the agent's capabilities are not enough (a runtime that drops them, a "
        "kernel before 5.8 without CAP_BPF): runs the agent privileged, with every capability and no seccomp filter",
    )
    logLevel: Literal["debug", "info", "warning", "error"] = "info"
    metricsPort: Port = Field(default=9464, description="the agent's /metrics, /healthz and /readyz (pod network)")
    cgroupPath: str = Field(
        default="/sys/fs/cgroup",
        max_length=256,
        pattern=r"^/[^ ]*$",
        description="the nodes' cgroup filesystem: the cgroup2 root, or the directory holding it on hybrid hosts "
        "(the agent finds .../unified); the attach point, and where the kubelet's pod cgroups are",
    )
    mapSizes: MapSizes = Field(default_factory=lambda: MapSizes())
    flowControl: FlowControl = Field(default_factory=lambda: FlowControl())


PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class NodeAgentSpec(AgentPodSpec):
    """How the operator runs the node agent DaemonSet."""

    image: str = Field(default="docker.io/meshaccel/agent:0.1.0", min_length=1, max_length=512)
    imagePullPolicy: PullPolicy = "IfNotPresent"
    imagePullSecrets: list[LocalObjectReference] = Field(default_factory=list, max_length=16)


class NodeAgentStatus(Model):
    observedGeneration: Count = 0
    daemonSet: str = Field(default="", max_length=253)
    nodesDesired: Count = 0
    nodesReady: Count = 0
    conditions: Conditions


class NodeAgent(Model):
    kind: ClassVar[str] = "NodeAgent"
    plural: ClassVar[str] = "nodeagents"
    spec: NodeAgentSpec = Field(default_factory=lambda: NodeAgentSpec())
    status: NodeAgentStatus | None = None

"""CustomResourceDefinitions generated from the pydantic models.

The API server needs a *structural* OpenAPI v3 schema: every node has a type,
no $ref, no anyOf between types, no `title`. Pydantic emits JSON Schema with
$defs/$ref and `anyOf [X, null]` for optional fields, so this module inlines
references, drops the null branch (an absent field is how Kubernetes spells
"unset"), and turns pydantic's `propertyNames` (map keys) into a CEL rule,
because structural schemas cannot constrain map keys otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter

from meshaccel_api import v1alpha1 as api

CATEGORY = "meshaccel"


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    scope: str
    short_names: list[str]
    description: str
    columns: list[Column] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.model.kind)  # type: ignore[attr-defined]

    @property
    def plural(self) -> str:
        return str(self.model.plural)  # type: ignore[attr-defined]


def _ready(path: str = '.status.conditions[?(@.type=="Ready")]') -> list[Column]:
    return [
        Column("Ready", f"{path}.status", description="Ready condition"),
        Column("Reason", f"{path}.reason", description="why (not) ready", priority=1),
    ]


KINDS = [
    Kind(
        api.AccelerationPolicy,
        api.AccelerationPolicySpec,
        api.AccelerationPolicyStatus,
        scope="Cluster",
        short_names=["accpol"],
        description="Selects the pods whose same-node TCP traffic meshaccel accelerates.",
        columns=[
            Column("Enabled", ".spec.enabled", "boolean"),
            Column("Matched", ".status.matchedPods", "integer", "running pods selected"),
            Column("Accelerated", ".status.acceleratedPods", "integer", "selected pods enrolled by their agent"),
            Column("Nodes", ".status.nodes", "integer", "nodes with selected pods"),
            *_ready(),
            Column("Bytes", ".status.counters.bytesRedirected", "integer", "bytes redirected", priority=1),
            Column("Age", ".metadata.creationTimestamp", "date"),
        ],
    ),
    Kind(
        api.NodeEnrolment,
        api.NodeEnrolmentSpec,
        api.NodeEnrolmentStatus,
        scope="Cluster",
        short_names=["nodeenrol", "ne"],
        description="One per node: the pods its agent enrols (spec, by the operator) and what it did (status).",
        columns=[
            Column("Desired", ".status.podsDesired", "integer", "pods the operator asked for"),
            Column("Enrolled", ".status.podsEnrolled", "integer", "pods enrolled in the datapath"),
            Column("Sockets", ".status.counters.socketsEnrolled", "integer", "sockets in the redirect map"),
            Column("Attached", ".status.datapathAttached", "boolean", "datapath programs attached"),
            *_ready(),
            Column("Kernel", ".status.kernel", priority=1),
            Column("Redirected", ".status.counters.bytesRedirected", "integer", "bytes redirected", priority=1),
            Column("Reconciled", ".status.lastReconcileTime", "date", priority=1),
            Column("Age", ".metadata.creationTimestamp", "date"),
        ],
    ),
    Kind(
        api.NodeAgent,
        api.NodeAgentSpec,
        api.NodeAgentStatus,
        scope="Namespaced",
        short_names=["nodeagent"],
        description="How the operator runs the meshaccel node agent DaemonSet in this namespace.",
        columns=[
            Column("Image", ".spec.image"),
            Column("Desired", ".status.nodesDesired", "integer"),
            Column("Ready", ".status.nodesReady", "integer"),
            Column("Available", '.status.conditions[?(@.type=="Available")].status'),
            Column("Age", ".metadata.creationTimestamp", "date"),
        ],
    ),
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            del rest["default"]
        return _structural({**branches[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs", "propertyNames") or (key == "additionalProperties" and value is False):
            continue  # no titles; unknown fields are pruned by the API server anyway
        if key == "patternProperties":
            # dict[LabelKey, V]: a structural schema has no key patterns,
            # so the values' schema becomes additionalProperties and the key
            # pattern a CEL rule.
            ((pattern, values),) = value.items()
            out["additionalProperties"] = _structural(values, defs)
            out.setdefault("x-kubernetes-validations", []).append(
                {"rule": f"self.all(k, k.matches(r'{pattern}'))", "message": "keys must be valid label keys"}
            )
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        out[key] = _structural(value, defs) if key != "default" else value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "x-kubernetes-validations" in out:
        # Validations of a subtree come before its children's for readability.
        out["x-kubernetes-validations"] = out.pop("x-kubernetes-validations")
    return out


def _add_factory_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Pydantic leaves default_factory values out of the JSON schema; the API
    server should apply them, so they are computed and written in here."""
    for name, info in model.model_fields.items():
        if info.default_factory is None:
            continue
        factory: Any = info.default_factory
        value = TypeAdapter(info.annotation).dump_python(factory(), mode="json", exclude_none=True)  # type: ignore[arg-type]
        schema["properties"][info.alias or name]["default"] = value


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    _add_factory_defaults(raw, model)
    for name, sub in defs.items():
        candidate = getattr(api, name, None)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            _add_factory_defaults(sub, candidate)
    schema = _structural(raw, defs)
    assert isinstance(schema, dict)
    return schema


def crd(kind: Kind) -> dict[str, Any]:
    group_schema: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            # The whole default spec, not {}: CEL rules are checked against
            # the default itself, before nested defaults would fill it in.
            "spec": {**schema_of(kind.spec), "default": kind.spec().model_dump(mode="json", exclude_none=True)},
            "status": schema_of(kind.status),
        },
    }
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "jsonPath": c.json_path,
            **({"description": c.description} if c.description else {}),
            **({"priority": c.priority} if c.priority else {}),
        }
        for c in kind.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{api.GROUP}", "labels": {"app.kubernetes.io/part-of": "meshaccel"}},
        "spec": {
            "group": api.GROUP,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": kind.short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": group_schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }

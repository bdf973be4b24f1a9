"""The Kubernetes objects meshaccel installs: the agent DaemonSet (rendered by
the operator from a NodeAgent) and the RBAC of both components (rendered into
manifests/rbac.yaml by `python -m meshaccel_operator.manifests`)."""

from __future__ import annotations

from typing import Any

from meshaccel_api.agent_settings import AgentSettings, to_args
from meshaccel_api.v1alpha1 import API_VERSION, GROUP, NodeAgentSpec
from meshaccel_operator.settings import OperatorSettings
from meshaccel_operator.settings import to_args as settings_args

NAMESPACE = "meshaccel-system"
OPERATOR_SA = "meshaccel-operator"
AGENT_SA = "meshaccel-agent"
MANAGED_BY = "meshaccel-operator"
HOST_CGROUP = "/host/sys/fs/cgroup"
PART_OF = {"app.kubernetes.io/part-of": "meshaccel"}
#: Set on pods by the kubelet for tokens bound to a pod (KEP-4193, beta and on
#: by default since Kubernetes 1.30): names the node the pod runs on.
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"

# Why the agent needs each capability (instead of privileged: true):
AGENT_CAPABILITIES = {
    "BPF": "load programs, create and pin maps",
    "NET_ADMIN": "attach sock_ops/sk_msg programs and update sockhash maps",
    "SYS_ADMIN": "attach to the root cgroup, query attached programs, setns() into pod netns",
    "PERFMON": "BCC's program loading checks (kernel pointers in verifier logs)",
    "SYS_PTRACE": "open /proc/PID/ns/net of pod processes owned by other users",
}


def agent_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "meshaccel-agent", "app.kubernetes.io/instance": name}


def agent_settings(name: str, spec: NodeAgentSpec) -> AgentSettings:
    """What every agent of the NodeAgent @name runs with (node name and
    namespace come from the pod, through the downward API)."""
    return AgentSettings(
        mode="kubernetes",
        daemonset=name,
        log_level=spec.logLevel,
        metrics_address=f"0.0.0.0:{spec.metricsPort}",
        map_sizes=spec.mapSizes,
        flow_control=spec.flowControl,
        # The host's cgroup2 tree, not the container's (cgroup namespace).
        cgroup=HOST_CGROUP,
        pod_cgroup_root=HOST_CGROUP,
    )


def daemonset(name: str, namespace: str, spec: NodeAgentSpec, owner_uid: str | None = None) -> dict[str, Any]:
    """The agent DaemonSet for the NodeAgent @name."""
    labels = agent_labels(name)
    args = to_args(agent_settings(name, spec))

    def host(vol: str, path: str, kind: str = "Directory") -> dict[str, Any]:
        return {"name": vol, "hostPath": {"path": path, "type": kind}}

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, **PART_OF, "app.kubernetes.io/managed-by": MANAGED_BY},
    }
    if owner_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "NodeAgent", "name": name, "uid": owner_uid, "controller": True}
        ]
    resources = spec.resources.model_dump(exclude_none=True)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": AGENT_SA,
                    # The agent must see pod processes (netns resolution via
                    # /proc/PID/ns/net) but not share the host network.
                    "hostPID": True,
                    "priorityClassName": "system-node-critical",
                    "terminationGracePeriodSeconds": 30,
                    "nodeSelector": dict(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                    "containers": [
                        {
                            "name": "agent",
                            "image": spec.image,
                            "imagePullPolicy": spec.imagePullPolicy,
                            "command": ["meshaccel-agent"],
                            "args": args,
                            "env": [
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                },
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                # Finds the agent's own cgroup inside a private
                                # cgroup namespace (kernel/cgroups.own_cgroup).
                                {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                            ],
                            "ports": [{"name": "metrics", "containerPort": spec.metricsPort}],
                            "resources": resources,
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10},
                            # Ready once bring-up has settled: accelerating, or
                            # degraded and failing open (a node whose kernel
                            # cannot accelerate must not stall a rollout; the
                            # Degraded condition and an Event say why).
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz?allow=degraded", "port": "metrics"},
                                "periodSeconds": 5,
                            },
                            "securityContext": {
                                "privileged": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"], "add": sorted(AGENT_CAPABILITIES)},
                            },
                            "volumeMounts": [
                                # Pins must outlive the pod: they go to the
                                # node's bpffs (systemd mounts it at boot). The
                                # agent never mounts one of its own, which would
                                # die with the pod: without it, NoBPFFS. No
                                # mount propagation: it needs a shared or slave
                                # host mount, which hosts without systemd lack,
                                # and the bpffs is there before the pod starts.
                                {"name": "bpffs", "mountPath": "/sys/fs/bpf"},
                                # Writable for one thing: the self-test runs in a
                                # private child cgroup before anything attaches
                                # to the root.
                                {"name": "cgroup", "mountPath": HOST_CGROUP},
                                {"name": "modules", "mountPath": "/lib/modules", "readOnly": True},
                                # The node's headers, where /lib/modules/*/build
                                # points; the image's own generic ones are
                                # elsewhere (MESHACCEL_HEADERS_DIR).
                                {"name": "headers", "mountPath": "/usr/src", "readOnly": True},
                                {"name": "cache", "mountPath": "/var/cache/meshaccel"},
                            ],
                        }
                    ],
                    "volumes": [
                        host("bpffs", "/sys/fs/bpf"),
                        host("cgroup", spec.cgroupPath),
                        host("modules", "/lib/modules", "DirectoryOrCreate"),
                        host("headers", "/usr/src", "DirectoryOrCreate"),
                        {"name": "cache", "emptyDir": {}},
                    ],
                },
            },
        },
    }


#: The operator's settings in its Deployment (probes and ports below match).
OPERATOR_SETTINGS = OperatorSettings(metrics_address="0.0.0.0:9465", liveness_address="0.0.0.0:8080")


def operator_deployment(
    image: str = "docker.io/meshaccel/operator:0.1.0", namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The operator: one replica (a Lease guards against a second during a
    rollout), restricted pod security, kopf's liveness probe."""
    labels = {"app.kubernetes.io/name": "meshaccel-operator"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "meshaccel-operator", "namespace": namespace, "labels": {**labels, **PART_OF}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": OPERATOR_SA,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "operator",
                            "image": image,
                            "command": ["meshaccel-operator"],
                            "args": settings_args(OPERATOR_SETTINGS),
                            "env": [
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                }
                            ],
                            "ports": [
                                {"name": "metrics", "containerPort": 9465},
                                {"name": "health", "containerPort": 8080},
                            ],
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10},
                            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def default_agent_documents(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """What a default install runs: the NodeAgent (every node, every taint)
    and the default AccelerationPolicy (sidecar pods in namespaces labelled
    meshaccel.io/accelerate=enabled). The chart's values.yaml says the same."""
    spec = NodeAgentSpec()
    agent = {
        "apiVersion": API_VERSION,
        "kind": "NodeAgent",
        "metadata": {"name": "meshaccel-agent", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "image": spec.image,
            "logLevel": spec.logLevel,
            "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
            "nodeSelector": dict(spec.nodeSelector),
            "cgroupPath": spec.cgroupPath,
        },
    }
    policy = {
        "apiVersion": API_VERSION,
        "kind": "AccelerationPolicy",
        "metadata": {"name": "default", "labels": dict(PART_OF)},
        "spec": {},
    }
    return [agent, policy]


def uninstall_job(image: str = "docker.io/meshaccel/operator:0.1.0", namespace: str = NAMESPACE) -> dict[str, Any]:
    """Helm's pre-delete hook: `meshaccel-operator uninstall` runs while the
    agents' DaemonSet, RBAC and the operator still exist (uninstall.py)."""
    labels = {"app.kubernetes.io/name": "meshaccel-uninstall", **PART_OF}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "meshaccel-uninstall",
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "helm.sh/hook": "pre-delete",
                "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
            },
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": OPERATOR_SA,
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "uninstall",
                            "image": image,
                            "command": ["meshaccel-operator", "uninstall"],
                            "env": [
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                }
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _binding(kind: str, name: str, sa: str, namespace: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(PART_OF)}
    if kind == "RoleBinding":
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role" if kind == "RoleBinding" else "ClusterRole",
            "name": name,
        },
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    }


def rbac_documents(
    namespace: str = NAMESPACE, agent_daemonset: str = "meshaccel-agent", with_namespace: bool = True
) -> list[dict[str, Any]]:
    """Service accounts, roles and bindings of the operator and the agent, and
    the admission policy that confines each agent to its own node's status.

    RBAC cannot say "only the object named after your node": every agent
    shares one service account. Reads of NodeEnrolments are granted to all
    agents (they hold pod names and IPs, which any pod reader sees anyway);
    writes are narrowed by a ValidatingAdmissionPolicy that compares the
    object's name with the node name the API server puts into a pod-bound
    service-account token."""
    role = "rbac.authorization.k8s.io/v1"
    ar = "admissionregistration.k8s.io/v1"
    sa = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": n, "namespace": namespace, "labels": dict(PART_OF)},
        }
        for n in (OPERATOR_SA, AGENT_SA)
    ]
    operator_cluster = {
        "apiVersion": role,
        "kind": "ClusterRole",
        "metadata": {"name": OPERATOR_SA, "labels": dict(PART_OF)},
        "rules": [
            _rule([""], ["pods", "namespaces"], ["get", "list", "watch"]),
            _rule([GROUP], ["accelerationpolicies", "nodeenrolments", "nodeagents"], ["get", "list", "watch"]),
            _rule([GROUP], ["nodeenrolments"], ["create", "patch", "update", "delete"]),
            _rule([GROUP], ["accelerationpolicies/status", "nodeagents/status"], ["patch", "update"]),
            # kopf keeps its last-handled state on NodeAgents; `uninstall`
            # (the pre-delete hook) deletes them.
            _rule([GROUP], ["nodeagents"], ["patch", "update", "delete"]),
            # kopf discovers the API and posts events about its handlers.
            _rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
            _rule(["", "events.k8s.io"], ["events"], ["create"]),
        ],
    }
    operator_ns = {
        "apiVersion": role,
        "kind": "Role",
        "metadata": {"name": OPERATOR_SA, "namespace": namespace, "labels": dict(PART_OF)},
        "rules": [
            _rule(["apps"], ["daemonsets"], ["get", "create", "patch", "update", "delete"]),
            # `uninstall` stops the operator before deleting NodeEnrolments.
            _rule(["apps"], ["deployments/scale"], ["patch"], [OPERATOR_SA]),
            _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "update"]),
        ],
    }
    agent_cluster = {
        "apiVersion": role,
        "kind": "ClusterRole",
        "metadata": {"name": AGENT_SA, "labels": dict(PART_OF)},
        "rules": [
            _rule([GROUP], ["nodeenrolments"], ["get", "list", "watch"]),
            _rule([GROUP], ["nodeenrolments/status"], ["get", "patch", "update"]),
        ],
    }
    agent_ns = {
        "apiVersion": role,
        "kind": "Role",
        "metadata": {"name": AGENT_SA, "namespace": namespace, "labels": dict(PART_OF)},
        "rules": [
            # At shutdown: restart (DaemonSet still there) or uninstall (gone)?
            _rule(["apps"], ["daemonsets"], ["get"], [agent_daemonset]),
            # A Warning Event on its own pod when the node stays on kernel TCP.
            _rule([""], ["events"], ["create"]),
        ],
    }
    agent_user = f"system:serviceaccount:{namespace}:{AGENT_SA}"
    own_node_only = {
        "apiVersion": ar,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "meshaccel-agent-own-node", "labels": dict(PART_OF)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": ["nodeenrolments", "nodeenrolments/status"],
                    }
                ]
            },
            "matchConditions": [
                {"name": "is-node-agent", "expression": f"request.userInfo.username == '{agent_user}'"}
            ],
            "validations": [
                {
                    "expression": (
                        f"'{NODE_NAME_EXTRA}' in request.userInfo.extra && "
                        f"request.name == request.userInfo.extra['{NODE_NAME_EXTRA}'][0]"
                    ),
                    "messageExpression": (
                        "'the meshaccel agent may write only its own node\\'s NodeEnrolment, not ' + request.name"
                    ),
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": ar,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "meshaccel-agent-own-node", "labels": dict(PART_OF)},
        "spec": {"policyName": "meshaccel-agent-own-node", "validationActions": ["Deny"]},
    }
    namespace_doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        # The agent needs host access (hostPID, capabilities, hostPath bpffs).
        "metadata": {"name": namespace, "labels": {**PART_OF, "pod-security.kubernetes.io/enforce": "privileged"}},
    }
    return [
        *([namespace_doc] if with_namespace else []),
        *sa,
        operator_cluster,
        _binding("ClusterRoleBinding", OPERATOR_SA, OPERATOR_SA, namespace),
        operator_ns,
        _binding("RoleBinding", OPERATOR_SA, OPERATOR_SA, namespace),
        agent_cluster,
        _binding("ClusterRoleBinding", AGENT_SA, AGENT_SA, namespace),
        agent_ns,
        _binding("RoleBinding", AGENT_SA, AGENT_SA, namespace),
        own_node_only,
        binding,
    ]

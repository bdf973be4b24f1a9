"""The agent DaemonSet the operator renders from a NodeAgent.

Everything else meshaccel installs (RBAC, the operator, its Services and
monitors) is in the Helm chart's templates, and manifests/ is rendered from
the chart (`make generate`)."""

from __future__ import annotations

from typing import Any

from meshaccel_api.agent_settings import AgentSettings, to_args
from meshaccel_api.v1alpha1 import API_VERSION, NodeAgentSpec

NAMESPACE = "meshaccel-system"
OPERATOR_SA = "meshaccel-operator"
AGENT_SA = "meshaccel-agent"
MANAGED_BY = "meshaccel-operator"
HOST_CGROUP = "/host/sys/fs/cgroup"
PART_OF = {"app.kubernetes.io/part-of": "meshaccel"}

# Why the agent needs each capability (instead of privileged: true, which
# NodeAgent.spec.privileged keeps as a fallback). The container runtime's
# default seccomp profile allows bpf(), perf_event_open() and setns() to a
# process holding these capabilities, so the agent keeps it.
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
    unavailable = spec.updateStrategy.maxUnavailable
    security: dict[str, Any] = (
        {"privileged": True}
        if spec.privileged
        else {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": sorted(AGENT_CAPABILITIES)},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )
    pod_meta: dict[str, Any] = {"labels": labels}
    if spec.podAnnotations:
        pod_meta["annotations"] = dict(spec.podAnnotations)
    pod_extra: dict[str, Any] = {}
    if spec.affinity:
        pod_extra["affinity"] = spec.affinity
    if spec.imagePullSecrets:
        pod_extra["imagePullSecrets"] = [s.model_dump() for s in spec.imagePullSecrets]
    if spec.priorityClassName:
        pod_extra["priorityClassName"] = spec.priorityClassName
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": int(unavailable) if unavailable.isdigit() else unavailable},
            },
            "template": {
                "metadata": pod_meta,
                "spec": {
                    "serviceAccountName": AGENT_SA,
                    # The agent must see pod processes (netns resolution via
                    # /proc/PID/ns/net) but not share the host network.
                    "hostPID": True,
                    **pod_extra,
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
                            "securityContext": {**security, "readOnlyRootFilesystem": True},
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

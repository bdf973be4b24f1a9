"""`meshaccel-agent MODE [flags]`: settings in, one mode runs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from meshaccel_api.agent_settings import AgentSettings, parse


def _cleanup(settings: AgentSettings, cgroup: str) -> int:
    from meshaccel_agent.datapath.uninstall import cleanup

    report = cleanup(settings.bpffs, cgroup, settings.wait)
    if report.nothing_installed:
        print("meshaccel: nothing installed, nothing to clean up")
        return 0
    if report.live_sockets:
        print(
            f"meshaccel: detached; {report.moved_to_tcp} connection socket(s) moved to TCP, "
            f"{report.live_sockets} wait for their reader to read what was redirected to them "
            "(their maps stay pinned): run cleanup again later"
        )
        return 3
    print(
        f"meshaccel: detached {report.detached} program(s), moved {report.moved_to_tcp} socket(s) to TCP, "
        f"unpinned {report.unpinned} generation(s)"
    )
    return 0


def run(settings: AgentSettings) -> int:
    from meshaccel_agent.datapath.datapath import Datapath
    from meshaccel_agent.kernel.compile import BuildOptions
    from meshaccel_agent.kernel.host import ensure_bpffs, find_cgroup2, resolve_cgroup2

    try:
        cgroup = resolve_cgroup2(settings.cgroup) if settings.cgroup else find_cgroup2()
    except RuntimeError as exc:
        logging.getLogger("meshaccel_agent").error("%s", exc)
        cgroup = settings.cgroup or "/nonexistent-cgroup2"  # the agent starts degraded (NoCgroup2) and says why
    if settings.mode == "cleanup":
        return _cleanup(settings, cgroup)
    if settings.mode == "standalone":
        ensure_bpffs(settings.bpffs)  # in a pod, the node's bpffs comes in by hostPath (or NoBPFFS)
    options = BuildOptions(sizes=settings.map_sizes, extra_defines=settings.parsed_defines())
    datapath = Datapath(settings.bpffs, cgroup, settings.cache_dir, options, settings.flow_control.boundBytes)
    if settings.mode == "kubernetes":
        from meshaccel_agent.kubernetes.agent import KubernetesAgent
        from meshaccel_api.kube import api_client

        # Pod cgroups live in a cgroup2 tree too (the kubelet's, usually the
        # one the programs attach to).
        pod_root = cgroup
        if settings.pod_cgroup_root != settings.cgroup:
            try:
                pod_root = resolve_cgroup2(settings.pod_cgroup_root)
            except RuntimeError as exc:
                logging.getLogger("meshaccel_agent").error("pod cgroups: %s", exc)
                pod_root = settings.pod_cgroup_root
        KubernetesAgent(datapath, api_client(settings.kubeconfig), settings, Path(pod_root)).run()
        return 0
    from meshaccel_agent.standalone.agent import StandaloneAgent

    assert settings.config is not None  # parse() insists
    StandaloneAgent(datapath, settings, settings.config).run()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "meshaccel-agent") -> int:
    settings = parse(argv, prog)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())

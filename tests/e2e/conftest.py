"""The `e2e` tier: meshaccel installed the way users install it, on a real
node (kubelet, containerd, kube-proxy, CNI), checked from the outside.

Without MESHACCEL_E2E_KUBECONFIG the session brings the local cluster up
(e2e/up: this host's processes), loads the images `make images` built, and
takes the cluster down at the end, failing if the host is not as it was.
With it (e.g. a kind cluster: see e2e/README.md) the suite runs against that
cluster and leaves it running.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from tests.e2e.cluster import Cluster, Node, cluster_from_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, the cluster's side of the story in the report: pods
    and the last lines of the agent's and operator's logs."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and call.when == "call" and isinstance(cluster, Cluster):
        out = [cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False)]
        for selector in ("app.kubernetes.io/name=meshaccel-agent", "app.kubernetes.io/name=meshaccel-operator"):
            out.append(cluster.kubectl("logs", "-n", "meshaccel-system", "-l", selector, "--tail=40",
                                       "--all-containers", check=False))  # fmt: skip
        report.sections.append(("cluster", "\n".join(out)))
    return report


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    given = cluster_from_env()
    if given is not None:
        yield given
        return
    if os.geteuid() != 0:
        pytest.fail("the local e2e cluster runs host processes: run as root (make test)", pytrace=False)
    from meshaccel_e2e import cluster as local
    from meshaccel_e2e.images import load_local
    from meshaccel_e2e.layout import ADMIN_KUBECONFIG

    brought_up = not local.is_up()
    local.up()
    try:
        load_local()
        yield Cluster(ADMIN_KUBECONFIG, Node())
    finally:
        if brought_up:
            left = local.down()
            assert not left, f"e2e/down left the host changed: {left}"

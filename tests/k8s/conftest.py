"""Fixtures for the `k8s` tier: one real kube-apiserver + etcd per session.

The binaries are built once by scripts/build-k8s.sh (scripts/setup.sh runs
it); a missing binary fails the tier rather than skipping it, so a broken
set-up cannot pass as green.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from meshaccel_lab.kube import DEFAULT_BIN_DIR, KubeAPI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/k8s/" in str(item.fspath):
            item.add_marker(pytest.mark.k8s)
            # The kubeconfigs skip TLS verification (self-signed serving cert).
            item.add_marker(pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"))


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeAPI]:
    missing = [b for b in ("etcd", "kube-apiserver") if not (DEFAULT_BIN_DIR / b).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in {DEFAULT_BIN_DIR}: run scripts/build-k8s.sh", pytrace=False)
    with KubeAPI() as api:
        yield api


@pytest.fixture
def namespace(kube: KubeAPI) -> str:
    """A fresh namespace (with its default ServiceAccount) per test."""
    name = "t-" + secrets.token_hex(3)
    kube.ensure_namespace(name)
    return name

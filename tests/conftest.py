"""Session-wide: the test run leaves the host's mounts as it found them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from meshaccel_lab.hostmounts import HostMounts


@pytest.fixture(scope="session", autouse=True)
def host_mounts_as_found() -> Iterator[None]:
    if os.geteuid() != 0:
        yield  # unprivileged unit runs mount nothing
        return
    before = HostMounts.record()
    yield
    kept = before.restore()
    if kept:
        pytest.fail(f"the test session left mounts in use: {'; '.join(kept)}")

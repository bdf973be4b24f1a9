"""Put the project's images onto the node: the archives `make images` builds
(cached), imported into the local cluster's containerd, or into a kind node."""

from __future__ import annotations

import subprocess
from pathlib import Path

from meshaccel_e2e.layout import CONTAINERD_SOCK
from meshaccel_e2e.pause import ctr_import
from meshaccel_images.build import IMAGES, Built, build


def build_all() -> list[Built]:
    return [build(name) for name in IMAGES]


def load_local() -> list[Built]:
    built = build_all()
    for image in built:
        ctr_import(Path(image.path))
    return built


def tag_local(source: str, target: str) -> None:
    """A second name for an image already on the local node (no pull, no copy)."""
    subprocess.run(["ctr", "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", "images", "tag", "--force", source, target],
                   check=True, capture_output=True)  # fmt: skip

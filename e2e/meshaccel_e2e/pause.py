"""The pod sandbox image, from the pause binary scripts/build-k8s.sh compiles
(build/pause/linux/pause.c of the kubernetes module): one layer, one file.
Imported under the name containerd's sandbox_image names, so the CRI plugin
finds it and never tries to pull."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from meshaccel_e2e.layout import BIN, CONTAINERD_SOCK, PAUSE_IMAGE
from meshaccel_images.archive import layer_tar, write_archive
from meshaccel_images.dockerfile import Recipe


def import_pause() -> None:
    work = Path(tempfile.mkdtemp(prefix="meshaccel-pause-"))
    try:
        root = work / "rootfs"
        root.mkdir()
        shutil.copy2(BIN / "pause", root / "pause")
        layer = work / "layer.tar"
        diff_id = layer_tar(root, layer)
        archive = work / "pause.tar"
        write_archive(archive, [PAUSE_IMAGE], Recipe(base="scratch", entrypoint=["/pause"], user="65535:65535"),
                      layer, diff_id)  # fmt: skip
        ctr_import(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ctr_import(archive: Path) -> None:
    res = subprocess.run(["ctr", "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", "images", "import", str(archive)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"ctr images import {archive.name}: {res.stderr.strip()}")

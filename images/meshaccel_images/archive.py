"""Write an image as a `docker save` archive: what `ctr images import`,
`docker load` and `kind load image-archive` read.

The archive is a plain tar: manifest.json (tags -> config, layers), the
config JSON (the image's Env, Entrypoint, User, ... and the layers' diff
IDs) and each layer as an uncompressed tar. One layer here: the whole root
filesystem, made with GNU tar so owners, modes, hard links and extended
attributes (file capabilities) come through as dpkg set them.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

from meshaccel_images.dockerfile import Recipe

#: Never part of an image layer: the runtime provides them.
LAYER_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def layer_tar(root: Path, out: Path) -> str:
    """Tar @root into @out; returns the layer's sha256 (its diff ID)."""
    cmd = ["tar", "-C", str(root), "--numeric-owner", "--xattrs", "--xattrs-include=security.capability",
           "--sort=name", *(f"--exclude={e}" for e in LAYER_EXCLUDES), "-cf", str(out), "."]  # fmt: skip
    subprocess.run(cmd, check=True)
    return _sha256(out)


def image_config(recipe: Recipe, diff_id: str, created: str) -> dict[str, object]:
    env = [f"{k}={v}" for k, v in recipe.env.items()]
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    config: dict[str, object] = {"Env": env, "WorkingDir": recipe.workdir}
    if recipe.user:
        config["User"] = recipe.user
    if recipe.entrypoint:
        config["Entrypoint"] = recipe.entrypoint
    if recipe.cmd:
        config["Cmd"] = recipe.cmd
    if recipe.labels:
        config["Labels"] = recipe.labels
    if recipe.exposed:
        config["ExposedPorts"] = {p: {} for p in recipe.exposed}
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "meshaccel-images (offline Dockerfile build)"}],
    }


def write_archive(out: Path, tags: list[str], recipe: Recipe, layer: Path, diff_id: str) -> str:
    """The docker-save archive of one image; returns the image ID (config sha256)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = json.dumps(image_config(recipe, diff_id, created), sort_keys=True).encode()
    image_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": tags, "Layers": [f"{diff_id}/layer.tar"]}])
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        _add_bytes(tar, f"{image_id}.json", config)
        tar.add(layer, arcname=f"{diff_id}/layer.tar")
        _add_bytes(tar, "manifest.json", manifest.encode())
    tmp.rename(out)
    return image_id


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))

"""`make images`: the project's images, built offline, cached by their inputs.

    python -m meshaccel_images build [NAME ...] [--cache-dir DIR]

Each image is its Dockerfile run by this builder (rootfs.py) from the
repository root as build context, written as a docker-save archive
(archive.py) to CACHE/images/NAME-KEY.tar. KEY hashes everything the image is
made of: the Dockerfile, every file its COPY steps take, the base image's
recipe and this builder's own code; an archive whose KEY exists is reused, so
a second run costs nothing and any change rebuilds exactly what it touches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meshaccel_images import archive, rootfs
from meshaccel_images.dockerfile import Recipe, parse

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path("/var/cache/meshaccel")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str  # relative to the repository root, which is the context
    repository: str


#: Fully qualified names: a runtime never guesses a registry for them, and
#: with the image present a pull policy of IfNotPresent never pulls.
IMAGES = {
    spec.name: spec
    for spec in (
        ImageSpec("agent", "Dockerfile.agent", "docker.io/meshaccel/agent"),
        ImageSpec("operator", "Dockerfile.operator", "docker.io/meshaccel/operator"),
        ImageSpec("e2e-workload", "e2e/workload/Dockerfile", "docker.io/meshaccel/e2e-workload"),
    )
}


def version() -> str:
    """The images' tag: the chart's appVersion (one release, one version)."""
    text = (REPO / "charts/meshaccel/Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', text, re.M)
    if not match:
        raise RuntimeError("charts/meshaccel/Chart.yaml has no appVersion")
    return match.group(1)


def reference(name: str) -> str:
    return f"{IMAGES[name].repository}:{version()}"


@dataclass(frozen=True)
class Built:
    name: str
    reference: str
    path: str
    image_id: str
    size_bytes: int  # the uncompressed layer: what the image occupies on a node
    seconds: float
    cached: bool


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part in rootfs.ignored("", [part]) for part in p.relative_to(path).parts):
            out.append(p)
    return out


def input_key(spec: ImageSpec, recipe: Recipe, text: str) -> str:
    digest = hashlib.sha256()
    digest.update(rootfs.base_key().encode())
    for own in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(own.read_bytes())
    digest.update(text.encode())
    for step in recipe.steps:
        for source in step.sources:
            for f in _files(REPO / source):
                digest.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def base_tar(cache: Path) -> Path:
    path = cache / "images" / f"base-{rootfs.SUITE}-{rootfs.base_key()}.tar"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"images: building the {rootfs.SUITE} base with mmdebstrap", flush=True)
        rootfs.build_base(path)
    return path


def build(name: str, cache: Path = DEFAULT_CACHE) -> Built:
    spec = IMAGES[name]
    text = (REPO / spec.dockerfile).read_text()
    recipe = parse(text, spec.dockerfile)
    if recipe.base not in rootfs.BASES:
        raise rootfs.BuildError(
            f"{spec.dockerfile}: FROM {recipe.base}: the offline builder provides only {sorted(rootfs.BASES)}"
        )
    key = input_key(spec, recipe, text)
    out = cache / "images" / f"{name}-{key}.tar"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists():
        return Built(**{**json.loads(meta.read_text()), "cached": True})
    started = time.monotonic()
    base = base_tar(cache)
    print(f"images: building {name} from {spec.dockerfile}", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"meshaccel-image-{name}-", dir="/var/tmp"))
    try:
        root = work / "rootfs"
        rootfs.unpack(base, root)
        rootfs.apply(recipe, root, REPO, work / "build.log")
        layer = work / "layer.tar"
        diff_id = archive.layer_tar(root, layer)
        image_id = archive.write_archive(out, [reference(name)], recipe, layer, diff_id)
        built = Built(name, reference(name), str(out), image_id, layer.stat().st_size,
                      round(time.monotonic() - started, 1), False)  # fmt: skip
    except BaseException:
        log = work / "build.log"
        if log.exists():
            kept = cache / "images" / f"{name}-failed.log"
            shutil.copyfile(log, kept)
            print(f"images: {name} failed; its build log is {kept}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in out.parent.glob(f"{name}-*.tar"):
        if stale != out:  # an older build of the same image
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)
    meta.write_text(json.dumps({k: v for k, v in asdict(built).items() if k != "cached"}))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshaccel-images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build (or reuse) images and print their archives")
    cmd.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(IMAGES)} (default: all)")
    cmd.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    cmd.add_argument("--json", action="store_true", help="one JSON object per image instead of a table")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in IMAGES]
    if unknown:
        parser.error(f"unknown image {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    try:
        results = [build(name, args.cache_dir) for name in (args.names or list(IMAGES))]
    except (rootfs.BuildError, ValueError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for r in results:
        if args.json:
            print(json.dumps(asdict(r)))
        else:
            how = "cached" if r.cached else f"built in {r.seconds:.0f} s"
            print(f"{r.reference:45} {r.size_bytes / 2**20:7.1f} MiB  {how:16} {r.path}")
    return 0

"""A root filesystem built the way `docker build` would: a Debian base, then
each RUN in a chroot of it and each COPY into it.

The base stands in for `debian:bookworm-slim`: mmdebstrap's minbase variant
(apt, no recommends) with the same dpkg path excludes the slim image uses
(no docs, man pages or locales), from the host's Debian mirror.

A RUN step runs in a private mount namespace (unshare), where /proc and /dev
are mounted for package scripts: when the step ends, or is killed, its mounts
end with it and nothing is left mounted on the host. The build may reach the
network as the host does: the host's resolv.conf is copied in for the build
and its CA bundle is offered to pip (PIP_CERT) as build-time settings, the
way Docker passes proxy settings to RUN; neither ends up in the image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from meshaccel_images.dockerfile import Recipe, Step

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
#: What debian:bookworm-slim leaves out (its /etc/dpkg/dpkg.cfg.d/docker).
SLIM_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
#: Base images this builder can provide (the Dockerfiles' default BASE_IMAGE).
BASES = {"debian:bookworm-slim"}
#: Host settings a RUN step may use to reach package indexes (never stored).
BUILD_ENV = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_INDEX_URL", "http_proxy", "https_proxy", "no_proxy")
CA_IN_BUILD = "/run/meshaccel-build/ca-certificates.crt"
PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(RuntimeError):
    pass


def base_key() -> str:
    recipe = Path(__file__).read_text()  # the mmdebstrap command line is in here
    return hashlib.sha256("\n".join((SUITE, *MIRRORS, *SLIM_EXCLUDES, recipe)).encode()).hexdigest()[:16]


def build_base(out: Path) -> None:
    """The slim-equivalent base as a tar (cached by the caller)."""
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is missing (apt-get install mmdebstrap; scripts/setup.sh installs it)")
    tmp = out.with_suffix(".partial")
    cmd = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=tar",
        "--quiet",
        *(f"--dpkgopt={opt}" for opt in SLIM_EXCLUDES),
        # Like the slim image: installing a package never drags in its
        # recommends, and apt keeps no binary package caches (80 MB).
        "--aptopt=APT::Install-Recommends false",
        '--aptopt=Dir::Cache::pkgcache ""',
        '--aptopt=Dir::Cache::srcpkgcache ""',
        # apt lists are not part of an image; RUN steps run apt-get update.
        "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*.bin",
        SUITE,
        str(tmp),
        *MIRRORS,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"mmdebstrap failed ({res.returncode}):\n{res.stderr[-3000:]}")
    tmp.rename(out)


def unpack(base_tar: Path, root: Path) -> None:
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xpf", str(base_tar), "-C", str(root), "--numeric-owner"], check=True)


def apply(recipe: Recipe, root: Path, context: Path, log: Path) -> None:
    """Every step of @recipe, in order, onto the unpacked base at @root."""
    env = {"PATH": PATH_DEFAULT, "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    _prepare(root)
    try:
        workdir = "/"
        for step in recipe.steps:
            if step.kind == "WORKDIR":
                workdir = step.dest
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif step.kind == "COPY":
                _copy(step, context, root, workdir)
            elif step.kind == "ENV":
                env.update(step.env)
            else:
                _run(step, root, workdir, env, log)
    finally:
        _unprepare(root)


def _prepare(root: Path) -> None:
    # Package scripts must not start services inside the build (invoke-rc.d).
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    (root / CA_IN_BUILD.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)


def _unprepare(root: Path) -> None:
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")  # the runtime mounts its own
    shutil.rmtree((root / CA_IN_BUILD.lstrip("/")).parent, ignore_errors=True)
    for cache in ("var/lib/apt/lists", "var/cache/apt/archives", "root/.cache"):
        path = root / cache
        if path.is_dir():
            for child in path.iterdir():
                if child.is_dir() and child.name != "partial":
                    shutil.rmtree(child, ignore_errors=True)
                elif child.is_file():
                    child.unlink()


def _copy(step: Step, context: Path, root: Path, workdir: str) -> None:
    dest = step.dest if step.dest.startswith("/") else f"{workdir.rstrip('/')}/{step.dest}"
    target = root / dest.lstrip("/")
    for source in step.sources:
        src = (context / source).resolve()
        if context.resolve() not in (src, *src.parents):
            raise BuildError(f"COPY {source}: outside the build context {context}")
        if not src.exists():
            raise BuildError(f"COPY {source}: no such file in {context}")
        if src.is_dir():
            # Docker copies a directory's contents into DEST.
            shutil.copytree(src, target, dirs_exist_ok=True, symlinks=True, ignore=ignored)
        else:
            into = target / src.name if dest.endswith("/") or target.is_dir() else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into)


def ignored(directory: str, names: list[str]) -> set[str]:
    """What .dockerignore leaves out: caches and build leftovers."""
    return {n for n in names if n in {"__pycache__", ".mypy_cache", ".ruff_cache", "build"} or n.endswith(".egg-info")}


def _run(step: Step, root: Path, workdir: str, env: dict[str, str], log: Path) -> None:
    build_env = {k: os.environ[k] for k in BUILD_ENV if k in os.environ}
    ca = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    mounts = ['mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"']
    if ca.is_file():
        (root / CA_IN_BUILD.lstrip("/")).touch()
        mounts.append(f'mount --bind {ca} "$R{CA_IN_BUILD}"')
        build_env["PIP_CERT"] = CA_IN_BUILD
    script = "set -e; " + "; ".join(mounts) + '; exec chroot "$R" /bin/sh -c "cd \\"$W\\" && $C"'
    full_env = {**env, **build_env, "R": str(root), "W": workdir, "C": step.command}
    with log.open("a") as out:
        out.write(f"\n### RUN (line {step.line}): {step.command}\n")
        out.flush()
        res = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BuildError(f"RUN at line {step.line} failed ({res.returncode}); end of {log}:\n{tail}")

"""Find kernel headers BCC can compile against, or fall back to generic ones.

BCC compiles the programs at run time and wants the running kernel's build
tree (/lib/modules/$(uname -r)/build) or CONFIG_IKHEADERS. Our programs use
only UAPI context structs (bpf_sock_ops, sk_msg_md), whose layout is stable
ABI, so any distribution's generic headers compile them correctly. When the
matching tree is missing we merge Debian's split header packages
(linux-headers-*-common + linux-headers-*-<arch>) into one symlink tree in
the cache directory and point BCC at it with BCC_KERNEL_SOURCE.

Generic headers are looked for in the host's /usr/src first, then in
MESHACCEL_HEADERS_DIR: the agent image carries its own there, outside
/usr/src, because its pod mounts the node's /usr/src (where the node's own
/lib/modules/*/build points) over the image's.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ARCH_SUFFIX = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class HeaderChoice:
    source: str  # "running-kernel", "ikheaders", "fallback", "env"
    path: str | None  # what BCC_KERNEL_SOURCE is set to, if anything


def _usable(tree: Path) -> bool:
    return (tree / "include").is_dir() or (tree / "Makefile").is_file()


def _debian_pairs(src_root: Path) -> list[tuple[Path, Path]]:
    arch = _ARCH_SUFFIX.get(platform.machine(), platform.machine())
    pairs = []
    for common in sorted(glob.glob(str(src_root / "linux-headers-*-common")), reverse=True):
        arch_dir = Path(common[: -len("common")] + arch)
        if arch_dir.is_dir() and (Path(common) / "include/linux/kconfig.h").is_file():
            pairs.append((Path(common), arch_dir))
    return pairs


def _merge(common: Path, arch_dir: Path, dest: Path) -> None:
    """Symlink farm: common first, the arch tree (generated files) on top."""
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for base in (common, arch_dir):
        for dirpath, _dirs, files in os.walk(base, followlinks=False):
            rel = Path(dirpath).relative_to(base)
            (tmp / rel).mkdir(parents=True, exist_ok=True)
            for name in files + [d for d in _dirs if (Path(dirpath) / d).is_symlink()]:
                link = tmp / rel / name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(os.path.realpath(Path(dirpath) / name))
    os.replace(tmp, dest) if not dest.exists() else shutil.rmtree(tmp)


def generic_roots() -> list[Path]:
    roots = [Path("/usr/src")]
    if os.environ.get("MESHACCEL_HEADERS_DIR"):
        roots.append(Path(os.environ["MESHACCEL_HEADERS_DIR"]))
    return roots


def choose_headers(cache_dir: str, src_roots: list[Path] | None = None) -> HeaderChoice:
    """Pick headers for BCC and set BCC_KERNEL_SOURCE when falling back."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return HeaderChoice("env", os.environ["BCC_KERNEL_SOURCE"])
    release = platform.release()
    build = Path("/lib/modules") / release / "build"
    if _usable(build):
        return HeaderChoice("running-kernel", None)
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return HeaderChoice("ikheaders", None)
    roots = generic_roots() if src_roots is None else src_roots
    pairs = [pair for root in roots for pair in _debian_pairs(root)]
    if not pairs:
        package = "linux-headers-" + _ARCH_SUFFIX.get(platform.machine(), "ARCH")
        raise RuntimeError(
            f"no kernel headers: {build} is missing, the kernel has no CONFIG_IKHEADERS, and no "
            f"generic headers were found under {', '.join(map(str, roots))} (install {package})"
        )
    common, arch_dir = pairs[0]
    dest = Path(cache_dir) / "kernel-headers" / arch_dir.name
    if not _usable(dest):
        _merge(common, arch_dir, dest)
    os.environ["BCC_KERNEL_SOURCE"] = str(dest)
    log.warning(
        "kernel headers for %s not found at %s; compiling against generic headers %s "
        "(safe: the programs use only UAPI structures)",
        release,
        build,
        arch_dir.name,
    )
    return HeaderChoice("fallback", str(dest))

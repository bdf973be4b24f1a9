from __future__ import annotations

import re
import shutil
from pathlib import Path

from meshaccel_agent.kernel.compile import (
    MAP_SIZE_DEFINES,
    BuildOptions,
    assemble_source,
    bpf_source_dir,
    schema_version,
)
from meshaccel_api.v1alpha1 import MapSizes


def test_includes_are_expanded_once_with_line_markers() -> None:
    src = assemble_source(bpf_source_dir())
    assert '#include "' not in src
    assert src.count("BPF_SOCKHASH(ma_sockhash") == 1
    assert '#line 1 "sockops.c"' in src and '#line 1 "sk_msg.c"' in src
    assert "int meshaccel_sockops" in src and "int meshaccel_sk_msg" in src


def test_nested_include_relative_to_including_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/a.h").write_text('#include "b.h"\nA\n')
    (tmp_path / "lib/b.h").write_text("B\n")
    (tmp_path / "x.c").write_text('#include "lib/a.h"\n#include "lib/b.h"\nX\n')
    out = [line for line in assemble_source(tmp_path, ("x.c",)).splitlines() if not line.startswith("#line")]
    assert out == ["B", "A", "X"]


def test_every_map_size_of_the_model_becomes_a_define() -> None:
    flags = BuildOptions(sizes=MapSizes(sockhash=2048)).cflags()
    assert "-DMA_SOCKHASH_ENTRIES=2048" in flags
    assert set(MAP_SIZE_DEFINES) == set(MapSizes.model_fields), "a map size without a -D (or a -D without a field)"
    for define in MAP_SIZE_DEFINES.values():
        assert any(f.startswith(f"-D{define}=") for f in flags)


def test_config_h_requires_every_map_size() -> None:
    """config.h has no size defaults of its own: the model is the one source."""
    text = (bpf_source_dir() / "lib/config.h").read_text()
    for define in MAP_SIZE_DEFINES.values():
        assert f"!defined({define})" in text
        assert f"#define {define}" not in text


def test_schema_version_is_read_from_config_h(tmp_path: Path) -> None:
    shutil.copytree(bpf_source_dir(), tmp_path / "bpf")
    config = tmp_path / "bpf/lib/config.h"
    config.write_text(re.sub(r"#define MA_SCHEMA_VERSION \d+", "#define MA_SCHEMA_VERSION 37", config.read_text()))
    assert schema_version(tmp_path / "bpf") == 37

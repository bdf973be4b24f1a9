from __future__ import annotations

from pathlib import Path

from meshaccel.agent.compile import BuildOptions, MapSizes, assemble_source, bpf_source_dir, schema_version


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


def test_map_sizes_become_defines() -> None:
    flags = BuildOptions(sizes=MapSizes(sockhash_entries=1024)).cflags()
    assert "-DMA_SOCKHASH_ENTRIES=1024" in flags
    assert all(f.startswith("-DMA_") for f in flags)


def test_schema_version_is_read_from_config_h() -> None:
    assert schema_version(bpf_source_dir()) >= 1

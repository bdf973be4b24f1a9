from __future__ import annotations

import pytest

from meshaccel_agent.standalone.config import ConfigError, parse_config

GOOD = """
endpoints:
  - name: pod-a
    netns: /run/netns/a
    ips: [10.0.0.2, 10.0.0.3]
    excludedPorts: [15020, 22]
  - name: pod-b
    netns: /proc/42/ns/net
    ips: [10.0.0.4]
"""


def test_good_config() -> None:
    cfg = parse_config(GOOD)
    assert [e.name for e in cfg.endpoints] == ["pod-a", "pod-b"]
    assert cfg.endpoints[0].excluded_ports == (15020, 22)
    assert cfg.endpoints[1].excluded_ports == ()


def test_shipped_example_is_valid() -> None:
    from pathlib import Path

    from meshaccel_agent.standalone.config import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "standalone.yaml"
    assert [e.name for e in load_config(example).endpoints] == ["frontend", "backend"]


def test_empty_file_means_nothing_enrolled() -> None:
    assert parse_config("").endpoints == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endpoints: [{name: a, netns: /x, ips: [10.0.0.300]}]", "endpoints[0].ips[0]: '10.0.0.300' is not an IPv4"),
        ("endpoints: [{name: a, netns: /x, ips: [127.0.0.1]}]", "endpoints[0].ips[0]: 127.0.0.1 cannot identify a pod"),
        ("endpoints: [{name: a, netns: /x, ips: []}]", "endpoints[0].ips:"),
        ("endpoints: [{name: a, netns: /x, ips: [10.0.0.1], excludedPorts: [0]}]", "endpoints[0].excludedPorts[0]:"),
        ("endpoints: [{name: a, netns: /x, ips: [10.0.0.1], excludedPorts: [65536]}]", "excludedPorts[0]"),
        ("endpoints: [{name: a, ips: [10.0.0.1]}]", "endpoints[0].netns: Field required"),
        ("endpoints: [{name: a, netns: /x, ips: [10.0.0.1], colour: red}]", "endpoints[0].colour: Extra inputs"),
        (
            "endpoints: [{name: a, netns: /x, ips: [10.0.0.1]}, {name: a, netns: /y, ips: [10.0.0.2]}]",
            "endpoints[1].name: 'a' appears twice",
        ),
        (
            "endpoints: [{name: a, netns: /x, ips: [10.0.0.1]}, {name: b, netns: /y, ips: [10.0.0.1]}]",
            "endpoints[1].ips: 10.0.0.1 already belongs to 'a'",
        ),
        ("endpoints: [\n", "not valid YAML"),
        ("- just a list", "expected a mapping at the top level"),
    ],
)
def test_bad_config_names_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "f.yaml")
    text_of_error = str(exc.value)
    assert text_of_error.startswith("f.yaml:")
    assert message in text_of_error
    assert "\n" not in text_of_error

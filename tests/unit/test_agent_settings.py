"""The operator -> agent contract: what the operator renders, the agent's
own parser reads back exactly."""

from __future__ import annotations

import random

import pytest

from meshaccel_api import agent_settings
from meshaccel_api.agent_settings import AgentSettings, parse, to_args
from meshaccel_api.v1alpha1 import MapSizes, NodeAgentSpec
from meshaccel_operator.deploy import agent_settings as rendered_settings
from meshaccel_operator.deploy import daemonset


@pytest.fixture(autouse=True)
def node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-1")  # the DaemonSet sets it from spec.nodeName
    monkeypatch.delenv("POD_NAMESPACE", raising=False)


def test_daemonset_arguments_parse_into_the_settings_the_operator_meant() -> None:
    spec = NodeAgentSpec(logLevel="debug", metricsPort=9999, mapSizes=MapSizes(sockhash=131072, pairs=65536))
    container = daemonset("agents", "ns", spec)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["meshaccel-agent"]
    parsed = parse(container["args"])
    assert parsed == rendered_settings("agents", spec).model_copy(update={"node_name": "node-1"})
    assert parsed.map_sizes.sockhash == 131072 and parsed.log_level == "debug"
    assert parsed.metrics_address == "0.0.0.0:9999" and parsed.daemonset == "agents"


def test_every_settings_field_round_trips_through_its_flags() -> None:
    rng = random.Random(7)
    for _ in range(50):
        settings = AgentSettings(
            mode="kubernetes",
            node_name=f"n{rng.randrange(99)}",
            cgroup=rng.choice([None, "/sys/fs/cgroup/unified"]),
            map_sizes=MapSizes(sockhash=rng.randrange(1024, 1 << 20), pairs=1 << 20, netns=rng.randrange(16, 1 << 16)),
            defines=rng.choice([[], ["MA_PROGRAM_VERSION=2", "X=-1"]]),
            ignore_selftest=rng.random() < 0.5,
            status_interval=rng.choice([1.0, 2.5, 10.0]),
            log_level=rng.choice(["debug", "info", "error"]),
        )
        assert parse(to_args(settings)) == settings


def test_every_field_has_a_flag() -> None:
    flagged = {f.field.split(".")[0] for f in agent_settings.FLAGS}
    assert flagged | {"mode"} == set(AgentSettings.model_fields)
    nested = {f.field for f in agent_settings.FLAGS if "." in f.field}
    assert nested == {f"map_sizes.{n}" for n in MapSizes.model_fields} | {"flow_control.boundBytes"}


def test_bad_flags_are_refused_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, word in ((["kubernetes", "--define", "NOPE"], "--define"), (["standalone"], "--config")):
        with pytest.raises(SystemExit):
            parse(argv)
        assert word in capsys.readouterr().err

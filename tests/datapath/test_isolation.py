"""Identical loopback 4-tuples in two pods at the same moment never see each
other's bytes: every key carries the network-namespace cookie."""

from __future__ import annotations

import threading

from meshaccel_lab.topology import Lab, Pod
from tests.datapath.conftest import Delta, serve, traffic

MiB = 1 << 20


def test_identical_loopback_tuples_in_two_pods(lab: Lab, agent) -> None:  # type: ignore[no-untyped-def]
    pods = [lab.add_pod("x"), lab.add_pod("y")]
    for pod in pods:
        serve(pod, "sink", 9000, host="127.0.0.1")
    agent.enrol(pods)
    delta = Delta(agent)
    rounds = 6
    for r in range(rounds):
        results: dict[str, dict[str, object]] = {}
        bind = f"127.0.0.1:{41000 + r}"  # the same client endpoint in both pods

        def run(pod: Pod, seed: int, bind: str = bind, results: dict[str, dict[str, object]] = results) -> None:
            results[pod.name] = traffic(
                pod,
                "stream",
                "--host",
                "127.0.0.1",
                "--port",
                "9000",
                "--bind",
                bind,
                "--bytes",
                str(96 * MiB),
                "--seed",
                str(seed),
                "--chunk",
                "65536",
            )

        threads = [threading.Thread(target=run, args=(p, 1000 * r + i)) for i, p in enumerate(pods)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(res.get("ok") for res in results.values()), results
    assert delta["meshaccel_pairs_total"] >= 2 * rounds
    assert delta.carried() >= 2 * rounds * 96 * MiB

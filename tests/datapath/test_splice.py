"""splice() reads the TCP receive queue only (meshaccel_lab.splice; README,
Limitations). This asserts the kernel's behaviour, not ours: the day a
kernel's tcp_splice_read() reads the psock too, it fails, and the README's
limitation goes."""

from __future__ import annotations

from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.splice import run
from meshaccel_lab.topology import Lab
from tests.datapath.conftest import Delta

PORT = 8098


def test_splice_moves_stack_bytes_but_not_redirected_ones(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    kernel = run(a, b, PORT)
    assert kernel.pop("blocking_splice_s") > 1.5, "a blocking splice waits for the close"
    assert kernel == {"readable": True, "spliced": 5, "blocking_splice": 0, "recv": ""}
    agent.enrol([a, b])
    delta = Delta(agent)
    # Readable, but splice() finds nothing; a blocking one ends at the close
    # with 0, "end of stream", while the 5 bytes are still there for recv().
    accel = run(a, b, PORT)
    assert accel.pop("blocking_splice_s") > 1.5, "a blocking splice waits for the close"
    assert accel == {"readable": True, "spliced": "EAGAIN", "blocking_splice": 0, "recv": "hello"}
    assert delta["meshaccel_pairs_total"] >= 1

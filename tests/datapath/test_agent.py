"""The agent as an operator meets it: probes, metrics, bad configs, header
fallback, a stop that leaves the datapath running, and uninstall."""

from __future__ import annotations

import platform
import threading
import urllib.request
from pathlib import Path

from meshaccel_agent.datapath.pins import PinRoot
from meshaccel_agent.kernel.layout import Counter
from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.topology import Lab, wait_for
from tests.datapath.conftest import Delta, serve, traffic

MiB = 1 << 20
METRICS = [
    "meshaccel_sockets_enrolled",
    "meshaccel_pairs_total",
    "meshaccel_redirected_messages_total",
    "meshaccel_redirected_bytes_total",
    "meshaccel_passed_messages_total{reason=native}",
    "meshaccel_insert_refusals_total{reason=sockhash_full}",
    "meshaccel_netns_enrolled",
    "meshaccel_datapath_attached",
]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_probes_and_metric_names(agent: AgentProcess) -> None:
    assert get(agent.url + "/healthz") == 200
    assert get(agent.url + "/readyz") == 200
    metrics = agent.metrics()
    missing = [m for m in METRICS if m not in metrics]
    assert not missing, missing
    assert metrics["meshaccel_datapath_attached"] == 1
    build = [k for k in metrics if k.startswith("meshaccel_build_info{")]
    assert len(build) == 1 and "component=agent" in build[0] and "version=0.1.0" in build[0], build


def test_header_fallback_is_logged(agent: AgentProcess) -> None:
    log = agent.log_path.read_text()
    if Path(f"/lib/modules/{platform.release()}/build").exists():
        assert "headers: running-kernel" in log
    else:
        assert "compiling against generic headers" in log and "headers: fallback" in log


def test_bad_config_keeps_last_good_state(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8080)
    agent.enrol([a, b])
    good = agent.config_path.read_text()
    bad_files = {
        "endpoints[1].ips[0]": good.replace(f"- {b.ip}", "- 10.240.0.999", 1),
        "endpoints[0].excludedPorts[0]": good.replace("excludedPorts: []", "excludedPorts: [70000]", 1),
        "not valid YAML": "endpoints: [\n",
        "endpoints[0].colour": good.replace("  name:", "  colour: blue\n  name:", 1),
    }
    try:
        for expected, text in bad_files.items():
            log_before = agent.log_path.read_text()
            agent.write_raw_config(text)
            wait_for(lambda: len(agent.log_path.read_text()) > len(log_before), 10, "the agent to log")  # noqa: B023
            new_lines = agent.log_path.read_text()[len(log_before) :].strip().splitlines()
            rejected = [line for line in new_lines if "config rejected" in line]
            assert rejected and expected in rejected[0], new_lines
            assert agent.metric("meshaccel_netns_enrolled") == 2
            assert agent.metric("meshaccel_config_errors_total") >= 1
            assert get(agent.url + "/readyz") == 200
            delta = Delta(agent)
            assert traffic(a, "stream", "--host", b.ip, "--port", "8080", "--bytes", str(MiB))["ok"]
            assert delta["meshaccel_pairs_total"] == 1, "enrolment from the last good file still applies"
    finally:
        agent.write_raw_config(good)


def test_stop_leaves_datapath_and_cleanup_uninstalls(lab: Lab, agent: AgentProcess) -> None:
    a, b = lab.add_pod("a"), lab.add_pod("b")
    serve(b, "sink", 8080)
    agent.enrol([a, b])
    agent.stop()
    try:
        # The process is gone; the pinned datapath keeps accelerating.
        before = sum(g.counters()[Counter.PAIRS] for g in PinRoot("/sys/fs/bpf").generations())
        assert traffic(a, "stream", "--host", b.ip, "--port", "8080", "--bytes", str(8 * MiB))["ok"]
        after = sum(g.counters()[Counter.PAIRS] for g in PinRoot("/sys/fs/bpf").generations())
        assert after == before + 1

        # Uninstall while a connection is open (idle for 3 s, then 256 MiB):
        # nothing redirected is unread, so its sockets move to TCP at once,
        # nothing stays pinned, and the stream then flows byte-exact on TCP.
        result: dict[str, object] = {}
        live = threading.Thread(
            target=lambda: result.update(
                traffic(a, "stream", "--host", b.ip, "--port", "8080", "--bytes", str(256 * MiB), "--hold", "3")
            )
        )
        live.start()
        wait_for(lambda: any(PinRoot("/sys/fs/bpf").current().sockhash_keys()), 5, "the live connection")  # type: ignore[union-attr]
        first = agent.cleanup(wait=0)
        assert first.returncode == 0 and "moved 2 socket(s) to TCP" in first.stdout, first.stdout + first.stderr
        assert not PinRoot("/sys/fs/bpf").path.exists()
        live.join(60)
        assert result.get("ok"), result
        second = agent.cleanup(wait=0)
        assert second.returncode == 0 and "nothing installed" in second.stdout
    finally:
        agent.start()


_LOAD_ALL = """
from bcc import BPF
from meshaccel_agent.kernel.btf import kernel_offsets
from meshaccel_agent.kernel.compile import BuildOptions, assemble_source, bpf_source_dir
from meshaccel_agent.kernel.headers import choose_headers
choose_headers("/var/cache/meshaccel")
bpf = BPF(text=assemble_source(bpf_source_dir()), cflags=BuildOptions(kernel_offsets=tuple(kernel_offsets())).cflags())
for name, kind in (("meshaccel_sockops", BPF.SOCK_OPS), ("meshaccel_sk_msg", BPF.SK_MSG)):
    bpf.load_func(name.encode(), kind)
print("loaded")
"""


def test_datapath_loads_without_cap_syslog() -> None:
    """An agent pod has no CAP_SYSLOG, so /proc/kallsyms shows it every
    address as 0 and BCC then maps bpf_probe_read_kernel() to the old
    bpf_probe_read(), which sock_ops may not call (seen on the e2e node:
    LoadFailed). The programs call the helper by number instead."""
    import subprocess
    import sys

    res = subprocess.run(["setpriv", "--bounding-set", "-syslog", "--inh-caps", "-syslog", "--",
                          sys.executable, "-c", _LOAD_ALL], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0 and "loaded" in res.stdout, res.stderr[-3000:]

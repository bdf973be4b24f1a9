"""What the reproducers (scripts/repro_*.py) and their tests share: a
standalone agent with a lab, and one exchange between two inline Python
programs, a server in one pod and a client in another."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from meshaccel_lab.agent import AgentProcess
from meshaccel_lab.hostmounts import HostMounts
from meshaccel_lab.topology import Lab, Pod, wait_for


@contextlib.contextmanager
def agent_and_lab(*agent_args: str) -> Iterator[tuple[AgentProcess, Lab]]:
    """A running agent (with @agent_args) and an empty lab; on the way out
    every pod is unenrolled and everything is removed, bpffs mounts too."""
    mounts = HostMounts.record()  # the agent mounts bpffs when the host has none
    agent = AgentProcess()
    agent.start(*agent_args)
    lab = Lab()
    try:
        yield agent, lab
    finally:
        try:
            agent.unenrol(lab.pods.values())
        finally:
            lab.close()
            agent.close()
            mounts.restore()


def exchange(client: Pod, server: Pod, server_code: str, client_code: str, port: int, *args: str) -> dict[str, Any]:
    """Run @server_code (argv: port) in @server, then @client_code (argv:
    server IP, port, @args) in @client; the client's last line of output,
    as JSON."""
    srv = subprocess.Popen(["ip", "netns", "exec", server.netns, sys.executable, "-c", server_code, str(port)])
    try:
        wait_for(lambda: f":{port} " in server.sh("ss", "-Hltn"), what="the server")
        out = subprocess.run(
            ["ip", "netns", "exec", client.netns, sys.executable, "-c", client_code, server.ip, str(port), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    finally:
        srv.kill()
        srv.wait()
    return dict(json.loads(out.strip().splitlines()[-1]))

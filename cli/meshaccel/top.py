"""`meshaccel top`: live redirect rates, per node and (on a node) per endpoint.

A frame is a set of cumulative counters read at one instant; a rate is the
difference of two frames over the time between them. Cluster-wide the
counters are each agent's /metrics (through the API server, meshaccel.agents);
with `--local` they are this node's pinned maps, which also hold one entry
per paired connection (ma_flows), so the view adds the endpoints that carry
the bytes: the server address each client dialed.

The view is drawn by rich (rich.live): redrawn in place, no escape codes of
our own; refresh is bounded (MIN_INTERVAL) so a view left open costs its
nodes nothing measurable: one scrape per agent per interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

#: The shortest refresh interval, in seconds: a person cannot read faster,
#: and each frame costs one scrape of every agent.
MIN_INTERVAL = 0.5

#: Where a connection shows whose client has half-closed (and so left the
#: sockhash, taking the address it dialed with it).
HALF_CLOSED = "(client half-closed)"


@dataclass
class NodeCounters:
    """One node's cumulative counters (the agent's metrics, summed)."""

    sockets: float = 0  # a gauge: shown as is
    redirected_bytes: float = 0
    redirected_messages: float = 0
    passed_bytes: float = 0  # enrolled sockets' bytes that took the stack, all reasons
    spills: float = 0  # directions switched to the stack by flow control
    error: str = ""  # why this node has no counters in this frame


@dataclass
class EndpointCounters:
    connections: int = 0
    spilled: int = 0  # directions currently on the stack (flow control)
    #: bytes redirected so far, per connection (flow key -> bytes): a rate
    #: needs the same connection in both frames.
    by_flow: dict[bytes, int] = field(default_factory=dict)


@dataclass
class Frame:
    at: float  # time.monotonic()
    nodes: dict[str, NodeCounters]
    endpoints: dict[str, EndpointCounters] = field(default_factory=dict)


@dataclass
class NodeRate:
    node: str
    sockets: int
    redirected_bps: float
    redirected_mps: float
    passed_bps: float
    spills_ps: float
    error: str = ""


@dataclass
class EndpointRate:
    endpoint: str
    connections: int
    spilled: int
    redirected_bps: float


def _rate(now: float, before: float, dt: float) -> float:
    # A counter that went down was reset (a new datapath generation): count
    # from zero rather than show a negative rate.
    return (now - before if now >= before else now) / dt


def rates(prev: Frame, cur: Frame) -> tuple[list[NodeRate], list[EndpointRate]]:
    """Rates between two frames (pure)."""
    dt = max(cur.at - prev.at, 1e-6)
    nodes = []
    for name, c in sorted(cur.nodes.items()):
        p = prev.nodes.get(name, NodeCounters())
        if c.error:
            nodes.append(NodeRate(name, 0, 0, 0, 0, 0, c.error))
            continue
        nodes.append(NodeRate(name, int(c.sockets), _rate(c.redirected_bytes, p.redirected_bytes, dt),
                              _rate(c.redirected_messages, p.redirected_messages, dt),
                              _rate(c.passed_bytes, p.passed_bytes, dt), _rate(c.spills, p.spills, dt)))  # fmt: skip
    endpoints = []
    for name, e in cur.endpoints.items():
        before = prev.endpoints.get(name, EndpointCounters()).by_flow
        # A connection new since the last frame counts from its start (it
        # was paired after that frame); one that closed in between is gone
        # with its last bytes, so a closing burst reads low, never high.
        moved = sum(_rate(n, before.get(k, 0), 1.0) for k, n in e.by_flow.items())
        endpoints.append(EndpointRate(name, e.connections, e.spilled, moved / dt))
    endpoints.sort(key=lambda r: (-r.redirected_bps, r.endpoint))
    return nodes, endpoints


def _si(value: float, unit: str) -> str:
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def view(nodes: list[NodeRate], endpoints: list[EndpointRate], interval: float, max_endpoints: int = 20) -> Group:
    """The screen for one frame (pure: rich renderables)."""
    table = Table(title=f"meshaccel top: every {interval:g}s, Ctrl-C to quit", title_justify="left", box=box.SIMPLE)
    for column in ("NODE", "SOCKETS", "REDIRECTED", "MESSAGES", "VIA STACK", "FLOW-CONTROL SWITCHES"):
        table.add_column(column, justify="left" if column == "NODE" else "right", no_wrap=True)
    for n in nodes:
        if n.error:
            table.add_row(n.node, *["-"] * 5)
        else:
            table.add_row(n.node, str(n.sockets), _si(n.redirected_bps * 8, "bit/s"), _si(n.redirected_mps, "msg/s"),
                          _si(n.passed_bps * 8, "bit/s"), f"{n.spills_ps:.1f}/s")  # fmt: skip
    parts: list[Any] = [table]
    parts += [Text(f"{n.node}: {n.error}", style="red") for n in nodes if n.error]
    if endpoints:
        ep = Table(title="endpoints (server address as dialed), busiest first", title_justify="left", box=box.SIMPLE)
        for column in ("ENDPOINT", "CONNECTIONS", "REDIRECTED", "ON STACK"):
            ep.add_column(column, justify="left" if column == "ENDPOINT" else "right", no_wrap=True)
        for e in endpoints[:max_endpoints]:
            ep.add_row(e.endpoint, str(e.connections), _si(e.redirected_bps * 8, "bit/s"), str(e.spilled))
        if len(endpoints) > max_endpoints:
            ep.caption = f"{len(endpoints) - max_endpoints} more not shown"
        parts.append(ep)
    return Group(*parts)


# -- where frames come from ----------------------------------------------------


def counters_from_metrics(text: str) -> NodeCounters:
    """An agent's /metrics text -> its counters."""
    from prometheus_client.parser import text_string_to_metric_families

    out = NodeCounters()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "meshaccel_sockets_enrolled":
                out.sockets = s.value
            elif s.name == "meshaccel_redirected_bytes_total":
                out.redirected_bytes = s.value
            elif s.name == "meshaccel_redirected_messages_total":
                out.redirected_messages = s.value
            elif s.name == "meshaccel_passed_bytes_total":
                out.passed_bytes += s.value
            elif s.name == "meshaccel_flow_control_switches_total" and s.labels.get("to") == "stack":
                out.spills = s.value
    return out


def cluster_frames(api: Any) -> Callable[[], Frame]:
    from meshaccel import agents

    def frame() -> Frame:
        pods = agents.agent_pods(api)
        nodes = {}
        for pod, answer in agents.ask_all(pods, lambda pod: agents.proxy_get(api, pod, "metrics")):
            if isinstance(answer, Exception) or pod.unavailable:
                nodes[pod.node] = NodeCounters(error=pod.unavailable or f"no answer: {type(answer).__name__}")
            else:
                nodes[pod.node] = counters_from_metrics(answer)
        return Frame(time.monotonic(), nodes)

    return frame


def local_frames(bpffs: str) -> Callable[[], Frame]:
    import os

    from meshaccel_agent.datapath.pins import PinRoot
    from meshaccel_agent.kernel.layout import PASS_BYTE_COUNTERS, Counter, DirMode, ip_from_be32

    node = os.uname().nodename
    root = PinRoot(bpffs)

    def frame() -> Frame:
        at = time.monotonic()
        current = root.current()
        if current is None:
            return Frame(at, {node: NodeCounters(error=f"no datapath pinned under {bpffs}/meshaccel")})
        c, sockets = current.counters(), current.sockhash_keys()
        counters = NodeCounters(len(sockets), c[Counter.REDIR_BYTES], c[Counter.REDIR_MSGS],
                                sum(c[b] for b in PASS_BYTE_COUNTERS), c[Counter.FLOW_SPILLS])  # fmt: skip
        # A flow is keyed by its client's end (netns, address, port); the
        # client's socket in the sockhash says where it connected to.
        dialed = {(k.netns, k.local_ip4, k.local_port): (k.remote_ip4, k.remote_port) for k in sockets}
        endpoints: dict[str, EndpointCounters] = {}
        for key, flow in current.flows():
            server = dialed.get((key.origin.netns, key.origin.ip4, key.origin.port))
            name = f"{ip_from_be32(server[0])}:{server[1]}" if server else HALF_CLOSED
            e = endpoints.setdefault(name, EndpointCounters())
            e.connections += 1
            e.spilled += sum(1 for d in flow.dir if d.mode == DirMode.STACK)
            e.by_flow[bytes(key)] = sum(d.redirected for d in flow.dir)
        return Frame(at, {node: counters}, endpoints)

    return frame


def frames(source: Callable[[], Frame], interval: float, count: int = 0) -> Iterator[tuple[Frame, Frame]]:
    """(previous, current) frame pairs, @interval apart; @count pairs (0: forever)."""
    prev = source()
    n = 0
    while not count or n < count:
        time.sleep(max(0.0, prev.at + interval - time.monotonic()))
        cur = source()
        yield prev, cur
        prev, n = cur, n + 1


def run(source: Callable[[], Frame], interval: float, count: int = 0) -> None:
    """Redraw in place on a terminal; piped (a script, `watch`, a log),
    print every frame in full at a width that truncates no column, as
    `top -b` does."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        if not console.is_terminal:
            console = Console(width=BATCH_WIDTH)
            for prev, cur in frames(source, interval, count):
                console.print(view(*rates(prev, cur), interval))
            return
        with Live(Text("meshaccel top: reading the first frame..."), console=console, auto_refresh=False) as live:
            for prev, cur in frames(source, interval, count):
                live.update(view(*rates(prev, cur), interval), refresh=True)
    except KeyboardInterrupt:
        pass


#: Columns of piped output: wide enough for every column at full width.
BATCH_WIDTH = 200

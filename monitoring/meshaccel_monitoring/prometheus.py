"""A real Prometheus (Debian's), started for a test or a picture: it scrapes
the agent and operator pods the chart's PodMonitor selects (pods named
meshaccel-agent / meshaccel-operator, their `metrics` port, with `job`,
`node` and `pod` labelled as the PodMonitor relabels them), loads the chart's
alert rules, and answers queries.

Debian builds Prometheus without Kubernetes service discovery (its "+ds"
build leaves out discovery mechanisms whose client libraries it does not
package), so the selection is applied here, to the pods read from the API
server, and handed to Prometheus through file-based discovery.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RULES = Path(__file__).resolve().parents[2] / "charts/meshaccel/files/alerts.yaml"

#: Grafana's variables, as the dashboard's default view fills them in
#: (`$__rate_interval` is four scrape intervals, here 2 s: what Grafana
#: computes for a data source with that scrape interval).
GRAFANA_DEFAULTS = {"$__rate_interval": "8s", "$node": ".*", "${datasource}": ""}


class PrometheusError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chart's PodMonitor selection, applied to pod objects: file_sd
    target groups of Running meshaccel pods, at their `metrics` port."""
    groups = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
        name = meta.get("labels", {}).get("app.kubernetes.io/name", "")
        if name not in ("meshaccel-agent", "meshaccel-operator") or status.get("phase") != "Running":
            continue
        ports = [p for c in spec["containers"] for p in c.get("ports", []) if p.get("name") == "metrics"]
        if ports and status.get("podIP"):
            groups.append(
                {
                    "targets": [f"{status['podIP']}:{ports[0]['containerPort']}"],
                    "labels": {"job": name, "node": spec.get("nodeName", ""), "pod": meta["name"]},
                }
            )
    return groups


class Prometheus:
    """One Prometheus process with its own data directory, ended by PID."""

    def __init__(self, targets: list[dict[str, Any]], interval: str = "2s") -> None:
        if not Path(PROMETHEUS).is_file():
            raise PrometheusError(f"{PROMETHEUS} missing: scripts/setup.sh installs Debian's prometheus")
        self.dir = Path(tempfile.mkdtemp(prefix="meshaccel-prometheus-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "meshaccel", "file_sd_configs": [{"files": [str(self.dir / "targets.json")]}]}
            ],
        }
        (self.dir / "targets.json").write_text(json.dumps(targets))
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Prometheus:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise PrometheusError(f"prometheus not ready within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))["result"])

    def targets_up(self) -> dict[str, bool]:
        """job -> every active target of that job is up."""
        out: dict[str, bool] = {}
        for t in self.api("targets")["activeTargets"]:
            job = t["labels"].get("job", "")
            out[job] = out.get(job, True) and t["health"] == "up"
        return out


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Grafana sends it in the default view."""
    for variable, value in GRAFANA_DEFAULTS.items():
        expr = expr.replace(variable, value)
    if "$" in re.sub(r"\{\{.*?\}\}", "", expr):
        raise PrometheusError(f"a Grafana variable this checker does not know: {expr}")
    return expr

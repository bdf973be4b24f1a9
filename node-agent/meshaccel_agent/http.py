"""/metrics, /healthz, /readyz and /doctor on one small threaded HTTP server.

/readyz answers 200 while the node is accelerated; /readyz?allow=degraded
also while the agent has settled on failing open (the DaemonSet's probe).
/doctor answers the node's checks as JSON (`meshaccel doctor --cluster`
reaches it through the API server's pod proxy)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class AgentHTTPServer:
    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[bool], tuple[bool, str]],
        doctor: Callable[[], dict[str, Any]],
    ) -> None:
        routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, str, bytes]]] = {
            "/metrics": lambda _q: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda _q: _probe(healthy),
            "/readyz": lambda q: _probe(lambda: ready("degraded" in q.get("allow", []))),
            "/doctor": lambda _q: (200, "application/json", json.dumps(doctor()).encode()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                route = routes.get(url.path)
                code, ctype, body = route(parse_qs(url.query)) if route else (404, "text/plain", b"not found\n")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        self._server = ThreadingHTTPServer(parse_address(address), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(check: Callable[[], tuple[bool, str]]) -> tuple[int, str, bytes]:
    ok, why = check()
    return (200 if ok else 503), "text/plain", (why + "\n").encode()

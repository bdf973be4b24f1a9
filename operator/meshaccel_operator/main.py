"""`meshaccel-operator [flags]`: leader election, metrics, then kopf."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, cast

import kopf
from prometheus_client import Gauge, start_http_server

from meshaccel_api.buildinfo import register_build_info
from meshaccel_operator.settings import OperatorSettings, parse

log = logging.getLogger(__name__)
#: Exactly one replica writes; the others stand by (leader.py).
LEADER = Gauge("meshaccel_operator_leader", "1 while this replica holds the leader lease and writes")


def run(settings: OperatorSettings) -> int:
    from meshaccel_api.kube import api_client
    from meshaccel_operator import handlers  # registers the handlers with kopf
    from meshaccel_operator.leader import LeaseElector

    handlers.RUNTIME.settings = settings
    identity = f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaseElector(api_client(), settings.namespace, settings.lease, identity)
    register_build_info("operator", "meshaccel-operator")
    LEADER.set_function(lambda: 1.0 if elector.holds() else 0.0)
    host, _, port = settings.metrics_address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    elector.acquire()
    elector.keep_renewing()
    handlers.RUNTIME.may_write = elector.holds
    # kopf's own liveness endpoint answers only while its event loop runs.
    # An explicit identity: kopf would otherwise ask the password database
    # for the user name, which an arbitrary non-root UID is not in.
    try:
        kopf.run(
            clusterwide=True,
            standalone=True,
            identity=cast(Any, identity),  # kopf's Identity, a NewType of str it does not export
            liveness_endpoint=f"http://{settings.liveness_address}/healthz",
        )
    finally:
        elector.release()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "meshaccel-operator") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["uninstall"]:
        from meshaccel_operator.uninstall import main as uninstall_main

        return uninstall_main(args[1:])
    if args[:1] == ["check"]:
        from meshaccel_operator.check import main as check_main

        return check_main(args[1:])
    settings = parse(args, prog)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())

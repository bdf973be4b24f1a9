"""`meshaccel COMMAND ...`: the node agent, the operator, and the views an
operator of the product uses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="meshaccel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("agent", help="run the node agent (see `meshaccel agent --help`)", add_help=False)
    sub.add_parser("operator", help="run the operator (see `meshaccel operator --help`)", add_help=False)
    if argv and argv[0] == "agent":
        from meshaccel_agent.main import main as agent_main

        return agent_main(argv[1:], prog="meshaccel agent")
    if argv and argv[0] == "operator":
        from meshaccel_operator.main import main as operator_main

        return operator_main(argv[1:], prog="meshaccel operator")
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())

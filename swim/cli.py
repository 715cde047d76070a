"""The `swim` command: the agent and its control commands, the demo, and the simulator.

Subcommands register themselves from the modules that implement them, so this file
only assembles the parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The full `swim` argument parser."""
    parser = argparse.ArgumentParser(
        prog="swim", description="SWIM cluster membership with Lifeguard."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from simulations import cli as sim_cli

    sim_cli.register(sub)
    from swim.agent import cli as agent_cli

    agent_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `swim` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        code = handler(args)
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

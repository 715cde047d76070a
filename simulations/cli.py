"""`swim sim`: run one simulated scenario from the command line."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the `sim` subcommand to the `swim` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser("sim", help="run a simulated cluster")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("swim sim: the simulator is not built yet")

"""The `swim` command: the agent and its control commands, the demo, and the simulator.

Subcommands register themselves from the modules that implement them, so this file
only assembles the parser. Only the module of the command being run is imported (see
`COMMANDS`): `swim agent` never loads the simulator and `swim sim` never loads the agent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from swim import __version__

#: The module that implements each subcommand; its ``register(subparsers)`` adds the
#: parsers of all the commands it implements.
COMMANDS: Mapping[str, str] = {
    "agent": "swim.agent.agent_cli",
    "members": "swim.agent.cli",
    "monitor": "swim.agent.cli",
    "event": "swim.agent.cli",
    "query": "swim.agent.cli",
    "keys": "swim.agent.cli",
    "join": "swim.agent.cli",
    "force-leave": "swim.agent.cli",
    "rtt": "swim.agent.cli",
    "leave": "swim.agent.cli",
    "tags": "swim.agent.cli",
    "info": "swim.agent.cli",
    "demo": "swim.agent.cli",
    "keygen": "swim.security.cli",
    "sim": "simulations.cli",
}


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names, if any: its first argument that is not an option
    (the top-level options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `swim` argument parser: with `command` (a key of `COMMANDS`), only that
    command's module is imported and registered; otherwise every module is (for the
    full ``--help`` and for the error on an unknown command)."""
    parser = argparse.ArgumentParser(
        prog="swim", description="SWIM cluster membership with Lifeguard."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS.get(command or "")
    modules = [chosen] if chosen is not None else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        # __import__ rather than importlib.import_module, so -X importtime lists it.
        __import__(module, fromlist=["register"]).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `swim` console script."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        code = handler(args)
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

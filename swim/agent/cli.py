"""The agent's client subcommands of `swim`: members, monitor, event, query, keys, join,
force-leave, leave, tags, info, and the demo.

Each client talks to a running agent's RPC address (`swim.agent.client`); `swim agent`
itself, which runs a member, is `swim.agent.agent_cli`. Exit codes: 0 success, 1 failure
(agent unreachable, request refused, a name that does not resolve), 2 wrong usage
(argparse), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
from typing import Any

from swim.agent import client
from swim.agent.cli_options import add_rpc
from swim.agent.settings import (
    address_arg,
    encrypt_key_arg,
    key_arg,
    relay_factor_arg,
    seconds_arg,
    tag_arg,
)


def _add_json(p: argparse.ArgumentParser, text: str = "print the result as JSON") -> None:
    p.add_argument("--json", action="store_true", help=text)


def register(sub: Any) -> None:
    """Add the client subcommands and the demo to the `swim` parser's subparsers."""
    p = sub.add_parser(
        "members", help="list the members an agent knows",
        description="List the members the agent knows, optionally only those matching "
        "every filter given.",
    )
    add_rpc(p)
    p.add_argument(
        "--status", type=client.status_arg, action="append", default=[],
        metavar="STATUS[,STATUS]",
        help="only members with one of these statuses: alive, suspect, failed (= dead), "
        "left (repeatable)",
    )
    p.add_argument(
        "--name", metavar="PATTERN",
        help="only members whose name matches this shell-style pattern (e.g. 'web-*')",
    )
    p.add_argument(
        "--tag", type=tag_arg, action="append", default=[], metavar="KEY=PATTERN",
        help="only members whose tag KEY matches the shell-style PATTERN (repeatable)",
    )
    p.add_argument(
        "--health", type=client.health_arg, action="append", default=[],
        metavar="HEALTH[,HEALTH]",
        help="only members whose health is one of passing, warning, critical (a member "
        "without checks is passing; repeatable)",
    )
    _add_json(p, "print a JSON array of member objects")
    p.set_defaults(handler=client.members_command)

    p = sub.add_parser("monitor", help="stream an agent's membership and user events")
    add_rpc(p)
    _add_json(p, "print one JSON object per line")
    p.set_defaults(handler=client.monitor_command)

    p = sub.add_parser("event", help="broadcast a user event to the cluster")
    add_rpc(p)
    p.add_argument("name", help="event name")
    p.add_argument("payload", nargs="?", default="", help="event payload (text)")
    _add_json(p)
    p.set_defaults(handler=client.event_command)

    p = sub.add_parser(
        "query", help="ask the cluster a question and print the acks and answers",
        description="Send a query to every member matching the filters and print the "
        "acks and answers as they arrive, until the timeout.",
    )
    add_rpc(p)
    p.add_argument("name", help="query name")
    p.add_argument("payload", nargs="?", default="", help="query payload (text)")
    p.add_argument(
        "--node", action="append", default=[], metavar="NAME",
        help="ask only this member (repeatable)",
    )
    p.add_argument(
        "--tag", type=tag_arg, action="append", default=[], metavar="KEY=PATTERN",
        help="ask only members whose tag KEY matches the shell-style PATTERN (repeatable)",
    )
    p.add_argument(
        "--timeout", type=seconds_arg, metavar="S",
        help="how long to wait for answers (default: Serf's, from the cluster size)",
    )
    p.add_argument("--ack", action="store_true", help="ask every member to ack receipt")
    p.add_argument(
        "--relay-factor", type=relay_factor_arg, default=0, metavar="K",
        help="members also send their answer through K other members (0..5, default 0)",
    )
    p.add_argument(
        "--reask", action="store_true",
        help="until the timeout, ask again, directly, every live matching member not "
        "heard from (for a query every member must answer; as swim keys does)",
    )
    _add_json(p, "print one JSON object at the end")
    p.set_defaults(handler=client.query_command)

    p = sub.add_parser(
        "keys", help="install, use, remove or list encryption keys on every member",
        description="Run a key command on every member of the cluster and report each "
        "member's outcome. Rotation: --install NEW, then --use NEW, then --remove OLD. "
        "Exit code 1 unless every member succeeded.",
    )
    add_rpc(p)
    op = p.add_mutually_exclusive_group(required=True)
    op.add_argument("--install", type=encrypt_key_arg, metavar="KEY",
                    help="add KEY to every keyring (it opens; it does not seal yet)")
    op.add_argument("--use", type=encrypt_key_arg, metavar="KEY",
                    help="make the installed KEY the primary (the key that seals) everywhere")
    op.add_argument("--remove", type=encrypt_key_arg, metavar="KEY",
                    help="remove KEY everywhere (refused where it is the primary)")
    op.add_argument("--list", action="store_true",
                    help="list every member's keys, with how many members hold each")
    p.add_argument(
        "--timeout", type=seconds_arg, metavar="S",
        help="how long to wait for every member (default: Serf's, from the cluster size)",
    )
    _add_json(p, "print the report as JSON")
    p.set_defaults(handler=client.keys_command)

    p = sub.add_parser(
        "join", help="make a running agent join a cluster through more members",
        description="Make the running agent join through each HOST:PORT (a name is "
        "resolved by the agent) and report each exchange. Exit code 1 unless at least "
        "one member answered.",
    )
    add_rpc(p)
    p.add_argument("addrs", nargs="+", type=_join_address, metavar="HOST:PORT",
                   help="a member to join through")
    _add_json(p)
    p.set_defaults(handler=client.join_command)

    p = sub.add_parser(
        "force-leave", help="mark a failed member as left across the cluster",
        description="Mark a failed member as left, as if it had left gracefully: the "
        "news spreads to every member and nobody tries to reconnect to it. Refused for a "
        "member that is not failed.",
    )
    add_rpc(p)
    p.add_argument("node", help="the failed member's name")
    _add_json(p)
    p.set_defaults(handler=client.force_leave_command)

    p = sub.add_parser(
        "rtt", help="estimate the round-trip time between two members",
        description="Estimate the RTT between members A and B (B: the agent's own member) "
        "from their Vivaldi network coordinates, which ride on probe acks; no probe "
        "between A and B is needed (Serf's rtt).",
    )
    add_rpc(p)
    p.add_argument("a", metavar="A", help="a member's name")
    p.add_argument("b", metavar="B", nargs="?", help="another member (default: the agent)")
    _add_json(p)
    p.set_defaults(handler=client.rtt_command)

    p = sub.add_parser("leave", help="make an agent leave the cluster gracefully and exit")
    add_rpc(p)
    _add_json(p)
    p.set_defaults(handler=client.leave_command)

    p = sub.add_parser("tags", help="show or change an agent's tags")
    add_rpc(p)
    p.add_argument(
        "--set", type=tag_arg, action="append", default=[], metavar="KEY=VALUE",
        help="set a tag (repeatable)",
    )
    p.add_argument(
        "--delete", type=key_arg, action="append", default=[], metavar="KEY",
        help="remove a tag (repeatable)",
    )
    _add_json(p, 'print {"tags": {...}}')
    p.set_defaults(handler=client.tags_command)

    p = sub.add_parser("info", help="show an agent's name, address, health and counters")
    add_rpc(p)
    _add_json(p, "print JSON (info always does)")
    p.set_defaults(handler=client.info_command)

    p = sub.add_parser(
        "demo", help="run a local cluster: crash a member, watch it fail and rejoin"
    )
    p.add_argument(
        "--agents", type=int, default=5, choices=range(3, 21), metavar="N",
        help="how many agents to start (3..20, default 5)",
    )
    p.add_argument(
        "--profile", choices=("local", "lan"), default="local",
        help="timing profile (default local)",
    )
    p.add_argument(
        "--plain", action="store_true", help="plain progress lines even on a terminal"
    )
    p.set_defaults(handler=demo_command)


def _join_address(text: str) -> str:
    """A ``swim join`` argument: checked here, resolved by the agent."""
    address_arg(text)
    return text


# =============================================================================== handlers


def demo_command(args: argparse.Namespace) -> int:
    # The demo (the cluster helper, rich's live display) loads only when it runs.
    from swim.agent.demo import run_demo

    return run_demo(args)

"""The agent's subcommands of `swim`: agent, members, monitor, event, query, keys, join,
force-leave, leave, tags, info, demo.

`swim agent` runs a member (its flags and config file: `swim.agent.settings`); the
others are clients of a running agent's RPC address (`swim.agent.client`). Exit codes: 0
success, 1 failure (agent unreachable, request refused, address in use, a name that does
not resolve, a bad config file), 2 wrong usage (argparse), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from swim.agent import client, settings
from swim.agent.handlers import EVENT_TYPES
from swim.agent.settings import (
    MODES,
    PROFILES,
    address_arg,
    bind_arg,
    check_arg,
    encrypt_key_arg,
    handler_arg,
    key_arg,
    label_arg,
    name_arg,
    path_arg,
    query_response_arg,
    relay_factor_arg,
    rpc_arg,
    seconds_arg,
    tag_arg,
    token_arg,
)


def _add_rpc(
    p: argparse.ArgumentParser, text: str = "the agent's RPC address", *, serving: bool = False
) -> None:
    p.add_argument(
        "--rpc",
        type=rpc_arg,
        metavar="HOST:PORT",
        help=f"{text} (loopback; default 127.0.0.1:7373)" if serving else (
            f"{text} (loopback; default: ${settings.RPC_ADDR_ENV}, else 127.0.0.1:7373)"
        ),
    )
    p.add_argument(
        "--rpc-auth",
        type=token_arg,
        metavar="TOKEN",
        help=(
            "the token every RPC request must carry (default: a random one, written to a "
            "file only this user can read, where this user's clients find it)"
            if serving
            else "the agent's RPC token (default: $SWIM_RPC_AUTH, else the token file the "
            "agent wrote for this user)"
        ),
    )


def _add_json(p: argparse.ArgumentParser, text: str = "print the result as JSON") -> None:
    p.add_argument("--json", action="store_true", help=text)


def _add_security(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "security", "sealing of gossip and state exchange (see README, Security)"
    )
    keys = group.add_mutually_exclusive_group()
    keys.add_argument(
        "--encrypt", type=encrypt_key_arg, metavar="KEY",
        help="encrypt and authenticate all traffic with this base64 AES key (16, 24 or 32 "
        "bytes; make one with `swim keygen`)",
    )
    keys.add_argument(
        "--keyring-file", type=path_arg, metavar="PATH",
        help="read the keys from this keyring file (a JSON array of base64 keys, primary "
        "first; mode 0600 required; make one with `swim keygen --keyring-file PATH`)",
    )
    group.add_argument(
        "--label", type=label_arg, metavar="TEXT",
        help="cluster label carried by every packet; members with another label are "
        "ignored (default: empty)",
    )
    group.add_argument(
        "--accept-plaintext", action="store_true", default=None,
        help="with a key, also accept unencrypted packets (rolling upgrade)",
    )
    group.add_argument(
        "--send-plaintext", action="store_true", default=None,
        help="with a key, still send unencrypted packets (first step of a rolling upgrade)",
    )


def _add_agent(sub: Any) -> None:
    # Every setting defaults to None here, so that the config file can fill in what the
    # command line leaves out (`settings.merge`); the defaults are applied afterwards.
    p: argparse.ArgumentParser = sub.add_parser(
        "agent",
        help="run a cluster member in the foreground",
        description="Run a cluster member in the foreground; print membership changes. "
        "Every flag can also be set in a TOML --config file (see README); flags override it.",
    )
    p.add_argument(
        "--config", type=path_arg, metavar="FILE",
        help="read settings from this TOML file (keys as the flags: bind, join, tags, "
        "event_handlers, ...); flags given too override it",
    )
    p.add_argument("--name", type=name_arg, help="this member's unique name (required)")
    p.add_argument(
        "--bind", type=bind_arg, metavar="HOST:PORT",
        help="address for gossip (UDP) and state exchange (TCP); HOST may be a name, "
        "resolved at start; port 0 picks a free one (required)",
    )
    p.add_argument(
        "--advertise", type=address_arg, metavar="HOST:PORT",
        help="address other members should use (default: --bind)",
    )
    p.add_argument(
        "--join", type=address_arg, action="append", metavar="HOST:PORT",
        help="a member to join through (repeatable; HOST may be a name)",
    )
    p.add_argument(
        "--profile", choices=PROFILES,
        help="timing profile, as memberlist's configs (default lan)",
    )
    p.add_argument(
        "--mode", choices=MODES,
        help="membership mode: swim (SWIM + Lifeguard, the default) or stable (stable "
        "views: K observers per member, one view change per cut; the profile's timing "
        "at half its protocol period)",
    )
    p.add_argument(
        "--tag", type=tag_arg, action="append", metavar="KEY=VALUE",
        help="a tag carried in this member's metadata (repeatable)",
    )
    _add_rpc(p, "where to listen for control commands", serving=True)
    p.add_argument(
        "--metrics", type=address_arg, metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP at this address",
    )
    p.add_argument(
        "--log-json", "--json", dest="log_json", action="store_true", default=None,
        help="print one JSON object per line instead of human lines",
    )
    _add_security(p)
    p.add_argument(
        "--query-response", type=query_response_arg, action="append", metavar="NAME=TEXT",
        help="answer queries named NAME with TEXT (repeatable; without it the agent "
        "answers only queries a handler answers, but acks those that ask for acks)",
    )
    group = p.add_argument_group(
        "event handlers", "scripts run for events, as Serf's (see README, Event handlers)"
    )
    group.add_argument(
        "--event-handler", type=handler_arg, action="append", metavar="[EVENTS=]SCRIPT",
        help="run SCRIPT with /bin/sh for EVENTS, a comma-separated list of "
        f"{', '.join(EVENT_TYPES)}, user:NAME, query:NAME or * (default: every event); "
        "a query handler's stdout answers the query (repeatable)",
    )
    group.add_argument(
        "--event-handler-timeout", type=seconds_arg, metavar="S",
        help="kill a handler still running after S seconds (default 30)",
    )
    group = p.add_argument_group(
        "health checks",
        "Consul-style checks; the member's health is the worst of them, shown by swim "
        "members; a critical member leaves placement rings but is not failed (see README)",
    )
    group.add_argument(
        "--check", type=check_arg, action="append",
        metavar="[name=N,][interval=D,][timeout=D,]KIND=TARGET",
        help="run a health check every interval D (default 10s), each run bounded by its "
        "timeout (default 10s): script=COMMAND (exit 0 passing, 1 warning, else "
        "critical), http=URL (2xx passing, 429 warning, else critical) or tcp=HOST:PORT "
        "(passing if it connects); KIND=TARGET comes last (repeatable)",
    )
    p.set_defaults(handler=run_agent_command, parser=p)


def register(sub: Any) -> None:
    """Add the agent's subcommands to the `swim` parser's subparsers."""
    _add_agent(sub)

    p = sub.add_parser(
        "members", help="list the members an agent knows",
        description="List the members the agent knows, optionally only those matching "
        "every filter given.",
    )
    _add_rpc(p)
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
    _add_rpc(p)
    _add_json(p, "print one JSON object per line")
    p.set_defaults(handler=client.monitor_command)

    p = sub.add_parser("event", help="broadcast a user event to the cluster")
    _add_rpc(p)
    p.add_argument("name", help="event name")
    p.add_argument("payload", nargs="?", default="", help="event payload (text)")
    _add_json(p)
    p.set_defaults(handler=client.event_command)

    p = sub.add_parser(
        "query", help="ask the cluster a question and print the acks and answers",
        description="Send a query to every member matching the filters and print the "
        "acks and answers as they arrive, until the timeout.",
    )
    _add_rpc(p)
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
    _add_rpc(p)
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
    _add_rpc(p)
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
    _add_rpc(p)
    p.add_argument("node", help="the failed member's name")
    _add_json(p)
    p.set_defaults(handler=client.force_leave_command)

    p = sub.add_parser(
        "rtt", help="estimate the round-trip time between two members",
        description="Estimate the RTT between members A and B (B: the agent's own member) "
        "from their Vivaldi network coordinates, which ride on probe acks; no probe "
        "between A and B is needed (Serf's rtt).",
    )
    _add_rpc(p)
    p.add_argument("a", metavar="A", help="a member's name")
    p.add_argument("b", metavar="B", nargs="?", help="another member (default: the agent)")
    _add_json(p)
    p.set_defaults(handler=client.rtt_command)

    p = sub.add_parser("leave", help="make an agent leave the cluster gracefully and exit")
    _add_rpc(p)
    _add_json(p)
    p.set_defaults(handler=client.leave_command)

    p = sub.add_parser("tags", help="show or change an agent's tags")
    _add_rpc(p)
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
    _add_rpc(p)
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


def run_agent_command(args: argparse.Namespace) -> int:
    from swim.agent.startup import run_agent

    try:
        from_file = {} if args.config is None else settings.load_config(args.config)
        options = settings.agent_options(
            settings.merge(from_file, settings.from_command_line(args))
        )
    except settings.ConfigError as exc:
        print(f"swim agent: {exc}", file=sys.stderr, flush=True)
        return 1
    except settings.OptionsError as exc:
        if exc.usage:
            args.parser.error(str(exc))  # usage and the message; exits 2
        print(f"swim agent: {exc}", file=sys.stderr, flush=True)
        return 1
    return run_agent(options)


def demo_command(args: argparse.Namespace) -> int:
    # The demo (the cluster helper, rich's live display) loads only when it runs.
    from swim.agent.demo import run_demo

    return run_demo(args)

"""The `swim agent` subcommand: its flags (every one can be set in the config file too;
`swim.agent.settings`) and its handler, which starts the agent (`swim.agent.startup`).

It is a module of its own so that starting an agent builds only its own parser and
imports none of the client commands (`swim.agent.cli`). Exit codes: 0 after a leave, 1
when the agent cannot start (address in use, a name that does not resolve, a bad config
file), 2 wrong usage (argparse), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from swim.agent import settings
from swim.agent.cli_options import add_rpc
from swim.agent.handlers import EVENT_TYPES
from swim.agent.settings import (
    MODES,
    PROFILES,
    address_arg,
    bind_arg,
    check_arg,
    encrypt_key_arg,
    handler_arg,
    label_arg,
    name_arg,
    path_arg,
    query_response_arg,
    seconds_arg,
    tag_arg,
)


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


def register(sub: Any) -> None:
    """Add the ``agent`` subcommand to the `swim` parser's subparsers."""
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
    add_rpc(p, "where to listen for control commands", serving=True)
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

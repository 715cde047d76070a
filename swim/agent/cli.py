"""The agent's subcommands of `swim`: agent, members, monitor, event, query, keys, leave,
tags, info, demo.

`swim agent` runs a member; the others are clients of a running agent's RPC address
(``--rpc``, default 127.0.0.1:7373). Exit codes: 0 success, 1 failure (agent
unreachable, request refused, address in use), 2 wrong usage (argparse), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from swim.agent import output, rpc
from swim.agent.entry import run_trio
from swim.agent.tags import TagError, parse_tag_assignment
from swim.core.messages import Address

PROFILES = ("lan", "wan", "local")


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; ``localhost`` means 127.0.0.1)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT with an IP address as HOST, got {text!r}"
        ) from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1..65535 in {text!r}")
    return host, int(port_text)


def parse_rpc_address(text: str) -> Address:
    """An RPC address: loopback only, since the protocol's token travels in plain text."""
    addr = parse_address(text)
    if not ipaddress.ip_address(addr[0]).is_loopback:
        raise argparse.ArgumentTypeError(
            f"the RPC address must be on loopback (127.0.0.1 or ::1), got {text!r}: "
            "the control protocol is not encrypted"
        )
    return addr


def _token(text: str) -> str:
    if not text or not text.isprintable() or text != text.strip():
        raise argparse.ArgumentTypeError("an RPC token must be printable, without spaces around")
    return text


def _tag(text: str) -> tuple[str, str]:
    try:
        return parse_tag_assignment(text)
    except TagError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key(text: str) -> str:
    if not text or "=" in text:
        raise argparse.ArgumentTypeError(f"expected a tag KEY, got {text!r}")
    return text


#: Queries named so are the runtime's own (key commands).
_RESERVED_QUERY_PREFIX = "_swim_"
#: Largest answer a member may give (Serf's default, `Config.query_response_size_limit`).
_MAX_ANSWER_BYTES = 1024


def _query_response(text: str) -> tuple[str, str]:
    name, sep, answer = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=TEXT, got {text!r}")
    if name.startswith(_RESERVED_QUERY_PREFIX):
        raise argparse.ArgumentTypeError(
            f"query names starting with {_RESERVED_QUERY_PREFIX!r} are reserved"
        )
    if len(answer.encode("utf-8")) > _MAX_ANSWER_BYTES:
        raise argparse.ArgumentTypeError(
            f"an answer is at most {_MAX_ANSWER_BYTES} bytes (UTF-8)"
        )
    return name, answer


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("a timeout is more than 0 and at most 3600 seconds")
    return value


def _relay_factor(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 5:
        raise argparse.ArgumentTypeError(f"a relay factor is 0..5, got {text!r}")
    return int(text)


def _add_rpc(
    p: argparse.ArgumentParser, text: str = "the agent's RPC address", *, serving: bool = False
) -> None:
    p.add_argument(
        "--rpc",
        type=parse_rpc_address,
        default=rpc.DEFAULT_RPC,
        metavar="HOST:PORT",
        help=f"{text} (loopback; default 127.0.0.1:7373)",
    )
    p.add_argument(
        "--rpc-auth",
        type=_token,
        metavar="TOKEN",
        help=(
            "the token every RPC request must carry (default: a random one, written to a "
            "file only this user can read, where this user's clients find it)"
            if serving
            else "the agent's RPC token (default: $SWIM_RPC_AUTH, else the token file the "
            "agent wrote for this user)"
        ),
    )


def _encrypt_key(text: str) -> str:
    from swim.security import KeyringError, decode_key

    try:
        decode_key(text)
    except KeyringError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _label(text: str) -> str:
    if len(text.encode("utf-8")) > 255:
        raise argparse.ArgumentTypeError("a cluster label is at most 255 bytes (UTF-8)")
    return text


def _add_security(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "security", "sealing of gossip and state exchange (see README, Security)"
    )
    keys = group.add_mutually_exclusive_group()
    keys.add_argument(
        "--encrypt", type=_encrypt_key, metavar="KEY",
        help="encrypt and authenticate all traffic with this base64 AES key (16, 24 or 32 "
        "bytes; make one with `swim keygen`)",
    )
    keys.add_argument(
        "--keyring-file", metavar="PATH",
        help="read the keys from this keyring file (a JSON array of base64 keys, primary "
        "first; mode 0600 required; make one with `swim keygen --keyring-file PATH`)",
    )
    group.add_argument(
        "--label", type=_label, default="", metavar="TEXT",
        help="cluster label carried by every packet; members with another label are "
        "ignored (default: empty)",
    )
    group.add_argument(
        "--accept-plaintext", action="store_true",
        help="with a key, also accept unencrypted packets (rolling upgrade)",
    )
    group.add_argument(
        "--send-plaintext", action="store_true",
        help="with a key, still send unencrypted packets (first step of a rolling upgrade)",
    )


def register(sub: Any) -> None:
    """Add the agent's subcommands to the `swim` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "agent",
        help="run a cluster member in the foreground",
        description="Run a cluster member in the foreground; print membership changes.",
    )
    p.add_argument("--name", required=True, help="this member's unique name")
    p.add_argument(
        "--bind", type=parse_address, required=True, metavar="HOST:PORT",
        help="address for gossip (UDP) and state exchange (TCP)",
    )
    p.add_argument(
        "--advertise", type=parse_address, metavar="HOST:PORT",
        help="address other members should use (default: --bind)",
    )
    p.add_argument(
        "--join", type=parse_address, action="append", default=[], metavar="HOST:PORT",
        help="a member to join through (repeatable)",
    )
    p.add_argument(
        "--profile", choices=PROFILES, default="lan",
        help="timing profile, as memberlist's configs (default lan)",
    )
    p.add_argument(
        "--tag", type=_tag, action="append", default=[], metavar="KEY=VALUE",
        help="a tag carried in this member's metadata (repeatable)",
    )
    _add_rpc(p, "where to listen for control commands", serving=True)
    p.add_argument(
        "--metrics", type=parse_address, metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP at this address",
    )
    p.add_argument(
        "--log-json", action="store_true",
        help="print one JSON object per line instead of human lines",
    )
    _add_security(p)
    p.add_argument(
        "--query-response", type=_query_response, action="append", default=[],
        metavar="NAME=TEXT",
        help="answer queries named NAME with TEXT (repeatable; without it the agent "
        "answers no query, but acks those that ask for acks)",
    )
    p.set_defaults(handler=run_agent_command)

    p = sub.add_parser("members", help="list the members an agent knows")
    _add_rpc(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=members_command)

    p = sub.add_parser("monitor", help="stream an agent's membership and user events")
    _add_rpc(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(handler=monitor_command)

    p = sub.add_parser("event", help="broadcast a user event to the cluster")
    _add_rpc(p)
    p.add_argument("name", help="event name")
    p.add_argument("payload", nargs="?", default="", help="event payload (text)")
    p.set_defaults(handler=event_command)

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
        "--tag", type=_tag, action="append", default=[], metavar="KEY=PATTERN",
        help="ask only members whose tag KEY matches the shell-style PATTERN (repeatable)",
    )
    p.add_argument(
        "--timeout", type=_seconds, metavar="S",
        help="how long to wait for answers (default: Serf's, from the cluster size)",
    )
    p.add_argument("--ack", action="store_true", help="ask every member to ack receipt")
    p.add_argument(
        "--relay-factor", type=_relay_factor, default=0, metavar="K",
        help="members also send their answer through K other members (0..5, default 0)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(handler=query_command)

    p = sub.add_parser(
        "keys", help="install, use, remove or list encryption keys on every member",
        description="Run a key command on every member of the cluster and report each "
        "member's outcome. Rotation: --install NEW, then --use NEW, then --remove OLD. "
        "Exit code 1 unless every member succeeded.",
    )
    _add_rpc(p)
    op = p.add_mutually_exclusive_group(required=True)
    op.add_argument("--install", type=_encrypt_key, metavar="KEY",
                    help="add KEY to every keyring (it opens; it does not seal yet)")
    op.add_argument("--use", type=_encrypt_key, metavar="KEY",
                    help="make the installed KEY the primary (the key that seals) everywhere")
    op.add_argument("--remove", type=_encrypt_key, metavar="KEY",
                    help="remove KEY everywhere (refused where it is the primary)")
    op.add_argument("--list", action="store_true",
                    help="list every member's keys, with how many members hold each")
    p.add_argument(
        "--timeout", type=_seconds, metavar="S",
        help="how long to wait for every member (default: Serf's, from the cluster size)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=keys_command)

    p = sub.add_parser("leave", help="make an agent leave the cluster gracefully and exit")
    _add_rpc(p)
    p.set_defaults(handler=leave_command)

    p = sub.add_parser("tags", help="show or change an agent's tags")
    _add_rpc(p)
    p.add_argument(
        "--set", type=_tag, action="append", default=[], metavar="KEY=VALUE",
        help="set a tag (repeatable)",
    )
    p.add_argument(
        "--delete", type=_key, action="append", default=[], metavar="KEY",
        help="remove a tag (repeatable)",
    )
    p.set_defaults(handler=tags_command)

    p = sub.add_parser("info", help="show an agent's name, address, health and counters")
    _add_rpc(p)
    p.set_defaults(handler=info_command)

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


# =============================================================================== handlers


def run_agent_command(args: argparse.Namespace) -> int:
    from swim.agent.agent import AgentOptions, run_agent

    options = AgentOptions(
        name=args.name,
        bind=args.bind,
        advertise=args.advertise,
        join=tuple(args.join),
        profile=args.profile,
        tags=dict(args.tag),
        rpc=args.rpc,
        metrics=args.metrics,
        log_json=args.log_json,
        rpc_auth=args.rpc_auth,
        encrypt_key=args.encrypt,
        keyring_file=args.keyring_file,
        label=args.label,
        accept_plaintext=args.accept_plaintext,
        send_plaintext=args.send_plaintext,
        query_responses=dict(args.query_response),
    )
    return run_agent(options)


def demo_command(args: argparse.Namespace) -> int:
    # The demo (the cluster helper, rich's live display) loads only when it runs.
    from swim.agent.demo import run_demo

    return run_demo(args)


def _client(command: str, fn: Callable[[], Awaitable[int]]) -> int:
    """Run an RPC client coroutine; RPC failures become a message and exit code 1."""
    try:
        return run_trio(fn)
    except rpc.RpcError as exc:
        print(f"swim {command}: {exc}", file=sys.stderr, flush=True)
        return 1


def members_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        answer = await rpc.call(args.rpc, {"cmd": "members"}, auth=args.rpc_auth)
        members = sorted(answer["members"], key=lambda m: str(m["name"]))
        if args.json:
            print(json.dumps(members, indent=2, ensure_ascii=False))
        else:
            from rich.console import Console

            Console().print(output.members_table(members))
        return 0

    return _client("members", go)


def monitor_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with rpc.connect(args.rpc, auth=args.rpc_auth) as conn:
            info = await conn.call({"cmd": "info"})
            await conn.monitor()
            # Printed once subscribed, so a script can wait for this line.
            print(
                f"monitoring {info.get('name')} at {output.format_addr(args.rpc)}"
                " (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            async for record in conn.records():
                line = output.json_line(record) if args.json else output.human_line(record)
                print(line, flush=True)
        print("swim monitor: the agent closed the stream", file=sys.stderr, flush=True)
        return 0

    return _client("monitor", go)


def event_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        answer = await rpc.call(
            args.rpc,
            {"cmd": "event", "name": args.name, "payload": args.payload},
            auth=args.rpc_auth,
        )
        print(f"event {args.name!r} sent (id {answer.get('id')})")
        return 0

    return _client("event", go)


def query_command(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {
        "name": args.name, "payload": args.payload, "nodes": list(args.node),
        "tags": dict(args.tag), "ack": args.ack, "relay_factor": args.relay_factor,
    }
    if args.timeout is not None:
        request["timeout_s"] = args.timeout

    async def go() -> int:
        async with rpc.connect(args.rpc, auth=args.rpc_auth) as conn:
            header = await conn.query(request)
            if not args.json:
                print(f"Query {args.name!r} dispatched (id {header.get('id')}, "
                      f"timeout {header.get('timeout_s')} s)", flush=True)
            acks: list[str] = []
            responses: dict[str, str] = {}
            binary: dict[str, str] = {}
            done: dict[str, Any] = {}
            async for record in conn.records():
                kind = record.get("type")
                member = str(record.get("member"))
                if kind == "ack":
                    acks.append(member)
                    if not args.json:
                        print(f"Ack from {member!r}", flush=True)
                elif kind == "response":
                    text = record.get("payload")
                    if text is None:
                        binary[member] = str(record.get("payload_b64", ""))
                        text = f"<{len(base64.b64decode(binary[member]))} bytes>"
                    else:
                        responses[member] = str(text)
                    if not args.json:
                        print(f"Response from {member!r}: {text}", flush=True)
                elif kind == "done":
                    done = record
                    break
        if not done:
            print("swim query: the agent closed the stream before the end", file=sys.stderr)
            return 1
        if args.json:
            result: dict[str, Any] = {
                "id": done.get("id"), "name": args.name, "acks": acks,
                "responses": responses, "total_acks": done.get("acks"),
                "total_responses": done.get("responses"), "dropped": done.get("dropped"),
                "complete": done.get("complete"),
            }
            if binary:
                result["responses_b64"] = binary
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            print(f"Total Acks: {done.get('acks')}")
            print(f"Total Responses: {done.get('responses')}")
            if done.get("dropped"):
                print(f"({done.get('dropped')} results were dropped: the agent's buffer "
                      "was full)")
        return 0

    return _client("query", go)


_KEYS_INTRO = {
    "install": "Installing key on all members...",
    "use": "Changing primary key on all members...",
    "remove": "Removing key on all members...",
    "list": "Asking all members for installed keys...",
}


def keys_command(args: argparse.Namespace) -> int:
    op = next(o for o in ("install", "use", "remove", "list") if getattr(args, o))
    request: dict[str, Any] = {"cmd": "keys", "op": op}
    if op != "list":
        request["key"] = getattr(args, op)
    if args.timeout is not None:
        request["timeout_s"] = args.timeout

    async def go() -> int:
        if not args.json:
            print(f"==> {_KEYS_INTRO[op]}", flush=True)
        # Bounded by the command's own timeout (at most an hour), with room to spare.
        bound = (args.timeout or 300.0) + 30.0
        report = await rpc.call(args.rpc, request, timeout_s=bound, auth=args.rpc_auth)
        report.pop("ok", None)
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            print(output.key_report_text(report))
        return 0 if report.get("success") else 1

    return _client("keys", go)


def leave_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        await rpc.call(args.rpc, {"cmd": "leave"}, auth=args.rpc_auth)
        print(f"agent at {output.format_addr(args.rpc)} left the cluster")
        return 0

    return _client("leave", go)


def tags_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        request: dict[str, Any] = {"cmd": "tags"}
        if args.set:
            request["set"] = dict(args.set)
        if args.delete:
            request["delete"] = list(args.delete)
        answer = await rpc.call(args.rpc, request, auth=args.rpc_auth)
        tags = answer.get("tags") or {}
        for key in sorted(tags):
            print(f"{key}={tags[key]}")
        return 0

    return _client("tags", go)


def info_command(args: argparse.Namespace) -> int:
    async def go() -> int:
        answer = await rpc.call(args.rpc, {"cmd": "info"}, auth=args.rpc_auth)
        answer.pop("ok", None)
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0

    return _client("info", go)

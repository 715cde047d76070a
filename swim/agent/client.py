"""The client commands of `swim`: members, monitor, event, query, keys, join,
force-leave, leave, tags, info. Each talks to a running agent over RPC.

The agent is the one at ``--rpc``, else at ``$SWIM_RPC_ADDR``, else at 127.0.0.1:7373
(a host name is resolved, and must be a loopback address). With ``--json`` each command
prints JSON on stdout (the shapes are in the README's command table); errors are one
line on stderr either way. Exit codes: 0 success, 1 failure (agent unreachable, request
refused, nothing joined), 2 wrong usage (also a malformed ``SWIM_RPC_ADDR``), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from swim.agent import output, rpc, settings
from swim.agent.entry import run_trio
from swim.core.messages import Address
from swim.runtime.health import HealthStatus

#: How long `swim join` waits for the agent's answer (the agent bounds each exchange by
#: its stream timeout, 30 s in the wan profile, plus a margin).
JOIN_TIMEOUT_S = 60.0


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout."""
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _client(command: str, args: argparse.Namespace, fn: Callable[[Address], Awaitable[int]]) -> int:
    """Run an RPC client coroutine against the agent's address; address and RPC failures
    become one line on stderr and exit code 1 (2 for a malformed ``SWIM_RPC_ADDR``)."""
    try:
        addr = settings.client_rpc_address(args.rpc)
    except settings.OptionsError as exc:
        print(f"swim {command}: {exc}", file=sys.stderr, flush=True)
        return 2 if exc.usage else 1
    try:
        return run_trio(fn, addr)
    except rpc.RpcError as exc:
        print(f"swim {command}: {exc}", file=sys.stderr, flush=True)
        return 1


#: ``--status`` names: the agent's, and Serf's ``failed`` for ``dead``.
STATUS_CHOICES = {"alive": "alive", "suspect": "suspect", "failed": "dead", "dead": "dead",
                  "left": "left"}


def status_arg(text: str) -> list[str]:
    """``--status alive,suspect``: the statuses named (``failed`` is ``dead``)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in STATUS_CHOICES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"a status is one of {', '.join(STATUS_CHOICES)}, got {text!r}"
        )
    return [STATUS_CHOICES[n] for n in names]


def health_arg(text: str) -> list[str]:
    """``--health warning,critical``: the health statuses named."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = [status.value for status in HealthStatus]
    if not names or any(n not in known for n in names):
        raise argparse.ArgumentTypeError(f"a health is one of {', '.join(known)}, got {text!r}")
    return names


def members_command(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"cmd": "members"}
    statuses = [s for group in args.status for s in group]
    if statuses:
        request["status"] = list(dict.fromkeys(statuses))
    healths = [h for group in args.health for h in group]
    if healths:
        request["health"] = list(dict.fromkeys(healths))
    if args.name is not None:
        request["name"] = args.name
    if args.tag:
        request["tags"] = dict(args.tag)

    async def go(addr: Address) -> int:
        answer = await rpc.call(addr, request, auth=args.rpc_auth)
        members = sorted(answer["members"], key=lambda m: str(m["name"]))
        if args.json:
            print_json(members)
        else:
            from rich.console import Console

            Console().print(output.members_table(members))
        return 0

    return _client("members", args, go)


def monitor_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        async with rpc.connect(addr, auth=args.rpc_auth) as conn:
            info = await conn.call({"cmd": "info"})
            await conn.monitor()
            # Printed once subscribed, so a script can wait for this line.
            print(
                f"monitoring {info.get('name')} at {output.format_addr(addr)}"
                " (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            async for record in conn.records():
                line = output.json_line(record) if args.json else output.human_line(record)
                print(line, flush=True)
        print("swim monitor: the agent closed the stream", file=sys.stderr, flush=True)
        return 0

    return _client("monitor", args, go)


def event_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        answer = await rpc.call(
            addr, {"cmd": "event", "name": args.name, "payload": args.payload},
            auth=args.rpc_auth,
        )
        if args.json:
            print_json({"name": args.name, "payload": args.payload, "id": answer.get("id")})
        else:
            print(f"event {args.name!r} sent (id {answer.get('id')})")
        return 0

    return _client("event", args, go)


def query_command(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {
        "name": args.name, "payload": args.payload, "nodes": list(args.node),
        "tags": dict(args.tag), "ack": args.ack, "relay_factor": args.relay_factor,
        "reask": args.reask,
    }
    if args.timeout is not None:
        request["timeout_s"] = args.timeout

    async def go(addr: Address) -> int:
        async with rpc.connect(addr, auth=args.rpc_auth) as conn:
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
            print_json(result)
        else:
            print(f"Total Acks: {done.get('acks')}")
            print(f"Total Responses: {done.get('responses')}")
            if done.get("dropped"):
                print(f"({done.get('dropped')} results were dropped: the agent's buffer "
                      "was full)")
        return 0

    return _client("query", args, go)


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

    async def go(addr: Address) -> int:
        if not args.json:
            print(f"==> {_KEYS_INTRO[op]}", flush=True)
        # Bounded by the command's own timeout (at most an hour), with room to spare.
        bound = (args.timeout or 300.0) + 30.0
        report = await rpc.call(addr, request, timeout_s=bound, auth=args.rpc_auth)
        report.pop("ok", None)
        if args.json:
            print_json(report)
        else:
            print(output.key_report_text(report))
        return 0 if report.get("success") else 1

    return _client("keys", args, go)


def join_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        answer = await rpc.call(
            addr, {"cmd": "join", "addrs": list(args.addrs)}, timeout_s=JOIN_TIMEOUT_S,
            auth=args.rpc_auth,
        )
        answer.pop("ok", None)
        joined = int(answer.get("joined", 0))
        if args.json:
            print_json(answer)
        else:
            for result in answer.get("results", []):
                seed = result.get("addr")
                if result.get("resolved") not in (None, seed):
                    seed = f"{seed} ({result['resolved']})"
                if result.get("ok"):
                    count = result.get("members")
                    print(f"joined through {seed}: learned {count} "
                          f"member{'' if count == 1 else 's'}")
                else:
                    print(f"cannot join through {seed}: {result.get('error')}")
            plural = "" if joined == 1 else "s"
            print(f"Successfully joined cluster by contacting {joined} node{plural}."
                  if joined else "Error joining the cluster: no seed answered.")
        return 0 if joined else 1

    return _client("join", args, go)


def force_leave_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        answer = await rpc.call(
            addr, {"cmd": "force-leave", "node": args.node}, auth=args.rpc_auth
        )
        answer.pop("ok", None)
        if args.json:
            print_json(answer)
        else:
            print(f"{args.node} was forced to leave: it shows as left across the cluster")
        return 0

    return _client("force-leave", args, go)


def rtt_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        answer = await rpc.call(
            addr, {"cmd": "rtt", "a": args.a, "b": args.b}, auth=args.rpc_auth
        )
        answer.pop("ok", None)
        if args.json:
            print_json(answer)
        else:
            print(f"Estimated {answer['a']} <-> {answer['b']} rtt: "
                  f"{answer['rtt_s'] * 1000:.3f} ms")
        return 0

    return _client("rtt", args, go)


def leave_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        await rpc.call(addr, {"cmd": "leave"}, auth=args.rpc_auth)
        if args.json:
            print_json({"left": True, "rpc": output.format_addr(addr)})
        else:
            print(f"agent at {output.format_addr(addr)} left the cluster")
        return 0

    return _client("leave", args, go)


def tags_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        request: dict[str, Any] = {"cmd": "tags"}
        if args.set:
            request["set"] = dict(args.set)
        if args.delete:
            request["delete"] = list(args.delete)
        answer = await rpc.call(addr, request, auth=args.rpc_auth)
        tags = answer.get("tags") or {}
        if args.json:
            print_json({"tags": tags})
        else:
            for key in sorted(tags):
                print(f"{key}={tags[key]}")
        return 0

    return _client("tags", args, go)


def info_command(args: argparse.Namespace) -> int:
    async def go(addr: Address) -> int:
        answer = await rpc.call(addr, {"cmd": "info"}, auth=args.rpc_auth)
        answer.pop("ok", None)
        # JSON with or without --json: the record is nested, so JSON is its text form.
        print_json(answer)
        return 0

    return _client("info", args, go)

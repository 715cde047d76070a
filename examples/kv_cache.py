"""A sharded key-value cache on swim: every process is a cluster member, keys live on the
members a placement ring names, and requests are forwarded to them.

Run three members on one machine (ports 0 pick free ones; each prints a READY line with
the ports it got)::

    python examples/kv_cache.py --name a --bind 127.0.0.1:7001 --api 127.0.0.1:8001
    python examples/kv_cache.py --name b --bind 127.0.0.1:7002 --api 127.0.0.1:8002 \\
        --join 127.0.0.1:7001
    python examples/kv_cache.py --name c --bind 127.0.0.1:7003 --api 127.0.0.1:8003 \\
        --join 127.0.0.1:7001
    python examples/kv_cache.py client 127.0.0.1:8002 SET colour blue
    python examples/kv_cache.py client 127.0.0.1:8003 GET colour

Client protocol: one command per line over TCP (UTF-8, at most 8 KiB a line), one answer
line each:

    GET key              VALUE text | MISSING | ERROR why
    SET key text...      STORED copies | ERROR why
    HEALTH status        OK (passing, warning or critical: what the check reports)
    OWNERS key           OWNERS member... (the key's replicas, the owner first)
    RING                 RING member... (the members on this member's ring)
    MEMBERS              MEMBERS {"name": {"status": ..., "health": ...}, ...}
    STATS                STATS {"keys": ..., "forwarder": {...}}

How it works:

* Placement: `swim.ring` over the members that are up and not critical, ``--replicas``
  (2) owners per key. Every member builds the same ring from the same membership.
* SET writes the value, versioned (wall-clock nanoseconds, writer), to every owner of the
  key; it succeeds if at least one copy was stored. A copy is kept only if it is newer
  than the one held (last writer wins).
* GET goes through `Forwarder.handle_or_forward`: served here if this member owns the
  key, else by the owner over a reliable message; if the owner cannot be reached or does
  not answer, the next owner. An owner that does not hold the key (it just took the key
  over and its copy is still on its way) is followed by a look at the other owners.
* Hand-off: when the ring changes, every member sends each key it holds to the key's
  owners that are new to it, so keys regain their full replica count after a failure and
  a member back from critical health gets the writes it missed.
* Health: a check runs every ``--check-interval`` seconds (`Node.run_health_check`). It is
  a stand-in for a real one: critical when the store is full (``--max-keys``), warning
  above 80 %, or whatever the last HEALTH command said. A critical member stays alive (it
  answers probes, forwards requests and keeps its data) but leaves every ring, so its
  keys are served by the others until it passes again.

On failure: a member killed with SIGKILL loses its memory, nothing else. Each key written
while two owners were up has a copy on a survivor, which serves reads at once (the
forwarder skips the dead owner on the first refused connection, before the protocol has
even declared it failed) and hands the key to its new second owner once the ring drops
the dead member. What is lost: a key whose every owner died before the hand-off finished
(with two replicas, a second death within about a second of the first), and writes whose
every copy failed (SET then answers ERROR). A key only read from a survivor until the
hand-off finishes has one copy meanwhile. SIGINT and SIGTERM leave the cluster
gracefully.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio

import swim
from swim import HealthStatus
from swim.forward import Forwarder, ForwardError
from swim.ring import Ring, RingChanged, RingOptions

MAX_LINE_BYTES = 8192
MAX_KEY_BYTES = 256

#: What member-to-member requests can fail with (each is tried, then skipped).
REQUEST_ERRORS = (ForwardError, swim.DeliveryError, LookupError)


@attrs.define
class Entry:
    value: str
    #: (wall-clock nanoseconds, writer): the newer wins.
    version: tuple[int, str]


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class Cache:
    """One member's share of the cache, and the client API."""

    def __init__(self, node: swim.Node, *, replicas: int, max_keys: int) -> None:
        self.node = node
        self.replicas = replicas
        self.max_keys = max_keys
        self.store: dict[str, Entry] = {}
        self.reported: HealthStatus = HealthStatus.PASSING
        self.forwarder: Forwarder | None = None
        self.handoffs = 0
        self._ring_dirty = trio.Event()
        self._handed_off_at: Ring | None = None

    @property
    def fw(self) -> Forwarder:
        assert self.forwarder is not None
        return self.forwarder

    # ------------------------------------------------------------ member to member

    async def handle(self, request: bytes) -> bytes:
        """Serve a request for a key this member holds (the forwarder's handler)."""
        msg = json.loads(request)
        key = str(msg["key"])
        if msg["op"] == "get":
            entry = self.store.get(key)
            if entry is None:
                return json.dumps({"found": False}).encode()
            return json.dumps(
                {"found": True, "value": entry.value, "version": list(entry.version)}
            ).encode()
        if msg["op"] == "put":
            version = (int(msg["version"][0]), str(msg["version"][1]))
            stored = self.put_local(key, str(msg["value"]), version)
            return json.dumps({"stored": stored}).encode()
        raise ValueError(f"unknown op {msg['op']!r}")

    def put_local(self, key: str, value: str, version: tuple[int, str]) -> bool:
        held = self.store.get(key)
        if held is not None and held.version >= version:
            return False
        self.store[key] = Entry(value, version)
        return True

    # ------------------------------------------------------------ client operations

    async def get(self, key: str) -> str | None:
        request = json.dumps({"op": "get", "key": key}).encode()
        answer = json.loads(await self.fw.handle_or_forward(key, request))
        if answer["found"]:
            return str(answer["value"])
        # The owner may have just taken the key over: look at the other owners.
        for owner in self.fw.owners(key, self.replicas)[1:]:
            try:
                answer = json.loads(await self.fw.request(owner, request))
            except REQUEST_ERRORS:
                continue
            if answer["found"]:
                return str(answer["value"])
        return None

    async def set(self, key: str, value: str) -> int:
        version = [time.time_ns(), self.node.name]
        request = json.dumps({"op": "put", "key": key, "value": value, "version": version})
        copies = 0
        failures = []
        for owner in self.fw.owners(key, self.replicas):
            try:
                await self.fw.request(owner, request.encode())
                copies += 1
            except REQUEST_ERRORS as exc:
                failures.append(f"{owner}: {exc}")
        if not copies:
            raise ForwardError("no owner stored it (" + "; ".join(failures) + ")")
        return copies

    # ------------------------------------------------------------ ring changes

    def ring_changed(self, change: RingChanged) -> None:
        """The forwarder's callback: wake the hand-off task."""
        print(f"[{self.node.name}] ring: {' '.join(sorted(change.new.members))}",
              file=sys.stderr, flush=True)
        self._ring_dirty.set()

    async def handoff_loop(self) -> None:
        """Send every key held here to its owners that are new since the last pass."""
        while True:
            await self._ring_dirty.wait()
            self._ring_dirty = trio.Event()
            before, ring = self._handed_off_at, self.fw.ring
            me = self.node.name
            for key, entry in list(self.store.items()):
                had = before.owners(key, self.replicas) if before is not None else []
                for owner in ring.owners(key, self.replicas):
                    if owner == me or owner in had:
                        continue
                    request = {"op": "put", "key": key, "value": entry.value,
                               "version": list(entry.version)}
                    try:
                        await self.fw.request(owner, json.dumps(request).encode())
                        self.handoffs += 1
                    except REQUEST_ERRORS:
                        pass  # it is gone again, or will get the key from another holder
            self._handed_off_at = ring

    # ------------------------------------------------------------ health

    async def check(self) -> HealthStatus:
        """The health check (a stand-in for a real one, see the module docs)."""
        fill = len(self.store) / self.max_keys
        measured = (
            HealthStatus.CRITICAL if fill >= 1 else
            HealthStatus.WARNING if fill >= 0.8 else HealthStatus.PASSING
        )
        return max(measured, self.reported, key=lambda s: s.severity)

    # ------------------------------------------------------------ the client API

    async def serve_client(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                while b"\n" not in buffer:
                    if len(buffer) > MAX_LINE_BYTES:
                        await stream.send_all(b"ERROR line too long\n")
                        return
                    data = await stream.receive_some(4096)
                    if not data:
                        return
                    buffer += data
                line, _, buffer = buffer.partition(b"\n")
                reply = await self.command(line.decode("utf-8", "replace").strip())
                await stream.send_all(reply.encode() + b"\n")
        except trio.BrokenResourceError:
            return

    async def command(self, line: str) -> str:
        verb, _, rest = line.partition(" ")
        verb = verb.upper()
        try:
            if verb in ("GET", "OWNERS"):
                key = self._key(rest)
                if verb == "OWNERS":
                    return "OWNERS " + " ".join(self.fw.owners(key, self.replicas))
                value = await self.get(key)
                return "MISSING" if value is None else f"VALUE {value}"
            if verb == "SET":
                key, _, value = rest.partition(" ")
                return f"STORED {await self.set(self._key(key), value)}"
            if verb == "HEALTH":
                self.reported = HealthStatus.parse(rest.strip().lower())
                return "OK"
            if verb == "RING":
                return "RING " + " ".join(sorted(self.fw.ring.members))
            if verb == "MEMBERS":
                members = {
                    m.name: {"status": m.status.name.lower(),
                             "health": self.node.health(m.name).value}
                    for m in self.node.members()
                }
                return "MEMBERS " + json.dumps(members, sort_keys=True)
            if verb == "STATS":
                stats: dict[str, Any] = {
                    "keys": len(self.store), "handoffs": self.handoffs,
                    "forwarder": attrs.asdict(self.fw.stats()),
                }
                return "STATS " + json.dumps(stats, sort_keys=True)
        except (ValueError, ForwardError) as exc:
            return f"ERROR {exc}"
        return f"ERROR unknown command {verb!r}"

    @staticmethod
    def _key(text: str) -> str:
        key = text.strip()
        if not key or " " in key or len(key.encode()) > MAX_KEY_BYTES:
            raise ValueError(f"a key is 1..{MAX_KEY_BYTES} bytes without spaces")
        return key


async def run_member(args: argparse.Namespace) -> None:
    config = swim.Config.profile(args.profile)
    node = swim.Node(config, name=args.name, bind=args.bind, seeds=args.join)
    async with node:
        cache = Cache(node, replicas=args.replicas, max_keys=args.max_keys)
        options = RingOptions(replicas_default=args.replicas)
        async with Forwarder(node, options, cache.handle, attempt_timeout_s=2.0,
                             on_ring_change=cache.ring_changed) as forwarder:
            cache.forwarder = forwarder
            async with node.run_health_check(
                cache.check, interval_s=args.check_interval, timeout_s=args.check_interval,
            ), trio.open_nursery() as nursery:
                host, port = args.api
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, cache.serve_client, port, host=host)
                )
                api_port = listeners[0].socket.getsockname()[1]
                nursery.start_soon(cache.handoff_loop)
                gossip = f"{node.addr[0]}:{node.addr[1]}"
                print(f"READY {node.name} gossip={gossip} api={host}:{api_port} "
                      f"pid={os.getpid()}", flush=True)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                # Leave while the forwarder still answers, then stop serving.
                await node.leave(timeout_s=3.0)
                nursery.cancel_scope.cancel()


async def run_client(addr: tuple[str, int], words: Sequence[str]) -> str:
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(" ".join(words).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            data = await stream.receive_some(4096)
            if not data:
                break
            buffer += data
    return buffer.decode().strip()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["client"]:
        if len(argv) < 3:
            print("usage: kv_cache.py client HOST:PORT COMMAND [ARGS...]", file=sys.stderr)
            return 2
        print(trio.run(run_client, parse_addr(argv[1]), argv[2:]))
        return 0
    parser = argparse.ArgumentParser(description="a sharded key-value cache on swim")
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", type=parse_addr, default=("127.0.0.1", 0),
                        help="gossip address (UDP and TCP), HOST:PORT")
    parser.add_argument("--api", type=parse_addr, default=("127.0.0.1", 0),
                        help="client API address, HOST:PORT")
    parser.add_argument("--join", type=parse_addr, action="append", default=[])
    parser.add_argument("--profile", default="local", choices=["lan", "wan", "local"])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-keys", type=int, default=100_000)
    parser.add_argument("--check-interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    trio.run(run_member, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

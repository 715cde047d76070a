"""`swim.Node` in whole-cluster scenarios, run twice: over real loopback UDP + TCP (real
clock) and over the in-memory network under trio's MockClock (autojump: fast and
deterministic).

Each scenario starts members as tasks of one nursery, waits with generous bounds for an
outcome (a state every member agrees on, or the events every member saw) and asserts
the outcome, never a duration.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterable

import attrs
import pytest
import trio
import trio.testing

import swim
from swim import (
    Config,
    Event,
    MemberFailed,
    MemberLeft,
    MemberStatus,
    MemberSuspected,
    Node,
    UserBroadcastReceived,
    UserMessageReceived,
)
from swim.security import SecurityConfig
from transport.base import Address, StreamHandler, TransportError
from transport.memory import MemoryNetwork, Packet, PacketKind, Route

KINDS = ["memory", "udp"]


@attrs.define(eq=False)
class Member:
    """A node running as a task: its events are recorded from the moment it starts."""

    name: str
    node: Node
    scope: trio.CancelScope
    stop_requested: trio.Event = attrs.Factory(trio.Event)
    stopped: trio.Event = attrs.Factory(trio.Event)
    events: list[Event] = attrs.Factory(list)

    def crash(self) -> None:
        """Stop abruptly, without leaving: to the cluster, a crash."""
        self.scope.cancel()

    async def stop(self) -> None:
        """Exit the node's context normally (a graceful leave) and wait for the end."""
        self.stop_requested.set()
        await self.stopped.wait()


class Cluster:
    """Members on one network kind; every member joins through the first one."""

    def __init__(self, kind: str, nursery: trio.Nursery, config: Config) -> None:
        self.kind = kind
        self.nursery = nursery
        self.config = config
        self.network = MemoryNetwork(latency_s=0.001, rng=random.Random(7))
        self.members: dict[str, Member] = {}
        self.addrs: dict[str, Address] = {}
        self._count = 0
        #: How long to wait for an outcome (virtual seconds under MockClock).
        self.bound_s = 120.0 if kind == "memory" else 45.0

    def factory(self, name: str) -> Callable[[StreamHandler], object] | None:
        if self.kind == "udp":
            return None
        addr = self.addrs[name]
        return lambda handler: self.network.open(addr, handler)

    async def start(
        self, name: str, *, seeds: Iterable[Address] | None = None, meta: bytes = b""
    ) -> Member:
        if name not in self.addrs:
            self._count += 1
            self.addrs[name] = (
                ("127.0.0.1", 0) if self.kind == "udp" else (f"10.0.0.{self._count}", 7946)
            )
        if seeds is None:
            seeds = [self.seed_addr] if self.members else []
        member: Member = await self.nursery.start(self._run, name, list(seeds), meta)
        self.members[name] = member
        self.addrs[name] = member.node.addr  # the real port, for a restart
        return member

    @property
    def seed_addr(self) -> Address:
        return next(iter(self.members.values())).node.addr

    async def _run(
        self,
        name: str,
        seeds: list[Address],
        meta: bytes,
        *,
        task_status: trio.TaskStatus[Member],
    ) -> None:
        addr = self.addrs[name]
        node = Node(
            self.config,
            name=name,
            bind=addr,
            seeds=seeds,
            meta=meta,
            seed=hash(name) & 0xFFFF if self.kind == "udp" else sum(name.encode()),
            transport_factory=self.factory(name),  # type: ignore[arg-type]
            join_backoff_s=0.2,
            join_backoff_max_s=2.0,
        )
        member: Member | None = None
        with trio.CancelScope() as scope:
            async with node:
                member = Member(name, node, scope)
                subscription = node.events(max_buffer=100_000)
                async with trio.open_nursery() as inner:
                    inner.start_soon(_record, subscription, member.events)
                    task_status.started(member)
                    await member.stop_requested.wait()
                    inner.cancel_scope.cancel()
        if member is not None:
            member.stopped.set()

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if not m.stopped.is_set()]

    async def converged(self, names: Iterable[str], *, among: Iterable[Member] | None = None
                        ) -> None:
        """Wait until every member of `among` (default: all live ones) sees exactly
        `names` alive."""
        want = set(names)
        observers = list(among) if among is not None else self.live()

        def done() -> bool:
            return all(
                {m.name for m in o.node.members() if m.status == MemberStatus.ALIVE} == want
                for o in observers
            )

        await eventually(done, self.bound_s)


async def _record(subscription: AsyncIterator[Event], into: list[Event]) -> None:
    async for event in subscription:
        into.append(event)


async def eventually(predicate: Callable[[], bool], bound_s: float, step_s: float = 0.05) -> None:
    with trio.fail_after(bound_s):
        while not predicate():
            await trio.sleep(step_s)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock | None:
    """The memory network runs under an autojump MockClock; UDP under the real clock."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else None


@pytest.fixture
async def cluster(kind: str) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        yield Cluster(kind, nursery, Config.local())
        nursery.cancel_scope.cancel()


NAMES = [f"n{i}" for i in range(5)]


async def start_all(cluster: Cluster, names: Iterable[str] = NAMES) -> list[Member]:
    members = [await cluster.start(name) for name in names]
    await cluster.converged(n.name for n in members)
    return members


MembershipEvent = (
    swim.MemberJoined | MemberSuspected | swim.MemberAlive | MemberFailed | MemberLeft
    | swim.MemberUpdated
)


def about(events: Iterable[Event], kind: type[MembershipEvent], name: str) -> list[Event]:
    return [
        e for e in events
        if isinstance(e, kind) and isinstance(e, MembershipEvent) and e.member.name == name
    ]


# ================================================================= scenarios


async def test_five_members_converge(cluster: Cluster, clock: object) -> None:
    members = await start_all(cluster)
    await trio.sleep(2 * cluster.config.probe_interval_s)  # everyone has probed by now
    await cluster.converged(NAMES)
    for member in members:
        assert {m.name for m in member.node.members()} == set(NAMES)
        assert member.node.local_health() == 0
        stats = member.node.stats()
        assert stats.core.malformed == 0
        assert stats.core.probes > 0
        assert stats.transport.datagrams_sent > 0


async def test_crashed_member_is_failed_everywhere_and_rejoins_after_restart(
    cluster: Cluster, clock: object
) -> None:
    members = await start_all(cluster)
    victim = members[-1]
    survivors = members[:-1]
    old_incarnation = survivors[0].node.member(victim.name).incarnation  # type: ignore[union-attr]
    victim.crash()
    await victim.stopped.wait()

    def failed_everywhere() -> bool:
        return all(about(s.events, MemberFailed, victim.name) for s in survivors)

    await eventually(failed_everywhere, cluster.bound_s)
    for survivor in survivors:
        state = survivor.node.member(victim.name)
        # Dead, or already reaped (gossip_to_the_dead_s after its death) where it failed
        # first.
        assert state is None or state.status == MemberStatus.DEAD
        assert not about(survivor.events, MemberLeft, victim.name)

    # Restarted under the same name and address, with a fresh incarnation: it learns of
    # its death when it joins, refutes it, and is alive everywhere again.
    restarted = await cluster.start(victim.name, seeds=[survivors[0].node.addr])
    await cluster.converged(NAMES)
    for member in [*survivors, restarted]:
        state = member.node.member(victim.name)
        assert state is not None
        assert state.incarnation > old_incarnation


async def test_leaving_member_is_seen_as_left(cluster: Cluster, clock: object) -> None:
    members = await start_all(cluster)
    leaver = members[2]
    assert await leaver.node.leave(timeout_s=5.0)
    await leaver.stop()
    others = [m for m in members if m is not leaver]

    await eventually(
        lambda: all(about(o.events, MemberLeft, leaver.name) for o in others), cluster.bound_s
    )
    for other in others:
        state = other.node.member(leaver.name)
        assert state is not None
        assert state.status == MemberStatus.LEFT
        assert not about(other.events, MemberFailed, leaver.name)


async def test_graceful_exit_leaves(cluster: Cluster, clock: object) -> None:
    """Exiting the context normally is a leave, not a failure."""
    members = await start_all(cluster, NAMES[:3])
    await members[1].stop()
    await eventually(
        lambda: all(about(m.events, MemberLeft, "n1") for m in (members[0], members[2])),
        cluster.bound_s,
    )


async def test_metadata_and_broadcasts_reach_everyone(cluster: Cluster, clock: object) -> None:
    members = await start_all(cluster)
    members[0].node.update_metadata(b"role=db")
    ids = [members[1].node.broadcast(b"hello"), members[3].node.broadcast(b"world")]

    def everywhere() -> bool:
        for member in members:
            state = member.node.member("n0")
            if state is None or state.meta != b"role=db":
                return False
            got = {e.payload for e in member.events if isinstance(e, UserBroadcastReceived)}
            if got != {b"hello", b"world"}:
                return False
        return True

    await eventually(everywhere, cluster.bound_s)
    for member in members:
        received = [e for e in member.events if isinstance(e, UserBroadcastReceived)]
        assert sorted(e.id for e in received) == sorted(ids)  # each exactly once


async def test_user_messages(cluster: Cluster, clock: object) -> None:
    a, b = await start_all(cluster, NAMES[:2])
    await a.node.send("n1", b"by datagram")
    await a.node.send(b.node.addr, b"by stream", reliable=True)
    await eventually(
        lambda: {e.payload for e in b.events if isinstance(e, UserMessageReceived)}
        == {b"by datagram", b"by stream"},
        cluster.bound_s,
    )
    assert all(e.source == "n0" for e in b.events if isinstance(e, UserMessageReceived))
    with pytest.raises(LookupError):
        await a.node.send("nobody", b"x")
    b.crash()
    await b.stopped.wait()
    with pytest.raises(swim.DeliveryError):
        await a.node.send("n1", b"lost", reliable=True)


async def test_garbage_and_stalled_streams_do_not_hurt(cluster: Cluster, clock: object) -> None:
    members = await start_all(cluster, NAMES[:3])
    target = members[0]
    rng = random.Random(3)
    garbage = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))) for _ in range(50)]
    garbage += [b"", b"\x00", b"\xff" * 1400]
    # The same bytes framed as plaintext packets of this cluster (format byte, empty
    # label, valid CRC): they pass the sealer and reach the core's decoder.
    framer = SecurityConfig().sealer(sender_id=bytes(8), random_bytes=random.Random(0).randbytes)
    garbage += [framer.seal(data, now=0.0) for data in garbage]
    if cluster.kind == "udp":
        await _udp_garbage(target.node.addr, garbage)
    else:
        await _memory_garbage(cluster, target.node.addr, garbage)

    # Still a healthy member of a healthy cluster a few probe periods later.
    await trio.sleep(3 * cluster.config.probe_interval_s)
    await cluster.converged(NAMES[:3])
    stats = target.node.stats()
    assert stats.security.unknown_version > 0  # unframed bytes: dropped by the sealer
    assert stats.core.malformed > 0  # framed garbage: dropped by the codec
    for member in members:
        assert not [e for e in member.events if isinstance(e, MemberSuspected | MemberFailed)]
    # And it answers streams: a reliable message gets through.
    await members[1].node.send("n0", b"still there", reliable=True)


async def test_stalled_seed_and_silent_streams(cluster: Cluster, clock: object) -> None:
    """A seed that accepts streams but never answers times out; the join is retried and
    the node joins once a real seed answers. Outgoing streams lost on the way also time
    out (and are reported to the core as failures) without stalling anything."""
    first = await cluster.start("n0")
    async with _stalled_seed(cluster) as stalled_addr:
        joiner = await cluster.start("n1", seeds=[stalled_addr, first.node.addr])
        await cluster.converged(["n0", "n1"])
        # The stalled exchange ends in a timeout, reported to the core as a failure.
        await eventually(lambda: joiner.node.stats().streams_failed >= 1, cluster.bound_s)
        assert [e.ok for e in joiner.events if isinstance(e, swim.JoinCompleted)] in (
            [True, False], [False, True]
        )
    if cluster.kind == "memory":
        # Every stream now vanishes on the way (a black hole); datagrams still flow.
        def route(packet: Packet) -> Route:
            return Route.drop() if packet.kind is PacketKind.STREAM else Route.deliver()

        cluster.network.route = route
        await trio.sleep(3 * cluster.config.push_pull_interval_s)
        await cluster.converged(["n0", "n1"])
        assert joiner.node.stats().core.push_pulls_failed >= 1


# ================================================================= misbehaving peers


async def _udp_garbage(addr: Address, garbage: list[bytes]) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        for data in garbage:
            await sock.sendto(data, addr)
    # A stream that sends half a frame and stalls, one that sends a bad frame, and one
    # that connects and says nothing; all are cut off by the node's transport.
    streams = []
    try:
        for payload in (b"\x00\x00\x10\x00partial", b"\x00\x00\x00\x03abc", b""):
            stream = await trio.open_tcp_stream(*addr)
            streams.append(stream)
            if payload:
                await stream.send_all(payload)
        await trio.sleep(0.5)
    finally:
        for stream in streams:
            await stream.aclose()


async def _memory_garbage(cluster: Cluster, addr: Address, garbage: list[bytes]) -> None:
    async def no_streams(data: bytes, src: Address) -> bytes | None:
        return None

    async with cluster.network.open(("10.9.9.9", 1), no_streams) as rogue:
        for data in garbage:
            await rogue.send(data, addr)
        for data in garbage[:5]:
            with pytest.raises(TransportError):
                await rogue.request(addr, data, timeout_s=2.0)


@contextlib.asynccontextmanager
async def _stalled_seed(cluster: Cluster) -> AsyncIterator[Address]:
    """A peer that accepts streams and never answers them."""
    async with trio.open_nursery() as nursery:
        if cluster.kind == "udp":
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

            async def hold(stream: trio.SocketStream) -> None:
                await trio.sleep_forever()

            nursery.start_soon(trio.serve_listeners, hold, listeners)
            yield ("127.0.0.1", listeners[0].socket.getsockname()[1])
        else:

            async def never(data: bytes, src: Address) -> bytes | None:
                await trio.sleep_forever()

            async with cluster.network.open(("10.9.9.8", 7946), never) as transport:
                yield transport.local_addr
        nursery.cancel_scope.cancel()

"""`swim.Node` behaviours one at a time, on the in-memory network under an autojump
MockClock: argument checks, errors and cancellation on the way out, event subscriptions
and their overflow policy, join retries, the TCP fallback ping, send errors.

(Runs are fast but not bit-reproducible: trio's scheduler deliberately varies the order
of runnable tasks. The simulator is the deterministic tool.)
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable

import attrs
import pytest
import trio
import trio.testing

import swim
from swim import (
    Config,
    Event,
    EventOverflow,
    JoinCompleted,
    MemberStatus,
    MemberSuspected,
    Node,
    ProtocolError,
    UserBroadcastReceived,
)
from transport.base import Address, StreamHandler, Transport
from transport.memory import MemoryNetwork, Packet, PacketKind, Route


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork(latency_s=0.001, rng=random.Random(1))


def addr_of(i: int) -> Address:
    return (f"10.0.0.{i}", 7946)


def on(network: MemoryNetwork, addr: Address) -> Callable[[StreamHandler], object]:
    return lambda handler: network.open(addr, handler)


def make_node(
    network: MemoryNetwork, i: int, *, seeds: list[Address] | None = None, **kwargs: object
) -> Node:
    return Node(
        kwargs.pop("config", Config.local()),  # type: ignore[arg-type]
        name=f"n{i}",
        seeds=[addr_of(1)] if seeds is None and i != 1 else (seeds or []),
        seed=i,
        transport_factory=on(network, addr_of(i)),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


async def eventually(predicate: Callable[[], bool], bound_s: float = 120.0) -> None:
    with trio.fail_after(bound_s):
        while not predicate():
            await trio.sleep(0.05)


def alive_names(node: Node) -> set[str]:
    return {m.name for m in node.members() if m.status == MemberStatus.ALIVE}


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[list[Node]]:
    """Run every node in its own task; yield once all are up."""
    async with trio.open_nursery() as nursery:
        stops = []
        for node in nodes:
            stop = trio.Event()
            stops.append(stop)
            await nursery.start(_serve, node, stop)
        yield list(nodes)
        for stop in stops:
            stop.set()


async def _serve(node: Node, stop: trio.Event, *, task_status: trio.TaskStatus[None]) -> None:
    async with node:
        task_status.started()
        await stop.wait()


# ================================================================ arguments


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_unspecified_advertise_address_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="cannot reach"):
        Node(Config.local(), name="a", advertise=(host, 7946))
    with pytest.raises(ValueError, match="advertise"):
        Node(Config.local(), name="a", bind=(host, 7946))  # the bound address is announced


def test_bind_any_with_a_specific_advertise_address_is_fine() -> None:
    Node(Config.local(), name="a", bind=("0.0.0.0", 7946), advertise=("192.0.2.1", 7946))


async def test_unspecified_local_address_from_a_transport_is_refused(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    node = Node(Config.local(), name="a", transport_factory=on(network, ("0.0.0.0", 1)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot reach"):
        async with node:
            pass  # pragma: no cover
    # The transport was closed on the way out: its address is free again.
    async with network.open(("0.0.0.0", 1), _no_streams):
        pass


async def test_api_needs_a_running_node(network: MemoryNetwork) -> None:
    node = make_node(network, 1)
    with pytest.raises(RuntimeError, match="not running"):
        node.members()
    with pytest.raises(RuntimeError, match="not running"):
        node.broadcast(b"x")
    with pytest.raises(RuntimeError):
        _ = node.addr


# ========================================================== lifecycle and exits


async def test_an_exception_in_the_body_comes_out_as_itself(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with make_node(network, 1):
            raise KeyError("mine")
    async with network.open(addr_of(1), _no_streams):  # closed: the address is free
        pass


async def test_cancellation_is_a_crash_and_leaves_nothing_behind(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1)) as (a,):
        sub = a.events()
        with trio.CancelScope() as scope:
            async with make_node(network, 2) as b:
                await eventually(lambda: alive_names(a) == {"n1", "n2"})
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        # b's address is free again at once (sockets closed), and it did not leave: a
        # suspects it, then declares it failed.
        async with network.open(addr_of(2), _no_streams):
            pass
        failed = [e async for e in _until(sub, swim.MemberFailed)]
        assert failed[-1].member.name == "n2"  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="stopped"):
            b.broadcast(b"x")


async def test_graceful_exit_leaves_and_ends_subscriptions(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1)) as (a,):
        b = make_node(network, 2)
        async with b:
            await eventually(lambda: alive_names(b) == {"n1", "n2"})
            b_events = b.events()
        assert b.core.leaving and b.core.leave_complete
        assert [e async for e in b_events] == []  # ended, not hung
        await eventually(lambda: a.member("n2").status == MemberStatus.LEFT)  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="started once"):
            async with b:
                pass  # pragma: no cover


async def test_leave_then_no_metadata_updates(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1), make_node(network, 2)) as (a, b):
        await eventually(lambda: alive_names(a) == {"n1", "n2"})
        assert await b.leave(timeout_s=5.0)
        with pytest.raises(ProtocolError):
            b.update_metadata(b"x")
        await eventually(lambda: a.member("n2").status == MemberStatus.LEFT)  # type: ignore[union-attr]
        assert await b.leave(timeout_s=1.0)  # idempotent


async def test_a_lone_node_leaves_at_once(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with make_node(network, 1) as a:
        start = trio.current_time()
        assert await a.leave(timeout_s=30.0)
        assert trio.current_time() - start < 1.0


# ============================================================ event subscriptions


async def test_every_subscriber_gets_every_event_in_order(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1)) as (a,):
        first, second = a.events(), a.events()
        ids = [a.broadcast(f"m{i}".encode()) for i in range(20)]
        for sub in (first, second):
            got = [await sub.__anext__() for _ in ids]
            assert [e.id for e in got if isinstance(e, UserBroadcastReceived)] == ids


async def test_a_slow_subscriber_is_cut_off_without_blocking_anyone(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1), make_node(network, 2)) as (a, b):
        slow = a.events(max_buffer=3)
        fast = a.events()
        ids = [b.broadcast(f"m{i}".encode()) for i in range(10)]
        received: list[int] = []
        with trio.fail_after(60):
            async for event in fast:
                if isinstance(event, UserBroadcastReceived):
                    received.append(event.id)
                if len(received) == len(ids):
                    break
        assert sorted(received) == sorted(ids)
        # The slow one gets what it had buffered, then the overflow error.
        got: list[Event] = []
        with pytest.raises(EventOverflow) as info:
            async for event in slow:
                got.append(event)
        assert len(got) == 3
        assert info.value.dropped >= 1  # counted until it was cut off
        assert a.stats().subscriber_overflows == 1
        # The protocol went on: a later broadcast still arrives, to the fast subscriber.
        b.broadcast(b"later")
        later = await fast.__anext__()
        assert isinstance(later, UserBroadcastReceived) and later.payload == b"later"


async def test_closed_subscription_ends(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    async with running(make_node(network, 1)) as (a,):
        with a.events() as sub:
            a.broadcast(b"one")
            assert isinstance(await sub.__anext__(), UserBroadcastReceived)
        a.broadcast(b"two")
        assert [e async for e in sub] == []
        with pytest.raises(ValueError):
            a.events(max_buffer=0)


# ===================================================================== joining


async def test_join_retries_with_backoff_until_a_seed_answers(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    joiner = make_node(network, 2, join_backoff_s=0.5, join_backoff_max_s=4.0)
    async with running(joiner):
        sub = joiner.events()
        await trio.sleep(20.0)  # the seed is not up yet: attempts fail and back off
        attempts = joiner.stats().join_attempts
        # 0.5, 1, 2, 4, 4, ... s apart (jittered down to half): between 5 and 12 tries.
        assert 5 <= attempts <= 12
        async with running(make_node(network, 1, seeds=[])) as (seed,):
            await eventually(lambda: alive_names(seed) == {"n1", "n2"})
            outcomes = [e async for e in _until(sub, JoinCompleted, ok=True)]
            assert [e.ok for e in outcomes if isinstance(e, JoinCompleted)][-1] is True
            assert all(
                not e.ok for e in outcomes[:-1] if isinstance(e, JoinCompleted)
            )
            await trio.sleep(60.0)
            assert joiner.stats().join_attempts == len(
                [e for e in outcomes if isinstance(e, JoinCompleted)]
            )  # no more attempts after success


async def test_a_node_found_by_others_stops_retrying(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    """n1's only seed never answers, but n2 joins through n1: n1 is in a cluster."""
    lonely = make_node(network, 1, seeds=[("10.0.0.99", 7946)], join_backoff_s=1.0)
    async with running(lonely, make_node(network, 2, seeds=[addr_of(1)])) as (a, _b):
        await eventually(lambda: alive_names(a) == {"n1", "n2"})
        await trio.sleep(5.0)
        attempts = a.stats().join_attempts
        await trio.sleep(120.0)
        assert a.stats().join_attempts == attempts


# ============================================================== failure paths


async def test_tcp_fallback_ping_keeps_a_member_with_broken_udp_alive(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    """Datagrams from n1 to n2 are lost, and there is no helper to ask: only the TCP
    fallback ping (run in parallel with indirect probes) gets n1 its acks."""
    async with running(make_node(network, 1), make_node(network, 2)) as (a, _b):
        await eventually(lambda: alive_names(a) == {"n1", "n2"})
        sub = a.events()

        def route(packet: Packet) -> Route:
            if packet.kind is PacketKind.DATAGRAM and packet.src == addr_of(1):
                return Route.drop()
            return Route.deliver()

        network.route = route
        await trio.sleep(30.0)
        assert a.member("n2").status == MemberStatus.ALIVE  # type: ignore[union-attr]
        assert a.stats().core.probes >= 10
        assert a.stats().core.probe_failures == 0
        sub.close()
        assert not [e async for e in sub if isinstance(e, MemberSuspected)]

        # Without the fallback, the same loss makes n1 suspect n2.
    plain = attrs.evolve(Config.local(), tcp_fallback_ping=False)
    network.route = network.default_route
    async with running(
        make_node(network, 3, seeds=[], config=plain),
        make_node(network, 4, seeds=[addr_of(3)], config=plain),
    ) as (c, _d):
        await eventually(lambda: alive_names(c) == {"n3", "n4"})

        def route_plain(packet: Packet) -> Route:
            if packet.kind is PacketKind.DATAGRAM and packet.src == addr_of(3):
                return Route.drop()
            return Route.deliver()

        network.route = route_plain
        await eventually(lambda: c.stats().core.probe_failures > 0)


async def test_send_errors_are_counted_not_raised(
    network: MemoryNetwork, clock: trio.testing.MockClock
) -> None:
    refuse = [False]

    @contextlib.asynccontextmanager
    async def flaky(handler: StreamHandler) -> AsyncIterator[Transport]:
        async with network.open(addr_of(2), handler) as inner:
            yield _Flaky(inner, refuse)

    node = Node(Config.local(), name="n2", seeds=[addr_of(1)], seed=2, transport_factory=flaky)
    async with running(make_node(network, 1), node) as (a, b):
        await eventually(lambda: alive_names(a) == {"n1", "n2"})
        refuse[0] = True
        await trio.sleep(5.0)
        assert b.stats().core.send_errors > 0
        assert b.stats().core.send_errors == b.stats().transport.send_errors
        refuse[0] = False
        await trio.sleep(5.0)
        assert alive_names(b) == {"n1", "n2"}


async def test_stats_are_a_snapshot(network: MemoryNetwork, clock: trio.testing.MockClock) -> None:
    async with running(make_node(network, 1), make_node(network, 2)) as (a, _b):
        await eventually(lambda: alive_names(a) == {"n1", "n2"})
        before = a.stats()
        await trio.sleep(5.0)
        after = a.stats()
        assert after.core.probes > before.core.probes
        assert sum(after.core.messages_out.values()) > sum(before.core.messages_out.values())
        assert after.transport.datagrams_sent > before.transport.datagrams_sent


# ==================================================================== helpers


async def _no_streams(data: bytes, src: Address) -> bytes | None:
    return None


async def _until(sub: AsyncIterator[Event], kind: type, **fields: object) -> AsyncIterator[Event]:
    """Events up to and including the first of `kind` with the given field values."""
    with trio.fail_after(300):
        async for event in sub:
            yield event
            if isinstance(event, kind) and all(
                getattr(event, k) == v for k, v in fields.items()
            ):
                return


class _Flaky(Transport):
    """A transport whose sends fail (as an OS refusal) while `refuse[0]` is set."""

    def __init__(self, inner: Transport, refuse: list[bool]) -> None:
        self._inner = inner
        self._refuse = refuse
        self.stats = inner.stats

    @property
    def local_addr(self) -> Address:
        return self._inner.local_addr

    async def send(self, data: bytes, addr: Address) -> bool:
        if self._refuse[0]:
            await trio.lowlevel.checkpoint()
            self.stats.send_errors += 1
            return False
        return await self._inner.send(data, addr)

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._inner.receive()

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        return await self._inner.request(addr, data, timeout_s=timeout_s)

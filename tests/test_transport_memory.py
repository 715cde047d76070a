"""The in-memory network: routing decisions, partitions and streams, under MockClock.

Every peer lives in the same trio run, so the autojump clock is safe and times can be
asserted exactly (they are virtual). pytest-trio hands a clock to `trio.run` only when
the test function itself takes it, hence the `autojump_clock` argument everywhere.
"""

from __future__ import annotations

import errno
import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from transport import (
    Address,
    MemoryNetwork,
    MemoryTransport,
    Packet,
    PacketKind,
    Route,
    Transport,
    TransportError,
)

A: Address = ("10.0.0.1", 7946)
B: Address = ("10.0.0.2", 7946)
C: Address = ("10.0.0.3", 7946)
LATENCY_S = 0.001


async def echo(data: bytes, addr: Address) -> bytes | None:
    return b"echo:" + data


async def drain(transport: Transport) -> list[tuple[bytes, Address]]:
    """Everything queued for `transport` right now, read through `receive`.

    Reads until every task is blocked (the network has nothing due now), so no virtual
    time passes: `wait_all_tasks_blocked` wakes before the autojump clock would jump.
    """
    out: list[tuple[bytes, Address]] = []

    async def collect() -> None:
        async for item in transport.receive():
            out.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return out


async def recv_timed(
    transport: MemoryTransport, count: int, timeout_s: float = 5.0
) -> list[tuple[float, bytes, Address]]:
    """The next `count` datagrams with their arrival times (bounded by `timeout_s`)."""
    out: list[tuple[float, bytes, Address]] = []
    with trio.move_on_after(timeout_s):
        async for data, addr in transport.receive():
            out.append((trio.current_time(), data, addr))
            if len(out) == count:
                break
    return out


@pytest.fixture
async def net() -> MemoryNetwork:
    return MemoryNetwork(latency_s=LATENCY_S, rng=random.Random(1))


@pytest.fixture
async def pair(net: MemoryNetwork) -> AsyncIterator[tuple[MemoryTransport, MemoryTransport]]:
    async with net.open(A, echo) as a, net.open(B, echo) as b:
        yield a, b


# ------------------------------------------------------------------------ datagrams


async def test_datagram_arrives_after_latency(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, b = pair
    assert isinstance(a, Transport)
    start = trio.current_time()
    assert await a.send(b"hello", B)
    [(at, data, src)] = await recv_timed(b, 1)
    assert (data, src) == (b"hello", A)
    assert at - start == pytest.approx(LATENCY_S)
    assert a.stats.datagrams_sent == 1
    assert b.stats.datagrams_received == 1


async def test_datagrams_sent_together_arrive_in_order(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, b = pair
    for i in range(50):
        await a.send(b"%d" % i, B)
    got = await recv_timed(b, 50)
    assert [data for _, data, _ in got] == [b"%d" % i for i in range(50)]


async def test_route_hook_drops_delays_and_duplicates(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, b = pair
    seen: list[Packet] = []

    def route(packet: Packet) -> Route:
        seen.append(packet)
        return {
            b"drop": Route.drop(),
            b"late": Route.delay(0.5),
            b"twice": Route.duplicate(2, spacing_s=0.1),
        }.get(packet.data, Route.deliver())

    net.route = route
    start = trio.current_time()
    for payload in (b"drop", b"late", b"twice", b"plain"):
        await a.send(payload, B)
    got = await recv_timed(b, 4)
    arrivals = [(round(at - start, 6), data) for at, data, _ in got]
    assert arrivals == [
        (LATENCY_S, b"twice"),
        (LATENCY_S, b"plain"),
        (round(LATENCY_S + 0.1, 6), b"twice"),
        (round(LATENCY_S + 0.5, 6), b"late"),
    ]
    assert [p.kind for p in seen] == [PacketKind.DATAGRAM] * 4
    assert (seen[0].src, seen[0].dst) == (A, B)
    assert net.stats.datagrams_dropped == 1
    assert net.stats.datagrams_duplicated == 1
    assert b.stats.datagrams_received == 4


async def test_partition_and_heal(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(A, echo) as a, net.open(B, echo) as b, net.open(C, echo) as c:
        net.partition([{A, B}, {C}])
        await a.send(b"a->b", B)
        await a.send(b"a->c", C)
        await c.send(b"c->a", A)
        await trio.sleep(1.0)
        assert await drain(b) == [(b"a->b", A)]
        assert await drain(c) == []
        assert await drain(a) == []
        assert net.stats.datagrams_dropped == 2

        net.heal()
        await a.send(b"a->c", C)
        await c.send(b"c->a", A)
        await trio.sleep(1.0)
        assert await drain(c) == [(b"a->c", A)]
        assert await drain(a) == [(b"c->a", C)]


async def test_unlisted_addresses_form_their_own_group(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(A, echo) as a, net.open(B, echo) as b, net.open(C, echo):
        net.partition([{C}])
        await a.send(b"x", B)
        await a.send(b"y", C)
        await trio.sleep(1.0)
        assert await drain(b) == [(b"x", A)]
        assert net.reachable(A, B)
        assert not net.reachable(A, C)


async def test_partition_rejects_an_address_in_two_groups(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    with pytest.raises(ValueError, match="two partition groups"):
        net.partition([{A}, {A, B}])


async def test_one_way_block(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, b = pair
    net.block(A, B)
    await a.send(b"lost", B)
    await b.send(b"kept", A)
    await trio.sleep(1.0)
    assert await drain(b) == []
    assert await drain(a) == [(b"kept", B)]
    net.unblock(A, B)
    await a.send(b"again", B)
    await trio.sleep(1.0)
    assert await drain(b) == [(b"again", A)]


async def test_packets_in_flight_survive_a_partition(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, b = pair
    await a.send(b"in flight", B)
    net.partition([{A}, {B}])
    await trio.sleep(1.0)
    assert await drain(b) == [(b"in flight", A)]


async def test_receive_queue_overflow_is_counted(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(A, echo) as a, net.open(B, echo, receive_queue=4) as b:
        for i in range(10):
            assert await a.send(b"%d" % i, B)
        await trio.sleep(1.0)
        assert [data for data, _ in await drain(b)] == [b"0", b"1", b"2", b"3"]
        assert b.stats.receive_overflows == 6
        assert b.stats.datagrams_received == 4


async def test_oversized_datagrams(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(A, echo) as a, net.open(B, echo, max_datagram_bytes=100) as b:
        assert await a.send(b"x" * 101, B)
        assert await a.send(b"x" * 100, B)
        # No datagram can carry this: refused at the sender, like EMSGSIZE.
        assert not await a.send(b"x" * 70_000, B)
        await trio.sleep(1.0)
        assert await drain(b) == [(b"x" * 100, A)]
        assert b.stats.oversized == 1
        assert a.stats.send_errors == 1


async def test_send_to_nobody_is_lost_quietly(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, _ = pair
    assert await a.send(b"void", C)
    assert net.stats.datagrams_undeliverable == 1


async def test_default_route_is_reproducible_from_the_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def run(seed: int) -> list[tuple[float, bytes]]:
        net = MemoryNetwork(rng=random.Random(seed), loss=0.3, duplication=0.2, jitter_s=0.05)
        async with net.open(A, echo) as a, net.open(B, echo) as b:
            start = trio.current_time()
            for i in range(100):
                await a.send(b"%d" % i, B)
            await trio.sleep(1.0)
            return [(round(trio.current_time() - start, 9), data) for data, _ in await drain(b)]

    first, second, other = await run(7), await run(7), await run(8)
    assert first == second
    assert first != other
    assert 40 < len(first) < 110


async def test_port_zero_and_address_in_use(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(("10.0.0.9", 0), echo) as t1, net.open(("10.0.0.9", 0), echo) as t2:
        assert t1.local_addr[1] != 0
        assert t1.local_addr != t2.local_addr
        with pytest.raises(OSError) as info:
            async with net.open(t1.local_addr, echo):
                pass  # pragma: no cover
        assert info.value.errno == errno.EADDRINUSE


async def test_close_ends_receive_and_releases_the_address(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async with net.open(A, echo) as a:
        await a.send(b"to self", A)
        queued = a.receive()
    assert [item async for item in queued] == []  # in flight when closed: lost
    async with net.open(A, echo) as again:
        assert again.local_addr == A


async def test_body_exceptions_are_not_wrapped(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    with pytest.raises(KeyError):
        async with net.open(A, echo):
            raise KeyError("mine")
    async with net.open(A, echo):  # released despite the error
        pass


# ------------------------------------------------------------------------ streams


async def test_request_response(
    autojump_clock: trio.testing.MockClock, pair: tuple[MemoryTransport, MemoryTransport]
) -> None:
    a, b = pair
    start = trio.current_time()
    assert await a.request(B, b"state", timeout_s=1.0) == b"echo:state"
    assert trio.current_time() - start == pytest.approx(2 * LATENCY_S)
    assert a.stats.streams_opened == 1
    assert b.stats.streams_accepted == 1


async def test_handler_sees_the_requester(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    seen: list[Address] = []

    async def handler(data: bytes, addr: Address) -> bytes:
        seen.append(addr)
        return data

    async with net.open(A, echo) as a, net.open(B, handler):
        assert await a.request(B, b"x", timeout_s=1.0) == b"x"
    assert seen == [A]


async def test_request_to_unknown_address_is_refused_after_latency(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, _ = pair
    start = trio.current_time()
    with pytest.raises(TransportError, match="refused"):
        await a.request(C, b"x", timeout_s=5.0)
    assert trio.current_time() - start == pytest.approx(LATENCY_S)
    assert a.stats.requests_failed == 1
    assert net.stats.streams_refused == 1


@pytest.mark.parametrize("cut", ["partition", "block-forward", "block-back", "hook"])
async def test_request_across_a_cut_times_out(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
    cut: str,
) -> None:
    a, b = pair
    if cut == "partition":
        net.partition([{A}, {B}])
    elif cut == "block-forward":
        net.block(A, B)
    elif cut == "block-back":
        net.block(B, A)
    else:
        net.route = lambda p: Route.drop() if p.kind is PacketKind.STREAM else Route.deliver()
    start = trio.current_time()
    with pytest.raises(TransportError, match="timed out"):
        await a.request(B, b"x", timeout_s=2.0)
    assert trio.current_time() - start == pytest.approx(2.0)
    assert b.stats.streams_accepted == 0
    assert net.stats.streams_dropped == 1
    net.heal()
    net.route = net.default_route
    assert await a.request(B, b"y", timeout_s=2.0) == b"echo:y"


async def test_stream_delay_from_the_hook(
    autojump_clock: trio.testing.MockClock,
    net: MemoryNetwork,
    pair: tuple[MemoryTransport, MemoryTransport],
) -> None:
    a, _ = pair
    net.route = lambda p: Route.delay(0.25)
    start = trio.current_time()
    assert await a.request(B, b"x", timeout_s=1.0) == b"echo:x"
    assert trio.current_time() - start == pytest.approx(2 * LATENCY_S + 0.25)
    with pytest.raises(TransportError, match="timed out"):
        await a.request(B, b"x", timeout_s=0.1)


async def test_response_lost_when_the_way_back_is_cut(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async def slow(data: bytes, addr: Address) -> bytes:
        await trio.sleep(0.5)
        net.block(B, A)
        return data

    async with net.open(A, echo) as a, net.open(B, slow) as b:
        with pytest.raises(TransportError, match="timed out"):
            await a.request(B, b"x", timeout_s=2.0)
        assert b.stats.streams_rejected == 0


async def test_handler_none_closes_the_stream(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async def silent(data: bytes, addr: Address) -> None:
        return None

    async with net.open(A, echo) as a, net.open(B, silent):
        with pytest.raises(TransportError, match="without a response"):
            await a.request(B, b"x", timeout_s=1.0)


async def test_handler_exception_is_counted_and_survived(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async def flaky(data: bytes, addr: Address) -> bytes:
        if data == b"boom":
            raise RuntimeError("handler bug")
        return data

    async with net.open(A, echo) as a, net.open(B, flaky) as b:
        with pytest.raises(TransportError, match="reset"):
            await a.request(B, b"boom", timeout_s=1.0)
        assert b.stats.streams_rejected == 1
        assert await a.request(B, b"fine", timeout_s=1.0) == b"fine"


async def test_stalled_handler_is_cut_off(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async def stuck(data: bytes, addr: Address) -> bytes:
        await trio.sleep_forever()

    async with net.open(A, echo) as a, net.open(B, stuck, stream_timeout_s=0.5) as b:
        with pytest.raises(TransportError, match="reset"):
            await a.request(B, b"x", timeout_s=5.0)
        assert b.stats.streams_rejected == 1


async def test_frame_limits(autojump_clock: trio.testing.MockClock, net: MemoryNetwork) -> None:
    async def big(data: bytes, addr: Address) -> bytes:
        return b"r" * int(data)

    async with (
        net.open(A, echo, max_frame_bytes=100) as a,
        net.open(B, big, max_frame_bytes=50) as b,
    ):
        with pytest.raises(TransportError, match="too large"):
            await a.request(B, b"9" * 60, timeout_s=1.0)  # over B's request limit
        with pytest.raises(TransportError, match="exceeds"):
            await a.request(B, b"9" * 101, timeout_s=1.0)  # over A's own limit
        with pytest.raises(TransportError, match="too large"):
            await a.request(B, b"60", timeout_s=1.0)  # B refuses to send 60 bytes
        assert await a.request(B, b"40", timeout_s=1.0) == b"r" * 40
        assert b.stats.streams_rejected == 2
        assert a.stats.requests_failed == 3


async def test_concurrent_streams_are_bounded(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    release = trio.Event()

    async def gated(data: bytes, addr: Address) -> bytes:
        await release.wait()
        return data

    outcomes: list[str] = []

    async def one(a: MemoryTransport, i: int) -> None:
        try:
            outcomes.append((await a.request(B, b"%d" % i, timeout_s=5.0)).decode())
        except TransportError:
            outcomes.append("rejected")

    async with net.open(A, echo) as a, net.open(B, gated, max_concurrent_streams=3) as b:
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(one, a, i)
                await trio.sleep(0.01)  # in order: trio shuffles tasks woken together
            await trio.sleep(0.5)
            release.set()
        assert sorted(outcomes) == ["0", "1", "2", "rejected", "rejected"]
        assert b.stats.streams_rejected == 2


async def test_closing_the_server_resets_open_streams(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    async def stuck(data: bytes, addr: Address) -> bytes:
        await trio.sleep_forever()

    async with net.open(A, echo) as a, trio.open_nursery() as nursery:

        async def server() -> None:
            async with net.open(B, stuck):
                await trio.sleep(0.5)

        nursery.start_soon(server)
        await trio.sleep(0.1)
        with pytest.raises(TransportError, match="reset"):
            await a.request(B, b"x", timeout_s=5.0)


async def test_default_limits_match_the_codec(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork
) -> None:
    from swim.core.codec import MAX_DATAGRAM_BYTES, MAX_STREAM_BYTES

    async with net.open(A, echo) as t:
        assert t.limits.max_frame_bytes == MAX_STREAM_BYTES
        assert t.limits.max_datagram_bytes == MAX_DATAGRAM_BYTES


@pytest.mark.parametrize(
    "limits",
    [
        {"max_datagram_bytes": 0},
        {"max_datagram_bytes": 70_000},
        {"receive_queue": -1},
        {"max_frame_bytes": 2**32},
        {"stream_timeout_s": 0.0},
        {"stream_timeout_s": float("nan")},
        {"max_concurrent_streams": 0},
    ],
)
async def test_impossible_limits_are_refused(
    autojump_clock: trio.testing.MockClock, net: MemoryNetwork, limits: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        async with net.open(A, echo, **limits):  # type: ignore[arg-type]
            pass  # pragma: no cover
    async with net.open(A, echo):  # nothing was left registered
        pass

"""Stream hardening: the attacks of issue 8 against the TCP side of the transport.

Over real TCP on loopback (real clock): a slowloris from one source must not keep a
request from another source out, a declared frame length cannot pin memory past the
shared buffer budget (read through the transport's own accounting, not RSS), and the
header deadline hangs up on a connection that says nothing. The whole of 127/8 is
loopback on Linux, so 127.0.0.1 plays the attacker and 127.0.0.2 the honest member.

Every load loop is bounded and stops by itself; every wait is bounded by `fail_after`;
assertions are about outcomes (answered, refused, counted), never about durations. The
in-memory network gets the same admission rules, checked at the end under MockClock.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
import trio
import trio.testing

from transport import (
    Address,
    MemoryNetwork,
    MemoryTransport,
    TransportError,
    open_udp_tcp_transport,
)

WAIT_S = 5.0  # upper bound for anything that should happen "soon"
ATTACKER = "127.0.0.1"
HONEST = "127.0.0.2"
MiB = 1024 * 1024


async def echo(data: bytes, addr: Address) -> bytes | None:
    return b"echo:" + data


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.005)


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes (bounded by WAIT_S)."""
    out = bytearray()
    with trio.fail_after(WAIT_S):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: also a close
                break
            if not chunk:
                break
            out += chunk
    return bytes(out)


async def request_from(source: str, addr: Address, data: bytes) -> bytes:
    """One request frame from `source` (a loopback IP); the server's whole reply."""
    stream = await trio.open_tcp_stream(*addr, local_address=source)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(frame(data))
        return await read_until_eof(stream)


class Slowloris:
    """`connections` connections from one source, each sending one byte and renewed as
    soon as the server closes it, until `stop` or `max_connects` connections in all."""

    def __init__(self, addr: Address, *, connections: int = 300, max_connects: int = 20_000):
        self.addr = addr
        self.connections = connections
        self.max_connects = max_connects
        self.connects = 0
        self.stopped = False

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.connections):
                nursery.start_soon(self._one)

    async def _one(self) -> None:
        while not self.stopped and self.connects < self.max_connects:
            self.connects += 1
            try:
                stream = await trio.open_tcp_stream(*self.addr, local_address=ATTACKER)
            except OSError:
                await trio.sleep(0.01)  # e.g. the listen backlog is full: try again
                continue
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"\x00")
                    while await stream.receive_some(1):
                        pass  # pragma: no cover (the server never answers it)


async def test_slowloris_from_one_source_does_not_block_another() -> None:
    """300 renewed one-byte connections from one host; 15 requests from another all
    succeed (before: 0 of 15, the flood held all 64 slots for the whole stream timeout)."""
    async with (
        open_udp_tcp_transport((ATTACKER, 0), echo, stream_timeout_s=60.0) as t,
        trio.open_nursery() as nursery,
    ):
        flood = Slowloris(t.local_addr)
        nursery.start_soon(flood.run)
        # The flood is in place: its host holds its share and is being turned away.
        await wait_until(
            lambda: (
                t.active_streams == t.limits.max_streams_per_source
                and t.stats.streams_over_source_limit > 100
            )
        )
        refused_before = t.stats.streams_over_source_limit
        answers = [await request_from(HONEST, t.local_addr, b"ping %d" % i) for i in range(15)]
        still_flooding = not flood.stopped and flood.connects < flood.max_connects
        flood.stopped = True
        nursery.cancel_scope.cancel()
    assert answers == [frame(b"echo:ping %d" % i) for i in range(15)]
    assert still_flooding
    assert t.stats.streams_over_source_limit > refused_before
    assert t.active_streams == 0


async def test_without_a_per_source_limit_the_same_flood_starves_another_source() -> None:
    """The scenario itself, with the per-source limit and header deadline turned off."""
    async with (
        open_udp_tcp_transport(
            (ATTACKER, 0),
            echo,
            stream_timeout_s=60.0,
            header_timeout_s=60.0,
            max_streams_per_source=64,
        ) as t,
        trio.open_nursery() as nursery,
    ):
        flood = Slowloris(t.local_addr)
        nursery.start_soon(flood.run)
        await wait_until(lambda: t.active_streams == t.limits.max_concurrent_streams)
        answers = [await request_from(HONEST, t.local_addr, b"ping") for _ in range(3)]
        flood.stopped = True
        nursery.cancel_scope.cancel()
    assert answers == [b""] * 3  # closed at once: no slot left
    assert t.stats.streams_over_source_limit == 0


async def test_per_source_limit_counts_and_frees_slots() -> None:
    async with open_udp_tcp_transport(
        (ATTACKER, 0), echo, stream_timeout_s=60.0, header_timeout_s=60.0, max_streams_per_source=2
    ) as t:
        held = [await trio.open_tcp_stream(*t.local_addr, local_address=ATTACKER) for _ in range(2)]
        await wait_until(lambda: t.active_streams == 2)
        assert await request_from(ATTACKER, t.local_addr, b"x") == b""  # closed at once
        assert t.stats.streams_over_source_limit == 1
        assert t.stats.streams_rejected == 1
        assert await request_from(HONEST, t.local_addr, b"x") == frame(b"echo:x")
        for stream in held:
            await stream.aclose()
        await wait_until(lambda: t.active_streams == 0)
        assert await request_from(ATTACKER, t.local_addr, b"x") == frame(b"echo:x")


# ------------------------------------------------------------------------ header deadline


@pytest.mark.parametrize("sent", [b"", b"\x00", b"\x00\x00\x00"], ids=["nothing", "1", "3"])
async def test_header_deadline_cuts_an_idle_connection(sent: bytes) -> None:
    """Hung up on within WAIT_S, so by the 0.1 s header deadline, not the 60 s timeout."""
    async with open_udp_tcp_transport(
        (ATTACKER, 0), echo, stream_timeout_s=60.0, header_timeout_s=0.1
    ) as t:
        stream = await trio.open_tcp_stream(*t.local_addr)
        async with stream:
            if sent:
                await stream.send_all(sent)
            assert await read_until_eof(stream) == b""
        await wait_until(lambda: t.active_streams == 0)
        assert t.stats.stream_header_timeouts == 1
        assert t.stats.streams_rejected == 1


async def test_header_deadline_does_not_cut_a_slow_body() -> None:
    """Once the header is in, the body has the whole stream timeout."""
    async with open_udp_tcp_transport(
        (ATTACKER, 0), echo, stream_timeout_s=60.0, header_timeout_s=0.1
    ) as t:
        stream = await trio.open_tcp_stream(*t.local_addr)
        async with stream:
            await stream.send_all(struct.pack(">I", 4))
            await trio.sleep(0.3)
            await stream.send_all(b"slow")
            assert await read_until_eof(stream) == frame(b"echo:slow")
        assert t.stats.stream_header_timeouts == 0
        assert t.stats.streams_rejected == 0


# ------------------------------------------------------------------------ buffer budget


async def test_declared_frame_that_does_not_fit_the_budget_is_refused_unread() -> None:
    """One connection pins 1 MiB of a 1.5 MiB budget; a second declaring 1 MiB is refused
    before it is read (before: two 32 MiB declarations pinned 66 MiB); a small request
    still fits and is answered; everything is given back when the holder goes."""
    async with open_udp_tcp_transport(
        (ATTACKER, 0),
        echo,
        stream_timeout_s=60.0,
        max_frame_bytes=1 * MiB,
        max_buffered_bytes=3 * MiB // 2,
    ) as t:
        holder = await trio.open_tcp_stream(*t.local_addr, local_address=ATTACKER)
        async with holder:
            await holder.send_all(struct.pack(">I", MiB) + b"h" * (MiB - 1))
            await wait_until(lambda: t.stream_buffer.in_use == MiB - 1)

            hog = await trio.open_tcp_stream(*t.local_addr, local_address=HONEST)
            async with hog:
                await hog.send_all(struct.pack(">I", MiB))  # declares only; sends no body
                assert await read_until_eof(hog) == b""
            assert t.stats.streams_over_buffer_budget == 1

            small = b"s" * (256 * 1024)
            assert await request_from(HONEST, t.local_addr, small) == frame(b"echo:" + small)
            assert t.stream_buffer.in_use == MiB - 1
        await wait_until(lambda: t.stream_buffer.in_use == 0)
    assert t.stream_buffer.peak <= t.limits.max_buffered_bytes
    assert t.stats.streams_over_buffer_budget == 1


async def test_bytes_are_reserved_as_they_arrive() -> None:
    """Two 1 MiB frames both fit a 1.5 MiB budget when declared; whichever fills it
    first keeps it and the other is cut once its bytes no longer fit."""
    async with open_udp_tcp_transport(
        (ATTACKER, 0),
        echo,
        stream_timeout_s=60.0,
        max_frame_bytes=1 * MiB,
        max_buffered_bytes=3 * MiB // 2,
    ) as t:
        first = await trio.open_tcp_stream(*t.local_addr, local_address=ATTACKER)
        second = await trio.open_tcp_stream(*t.local_addr, local_address=HONEST)
        async with first, second:
            for stream in (first, second):
                await stream.send_all(struct.pack(">I", MiB))
            await wait_until(lambda: t.active_streams == 2)

            async def send_most(stream: trio.SocketStream) -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"x" * (MiB - 1))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_most, first)
                nursery.start_soon(send_most, second)
            await wait_until(lambda: t.stats.streams_over_buffer_budget == 1)
            assert t.stream_buffer.in_use <= t.limits.max_buffered_bytes
        await wait_until(lambda: t.stream_buffer.in_use == 0)
    assert t.stream_buffer.peak <= t.limits.max_buffered_bytes
    assert t.stats.streams_over_buffer_budget == 1


async def test_default_budget_holds_two_largest_frames() -> None:
    """64 slots no longer mean 64 x 32 MiB: the default budget is 64 MiB in all."""
    async with open_udp_tcp_transport((ATTACKER, 0), echo) as t:
        limits = t.limits
    assert limits.max_frame_bytes == 32 * MiB
    assert limits.max_buffered_bytes == 2 * limits.max_frame_bytes
    assert limits.max_streams_per_source < limits.max_concurrent_streams
    assert limits.header_timeout_s < limits.stream_timeout_s


@pytest.mark.parametrize(
    "kwargs",
    [
        {"header_timeout_s": 0.0},
        {"header_timeout_s": float("nan")},
        {"max_streams_per_source": 0},
        {"max_buffered_bytes": -1},
    ],
)
async def test_impossible_hardening_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        async with open_udp_tcp_transport((ATTACKER, 0), echo, **kwargs):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        async with MemoryNetwork().open((ATTACKER, 0), echo, **kwargs):  # type: ignore[arg-type]
            pass  # pragma: no cover


# ------------------------------------------------------------------------ in-memory mirror


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_memory_transport_limits_streams_per_source(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def gated(data: bytes, addr: Address) -> bytes:
        await release.wait()
        return data

    net = MemoryNetwork()
    results: list[bytes | str] = []
    async with (
        net.open(("10.0.0.9", 1), gated, max_streams_per_source=2) as server,
        net.open(("10.0.0.1", 1), echo) as a1,
        net.open(("10.0.0.1", 2), echo) as a2,
        net.open(("10.0.0.1", 3), echo) as a3,
        net.open(("10.0.0.2", 1), echo) as b,
    ):

        async def ask(client: MemoryTransport) -> None:
            try:
                results.append(await client.request(server.local_addr, b"x", timeout_s=60))
            except TransportError as exc:
                results.append(str(exc))

        async with trio.open_nursery() as nursery:
            for client in (a1, a2, a3, b):
                nursery.start_soon(ask, client)
            await wait_until(lambda: server.stats.streams_accepted == 4)
            release.set()
    # One of the three from 10.0.0.1 is turned away; 10.0.0.2 has its own share.
    assert results.count(b"x") == 3
    [refusal] = [r for r in results if isinstance(r, str)]
    assert "too many streams" in refusal
    assert server.stats.streams_over_source_limit == 1
    assert server.active_streams == 0


async def test_memory_transport_holds_requests_against_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def gated(data: bytes, addr: Address) -> bytes:
        await release.wait()
        return b"ok"

    net = MemoryNetwork()
    outcomes: list[str] = []
    async with (
        net.open(("10.0.0.9", 1), gated, max_buffered_bytes=100) as server,
        net.open(("10.0.0.1", 1), echo) as a,
        net.open(("10.0.0.2", 1), echo) as b,
    ):

        async def ask(data: bytes) -> None:
            try:
                outcomes.append((await a.request(server.local_addr, data, timeout_s=60)).decode())
            except TransportError:
                outcomes.append("refused")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, b"x" * 60)
            await wait_until(lambda: server.stream_buffer.in_use == 60)
            nursery.start_soon(ask, b"y" * 60)
            await wait_until(lambda: server.stats.streams_over_buffer_budget == 1)
            release.set()
        assert await b.request(server.local_addr, b"z" * 100, timeout_s=60) == b"ok"
    assert outcomes == ["refused", "ok"]
    assert server.stream_buffer.in_use == 0
    assert server.stream_buffer.peak == 100

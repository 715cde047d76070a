"""UDP + TCP transport over real loopback sockets (127.0.0.1 and ::1), real clock.

Every wait is bounded by `fail_after`; tests assert outcomes (what arrived, what was
counted, what was cut off), never how long something took.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from transport import (
    Address,
    Transport,
    TransportError,
    UdpTcpTransport,
    open_udp_tcp_transport,
)

WAIT_S = 5.0  # upper bound for anything that should happen "soon"


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _has_dual_stack() -> bool:
    """Whether an IPv6 socket bound to ``::`` also reaches IPv4 peers (not IPV6_V6ONLY)."""
    if not _has_ipv6_loopback():
        return False
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        return s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


HOSTS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param(
        "::1",
        id="ipv6",
        marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback"),
    ),
]


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def echo(data: bytes, addr: Address) -> bytes | None:
    return b"echo:" + data


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.005)


async def next_datagram(transport: Transport) -> tuple[bytes, Address]:
    with trio.fail_after(WAIT_S):
        async for item in transport.receive():
            return item
    raise AssertionError("receive ended")


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def raw_tcp(addr: Address) -> trio.SocketStream:
    return await trio.open_tcp_stream(*addr)


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


def assert_port_free(host: str, port: int) -> None:
    """Both protocols can bind the port again: the transport left no socket behind."""
    with socket.socket(family(host), socket.SOCK_DGRAM) as udp:
        udp.bind((host, port))
    with socket.socket(family(host), socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        tcp.listen()


# ------------------------------------------------------------------------ binding


async def test_port_zero_binds_udp_and_tcp_to_the_same_port(host: str) -> None:
    async with open_udp_tcp_transport((host, 0), echo) as t:
        assert isinstance(t, UdpTcpTransport)
        assert isinstance(t, Transport)
        bound_host, port = t.local_addr
        assert (bound_host, type(port)) == (host, int)
        assert port != 0
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family(host), kind) as other, pytest.raises(OSError) as info:
                other.bind((host, port))
            assert info.value.errno == errno.EADDRINUSE
        assert await t.request(t.local_addr, b"self", timeout_s=WAIT_S) == b"echo:self"


async def test_explicit_port_and_rebinding_after_exit(host: str) -> None:
    async with open_udp_tcp_transport((host, 0), echo) as first:
        port = first.local_addr[1]
        assert await first.request(first.local_addr, b"x", timeout_s=WAIT_S) == b"echo:x"
    assert_port_free(host, port)
    async with open_udp_tcp_transport((host, port), echo) as second:
        assert second.local_addr == (host, port)
        assert await second.request((host, port), b"y", timeout_s=WAIT_S) == b"echo:y"
    assert_port_free(host, port)


async def test_binding_a_taken_port_raises_oserror(host: str) -> None:
    async with open_udp_tcp_transport((host, 0), echo) as t:
        with pytest.raises(OSError):
            async with open_udp_tcp_transport(t.local_addr, echo):
                pass  # pragma: no cover


def _trio_socket_class() -> type[trio.socket.SocketType]:
    """The class of trio's sockets, whose methods stand for the OS's answers."""
    with trio.socket.socket() as sample:
        return type(sample)


def _fail_first_udp_bind(monkeypatch: pytest.MonkeyPatch, taken: list[int]) -> None:
    """Make the next UDP bind to a nonzero port fail as if the port were taken."""
    socket_class = _trio_socket_class()
    real_bind = socket_class.bind

    async def bind(self: trio.socket.SocketType, address: tuple[str, int]) -> None:
        if self.type == socket.SOCK_DGRAM and address[1] != 0 and not taken:
            taken.append(address[1])
            raise OSError(errno.EADDRINUSE, "Address already in use")
        await real_bind(self, address)

    monkeypatch.setattr(socket_class, "bind", bind)


async def test_port_zero_retries_when_the_udp_port_is_taken(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    _fail_first_udp_bind(monkeypatch, taken)
    async with open_udp_tcp_transport((host, 0), echo) as t:
        assert len(taken) == 1
        assert await t.request(t.local_addr, b"tcp", timeout_s=WAIT_S) == b"echo:tcp"
        assert await t.send(b"udp", t.local_addr)
        assert await next_datagram(t) == (b"udp", t.local_addr)
    monkeypatch.undo()
    assert_port_free(host, taken[0])  # the failed attempt's TCP socket was closed


async def test_explicit_port_taken_for_udp_raises_and_closes_tcp(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(family(host), socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    taken: list[int] = []
    _fail_first_udp_bind(monkeypatch, taken)
    with pytest.raises(OSError) as info:
        async with open_udp_tcp_transport((host, port), echo):
            pass  # pragma: no cover
    assert info.value.errno == errno.EADDRINUSE
    monkeypatch.undo()
    assert_port_free(host, port)


async def test_bind_host_must_be_an_ip_literal() -> None:
    with pytest.raises(ValueError, match="literal"):
        async with open_udp_tcp_transport(("localhost", 0), echo):
            pass  # pragma: no cover


async def test_body_exceptions_are_not_wrapped(host: str) -> None:
    with pytest.raises(KeyError):
        async with open_udp_tcp_transport((host, 0), echo):
            raise KeyError("mine")


# ------------------------------------------------------------------------ datagrams


@pytest.fixture
async def pair(host: str) -> AsyncIterator[tuple[UdpTcpTransport, UdpTcpTransport]]:
    async with (
        open_udp_tcp_transport((host, 0), echo) as a,
        open_udp_tcp_transport((host, 0), echo) as b,
    ):
        yield a, b


async def test_datagram_round_trip(pair: tuple[UdpTcpTransport, UdpTcpTransport]) -> None:
    a, b = pair
    assert await a.send(b"ping", b.local_addr)
    data, src = await next_datagram(b)
    assert (data, src) == (b"ping", a.local_addr)
    assert len(src) == 2
    assert await b.send(b"ack", src)
    assert await next_datagram(a) == (b"ack", b.local_addr)
    assert a.stats.datagrams_sent == 1
    assert a.stats.datagrams_received == 1


async def test_empty_and_maximal_datagrams(host: str) -> None:
    async with (
        open_udp_tcp_transport((host, 0), echo) as a,
        open_udp_tcp_transport((host, 0), echo, max_datagram_bytes=1000) as b,
    ):
        assert await a.send(b"", b.local_addr)
        assert await next_datagram(b) == (b"", a.local_addr)
        assert await a.send(b"m" * 1000, b.local_addr)
        assert await next_datagram(b) == (b"m" * 1000, a.local_addr)


async def test_garbage_and_oversized_datagrams_do_not_hurt(host: str) -> None:
    async with open_udp_tcp_transport((host, 0), echo, max_datagram_bytes=100) as t:
        with socket.socket(family(host), socket.SOCK_DGRAM) as raw:
            raw.bind((host, 0))
            raw.sendto(b"\xff" * 101, t.local_addr)
            raw.sendto(b"\x00\x01garbage", t.local_addr)
            sender = (host, raw.getsockname()[1])  # without IPv6 flow info and scope
        assert await next_datagram(t) == (b"\x00\x01garbage", sender)
        assert t.stats.oversized == 1
        assert t.stats.datagrams_received == 1
        assert await t.request(t.local_addr, b"alive", timeout_s=WAIT_S) == b"echo:alive"


async def test_receive_queue_overflow_is_counted(host: str) -> None:
    async with (
        open_udp_tcp_transport((host, 0), echo) as a,
        open_udp_tcp_transport((host, 0), echo, receive_queue=4) as b,
    ):
        for i in range(20):
            assert await a.send(b"%d" % i, b.local_addr)
        await wait_until(lambda: b.stats.datagrams_received + b.stats.receive_overflows == 20)
        assert b.stats.datagrams_received == 4
        assert b.stats.receive_overflows == 16
        got = [await next_datagram(b) for _ in range(4)]
        assert [data for data, _ in got] == [b"0", b"1", b"2", b"3"]


async def test_send_never_raises(host: str) -> None:
    with socket.socket(family(host), socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        closed_port = probe.getsockname()[1]
    async with open_udp_tcp_transport((host, 0), echo) as t:
        # Nobody listens: the datagram is lost (ICMP is not reported on this socket).
        await t.send(b"void", (host, closed_port))
        # The OS refuses these: counted, not raised.
        assert not await t.send(b"x" * 70_000, (host, closed_port))
        other = "::1" if family(host) == socket.AF_INET else "127.0.0.2"
        assert not await t.send(b"wrong family", (other, closed_port))
        assert t.stats.send_errors == 2
        # The loop is still alive after whatever ICMP the kernel sent back.
        assert await t.send(b"me", t.local_addr)
        assert (await next_datagram(t))[0] == b"me"


async def test_permission_error_on_send_is_counted(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a firewall's drop on the output path does to sendto.
    async def refused(*args: object) -> int:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    async with open_udp_tcp_transport((host, 0), echo) as t:
        monkeypatch.setattr(_trio_socket_class(), "sendto", refused)
        assert not await t.send(b"x", t.local_addr)
        assert t.stats.send_errors == 1
        assert t.stats.datagrams_sent == 0


# ------------------------------------------------------------------------ streams


async def test_request_response(pair: tuple[UdpTcpTransport, UdpTcpTransport]) -> None:
    a, b = pair
    assert await a.request(b.local_addr, b"state", timeout_s=WAIT_S) == b"echo:state"
    big = bytes(range(256)) * 4096  # 1 MiB: many reads on both sides
    assert await a.request(b.local_addr, big, timeout_s=WAIT_S) == b"echo:" + big
    assert await a.request(b.local_addr, b"", timeout_s=WAIT_S) == b"echo:"
    assert a.stats.streams_opened == 3
    await wait_until(lambda: b.stats.streams_accepted == 3)
    assert b.stats.streams_rejected == 0


async def test_handler_sees_the_peer_host(host: str) -> None:
    seen: list[Address] = []

    async def handler(data: bytes, addr: Address) -> bytes:
        seen.append(addr)
        return data

    async with open_udp_tcp_transport((host, 0), handler) as t:
        assert await t.request(t.local_addr, b"x", timeout_s=WAIT_S) == b"x"
    [(peer_host, peer_port)] = seen
    assert peer_host == host
    assert isinstance(peer_port, int)


async def test_request_to_a_closed_port_fails(host: str) -> None:
    with socket.socket(family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        closed_port = probe.getsockname()[1]
    async with open_udp_tcp_transport((host, 0), echo) as t:
        with pytest.raises(TransportError):
            await t.request((host, closed_port), b"x", timeout_s=WAIT_S)
        assert t.stats.requests_failed == 1


async def test_handler_none_closes_the_stream(host: str) -> None:
    async def silent(data: bytes, addr: Address) -> None:
        return None

    async with open_udp_tcp_transport((host, 0), silent) as t:
        with pytest.raises(TransportError, match="closed"):
            await t.request(t.local_addr, b"x", timeout_s=WAIT_S)
        assert t.stats.streams_rejected == 0


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("handler bug"),
        OSError(errno.EIO, "handler I/O"),
        ExceptionGroup("handler nursery", [ValueError("inner")]),
    ],
    ids=["runtime", "oserror", "group"],
)
async def test_handler_exception_is_counted_and_survived(host: str, error: Exception) -> None:
    async def flaky(data: bytes, addr: Address) -> bytes:
        if data == b"boom":
            raise error
        return data

    async with open_udp_tcp_transport((host, 0), flaky) as t:
        for _ in range(3):
            with pytest.raises(TransportError):
                await t.request(t.local_addr, b"boom", timeout_s=WAIT_S)
        assert await t.request(t.local_addr, b"fine", timeout_s=WAIT_S) == b"fine"
        assert t.stats.streams_rejected == 3


async def test_request_times_out_on_a_stalled_handler(host: str) -> None:
    async def stuck(data: bytes, addr: Address) -> bytes:
        await trio.sleep_forever()

    async with (
        open_udp_tcp_transport((host, 0), echo) as a,
        open_udp_tcp_transport((host, 0), stuck, stream_timeout_s=0.2) as b,
    ):
        with pytest.raises(TransportError, match="timed out"):
            await a.request(b.local_addr, b"x", timeout_s=0.05)
        # The server cuts the handler off on its own timeout, without the client.
        await wait_until(lambda: b.stats.streams_rejected == 1)
        # And a request given more time than the server allows sees the cut.
        with pytest.raises(TransportError, match="closed"):
            await a.request(b.local_addr, b"x", timeout_s=WAIT_S)


async def test_oversized_response_is_refused_by_the_requester(host: str) -> None:
    async def big(data: bytes, addr: Address) -> bytes:
        return b"r" * int(data)

    async with (
        open_udp_tcp_transport((host, 0), echo, max_frame_bytes=100) as a,
        open_udp_tcp_transport((host, 0), big) as b,
    ):
        with pytest.raises(TransportError, match="exceeds"):
            await a.request(b.local_addr, b"101", timeout_s=WAIT_S)
        assert await a.request(b.local_addr, b"100", timeout_s=WAIT_S) == b"r" * 100
        with pytest.raises(TransportError, match="exceeds"):
            await a.request(b.local_addr, b"1" * 101, timeout_s=WAIT_S)  # own limit
        assert a.stats.requests_failed == 2


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(struct.pack(">I", 2**31) + b"xx", id="oversized-length"),
        pytest.param(struct.pack(">I", 101), id="just-over-the-limit"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(struct.pack(">I", 50) + b"short", id="eof-mid-frame"),
        pytest.param(b"\x00\x00", id="eof-mid-header"),
    ],
)
async def test_bad_frames_are_cut_off(host: str, payload: bytes) -> None:
    calls: list[bytes] = []

    async def handler(data: bytes, addr: Address) -> bytes:
        calls.append(data)
        return data

    async with open_udp_tcp_transport((host, 0), handler, max_frame_bytes=100) as t:
        stream = await raw_tcp(t.local_addr)
        async with stream:
            # The server may hang up (even reset) before all of it is written.
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(payload)
                await stream.send_eof()
            assert await read_until_eof(stream) == b""
        await wait_until(lambda: t.stats.streams_rejected == 1)
        assert calls == []
        assert await t.request(t.local_addr, b"ok", timeout_s=WAIT_S) == b"ok"


@pytest.mark.parametrize("sent", [b"", b"\x00\x00", struct.pack(">I", 10) + b"abc"])
async def test_stalled_peer_is_cut_off_by_the_timeout(host: str, sent: bytes) -> None:
    async with open_udp_tcp_transport((host, 0), echo, stream_timeout_s=0.1) as t:
        stream = await raw_tcp(t.local_addr)
        async with stream:
            if sent:
                await stream.send_all(sent)
            # No EOF: the peer just stops. The server must hang up on its own.
            assert await read_until_eof(stream) == b""
        await wait_until(lambda: t.stats.streams_rejected == 1)
        assert await t.request(t.local_addr, b"ok", timeout_s=WAIT_S) == b"echo:ok"


async def test_concurrent_incoming_streams_are_bounded(host: str) -> None:
    async with open_udp_tcp_transport(
        (host, 0),
        echo,
        stream_timeout_s=WAIT_S * 2,
        header_timeout_s=WAIT_S * 2,
        max_concurrent_streams=2,
    ) as t:
        held = [await raw_tcp(t.local_addr) for _ in range(2)]
        await wait_until(lambda: t.stats.streams_accepted == 2)
        extra = await raw_tcp(t.local_addr)
        async with extra:
            assert await read_until_eof(extra) == b""  # closed at once
        assert t.stats.streams_rejected == 1
        for stream in held:
            await stream.aclose()
        await wait_until(lambda: t.active_streams == 0)
        assert await t.request(t.local_addr, b"ok", timeout_s=WAIT_S) == b"echo:ok"


async def test_cancellation_closes_everything(host: str) -> None:
    """Cancelled with a stream being served and a request in flight: nothing leaks."""
    entered = trio.Event()

    async def stuck(data: bytes, addr: Address) -> bytes:
        entered.set()
        await trio.sleep_forever()

    port = 0
    with trio.move_on_after(WAIT_S) as outer:
        async with (
            open_udp_tcp_transport((host, 0), stuck) as t,
            trio.open_nursery() as nursery,
        ):
            port = t.local_addr[1]

            async def hang() -> None:
                await t.request(t.local_addr, b"x", timeout_s=WAIT_S * 2)

            nursery.start_soon(hang)
            with trio.fail_after(WAIT_S):
                await entered.wait()
            held = await raw_tcp(t.local_addr)
            nursery.cancel_scope.cancel()
            outer.cancel()
    await held.aclose()
    assert outer.cancelled_caught
    # Both sockets are closed: sending is refused (and counted), nobody listens any more,
    # and both protocols can bind the port again.
    assert not await t.send(b"late", (host, port))
    assert t.stats.send_errors == 1
    with pytest.raises(TransportError):
        await t.request((host, port), b"late", timeout_s=WAIT_S)
    assert_port_free(host, port)


async def test_receive_ends_after_close(host: str) -> None:
    async with open_udp_tcp_transport((host, 0), echo) as t:
        pass
    with trio.fail_after(WAIT_S):
        assert [item async for item in t.receive()] == []


# ------------------------------------------------------------------------ addresses


async def test_peers_are_reported_without_flow_info_and_scope(host: str) -> None:
    seen: list[Address] = []

    async def handler(data: bytes, addr: Address) -> bytes:
        seen.append(addr)
        return data

    async with open_udp_tcp_transport((host, 0), handler) as t:
        with socket.socket(family(host), socket.SOCK_DGRAM) as raw:
            raw.bind((host, 0))
            raw.sendto(b"x", t.local_addr)
            sockname = raw.getsockname()  # 4 items for IPv6
            assert await next_datagram(t) == (b"x", (host, sockname[1]))
        assert await t.request(t.local_addr, b"y", timeout_s=WAIT_S) == b"y"
    assert [len(addr) for addr in seen] == [2]


@pytest.mark.skipif(not _has_dual_stack(), reason="no dual-stack IPv6 socket")
async def test_a_dual_stack_transport_speaks_plain_ipv4() -> None:
    """Bound to ``::``, IPv4 peers are reported as plain IPv4 and reached at such addresses
    (mapped to ``::ffff:a.b.c.d`` for the socket)."""
    seen: list[Address] = []

    async def handler(data: bytes, addr: Address) -> bytes:
        seen.append(addr)
        return b"echo:" + data

    async with open_udp_tcp_transport(("::", 0), handler) as t:
        port = t.local_addr[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(("127.0.0.1", 0))
            raw.settimeout(WAIT_S)
            peer = raw.getsockname()
            raw.sendto(b"over ipv4", ("127.0.0.1", port))
            assert await next_datagram(t) == (b"over ipv4", peer)
            assert await t.send(b"back", peer)
            data, src = await trio.to_thread.run_sync(raw.recvfrom, 100)
            assert (data, src) == (b"back", ("127.0.0.1", port))
        async with open_udp_tcp_transport(("127.0.0.1", 0), echo) as v4:
            answer = await v4.request(("127.0.0.1", port), b"hi", timeout_s=WAIT_S)
            assert answer == b"echo:hi"
            assert await t.request(v4.local_addr, b"hey", timeout_s=WAIT_S) == b"echo:hey"
        [(peer_host, _)] = seen
        assert peer_host == "127.0.0.1"


async def test_stream_frames_on_the_wire(host: str) -> None:
    """Each frame is a 4-byte big-endian length and that many bytes, both ways."""
    async with open_udp_tcp_transport((host, 0), echo) as t:
        stream = await raw_tcp(t.local_addr)
        async with stream:
            await stream.send_all(b"\x00\x00\x00\x03abc")
            assert await read_until_eof(stream) == b"\x00\x00\x00\x08echo:abc"


async def test_default_limits_match_the_codec() -> None:
    from swim.core.codec import MAX_DATAGRAM_BYTES, MAX_STREAM_BYTES

    async with open_udp_tcp_transport(("127.0.0.1", 0), echo) as t:
        assert t.limits.max_frame_bytes == MAX_STREAM_BYTES
        assert t.limits.max_datagram_bytes == MAX_DATAGRAM_BYTES


async def test_impossible_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrent_streams"):
        async with open_udp_tcp_transport(("127.0.0.1", 0), echo, max_concurrent_streams=0):
            pass  # pragma: no cover

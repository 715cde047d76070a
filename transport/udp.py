"""UDP datagrams and TCP streams on one port number, over trio.

Shaped like trio's DTLS endpoint: one UDP socket and one receive loop that hands each
datagram to a bounded memory channel with ``send_nowait``; when the channel is full the
datagram is dropped and counted, never waited for. `send` catches `OSError` (a firewall
drop on the output path makes ``sendto`` raise `PermissionError`) and counts it.

Streams carry one request frame and one response frame, each a 4-byte big-endian length
followed by that many bytes. An incoming stream is served in its own task under
``stream_timeout_s`` for the whole exchange (read, handler, write), and its header must
arrive within the much shorter ``header_timeout_s``: a peer that stalls, declares more
than ``max_frame_bytes``, or closes mid-frame is cut off and counted in
``streams_rejected``, as is a handler that raises. At most ``max_concurrent_streams``
are served at once, and at most ``max_streams_per_source`` from one source IP (so a
slowloris from one host cannot hold every slot); further connections are closed at once
and counted. Frame bytes are buffered as they arrive, reserved against one
``max_buffered_bytes`` budget shared by all incoming streams and released when the
stream ends: a declared length that does not fit what is left is refused before any of
it is read, so neither a declared length nor many streams can pin memory past the cap.

Addresses are ``(ip literal, port)``: IPv6 without flow info and scope id (so link-local
IPv6 peers, which need a scope, are not supported). A socket bound to ``::`` also reaches
IPv4 peers; their addresses are reported as plain IPv4 and mapped back when sending.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket as stdlib_socket
import struct
from collections.abc import AsyncIterator
from typing import Final

import trio

from transport._common import (
    FRAME_LENGTH_LIMIT,
    MAX_BUFFERED_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_FRAME_BYTES,
    BufferLease,
    Inbox,
    Limits,
    StreamBuffer,
    StreamSlots,
    background_nursery,
)
from transport.base import Address, StreamHandler, Transport, TransportError, TransportStats

logger = logging.getLogger(__name__)

_HEADER: Final = struct.Struct(">I")
#: Largest single read while receiving a frame: memory grows with what actually arrives.
_READ_CHUNK: Final = 64 * 1024
_LISTEN_BACKLOG: Final = 128
#: Attempts to find a port free for both TCP and UDP when asked for port 0.
_BIND_ATTEMPTS: Final = 8
#: Accept errors caused by resource exhaustion: back off instead of spinning.
_ACCEPT_BACKOFF_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_BACKOFF_S: Final = 0.1
_V4_MAPPED_PREFIX: Final = "::ffff:"


class _FrameError(Exception):
    """A peer's framing was invalid: early EOF or a length over the limit."""


class _HeaderTimeout(_FrameError):
    """The frame header did not arrive within ``header_timeout_s``."""


class _OverBudget(_FrameError):
    """The frame did not fit the bytes left of the shared ``max_buffered_bytes``."""


def _normalize(sockaddr: tuple[object, ...]) -> Address:
    """``(ip, port)`` from a socket address: drop IPv6 flow/scope, unmap IPv4."""
    host = str(sockaddr[0])
    if host.startswith(_V4_MAPPED_PREFIX) and "." in host:
        host = host[len(_V4_MAPPED_PREFIX) :]
    port = sockaddr[1]
    assert isinstance(port, int)
    return (host, port)


def _family_of(host: str) -> stdlib_socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bind host must be an IPv4 or IPv6 literal, not {host!r}") from None
    return stdlib_socket.AF_INET6 if ip.version == 6 else stdlib_socket.AF_INET


async def _bind_pair(bind: Address) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A TCP listening socket and a UDP socket bound to the same host and port."""
    host, port = bind
    family = _family_of(host)
    attempts = _BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        tcp = trio.socket.socket(family, stdlib_socket.SOCK_STREAM)
        udp = trio.socket.socket(family, stdlib_socket.SOCK_DGRAM)
        try:
            # Lets a restarted node rebind while old connections sit in TIME_WAIT. Not
            # set on UDP, where on Linux it would let two sockets share the port.
            tcp.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            await tcp.bind((host, port))
            tcp.listen(_LISTEN_BACKLOG)
            actual_port = tcp.getsockname()[1]
            try:
                await udp.bind((host, actual_port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    tcp.close()
                    udp.close()
                    continue
                raise
        except BaseException:
            tcp.close()
            udp.close()
            raise
        return tcp, udp
    raise AssertionError("unreachable")  # pragma: no cover


async def _receive_frame_untrusted(stream: trio.SocketStream, max_bytes: int) -> bytes:
    """One length-prefixed frame from a peer; raises `_FrameError` if it is invalid."""
    header = await _receive_exactly_untrusted(stream, _HEADER.size)
    return await _receive_body_untrusted(stream, header, max_bytes)


async def _receive_body_untrusted(
    stream: trio.SocketStream, header: bytes, max_bytes: int, lease: BufferLease | None = None
) -> bytes:
    """The frame `header` announces; with a `lease`, its bytes are reserved as they come."""
    (length,) = _HEADER.unpack(header)
    if length > max_bytes:
        raise _FrameError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    if lease is not None and not lease.fits(length):
        raise _OverBudget(f"frame of {length} bytes does not fit the stream buffer budget")
    return await _receive_exactly_untrusted(stream, length, lease)


async def _receive_exactly_untrusted(
    stream: trio.SocketStream, count: int, lease: BufferLease | None = None
) -> bytes:
    buffer = bytearray()
    while len(buffer) < count:
        chunk = await stream.receive_some(min(count - len(buffer), _READ_CHUNK))
        if not chunk:
            raise _FrameError(f"connection closed after {len(buffer)} of {count} bytes")
        # Other streams may have filled the budget since the length was checked.
        if lease is not None and not lease.reserve(len(chunk)):
            raise _OverBudget(f"stream buffer budget exhausted after {len(buffer)} bytes")
        buffer += chunk
    return bytes(buffer)


def _frame(data: bytes) -> bytes:
    return _HEADER.pack(len(data)) + data


class UdpTcpTransport(Transport):
    """UDP and TCP on one port; made by `open_udp_tcp_transport`."""

    def __init__(
        self,
        udp: trio.socket.SocketType,
        tcp: trio.socket.SocketType,
        stream_handler: StreamHandler,
        *,
        limits: Limits,
    ) -> None:
        self.stats = TransportStats()
        self.limits = limits
        self._received = Inbox(limits, self.stats)
        self._udp = udp
        self._tcp = tcp
        self._family = udp.family
        self._local_addr = _normalize(udp.getsockname())
        self._handler = stream_handler
        self._slots = StreamSlots(limits, self.stats)
        #: Bytes buffered across incoming streams (``in_use``, ``peak``) against
        #: ``limits.max_buffered_bytes``.
        self.stream_buffer = StreamBuffer(limits.max_buffered_bytes)

    @property
    def local_addr(self) -> Address:
        return self._local_addr

    @property
    def active_streams(self) -> int:
        """Incoming streams being served now."""
        return self._slots.active

    async def send(self, data: bytes, addr: Address) -> bool:
        try:
            await self._udp.sendto(data, self._sockaddr(addr))
        except OSError:
            self.stats.send_errors += 1
            return False
        self.stats.datagrams_sent += 1
        return True

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._received.receiver

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        self.stats.streams_opened += 1
        try:
            if len(data) > min(self.limits.max_frame_bytes, FRAME_LENGTH_LIMIT):
                raise TransportError(f"request of {len(data)} bytes exceeds the frame limit")
            try:
                with trio.fail_after(timeout_s):
                    return await self._exchange(addr, data)
            except trio.TooSlowError:
                raise TransportError(f"request to {addr} timed out") from None
            except (OSError, trio.BrokenResourceError, _FrameError) as exc:
                raise TransportError(f"request to {addr} failed: {exc}") from exc
        except TransportError:
            self.stats.requests_failed += 1
            raise

    # ------------------------------------------------------------------ internals

    def _sockaddr(self, addr: Address) -> Address:
        host, port = addr
        if self._family == stdlib_socket.AF_INET6 and ":" not in host:
            return (_V4_MAPPED_PREFIX + host, port)
        return (host, port)

    async def _exchange(self, addr: Address, data: bytes) -> bytes:
        host, port = addr
        stream = await trio.open_tcp_stream(host, port)
        try:
            await stream.send_all(_frame(data))
            return await _receive_frame_untrusted(stream, self.limits.max_frame_bytes)
        finally:
            await trio.aclose_forcefully(stream)

    async def _udp_loop(self) -> None:
        # One byte more than the limit, so an oversized datagram is seen as such (the
        # kernel truncates to the buffer) rather than silently cut.
        buffer = bytearray(self.limits.max_datagram_bytes + 1)
        view = memoryview(buffer)
        while True:
            try:
                size, sockaddr = await self._udp.recvfrom_into(buffer)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    return
                # E.g. ICMP errors reported on the socket; transient, keep going.
                self.stats.receive_errors += 1
                await trio.lowlevel.checkpoint()
                continue
            self._received.offer(bytes(view[:size]), _normalize(sockaddr))

    async def _tcp_loop(self, nursery: trio.Nursery) -> None:
        listener = trio.SocketListener(self._tcp)
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                self.stats.receive_errors += 1
                if exc.errno in _ACCEPT_BACKOFF_ERRNOS:
                    logger.warning("accept failed (%s); backing off", exc)
                    await trio.sleep(_ACCEPT_BACKOFF_S)
                else:
                    await trio.lowlevel.checkpoint()
                continue
            self.stats.streams_accepted += 1
            try:
                peer = _normalize(stream.socket.getpeername())
            except OSError:  # already gone (ENOTCONN)
                self.stats.streams_rejected += 1
                await trio.aclose_forcefully(stream)
                continue
            if not self._slots.admit(peer[0]):
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._serve_stream, stream, peer)

    async def _serve_stream(self, stream: trio.SocketStream, peer: Address) -> None:
        try:
            with self.stream_buffer.lease() as lease:
                with trio.move_on_after(self.limits.stream_timeout_s) as scope:
                    await self._answer(stream, peer, lease)
                if scope.cancelled_caught:
                    self.stats.streams_rejected += 1
                    logger.debug("incoming stream from %s cut off: timed out", peer)
        except (OSError, trio.BrokenResourceError, _FrameError) as exc:
            self.stats.streams_rejected += 1
            if isinstance(exc, _HeaderTimeout):
                self.stats.stream_header_timeouts += 1
            elif isinstance(exc, _OverBudget):
                self.stats.streams_over_buffer_budget += 1
            logger.debug("incoming stream from %s cut off: %s", peer, exc)
        finally:
            self._slots.release(peer[0])
            await trio.aclose_forcefully(stream)

    async def _answer(self, stream: trio.SocketStream, peer: Address, lease: BufferLease) -> None:
        with trio.move_on_after(self.limits.header_timeout_s) as header_scope:
            header = await _receive_exactly_untrusted(stream, _HEADER.size)
        if header_scope.cancelled_caught:
            raise _HeaderTimeout(f"no frame header within {self.limits.header_timeout_s} s")
        request = await _receive_body_untrusted(stream, header, self.limits.max_frame_bytes, lease)
        try:
            response = await self._handler(request, peer)
        except Exception:
            # A bug on our side, not the peer's: say so loudly, but keep serving.
            self.stats.streams_rejected += 1
            logger.warning("stream handler failed for a request from %s", peer, exc_info=True)
            return
        if response is None:
            return
        if len(response) > min(self.limits.max_frame_bytes, FRAME_LENGTH_LIMIT):
            raise _FrameError(f"response of {len(response)} bytes is too large")
        await stream.send_all(_frame(response))


@contextlib.asynccontextmanager
async def open_udp_tcp_transport(
    bind: Address,
    stream_handler: StreamHandler,
    *,
    max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
    receive_queue: int = 1024,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    stream_timeout_s: float = 10.0,
    max_concurrent_streams: int = 64,
    header_timeout_s: float = 1.0,
    max_streams_per_source: int = 32,
    max_buffered_bytes: int = MAX_BUFFERED_BYTES,
) -> AsyncIterator[UdpTcpTransport]:
    """Bind UDP and TCP to `bind` (port 0: one free port for both) and serve them.

    The UDP receive loop and the TCP listener run in the transport's own nursery for the
    duration of the block; on exit they are cancelled and every socket is closed. Raises
    `OSError` if the address cannot be bound and `ValueError` if the host is not an IP
    literal.
    """
    limits = Limits(
        max_datagram_bytes=max_datagram_bytes,
        receive_queue=receive_queue,
        max_frame_bytes=max_frame_bytes,
        stream_timeout_s=stream_timeout_s,
        max_concurrent_streams=max_concurrent_streams,
        header_timeout_s=header_timeout_s,
        max_streams_per_source=max_streams_per_source,
        max_buffered_bytes=max_buffered_bytes,
    )
    tcp, udp = await _bind_pair(bind)
    with tcp, udp:
        transport = UdpTcpTransport(
            udp,
            tcp,
            stream_handler,
            limits=limits,
        )
        try:
            async with background_nursery() as nursery:
                nursery.start_soon(transport._udp_loop)
                nursery.start_soon(transport._tcp_loop, nursery)
                yield transport
        finally:
            transport._received.close()

"""The transport interface the runtime drives: datagrams plus request/response streams.

A transport is opened as an async context manager that runs its own tasks (receive
loop, stream listener) and closes every socket on exit. Datagrams arrive through
`receive`; streams opened by peers are answered by the `StreamHandler` the transport
was opened with. Implementations: `transport.udp` (UDP + TCP on one port over trio) and
`transport.memory` (an in-process network for tests under trio's MockClock).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs

#: (host, port); the host is an IPv4 or IPv6 literal.
Address = tuple[str, int]

#: Answers a stream frame from a peer: the response frame, or None to close the stream.
StreamHandler = Callable[[bytes, Address], Awaitable[bytes | None]]


class TransportError(Exception):
    """A stream request failed: refused, reset, timed out, or answered with garbage."""


@attrs.define(eq=False)
class TransportStats:
    """Counters every transport keeps. Read them; do not modify them."""

    datagrams_sent: int = 0
    datagrams_received: int = 0
    #: `send` failures (OSError, e.g. a firewall drop raising PermissionError).
    send_errors: int = 0
    #: Datagrams dropped because the receive queue was full.
    receive_overflows: int = 0
    #: Datagrams over the size limit, dropped.
    oversized: int = 0
    streams_opened: int = 0
    streams_accepted: int = 0
    #: Incoming streams refused or cut off for any reason (too many, stalled, oversized,
    #: malformed framing, handler error); the counters below break some reasons out.
    streams_rejected: int = 0
    #: Incoming streams closed at once because their source IP already held
    #: ``max_streams_per_source`` streams.
    streams_over_source_limit: int = 0
    #: Incoming streams cut off because the frame header did not arrive within
    #: ``header_timeout_s``.
    stream_header_timeouts: int = 0
    #: Incoming frames refused because they did not fit what was left of the
    #: ``max_buffered_bytes`` budget shared by all incoming streams.
    streams_over_buffer_budget: int = 0
    #: Outgoing requests that failed (`TransportError`).
    requests_failed: int = 0
    #: OS errors survived by the receive loop or the stream listener.
    receive_errors: int = 0


class Transport(abc.ABC):
    """What the runtime needs from a network."""

    stats: TransportStats

    @property
    @abc.abstractmethod
    def local_addr(self) -> Address:
        """The address this transport is bound to (the real port if 0 was asked for)."""

    @abc.abstractmethod
    async def send(self, data: bytes, addr: Address) -> bool:
        """Send one datagram. Returns False (and counts it) if the OS refused; never raises
        `OSError`."""

    @abc.abstractmethod
    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        """Datagrams as they arrive, from a bounded queue (overflow dropped and counted)."""

    @abc.abstractmethod
    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        """Open a stream to `addr`, send one frame, return the response frame.

        Raises `TransportError` on refusal, reset, timeout or an invalid response.
        """

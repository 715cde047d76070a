"""Plumbing shared by the transports: limits, stream admission, a nursery for their tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

import attrs
import trio

from transport.base import Address, TransportStats

#: Largest UDP payload (IPv4: 65535 - 20 IP - 8 UDP header bytes).
MAX_DATAGRAM_BYTES: Final = 65_507
#: Largest stream frame by default; equals `swim.core.codec.MAX_STREAM_BYTES` (a test
#: checks it) without making the transport import the codec.
MAX_FRAME_BYTES: Final = 32 * 1024 * 1024
#: Frames carry a 4-byte big-endian length, so no frame can be longer than this.
FRAME_LENGTH_LIMIT: Final = (1 << 32) - 1
#: Bytes buffered across all incoming streams by default: two largest frames at once.
MAX_BUFFERED_BYTES: Final = 2 * MAX_FRAME_BYTES


@contextlib.asynccontextmanager
async def background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a transport's own tasks, cancelled as soon as the body exits.

    An exception from the body is re-raised as itself, not wrapped in an exception
    group (trio wraps everything that crosses a nursery): callers of
    ``async with open_...() as transport`` see their own errors unchanged. A crash in a
    background task still propagates (as a group), cancelling the body first.
    """
    body_exc: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:  # re-raised below, outside the nursery
            body_exc = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_exc is not None:
        raise body_exc


@attrs.frozen(kw_only=True)
class Limits:
    """The bounds a transport enforces; impossible ones raise ValueError (caller's mistake)."""

    #: Largest datagram accepted; longer ones are dropped and counted.
    max_datagram_bytes: int = MAX_DATAGRAM_BYTES
    #: Datagrams queued for `receive`; beyond it they are dropped and counted.
    receive_queue: int = 1024
    #: Largest stream frame, either way.
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: Time allowed for a whole incoming stream exchange (read, handle, write).
    stream_timeout_s: float = 10.0
    #: Incoming streams served at once; more are closed at once and counted.
    max_concurrent_streams: int = 64
    #: Time allowed for a new stream's 4-byte frame header to arrive (capped by
    #: `stream_timeout_s`): a connection that says nothing gives its slot back quickly.
    header_timeout_s: float = 1.0
    #: Incoming streams served at once from one source IP, so that one host cannot take
    #: every slot; more are closed at once and counted. Half the slots by default: a
    #: flood from one host leaves the other half to everyone else, while the members of
    #: a cluster on one host (which share its address) can still join at once.
    max_streams_per_source: int = 32
    #: Bytes buffered across all incoming streams at once. A frame whose declared length
    #: does not fit what is left is refused before it is read; bytes are reserved as
    #: they arrive and released when the stream ends.
    max_buffered_bytes: int = MAX_BUFFERED_BYTES

    def __attrs_post_init__(self) -> None:
        if not 0 < self.max_datagram_bytes <= MAX_DATAGRAM_BYTES:
            raise ValueError(f"max_datagram_bytes must be in 1..{MAX_DATAGRAM_BYTES}")
        if self.receive_queue < 0:
            raise ValueError("receive_queue must be >= 0")
        if not 0 <= self.max_frame_bytes <= FRAME_LENGTH_LIMIT:
            raise ValueError(f"max_frame_bytes must be in 0..{FRAME_LENGTH_LIMIT}")
        if not self.stream_timeout_s > 0:  # also refuses NaN
            raise ValueError("stream_timeout_s must be positive")
        if self.max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be >= 1")
        if not self.header_timeout_s > 0:
            raise ValueError("header_timeout_s must be positive")
        if self.max_streams_per_source < 1:
            raise ValueError("max_streams_per_source must be >= 1")
        if self.max_buffered_bytes < 0:
            raise ValueError("max_buffered_bytes must be >= 0")


class StreamSlots:
    """Admission of incoming streams: a global bound and a bound per source IP.

    `admit` is asked once per new connection and either takes a slot (give it back with
    `release`) or counts the refusal in the transport's stats; the caller closes the
    connection at once. A refusal while slots are free but the source holds its share is
    also counted in ``streams_over_source_limit``. Sources are keyed by IP literal, so
    every port of one host shares its bound.
    """

    def __init__(self, limits: Limits, stats: TransportStats) -> None:
        self._limits = limits
        self._stats = stats
        self._by_source: dict[str, int] = {}
        #: Streams being served now.
        self.active = 0

    def admit(self, host: str) -> bool:
        if self.active >= self._limits.max_concurrent_streams:
            self._stats.streams_rejected += 1
            return False
        held = self._by_source.get(host, 0)
        if held >= self._limits.max_streams_per_source:
            self._stats.streams_rejected += 1
            self._stats.streams_over_source_limit += 1
            return False
        self._by_source[host] = held + 1
        self.active += 1
        return True

    def release(self, host: str) -> None:
        held = self._by_source[host] - 1
        if held:
            self._by_source[host] = held
        else:
            del self._by_source[host]
        self.active -= 1


class BufferLease:
    """The bytes one incoming stream holds of a `StreamBuffer` budget."""

    def __init__(self, budget: StreamBuffer) -> None:
        self._budget = budget
        #: Bytes reserved by this stream and not yet released.
        self.held = 0

    def fits(self, count: int) -> bool:
        """Whether `count` more bytes would fit the budget now (reserves nothing)."""
        return self._budget.in_use + count <= self._budget.limit

    def reserve(self, count: int) -> bool:
        """Take `count` more bytes of the budget, or nothing (False) if they do not fit."""
        if not self.fits(count):
            return False
        self.held += count
        self._budget._add(count)
        return True


class StreamBuffer:
    """The budget of bytes buffered across incoming streams (``max_buffered_bytes``).

    Each stream takes a `lease`, reserves bytes before it buffers them and gives all of
    them back when the lease ends, so `in_use` never exceeds `limit`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes reserved now.
        self.in_use = 0
        #: The most ever reserved at once.
        self.peak = 0

    @contextlib.contextmanager
    def lease(self) -> Iterator[BufferLease]:
        lease = BufferLease(self)
        try:
            yield lease
        finally:
            self.in_use -= lease.held
            lease.held = 0

    def _add(self, count: int) -> None:
        self.in_use += count
        self.peak = max(self.peak, self.in_use)


class Inbox:
    """A transport's bounded receive queue (trio's DTLS pattern).

    The receive path hands each datagram on with ``send_nowait`` and never blocks:
    what is oversized or does not fit is dropped and counted in the transport's stats.
    """

    def __init__(self, limits: Limits, stats: TransportStats) -> None:
        self._max_bytes = limits.max_datagram_bytes
        self._stats = stats
        self._send, self.receiver = trio.open_memory_channel[tuple[bytes, Address]](
            limits.receive_queue
        )

    def offer(self, data: bytes, src: Address) -> None:
        """Queue a received datagram, or drop and count it."""
        if len(data) > self._max_bytes:
            self._stats.oversized += 1
            return
        try:
            self._send.send_nowait((data, src))
        except trio.WouldBlock:
            self._stats.receive_overflows += 1
        else:
            self._stats.datagrams_received += 1

    def close(self) -> None:
        """No more datagrams: `receiver` ends once drained."""
        self._send.close()

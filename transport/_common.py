"""Plumbing shared by the transports: limits and a nursery for background tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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

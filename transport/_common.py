"""Plumbing shared by the transports: limits and a nursery for background tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

import trio

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


def check_limits(
    *,
    max_datagram_bytes: int,
    receive_queue: int,
    max_frame_bytes: int,
    stream_timeout_s: float,
    max_concurrent_streams: int,
) -> None:
    """Raise ValueError for limits no transport can honour (the caller's mistake)."""
    if not 0 < max_datagram_bytes <= MAX_DATAGRAM_BYTES:
        raise ValueError(f"max_datagram_bytes must be in 1..{MAX_DATAGRAM_BYTES}")
    if receive_queue < 0:
        raise ValueError("receive_queue must be >= 0")
    if not 0 <= max_frame_bytes <= FRAME_LENGTH_LIMIT:
        raise ValueError(f"max_frame_bytes must be in 0..{FRAME_LENGTH_LIMIT}")
    if not stream_timeout_s > 0:  # also refuses NaN
        raise ValueError("stream_timeout_s must be positive")
    if max_concurrent_streams < 1:
        raise ValueError("max_concurrent_streams must be >= 1")

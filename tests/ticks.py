"""Evidence that a trio loop kept running: a task that counts 10 ms ticks while a test
does something that must not block the loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio


@attrs.define
class Ticks:
    """How many 10 ms sleeps the ticking task finished."""

    count: int = 0


@asynccontextmanager
async def ticking() -> AsyncIterator[Ticks]:
    """Count ticks in a background task for the duration of the block."""
    ticks = Ticks()

    async def tick() -> None:
        while True:
            await trio.sleep(0.01)
            ticks.count += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        yield ticks
        nursery.cancel_scope.cancel()

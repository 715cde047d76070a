"""Event subscriptions: each subscriber's bounded, ordered view of a node's events.

The node pushes every event to every subscription without ever waiting; a subscription
that cannot keep up is cut off rather than allowed to block the protocol or grow
without bound (see `EventSubscription`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import trio

from swim.core import Event


class EventOverflow(Exception):
    """A subscriber fell too far behind: its buffer filled up and it was unsubscribed.

    Raised by the subscription's iterator after every event it had buffered was
    delivered; `dropped` events were lost from that point. Subscribe again and resync
    from ``node.members()``.
    """

    def __init__(self, dropped: int) -> None:
        super().__init__(f"event subscriber overflowed; at least {dropped} event(s) lost")
        self.dropped = dropped


class EventSubscription:
    """One subscriber's bounded view of a node's events, in order.

    Overflow policy: a slow subscriber never blocks the protocol. When an event arrives
    and the subscriber's buffer already holds ``max_buffer`` events, the subscription
    is cut off: the buffered events are still delivered, then iteration raises
    `EventOverflow`. Nothing is dropped silently. When the node stops, iteration ends
    (`StopAsyncIteration`) after the buffered events.
    """

    def __init__(self, max_buffer: int, on_close: Callable[[EventSubscription], None]) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._on_close = on_close
        self._max_buffer = max_buffer
        self._buffer: collections.deque[Event] = collections.deque()
        self._wakeup = trio.Event()
        self._dropped = 0
        self._closed = False

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._dropped:
                raise EventOverflow(self._dropped)
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        await trio.lowlevel.checkpoint()
        if not self._buffer:  # pragma: no cover - another task took it meanwhile
            return await self.__anext__()
        return self._buffer.popleft()

    def close(self) -> None:
        """Unsubscribe; iteration ends once the buffered events are consumed."""
        self._on_close(self)
        self._finish()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _push(self, event: Event) -> bool:
        """Buffer `event`; False if the buffer was full (the subscription is cut off)."""
        if self._dropped or len(self._buffer) >= self._max_buffer:
            self._dropped += 1
            self._wakeup.set()
            return False
        self._buffer.append(event)
        self._wakeup.set()
        return True

    def _finish(self) -> None:
        self._closed = True
        self._wakeup.set()

"""Event subscriptions: each subscriber's bounded, ordered view of a node's events.

The node pushes every event to every subscription without ever waiting; a subscription
that cannot keep up is cut off rather than allowed to block the protocol or grow
without bound (see `Subscription`).

`EventSubscription` yields the core's events unchanged (``Node.events``); other
subscriptions (``Node.member_events``, ``Node.stamped_events``) yield the published
shapes of `swim.runtime.events`, built by a converter that may also skip events.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import trio

from swim.core import Event
from swim.runtime.events import MemberEvent, Stamped

T = TypeVar("T")

#: Turns one published event (the core's, and its stamped shape) into what a
#: subscription yields, or None to skip it.
Converter = Callable[[Event, MemberEvent | Stamped], T | None]


class EventOverflow(Exception):
    """A subscriber fell too far behind: its buffer filled up and it was unsubscribed.

    Raised by the subscription's iterator after every event it had buffered was
    delivered; `dropped` events were lost from that point. Subscribe again and resync
    from ``node.members()``.
    """

    def __init__(self, dropped: int) -> None:
        super().__init__(f"event subscriber overflowed; at least {dropped} event(s) lost")
        self.dropped = dropped


class Subscription(Generic[T]):
    """One subscriber's bounded view of a node's events, in order.

    Overflow policy: a slow subscriber never blocks the protocol. When an event arrives
    and the subscriber's buffer already holds ``max_buffer`` events, the subscription
    is cut off: the buffered events are still delivered, then iteration raises
    `EventOverflow`. Nothing is dropped silently. When the node stops, iteration ends
    (`StopAsyncIteration`) after the buffered events.
    """

    def __init__(
        self,
        max_buffer: int,
        on_close: Callable[[Subscription[Any]], None],
        convert: Converter[T],
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._on_close = on_close
        self._convert = convert
        self._max_buffer = max_buffer
        self._buffer: collections.deque[T] = collections.deque()
        self._wakeup = trio.Event()
        self._dropped = 0
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _push(self, event: Event, stamped: MemberEvent | Stamped) -> bool:
        """Buffer what `event` converts to; False if the buffer was full (the
        subscription is cut off)."""
        item = self._convert(event, stamped)
        if item is None:
            return True
        if self._dropped or len(self._buffer) >= self._max_buffer:
            self._dropped += 1
            self._wakeup.set()
            return False
        self._buffer.append(item)
        self._wakeup.set()
        return True

    def _finish(self) -> None:
        self._closed = True
        self._wakeup.set()


class EventSubscription(Subscription[Event]):
    """A subscription to the core's events, unchanged (``Node.events``)."""

    def __init__(self, max_buffer: int, on_close: Callable[[Subscription[Any]], None]) -> None:
        super().__init__(max_buffer, on_close, _core_event)


def _core_event(event: Event, stamped: MemberEvent | Stamped) -> Event:
    return event


def member_events_only(event: Event, stamped: MemberEvent | Stamped) -> MemberEvent | None:
    """The converter of ``Node.member_events``: membership changes only."""
    return stamped if isinstance(stamped, MemberEvent) else None


def every_event_stamped(event: Event, stamped: MemberEvent | Stamped) -> MemberEvent | Stamped:
    """The converter of ``Node.stamped_events``: every event, stamped."""
    return stamped

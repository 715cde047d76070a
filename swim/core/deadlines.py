"""`DeadlineHeap`: the one timer structure of the core.

A lazy min-heap of ``(when, tiebreak, key)``. Entries are never removed in place: the
owner decides whether an entry is still *live* (its suspicion still has that deadline,
its relay still waits, its stream is still pending) and stale entries are skipped when
they reach the top. The tiebreak is a sequence number, so entries due at the same
instant come out in the order they were pushed and keys are never compared.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")


class DeadlineHeap(Generic[K]):
    """Deadlines keyed by `K`, earliest first; stale entries are skipped lazily."""

    __slots__ = ("_heap", "_tiebreak")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._tiebreak = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, key: K) -> None:
        """Add a deadline for `key` (earlier ones for it stay until found stale)."""
        self._tiebreak += 1
        heapq.heappush(self._heap, (when, self._tiebreak, key))

    def earliest(self, live: Callable[[float, K], bool]) -> float | None:
        """The earliest live deadline, dropping stale entries on the way; None if none."""
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if live(when, key):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float, live: Callable[[float, K], bool]) -> Iterable[tuple[float, K]]:
        """Remove and yield every live ``(when, key)`` due at or before `now`, in order.

        Liveness is checked as each entry is reached, so handling one entry may make a
        later one stale. Nothing due (the common case: every timer call asks every
        heap) costs one call and no generator.
        """
        heap = self._heap
        if not heap or heap[0][0] > now:
            return ()
        return self._pop_due(now, live)

    def _pop_due(self, now: float, live: Callable[[float, K], bool]) -> Iterator[tuple[float, K]]:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if live(when, key):
                yield when, key

"""Query results as a running node hands them to the asker: `QueryStream`.

`Node.query` gossips a query through the core and returns a `QueryStream`, an async
iterator (and async context manager) of `QueryResult` values, one per ack and one per
answer, each member's once, in the order they arrive. It ends when the core closes the
query at its deadline (`QueryFinished`), and its `summary` then holds the counts.

Overflow policy: the node pushes results into the stream without ever waiting, so a slow
consumer cannot stall the protocol. A stream buffers at most ``max_buffer`` results;
results arriving while it is full are dropped and counted (`QuerySummary.dropped`), never
silently: the summary's `acks` and `responses` still count every member heard from,
dropped or not. Closing the stream (leaving its ``async with`` block, or `close`) stops
the buffering; the query itself stays open in the core until its deadline, and late
answers are ignored.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from typing import Final

import attrs
import trio

from swim.runtime.query_rules import DEFAULT_QUERY_BUFFER


class QueryResultKind(enum.Enum):
    """What a `QueryResult` reports."""

    #: The member received the query (the asker asked for acks with ``want_ack``).
    ACK = "ack"
    #: The member answered; `QueryResult.payload` is its answer.
    RESPONSE = "response"


@attrs.frozen(kw_only=True)
class QueryResult:
    """One member's ack or answer to our query `id`, heard at `at` (the node's clock)."""

    id: int
    member: str
    kind: QueryResultKind
    payload: bytes = b""
    at: float


@attrs.frozen(kw_only=True)
class QuerySummary:
    """How query `id` (`name`) ended.

    `acks` and `responses` count the members heard from (each once), including results
    the consumer did not take because its buffer was full (`dropped`). `complete` is
    True when the query ran to its deadline, False when the node stopped first.
    """

    id: int
    name: str
    acks: int
    responses: int
    dropped: int
    complete: bool
    at: float


class QueryStream:
    """The results of one query, in arrival order (see the module docs).

    Use it as::

        async with node.query("uptime", want_ack=True) as results:
            async for result in results:
                print(result.member, result.kind, result.payload)
        print(results.summary)

    `id`, `name` and `deadline` (the node's clock) are known from the start; `summary`
    once the iteration has ended.
    """

    def __init__(
        self,
        *,
        query_id: int,
        name: str,
        deadline: float,
        max_buffer: int = DEFAULT_QUERY_BUFFER,
        on_close: Callable[[QueryStream], None] = lambda _stream: None,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.id: Final = query_id
        self.name: Final = name
        self.deadline: Final = deadline
        self._max_buffer = max_buffer
        self._on_close = on_close
        self._buffer: collections.deque[QueryResult] = collections.deque()
        self._wakeup = trio.Event()
        self._acks = 0
        self._responses = 0
        self._dropped = 0
        self._closed = False
        self._summary: QuerySummary | None = None

    @property
    def summary(self) -> QuerySummary | None:
        """How the query ended; None while it is open."""
        return self._summary

    @property
    def finished(self) -> bool:
        """Whether the query has ended (its deadline passed or the node stopped)."""
        return self._summary is not None

    # ---------------------------------------------------------------- consuming

    def __aiter__(self) -> QueryStream:
        return self

    async def __anext__(self) -> QueryResult:
        while not self._buffer:
            if self._summary is not None or self._closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
        await trio.lowlevel.checkpoint()
        if not self._buffer:  # pragma: no cover - another task took it meanwhile
            return await self.__anext__()
        return self._buffer.popleft()

    async def collect(self) -> tuple[list[QueryResult], QuerySummary]:
        """Every result until the query ends, and its summary."""
        results = [result async for result in self]
        await self.wait_finished()
        summary = self._summary
        assert summary is not None
        return results, summary

    async def wait_finished(self) -> QuerySummary:
        """Wait until the query ends (its deadline, or the node stopping)."""
        while self._summary is None:
            await self._wakeup.wait()
        return self._summary

    def close(self) -> None:
        """Stop buffering results; iteration ends once the buffered ones are taken."""
        if not self._closed:
            self._closed = True
            self._notify()
            self._on_close(self)

    async def __aenter__(self) -> QueryStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ fed by the node

    def _push(self, result: QueryResult) -> None:
        if result.kind is QueryResultKind.ACK:
            self._acks += 1
        else:
            self._responses += 1
        if self._closed:
            return
        if len(self._buffer) >= self._max_buffer:
            self._dropped += 1
            return
        self._buffer.append(result)
        self._notify()

    def _finish(self, *, at: float, complete: bool) -> None:
        if self._summary is not None:
            return
        self._summary = QuerySummary(
            id=self.id, name=self.name, acks=self._acks, responses=self._responses,
            dropped=self._dropped, complete=complete, at=at,
        )
        self._notify()

    def _notify(self) -> None:
        # Wake every waiter (each waits on the event current when it started waiting)
        # and arm a fresh event for the next wait.
        self._wakeup.set()
        self._wakeup = trio.Event()

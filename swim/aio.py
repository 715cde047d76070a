"""The asyncio API: `swim.aio.Node`, a cluster member for asyncio applications.

Use it as::

    async with swim.aio.Node(swim.Config.lan(), name="a", bind=("10.0.0.1", 7946),
                             seeds=[("10.0.0.2", 7946)]) as node:
        await node.wait_for_alive(3, timeout_s=30)
        async for event in node.member_events():
            print(event.kind, event.name, event.wall_time)

The protocol runs in a `ThreadedNode`: its own thread, its own trio loop, so a slow or
blocked asyncio loop never delays a probe answer (and the cluster keeps the member
alive). Nothing here blocks the asyncio loop:

* every call (``members``, ``broadcast``, ``send``, ``leave``, ``query``, ``wait_for``...)
  is a coroutine that hands its work to the node's loop with `ThreadedNode.submit`, which
  returns a `concurrent.futures.Future` at once, awaited through `asyncio.wrap_future`;
  cancelling the await cancels the work in the node's loop;
* starting and stopping (which wait for the node's threads, and for the leave to spread)
  run in the loop's default executor;
* events reach the loop through one bounded buffer per stream, filled on the node's thread
  under a lock and drained by the stream's iterator in the loop: the node's thread never
  waits for the loop, and wakes it with at most one ``call_soon_threadsafe`` per stream at
  a time, so a stalled loop cannot pile up callbacks either.

Event streams (`EventStream`, from ``events``, ``member_events`` or ``stamped_events``)
follow the trio side's overflow policy: a stream whose buffer is full when an event
arrives is cut off; its buffered events are still delivered, then iteration raises
`swim.EventOverflow`. A stream sees the events from its creation on; iteration ends when
the node stops. Query results (`QueryResults`) follow the query policy instead: results
that find the buffer full are dropped and counted in the summary's ``dropped``.

Shutdown: leaving the ``async with`` block normally leaves the cluster gracefully
(bounded by ``leave_timeout_s``); leaving it by an exception, cancellation included,
stops the node without a leave, like a crash (as the trio `swim.Node` does).

This module imports asyncio and `swim.runtime.threaded` (and so trio, which the node's
thread runs); the asyncio code itself calls no trio function.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Generic, Self, TypeVar

import attrs

from swim.core import Config, Event, MemberState, MemberStatus
from swim.runtime.events import MemberEvent, Stamped
from swim.runtime.keyops import KeyReport
from swim.runtime.node import Node as TrioNode
from swim.runtime.node import NodeStats, TransportFactory
from swim.runtime.queries import QueryResult, QueryStream, QuerySummary
from swim.runtime.query_rules import DEFAULT_QUERY_BUFFER
from swim.runtime.subscriptions import EventOverflow, every_event_stamped, member_events_only
from swim.runtime.threaded import ThreadedNode
from swim.runtime.views import MemberView, StatusFilter
from swim.security.config import SecurityConfig
from swim.security.seal import Sealer
from transport.base import Address

__all__ = ["DEFAULT_EVENT_BUFFER", "DEFAULT_FEED_BUFFER", "EventStream", "Node", "QueryResults"]

T = TypeVar("T")

#: Default size of each event stream's buffer (as `swim.Node.events`).
DEFAULT_EVENT_BUFFER: Final = 1024
#: Size of the node-side subscription that feeds every stream.
DEFAULT_FEED_BUFFER: Final = 10_000

#: Picks what a stream yields from one published event (None skips it).
_Select = Callable[[Event, MemberEvent | Stamped], T | None]


class _Bridge(Generic[T]):
    """A bounded buffer filled from any thread and drained in one asyncio loop.

    `put` never waits. With ``cut_off``, an item that finds the buffer full ends the
    stream (after the buffered items, `get` raises `EventOverflow`); without, it is
    dropped and counted in `dropped`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_buffer: int, *, cut_off: bool):
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._loop = loop
        self._max_buffer = max_buffer
        self._cut_off = cut_off
        self._lock = threading.Lock()
        self._buffer: collections.deque[T] = collections.deque()
        self._dropped = 0
        self._finished = False
        self._waiter: asyncio.Future[None] | None = None
        self._wake_pending = False

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    # ------------------------------------------------------------ producer side

    def put(self, item: T) -> bool:
        """Buffer `item`; False once the bridge takes no more (finished or cut off)."""
        with self._lock:
            if self._finished or (self._cut_off and self._dropped):
                return False
            if len(self._buffer) >= self._max_buffer:
                self._dropped += 1
                self._signal()
                return not self._cut_off
            self._buffer.append(item)
            self._signal()
            return True

    def cut(self, dropped: int) -> None:
        """End the stream as overflowed (`dropped` items lost upstream)."""
        with self._lock:
            self._dropped += max(1, dropped)
            self._finished = True
            self._signal()

    def finish(self) -> None:
        """No more items: iteration ends after the buffered ones."""
        with self._lock:
            self._finished = True
            self._signal()

    def _signal(self) -> None:
        # The lock is held. Wake the consumer if it waits, once per wait.
        if self._waiter is not None and not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ consumer side

    async def get(self) -> T:
        """The next item; raises `StopAsyncIteration` at the end, `EventOverflow` when
        a cut-off stream's buffered items are all taken."""
        while True:
            with self._lock:
                if self._buffer:
                    return self._buffer.popleft()
                if self._cut_off and self._dropped:
                    raise EventOverflow(self._dropped)
                if self._finished:
                    raise StopAsyncIteration
                waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                with self._lock:
                    self._waiter = None


class EventStream(Generic[T]):
    """A bounded stream of a node's events in the asyncio loop (see the module docs).

    An async iterator; use ``with`` (or ``async with``, or `close`) to stop early.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_buffer: int,
        select: _Select[T],
        on_close: Callable[[EventStream[T]], None],
    ) -> None:
        self._bridge: _Bridge[T] = _Bridge(loop, max_buffer, cut_off=True)
        self._select = select
        self._on_close = on_close

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return await self._bridge.get()

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffered events are taken."""
        self._on_close(self)
        self._bridge.finish()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # Called on the node's thread.
    def _offer(self, event: Event, stamped: MemberEvent | Stamped) -> bool:
        item = self._select(event, stamped)
        return True if item is None else self._bridge.put(item)


class _Hub:
    """The streams of one node, fed on the node's thread by one subscription."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[EventStream[object]] = []
        self._finished = False

    def add(self, stream: EventStream[T]) -> None:
        with self._lock:
            if not self._finished:
                self._streams.append(stream)  # type: ignore[arg-type]
                return
        stream._bridge.finish()

    def remove(self, stream: EventStream[T]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._streams.remove(stream)  # type: ignore[arg-type]

    def offer(self, event: Event, stamped: MemberEvent | Stamped) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            if not stream._offer(event, stamped):
                self.remove(stream)  # cut off

    def cut_all(self, dropped: int) -> None:
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            stream._bridge.cut(dropped)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            streams, self._streams = self._streams, []
        for stream in streams:
            stream._bridge.finish()


class QueryResults:
    """The results of one query in the asyncio loop: an async iterator of `QueryResult`
    (one per ack and per answer, ending at the query's deadline), then `summary`.

    Use ``async with`` (or `close`) to stop early; `collect` takes everything.
    """

    def __init__(self, bridge: _Bridge[QueryResult]) -> None:
        self._bridge = bridge
        self._forward: concurrent.futures.Future[None] | None = None
        self._summary: QuerySummary | None = None
        self.id = 0
        self.name = ""
        #: The query's deadline, on the node's clock.
        self.deadline = 0.0

    def _opened(self, stream: QueryStream, forward: concurrent.futures.Future[None]) -> None:
        self.id = stream.id
        self.name = stream.name
        self.deadline = stream.deadline
        self._forward = forward

    @property
    def summary(self) -> QuerySummary | None:
        """How the query ended (its ``dropped`` counting results this side dropped
        too); None while it runs, or if it was closed or the node stopped first."""
        return self._summary

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> QueryResult:
        return await self._bridge.get()

    async def collect(self) -> tuple[list[QueryResult], QuerySummary | None]:
        """Every result until the query ends, and its summary."""
        results = [result async for result in self]
        return results, self._summary  # set before the iteration ends

    def close(self) -> None:
        """Stop taking results (the query stays open in the cluster until its deadline)."""
        if self._forward is not None:
            self._forward.cancel()
        self._bridge.finish()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _set_summary(self, summary: QuerySummary) -> None:
        self._summary = attrs.evolve(summary, dropped=summary.dropped + self._bridge.dropped)


class Node:
    """One cluster member for asyncio code (see the module docs).

    Arguments are those of `swim.Node`, plus ``event_buffer`` (the size of the node-side
    subscription that feeds every stream) and ``start_timeout_s``. Use ``async with``,
    or `start` and `stop`. Calls need a running node and the loop it was started in.
    """

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        bind: Address = ("127.0.0.1", 7946),
        advertise: Address | None = None,
        seeds: Iterable[Address] = (),
        meta: bytes = b"",
        seed: int | None = None,
        transport_factory: TransportFactory | None = None,
        leave_timeout_s: float = 5.0,
        join_backoff_s: float = 1.0,
        join_backoff_max_s: float = 30.0,
        security: SecurityConfig | Sealer | None = None,
        keyring_file: str | os.PathLike[str] | None = None,
        event_buffer: int = DEFAULT_FEED_BUFFER,
        start_timeout_s: float = 10.0,
    ) -> None:
        if event_buffer < 1:
            raise ValueError("event_buffer must be at least 1")
        self._threaded = ThreadedNode(
            config, name=name, bind=bind, advertise=advertise, seeds=seeds, meta=meta,
            seed=seed, transport_factory=transport_factory, leave_timeout_s=leave_timeout_s,
            join_backoff_s=join_backoff_s, join_backoff_max_s=join_backoff_max_s,
            security=security, keyring_file=keyring_file, queue_events=False,
        )
        self.name: Final = name
        self.config: Final = config
        self._event_buffer = event_buffer
        self._start_timeout_s = start_timeout_s
        self._leave_timeout_s = leave_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hub = _Hub()
        self._feeding: concurrent.futures.Future[None] | None = None
        self._addr: Address | None = None

    # ============================================================== lifecycle

    async def start(self) -> Self:
        """Start the node's thread and wait (in an executor) until it runs."""
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            raise RuntimeError("a swim.aio.Node can only be started once")
        self._loop = loop
        threaded = self._threaded
        starting = loop.run_in_executor(None, threaded.start, self._start_timeout_s)
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # It may still come up: stop it once it has, off the loop.
            def stop_later(_: object) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.run_in_executor(None, functools.partial(threaded.stop, leave=False))

            starting.add_done_callback(stop_later)
            raise
        try:
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._feeding = threaded.submit(functools.partial(self._feed, ready=ready))
            # If the feed never ran (the node stopped at once), `ready` fails with it.
            self._feeding.add_done_callback(functools.partial(_fail_unless_done, ready))
            await asyncio.wrap_future(ready)
            self._addr = await self._call(lambda node: node.addr)
        except BaseException:
            await self.stop(leave=False)
            raise
        return self

    async def stop(self, *, leave: bool = True, timeout_s: float | None = None) -> None:
        """Stop the node: leave gracefully first unless ``leave=False``, then close its
        sockets and end its threads (waited for in an executor, at most `timeout_s`:
        by default the leave timeout plus 5 s)."""
        loop = asyncio.get_running_loop()
        if timeout_s is None:
            timeout_s = self._leave_timeout_s + 5.0
        await loop.run_in_executor(
            None, functools.partial(self._threaded.stop, leave=leave, timeout_s=timeout_s)
        )

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        await self.stop(leave=exc_type is None)

    @property
    def running(self) -> bool:
        """True between a successful start and the end of the node."""
        return self._threaded.running

    @property
    def threaded(self) -> ThreadedNode:
        """The `ThreadedNode` underneath (its blocking methods block the loop: call
        them from other threads only)."""
        return self._threaded

    @property
    def addr(self) -> Address:
        """The address this member announces (known once started)."""
        if self._addr is None:
            raise RuntimeError("the address is known once the node is running")
        return self._addr

    # ================================================================ views

    async def members(
        self,
        *,
        status: StatusFilter | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> list[MemberState]:
        """The members that pass the filters given; with none, every member, dead and
        left ones included (see `swim.Node.members`)."""
        tags = dict(tags) if tags else None
        return await self._call(lambda node: node.members(status=status, tags=tags, name=name))

    async def alive_members(self) -> list[MemberState]:
        """The members whose status is ALIVE, this one included."""
        return await self._call(lambda node: node.alive_members())

    async def member(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown."""
        return await self._call(lambda node: node.member(name))

    async def view(self) -> MemberView:
        """An immutable snapshot of every member (see `swim.MemberView`)."""
        return await self._call(lambda node: node.view())

    async def tags(self, name: str | None = None) -> dict[str, str]:
        """The tags of member `name`, this node's by default (see `swim.Node.tags`)."""
        return await self._call(lambda node: node.tags(name))

    async def local_health(self) -> int:
        """The Lifeguard awareness score (0 is healthy)."""
        return await self._call(lambda node: node.local_health())

    async def stats(self) -> NodeStats:
        """A snapshot of the node's counters."""
        return await self._call(lambda node: node.stats())

    async def wait_for(
        self, predicate: Callable[[MemberView], object], timeout_s: float | None = None
    ) -> MemberView:
        """Wait until `predicate(view)` is true of the membership; returns that view.

        Re-evaluated on every membership event (see `swim.Node.wait_for`) on the node's
        thread: it must be quick and must not block. Raises `TimeoutError` after
        `timeout_s`; cancelling the await stops the wait.
        """
        return await self._run(lambda node: node.wait_for(predicate, timeout_s))

    async def wait_for_alive(self, n: int, timeout_s: float | None = None) -> MemberView:
        """Wait until at least `n` members (this one included) are ALIVE."""
        return await self._run(lambda node: node.wait_for_alive(n, timeout_s))

    async def wait_for_member(
        self,
        name: str,
        status: StatusFilter = MemberStatus.ALIVE,
        *,
        timeout_s: float | None = None,
    ) -> MemberView:
        """Wait until member `name` has `status` (one, or any of several)."""
        return await self._run(
            lambda node: node.wait_for_member(name, status, timeout_s=timeout_s)
        )

    # ================================================================ events

    def events(self, max_buffer: int = DEFAULT_EVENT_BUFFER) -> EventStream[Event]:
        """A stream of every event from now on, as the core's events (the shapes of
        `swim.Node.events`)."""
        return self._stream(_core_event, max_buffer)

    def member_events(self, max_buffer: int = DEFAULT_EVENT_BUFFER) -> EventStream[MemberEvent]:
        """A stream of the membership changes from now on, as `swim.MemberEvent`."""
        return self._stream(member_events_only, max_buffer)

    def stamped_events(
        self, max_buffer: int = DEFAULT_EVENT_BUFFER
    ) -> EventStream[MemberEvent | Stamped]:
        """A stream of every event from now on with its wall-clock time: membership
        changes as `swim.MemberEvent`, the rest as `swim.Stamped`."""
        return self._stream(every_event_stamped, max_buffer)

    # ================================================================ actions

    async def update_metadata(self, meta: bytes) -> None:
        """Replace our metadata; gossiped with a new incarnation."""
        await self._call(lambda node: node.update_metadata(meta))

    async def update_tags(self, tags: Mapping[str, str]) -> None:
        """Replace our metadata with `tags` (see `swim.Node.update_tags`)."""
        tags = dict(tags)
        await self._call(lambda node: node.update_tags(tags))

    async def broadcast(self, payload: bytes) -> int:
        """Gossip `payload` to every member (this one included); returns its id."""
        return await self._call(lambda node: node.broadcast(payload))

    async def send(self, to: str | Address, payload: bytes, *, reliable: bool = False) -> None:
        """Send `payload` to one member (see `swim.Node.send`); a reliable one returns
        once delivered, or raises `swim.DeliveryError`."""
        await self._run(lambda node: node.send(to, payload, reliable=reliable))

    async def leave(self, timeout_s: float = 5.0) -> bool:
        """Leave gracefully and wait (at most `timeout_s`) until the news has spread;
        the node keeps running until stopped."""
        return await self._run(lambda node: node.leave(timeout_s))

    async def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        filter_nodes: Iterable[str] = (),
        filter_tags: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        want_ack: bool = False,
        relay_factor: int = 0,
        max_buffer: int = DEFAULT_QUERY_BUFFER,
        reask: bool = False,
    ) -> QueryResults:
        """Ask the cluster (see `swim.Node.query`); the results as they arrive.

        ::

            async with await node.query("uptime", want_ack=True) as results:
                async for result in results:
                    ...

        Raises `ProtocolError` for a bad query.
        """
        loop = self._require_loop()
        filter_nodes = tuple(filter_nodes)
        tags = dict(filter_tags or {})
        bridge: _Bridge[QueryResult] = _Bridge(loop, max_buffer, cut_off=False)
        opened: concurrent.futures.Future[QueryStream] = concurrent.futures.Future()
        results = QueryResults(bridge)

        async def forward(node: TrioNode) -> None:
            try:
                stream = node.query(
                    name, payload, filter_nodes=filter_nodes, filter_tags=tags,
                    timeout_s=timeout_s, want_ack=want_ack, relay_factor=relay_factor,
                    max_buffer=max_buffer, reask=reask,
                )
            except Exception as exc:  # a bad query: the caller's error
                opened.set_exception(exc)
                return
            opened.set_result(stream)
            try:
                async with stream:
                    async for result in stream:
                        bridge.put(result)
                    summary = await stream.wait_finished()
                results._set_summary(summary)  # before finish: read once iteration ends
            finally:
                bridge.finish()

        forwarding = self._threaded.submit(forward)
        try:
            stream = await asyncio.wrap_future(opened)
        except asyncio.CancelledError:
            forwarding.cancel()
            raise
        results._opened(stream, forwarding)
        return results

    async def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None:
        """Answer a `QueryReceived` (see `swim.Node.respond`)."""
        await self._call(lambda node: node.respond(origin, query_id, payload))

    async def install_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Install `key` on every member (see `swim.Node.install_key`)."""
        return await self._run(lambda node: node.install_key(key, timeout_s=timeout_s))

    async def use_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Make `key` every member's primary (see `swim.Node.use_key`)."""
        return await self._run(lambda node: node.use_key(key, timeout_s=timeout_s))

    async def remove_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Remove `key` from every member (see `swim.Node.remove_key`)."""
        return await self._run(lambda node: node.remove_key(key, timeout_s=timeout_s))

    async def list_keys(self, *, timeout_s: float | None = None) -> KeyReport:
        """Every member's keys (see `swim.Node.list_keys`)."""
        return await self._run(lambda node: node.list_keys(timeout_s=timeout_s))

    # ================================================================ internals

    async def _feed(self, node: TrioNode, *, ready: concurrent.futures.Future[None]) -> None:
        """On the node's thread: one subscription feeding every stream."""
        hub = self._hub
        try:
            while True:
                subscription = node.subscribe(_pair, self._event_buffer)
                if not ready.done():
                    ready.set_result(None)
                try:
                    async for event, stamped in subscription:
                        hub.offer(event, stamped)
                    return
                except EventOverflow as exc:
                    # Only if the pump published more than event_buffer events at once:
                    # every stream missed some, so each is cut off.
                    hub.cut_all(exc.dropped)
        finally:
            hub.finish()
            if not ready.done():
                ready.set_exception(RuntimeError(f"node {self.name!r} stopped"))

    def _stream(self, select: _Select[T], max_buffer: int) -> EventStream[T]:
        stream = EventStream(self._require_loop(), max_buffer, select, self._hub.remove)
        self._hub.add(stream)
        return stream

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the node is not running (use `async with swim.aio.Node(...)`)")
        return self._loop

    async def _run(self, fn: Callable[[TrioNode], Awaitable[T]]) -> T:
        self._require_loop()
        return await asyncio.wrap_future(self._threaded.submit(fn))

    async def _call(self, fn: Callable[[TrioNode], T]) -> T:
        async def call(node: TrioNode) -> T:
            return fn(node)

        return await self._run(call)


def _fail_unless_done(
    future: concurrent.futures.Future[None], cause: concurrent.futures.Future[None]
) -> None:
    if not future.done():
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_exception(RuntimeError("the node stopped before its events could be fed"))


def _core_event(event: Event, stamped: MemberEvent | Stamped) -> Event:
    return event


def _pair(event: Event, stamped: MemberEvent | Stamped) -> tuple[Event, MemberEvent | Stamped]:
    return event, stamped

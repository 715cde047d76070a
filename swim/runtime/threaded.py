"""`ThreadedNode`: a `Node` on its own trio loop in a background thread.

For applications that do not run trio (plain threads, asyncio). The protocol runs in
the node's thread, so an application that blocks its own thread or event loop (a long
``time.sleep``, a CPU-bound handler) does not stop the node from answering probes: the
cluster keeps seeing it alive. Only the GIL is shared.

Threads:

* the node thread runs ``trio.run``; every public method hops into it with
  `trio.from_thread` (using the loop's `TrioToken`) and waits for the answer.
* the dispatcher thread hands events to the `events` queue and to the registered
  callbacks, so a slow callback (or an application that never reads the queue) cannot
  stall the protocol.

Event delivery is bounded: the hand-over to the dispatcher and the `events` queue each
hold at most ``event_queue_size`` events; when one is full, new events are dropped and
counted (`ThreadedNode.events_dropped`). Callbacks see every event the dispatcher gets,
as the core's events or (``add_callback(..., stamped=True)``) as `MemberEvent` /
`Stamped` with their wall-clock time. ``queue_events=False`` leaves the `events` queue
empty, for applications that only use callbacks or `submit`.

`submit` is the non-blocking bridge: it runs a coroutine function in the node's trio
loop, given the trio `Node`, and returns a `concurrent.futures.Future` at once
(`swim.aio` is built on it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeVar, overload

import trio

from swim.core import Config, Event, MemberState, MemberStatus
from swim.runtime.checks import Check, HealthCheck
from swim.runtime.events import MemberEvent, Stamped
from swim.runtime.health import HealthStatus
from swim.runtime.keyops import KeyReport
from swim.runtime.node import Node, NodeStats, TransportFactory
from swim.runtime.queries import QueryResult, QueryStream, QuerySummary
from swim.runtime.query_rules import DEFAULT_QUERY_BUFFER
from swim.runtime.subscriptions import EventOverflow, Subscription
from swim.runtime.views import MemberView, StatusFilter
from swim.security.config import SecurityConfig
from swim.security.seal import Sealer
from transport.base import Address

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: A function called with each event, on the dispatcher thread.
EventCallback = Callable[[Event], object]
#: The same, given each event as published (``add_callback(..., stamped=True)``).
StampedCallback = Callable[[MemberEvent | Stamped], object]
#: What the node thread hands the dispatcher: the core's event and its stamped shape.
_Published = tuple[Event, MemberEvent | Stamped]

_STOP: Final = object()


class ThreadedNode:
    """A cluster member run by trio in a background thread, with a blocking API.

    Start it with `start` (or ``with ThreadedNode(...) as node:``), stop it with `stop`.
    Arguments are those of `Node`, plus ``event_queue_size`` and ``queue_events`` (see
    the module docs). Every method is thread-safe; none may be called from the node's
    own thread.
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
        event_queue_size: int = 10_000,
        queue_events: bool = True,
    ) -> None:
        if event_queue_size < 1:
            raise ValueError("event_queue_size must be at least 1")
        # Built here so bad arguments raise in the caller's thread.
        self._node = Node(
            config,
            name=name,
            bind=bind,
            advertise=advertise,
            seeds=seeds,
            meta=meta,
            seed=seed,
            transport_factory=transport_factory,
            leave_timeout_s=leave_timeout_s,
            join_backoff_s=join_backoff_s,
            join_backoff_max_s=join_backoff_max_s,
            security=security,
            keyring_file=keyring_file,
        )
        self.name: Final = name
        #: Every event, in order, for the application to read (bounded; see module docs).
        self.events: queue.Queue[Event] = queue.Queue(maxsize=event_queue_size)
        self._queue_events = queue_events
        self._handoff: queue.Queue[object] = queue.Queue(maxsize=event_queue_size)
        #: Each callback, and whether it takes the stamped shape.
        self._callbacks: list[tuple[Callable[[object], object], bool]] = []
        self._callbacks_lock = threading.Lock()
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._running = False
        self._error: BaseException | None = None
        self._stop_event: trio.Event | None = None
        self._crash_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: Futures from `submit` not settled yet, failed if the node ends first.
        self._submitted: set[concurrent.futures.Future[Any]] = set()
        self._submitted_lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()

    # ============================================================== lifecycle

    def start(self, timeout_s: float = 10.0) -> ThreadedNode:
        """Start the node's thread and wait until the node is running."""
        with self._lifecycle_lock:
            if self._thread is not None:
                raise RuntimeError("a ThreadedNode can only be started once")
            self._dispatcher = threading.Thread(
                target=self._dispatch, name=f"swim-events-{self.name}", daemon=True
            )
            self._dispatcher.start()
            self._thread = threading.Thread(
                target=trio.run, args=(self._main,), name=f"swim-node-{self.name}", daemon=True
            )
            self._thread.start()
        if not self._started.wait(timeout_s):
            self.stop(leave=False)
            raise TimeoutError(f"node {self.name!r} did not start within {timeout_s} s")
        if self._error is not None:
            self._join_threads(timeout_s)
            raise RuntimeError(f"node {self.name!r} failed to start") from self._error
        return self

    def stop(self, *, leave: bool = True, timeout_s: float = 10.0) -> None:
        """Stop the node: leave gracefully first unless ``leave=False`` (a crash, as far
        as the cluster can tell), then close its sockets and end its threads."""
        token = self._token
        if token is not None:
            target = self._request_stop if leave else self._request_crash
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(target, trio_token=token)
        self._join_threads(timeout_s)

    def __enter__(self) -> ThreadedNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between a successful `start` and the end of the node."""
        return self._running

    @property
    def error(self) -> BaseException | None:
        """What the node's thread died of, if it crashed."""
        return self._error

    # ================================================================ blocking API

    @property
    def addr(self) -> Address:
        """The address this member announces."""
        return self._call(lambda: self._node.addr)

    def members(
        self,
        *,
        status: StatusFilter | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> list[MemberState]:
        """The members this node knows, itself included, that pass the filters given
        (with none, every member, as before filters existed; see `Node.members`)."""
        return self._call(
            lambda: self._node.members(status=status, tags=tags, name=name)
        )

    def alive_members(self) -> list[MemberState]:
        """The members whose status is ALIVE, this one included."""
        return self._call(self._node.alive_members)

    def view(self) -> MemberView:
        """An immutable snapshot of every member (see `MemberView`)."""
        return self._call(self._node.view)

    def tags(self, name: str | None = None) -> dict[str, str]:
        """The tags of member `name`, this node's by default (see `Node.tags`)."""
        return self._call(self._node.tags, name)

    def update_tags(self, tags: Mapping[str, str]) -> None:
        """Replace our metadata with `tags` (see `Node.update_tags`)."""
        self._call(self._node.update_tags, dict(tags))

    def set_health(self, status: HealthStatus | str, note: str = "") -> None:
        """Set and publish this member's health (see `Node.set_health`)."""
        self._call(self._node.set_health, status, note)

    def health(self, name: str | None = None) -> HealthStatus:
        """The health member `name` (this one by default) publishes."""
        return self._call(self._node.health, name)

    def health_note(self, name: str | None = None) -> str:
        """The note published with member `name`'s health."""
        return self._call(self._node.health_note, name)

    def start_health_check(
        self,
        check: Check,
        *,
        interval_s: float,
        timeout_s: float,
        name: str | None = None,
        in_thread: bool | None = None,
    ) -> HealthCheck:
        """Run `check` every `interval_s` in the node (see `Node.start_health_check`).
        A plain function runs in a worker thread of the node's loop, never on the
        caller's thread; `HealthCheck.stop` may be called from any thread."""

        def start() -> HealthCheck:
            return self._node.start_health_check(
                check, interval_s=interval_s, timeout_s=timeout_s, name=name,
                in_thread=in_thread,
            )

        return self._call(start)

    def wait_for(
        self, predicate: Callable[[MemberView], object], timeout_s: float | None = None
    ) -> MemberView:
        """Block until `predicate(view)` is true of the membership; returns that view.

        Re-evaluated on every membership event (see `Node.wait_for`), on the node's
        thread: it must be quick and must not call this object's blocking methods.
        Raises `TimeoutError` after `timeout_s`, `RuntimeError` if the node stops.
        """

        async def wait() -> MemberView:
            return await self._node.wait_for(predicate, timeout_s)

        return self._run_async(wait)

    def wait_for_alive(self, n: int, timeout_s: float | None = None) -> MemberView:
        """Block until at least `n` members are ALIVE (see `wait_for`)."""

        async def wait() -> MemberView:
            return await self._node.wait_for_alive(n, timeout_s)

        return self._run_async(wait)

    def wait_for_member(
        self,
        name: str,
        status: StatusFilter = MemberStatus.ALIVE,
        *,
        timeout_s: float | None = None,
    ) -> MemberView:
        """Block until member `name` has `status` (see `wait_for`)."""

        async def wait() -> MemberView:
            return await self._node.wait_for_member(name, status, timeout_s=timeout_s)

        return self._run_async(wait)

    def submit(self, fn: Callable[[Node], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Run ``await fn(node)`` in the node's trio loop, as a task of its own, where
        `node` is the trio `Node` this object hosts; returns at once.

        The future gets the result, or the exception `fn` raised; `RuntimeError` if
        the node stops first. Cancelling the future cancels the task. `fn` runs on the
        node's thread: it may use every `Node` method, must not block, and must not
        call this object's blocking methods. Raises `RuntimeError` if the node is not
        running.
        """
        token = self._require_token()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._submitted_lock:
            self._submitted.add(future)
        future.add_done_callback(self._forget_submitted)

        def spawn() -> None:
            nursery = self._nursery
            if nursery is None or not self._running:
                _settle(future, error=RuntimeError(f"node {self.name!r} is not running"))
                return
            nursery.start_soon(self._run_submitted, fn, future, token)

        try:
            token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            _settle(future, error=RuntimeError(f"node {self.name!r} is not running"))
        return future

    def member(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown."""
        return self._call(self._node.member, name)

    def local_health(self) -> int:
        """The Lifeguard awareness score (0 is healthy)."""
        return self._call(self._node.local_health)

    def stats(self) -> NodeStats:
        """A snapshot of the node's counters."""
        return self._call(self._node.stats)

    @property
    def events_dropped(self) -> int:
        """Events dropped because a bounded hand-over queue was full."""
        return self._dropped

    def update_metadata(self, meta: bytes) -> None:
        """Replace our metadata; gossiped with a new incarnation."""
        self._call(self._node.update_metadata, meta)

    def broadcast(self, payload: bytes) -> int:
        """Gossip `payload` to every member; returns its id."""
        return self._call(self._node.broadcast, payload)

    def send(self, to: str | Address, payload: bytes, *, reliable: bool = False) -> None:
        """Send `payload` to one member (see `Node.send`); blocks for reliable ones."""
        token = self._require_token()

        async def send() -> None:
            await self._node.send(to, payload, reliable=reliable)

        trio.from_thread.run(send, trio_token=token)

    def leave(self, timeout_s: float = 5.0) -> bool:
        """Leave gracefully and wait (at most `timeout_s`) until the news has spread."""
        token = self._require_token()

        async def leave() -> bool:
            return await self._node.leave(timeout_s)

        return trio.from_thread.run(leave, trio_token=token)

    def query(
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
    ) -> BlockingQuery:
        """Ask the cluster (see `Node.query`); a blocking iterator of the results.

        Iterating blocks until the next result or the deadline; `BlockingQuery.summary`
        is set once it ends. Raises `ProtocolError` for a bad query.
        """
        filter_nodes = tuple(filter_nodes)
        tags = dict(filter_tags or {})

        def start() -> QueryStream:
            return self._node.query(
                name, payload, filter_nodes=filter_nodes, filter_tags=tags,
                timeout_s=timeout_s, want_ack=want_ack, relay_factor=relay_factor,
                max_buffer=max_buffer, reask=reask,
            )

        return BlockingQuery(self._call(start), self._require_token())

    def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None:
        """Answer a `QueryReceived` (see `Node.respond`)."""
        self._call(self._node.respond, origin, query_id, payload)

    def install_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Install `key` on every member (see `Node.install_key`); blocks for the report."""
        return self._run(self._node.install_key, key, timeout_s=timeout_s)

    def use_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Make `key` every member's primary (see `Node.use_key`)."""
        return self._run(self._node.use_key, key, timeout_s=timeout_s)

    def remove_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Remove `key` from every member (see `Node.remove_key`)."""
        return self._run(self._node.remove_key, key, timeout_s=timeout_s)

    def list_keys(self, *, timeout_s: float | None = None) -> KeyReport:
        """Every member's keys (see `Node.list_keys`)."""

        async def list_keys() -> KeyReport:
            return await self._node.list_keys(timeout_s=timeout_s)

        return self._run_async(list_keys)

    @overload
    def add_callback(
        self, callback: EventCallback, *, stamped: Literal[False] = False
    ) -> Callable[[], None]: ...
    @overload
    def add_callback(
        self, callback: StampedCallback, *, stamped: Literal[True]
    ) -> Callable[[], None]: ...

    def add_callback(
        self, callback: EventCallback | StampedCallback, *, stamped: bool = False
    ) -> Callable[[], None]:
        """Call `callback(event)` for every event, on the dispatcher thread: the core's
        event, or with ``stamped=True`` its published shape (`MemberEvent` for a
        membership change, else `Stamped`), which carries the wall-clock time.

        Exceptions it raises are logged and ignored. Returns a function that removes it.
        """
        entry: tuple[Callable[[object], object], bool] = (callback, stamped)  # type: ignore[assignment]
        with self._callbacks_lock:
            self._callbacks.append(entry)

        def remove() -> None:
            with self._callbacks_lock, contextlib.suppress(ValueError):
                self._callbacks.remove(entry)

        return remove

    # ============================================================ the node thread

    async def _main(self) -> None:
        try:
            with trio.CancelScope() as crash_scope:
                self._crash_scope = crash_scope
                self._stop_event = trio.Event()
                async with self._node as node:
                    subscription = node.subscribe(_published, max_buffer=self._handoff.maxsize)
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        nursery.start_soon(self._forward, subscription)
                        self._token = trio.lowlevel.current_trio_token()
                        self._running = True
                        self._started.set()
                        await self._stop_event.wait()
                        nursery.cancel_scope.cancel()
        except BaseException as exc:  # reported through `error` / `start`
            self._error = exc
            if not isinstance(exc, Exception):
                _log.debug("node %s thread ended by %r", self.name, exc)
            else:
                _log.exception("node %s crashed", self.name)
        finally:
            self._running = False
            self._nursery = None
            self._started.set()
            self._put_handoff(_STOP, force=True)
            with self._submitted_lock:
                unsettled = list(self._submitted)
            for future in unsettled:
                _settle(future, error=RuntimeError(f"node {self.name!r} stopped"))

    def _request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def _request_crash(self) -> None:
        if self._crash_scope is not None:
            self._crash_scope.cancel()

    async def _forward(self, subscription: Subscription[_Published]) -> None:
        node = self._node
        sub = subscription
        while True:
            try:
                async for published in sub:
                    self._put_handoff(published)
                return
            except EventOverflow as exc:  # cannot happen while put_nowait keeps up
                self._count_dropped(exc.dropped)
                sub = node.subscribe(_published, max_buffer=self._handoff.maxsize)

    async def _run_submitted(
        self,
        fn: Callable[[Node], Awaitable[T]],
        future: concurrent.futures.Future[T],
        token: trio.lowlevel.TrioToken,
    ) -> None:
        if future.cancelled():
            return
        with trio.CancelScope() as scope:

            def on_done(done: concurrent.futures.Future[T]) -> None:
                if done.cancelled():  # by the submitter, from any thread
                    with contextlib.suppress(trio.RunFinishedError):
                        token.run_sync_soon(scope.cancel)

            future.add_done_callback(on_done)
            try:
                result = await fn(self._node)
            except trio.Cancelled:
                _settle(future, error=RuntimeError(f"node {self.name!r} stopped"))
                raise
            except BaseException as exc:
                _settle(future, error=exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_result(result)

    def _forget_submitted(self, future: concurrent.futures.Future[T]) -> None:
        with self._submitted_lock:
            self._submitted.discard(future)

    def _put_handoff(self, item: object, *, force: bool = False) -> None:
        try:
            self._handoff.put_nowait(item)
        except queue.Full:
            if not force:
                self._count_dropped(1)
                return
            # The stop marker must get through: make room for it.
            with contextlib.suppress(queue.Empty):
                self._handoff.get_nowait()
            self._count_dropped(1)
            self._handoff.put_nowait(item)

    # ========================================================= the dispatcher thread

    def _dispatch(self) -> None:
        while True:
            item = self._handoff.get()
            if item is _STOP:
                return
            published: _Published = item  # type: ignore[assignment]
            event, stamped = published
            if self._queue_events:
                try:
                    self.events.put_nowait(event)
                except queue.Full:
                    self._count_dropped(1)
            with self._callbacks_lock:
                callbacks = list(self._callbacks)
            for callback, wants_stamped in callbacks:
                try:
                    callback(stamped if wants_stamped else event)
                except Exception:
                    _log.exception("event callback %r failed", callback)

    # ================================================================= internals

    def _count_dropped(self, n: int) -> None:
        with self._dropped_lock:
            self._dropped += n

    def _require_token(self) -> trio.lowlevel.TrioToken:
        if self._token is None or not self._running:
            raise RuntimeError(f"node {self.name!r} is not running")
        return self._token

    def _run(
        self, fn: Callable[..., Awaitable[KeyReport]], key: bytes | str, *, timeout_s: float | None
    ) -> KeyReport:
        async def run() -> KeyReport:
            return await fn(key, timeout_s=timeout_s)

        return self._run_async(run)

    def _run_async(self, fn: Callable[[], Awaitable[T]]) -> T:
        token = self._require_token()
        try:
            return trio.from_thread.run(fn, trio_token=token)
        except trio.RunFinishedError:
            raise RuntimeError(f"node {self.name!r} is not running") from None

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        token = self._require_token()
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            raise RuntimeError(f"node {self.name!r} is not running") from None

    def _join_threads(self, timeout_s: float) -> None:
        for thread in (self._thread, self._dispatcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout_s)


def _published(event: Event, stamped: MemberEvent | Stamped) -> _Published:
    return event, stamped


def _settle(future: concurrent.futures.Future[Any], *, error: BaseException) -> None:
    """Fail `future` unless it already has an outcome (or was cancelled)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


class BlockingQuery:
    """A `QueryStream` read from another thread: iterate it (each step blocks until the
    next result, or the query's end), then read `summary`. Use ``with`` (or `close`)
    to stop early. If the node stops, iteration ends."""

    def __init__(self, stream: QueryStream, token: trio.lowlevel.TrioToken) -> None:
        self._stream = stream
        self._token = token
        self.id: Final = stream.id
        self.name: Final = stream.name

    @property
    def summary(self) -> QuerySummary | None:
        """How the query ended; None while it is open."""
        return self._stream.summary

    def __iter__(self) -> Iterator[QueryResult]:
        return self

    def __next__(self) -> QueryResult:
        async def next_result() -> QueryResult | None:
            try:
                return await self._stream.__anext__()
            except StopAsyncIteration:
                return None

        try:
            result = trio.from_thread.run(next_result, trio_token=self._token)
        except trio.RunFinishedError:
            result = None
        if result is None:
            raise StopIteration
        return result

    def collect(self) -> tuple[list[QueryResult], QuerySummary | None]:
        """Every result until the query ends, and its summary (None only if the node
        stopped before it could be made)."""
        results = list(self)
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run(self._stream.wait_finished, trio_token=self._token)
        return results, self._stream.summary

    def close(self) -> None:
        """Stop taking results."""
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._stream.close, trio_token=self._token)

    def __enter__(self) -> BlockingQuery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""`Node`: the sans-IO `Core` driven by trio over a `Transport`.

A thin translator, after aioquic's asyncio adapter: every input (a datagram, a stream
request or response, an application call) goes to the core with ``trio.current_time()``
as ``now``; then the outputs are flushed (`Node._flush`): the core's events published,
the streams it asked for started, its datagrams sent, and the single timer re-armed at
``Core.poll().deadline``. A network input is flushed by the task that took it in, which
moves the pump's wake-up time in place; an application call marks the node *dirty* and
wakes the pump to flush. So an idle member wakes once per timer and once per datagram.
Time is read only through `trio.current_time`, so a node runs unchanged under trio's
`MockClock`.

Tasks inside a running node (one nursery):

* the pump: sleeps until the core's deadline or until woken, runs `handle_timer`, flushes
  outputs.
* the receive loop: hands every datagram to the core and flushes what it produced (an
  ack, say).
* one task per stream the core asked for (join, push-pull, fallback ping, reliable user
  message), each bounded by ``Config.tcp_timeout_s``; a failure or timeout is reported
  as ``receive_stream_response(id, None, now)``.

Joining (and retrying with the shared `DriverPolicy` backoff), leave completion and
stream timeouts are decided by the core itself, the same way for every driver; the pump
only runs what `Core.poll` hands it.

Incoming streams are answered by the transport calling `Node` back (`handle_stream_request`).

Security: every datagram and every stream frame, both ways, passes through one `Sealer`
(`swim.security`) built from the node's `SecurityConfig` at start (default: plaintext
mode, a CRC-32 and the empty label, no keys). Outgoing bytes are sealed with the wall
clock as ``now`` (``time.time()`` by default: the replay window needs clocks comparable
across hosts; the core keeps ``trio.current_time()``); incoming bytes are opened first,
and a packet the sealer rejects is dropped and counted (`NodeStats.security`) before the
core sees it: a rejected datagram is ignored, a rejected stream request closes the
stream, a rejected stream response is a failed stream (None to the core).

Packet budget: ``Config.packet_budget`` is the size on the wire. The core is built with
that budget less the sealer's largest overhead (`SecurityConfig.overhead`: 6 bytes plus
the label in plaintext mode, 54 plus the label with a keyring), so a sealed datagram
never exceeds ``Config.packet_budget``; `Node.core`'s config shows the reduced figure.

Queries (Serf's): `Node.query` returns a `QueryStream` of acks and answers as they
arrive, fed by the pump without waiting (bounded; see `swim.runtime.queries`), and the
application answers the `QueryReceived` events it sees with `Node.respond`. Queries
named ``_swim_*`` are the runtime's own: the key commands (`install_key`, `use_key`,
`remove_key`, `list_keys`; see `swim.runtime.keyops`) are answered by the pump itself,
and neither they nor their acks and answers are published to `Node.events`.

Views and events: ``members()`` filters by status, tags and name (`swim.runtime.views`),
and `wait_for` re-evaluates a predicate over a `MemberView` snapshot each time the pump
publishes a membership event (no polling). ``events()`` yields the core's events as they
are; ``member_events()`` and ``stamped_events()`` yield the shapes of
`swim.runtime.events`, which add the wall-clock time of each event (the node's
``wall_clock`` translated to the event's ``at``).

Health (`swim.runtime.health`, `swim.runtime.checks`): ``set_health`` and running checks
are the node's health sources; the worst of them is published as the ``health`` (and
``health_note``) tags next to the application's own, through ``update_metadata``. Health
never touches liveness: a critical member answers probes as before. ``health_events()``
yields `HealthChanged` values, this member's own changes included; so does any
subscription made with ``local_updates=True`` see this member's own metadata changes, as
a `MemberUpdated` the core itself does not raise.

Shutdown: leaving the ``async with`` block normally leaves the cluster gracefully
(bounded by ``leave_timeout_s``) and then closes the transport. Leaving it by an
exception, cancellation included, skips the leave, like a crash: the tasks are cancelled
and the transport closes its sockets on the way out.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import itertools
import math
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from swim.core import (
    Config,
    Core,
    DriverPolicy,
    Event,
    MemberState,
    MemberStatus,
    MemberUpdated,
    ProtocolError,
    QueryAcked,
    QueryFinished,
    QueryReceived,
    QueryResponded,
    Stats,
)
from swim.core.codec import MAX_STREAM_BYTES
from swim.core.outputs import StreamKind, StreamRequest
from swim.core.queries import default_timeout_s
from swim.core.tags import TagError, encode_tags, tags_of
from swim.core.vivaldi import Coordinate, estimate_rtt_s
from swim.runtime.checks import Check, HealthCheck, run_check_loop
from swim.runtime.events import MemberEvent, Stamped, is_membership_event, stamp
from swim.runtime.health import (
    HEALTH_NOTE_TAG,
    MANUAL_SOURCE,
    HealthChanged,
    HealthResult,
    HealthStatus,
    HealthWatch,
    health_of,
    note_of,
    with_health,
    worst,
)
from swim.runtime.query_rules import DEFAULT_QUERY_BUFFER, INTERNAL_PREFIX, is_internal
from swim.runtime.subscriptions import (
    Converter,
    EventSubscription,
    Subscription,
    every_event_stamped,
    member_events_only,
)
from swim.runtime.views import MemberView, StatusFilter, as_statuses, filter_members
from swim.security.config import SecurityConfig, sealer_overhead
from swim.security.seal import Rejected, Sealer, SealStats
from transport.base import Address, StreamHandler, Transport, TransportError, TransportStats

if TYPE_CHECKING:
    from swim.runtime import keyops
    from swim.runtime.keyops import KeyCommand, KeyReport
    from swim.runtime.queries import QueryStream

T = TypeVar("T")
_S = TypeVar("_S", bound=Subscription[Any])

#: Opens a transport whose incoming streams are answered by the given handler.
TransportFactory = Callable[[StreamHandler], AbstractAsyncContextManager[Transport]]

#: Default size of each event subscriber's buffer.
DEFAULT_EVENT_BUFFER: Final = 1024
#: Streams the node runs at once; more wait for a slot.
MAX_CONCURRENT_STREAMS: Final = 64
#: The smallest packet budget `Config` accepts, which the core's must respect too.
_MIN_CORE_BUDGET: Final = 64


class DeliveryError(Exception):
    """A reliable `Node.send` failed: the stream was refused, reset or timed out."""


@attrs.frozen
class NodeStats:
    """A snapshot of a node's counters: the core's, the transport's and the runtime's."""

    #: Protocol counters (a copy of `Core.stats`).
    core: Stats
    #: Network counters (a copy of the transport's).
    transport: TransportStats
    #: Events the core emitted and the node published.
    events_published: int
    #: Subscriptions cut off because their buffer was full.
    subscriber_overflows: int
    #: Join attempts (one per round of joins to the seeds).
    join_attempts: int
    #: Streams currently open on our initiative.
    streams_in_flight: int
    #: Stream requests that failed or timed out (reported to the core as None), those
    #: whose response the sealer rejected included.
    streams_failed: int
    #: The sealer's counters (a copy): packets sealed and opened, and those rejected
    #: (wrong label, corrupt, unauthenticated, replayed, stale...) by reason.
    security: SealStats


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.Factory(trio.Event)
    ok: bool = False


class Node:
    """One cluster member over a real (or simulated) network, run by trio.

    Use it as an async context manager::

        async with swim.Node(swim.Config.lan(), name="a", bind=("10.0.0.1", 7946),
                             seeds=[("10.0.0.2", 7946)]) as node:
            async for event in node.events():
                ...

    Args:
        config: protocol settings.
        name: this member's unique name.
        bind: where to listen (port 0 picks a free port).
        advertise: the address other members reach us at (default: the bound address);
            it must be a specific IP, not 0.0.0.0 or ::.
        seeds: members to join through; retried with backoff until one answers.
        meta: initial metadata (at most 512 bytes).
        seed: seed of the random choices (None: from `os.urandom`).
        transport_factory: opens the transport given the stream handler (default: UDP
            and TCP on `bind` via `transport.udp.open_udp_tcp_transport`).
        leave_timeout_s: how long a graceful exit waits for the leave to spread.
        join_backoff_s, join_backoff_max_s: first and largest delay between join rounds.
        security: how packets are sealed (`swim.security.SecurityConfig`; default
            plaintext mode with the empty label), or a ready `Sealer` (its sender id must
            be fresh for this run; the node then uses it as it is).
        wall_clock: the clock whose ``now`` seals and opens packets (default
            `time.time`); every member's must agree to within the replay window. A
            simulation running every node in one trio run may pass `trio.current_time`.
        keyring_file: the keyring file the node's keys were loaded from, if any; it is
            rewritten atomically (`swim.security.save_keyring`) after every key command
            this member applies, so the change survives a restart.
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
        wall_clock: Callable[[], float] = time.time,
        keyring_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if advertise is not None:
            _check_advertise(advertise, "advertise")
        elif transport_factory is None:
            _check_advertise(bind, "bind (used as the advertise address)")
        if join_backoff_s <= 0 or join_backoff_max_s < join_backoff_s:
            raise ValueError("need 0 < join_backoff_s <= join_backoff_max_s")
        if security is None:
            security = SecurityConfig()
        overhead = (
            security.overhead if isinstance(security, SecurityConfig)
            else sealer_overhead(security)
        )
        if config.packet_budget - overhead < _MIN_CORE_BUDGET:
            raise ValueError(
                f"packet_budget {config.packet_budget} leaves {config.packet_budget - overhead}"
                f" bytes after the sealer's {overhead}-byte overhead; the core needs at least"
                f" {_MIN_CORE_BUDGET} (raise packet_budget or shorten the label)"
            )
        #: The settings as given: ``packet_budget`` is the size on the wire.
        self.config: Final = config
        self.name: Final = name
        self._security = security
        self._wall_clock = wall_clock
        self._overhead = overhead
        self._sealer: Sealer | None = security if isinstance(security, Sealer) else None
        self._bind = bind
        self._advertise = advertise
        self._seeds = list(seeds)
        self._meta = meta
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "big")
        self.seed: Final = seed
        self._transport_factory = transport_factory
        self._leave_timeout_s = leave_timeout_s

        self._core: Core | None = None
        self._transport: Transport | None = None
        self._nursery: trio.Nursery | None = None
        self._cm: AbstractAsyncContextManager[Node] | None = None
        self._entered = False
        self._stopped = False
        # The pump's state: dirty means "an application input may have produced output
        # or moved the deadline"; the scope is the pump's current sleep, cancelled to
        # wake it, or given a new deadline in place; the core's deadline as of the last
        # poll, and when the pump last ran the core's timer.
        self._dirty = True
        self._timer_scope: trio.CancelScope | None = None
        self._deadline = -math.inf
        self._handled_at = -math.inf
        self._left = trio.Event()
        self._subscribers: list[Subscription[Any]] = []
        #: The subscribers (also in `_subscribers`) that see our own metadata changes.
        self._local_subscribers: list[Subscription[Any]] = []
        #: Health sources by name (`MANUAL_SOURCE` for set_health, a check's name).
        self._health_sources: dict[str, HealthResult] = {}
        self._health_checks: dict[str, HealthCheck] = {}
        #: Set (and replaced) whenever a membership event is published, and at stop:
        #: what `wait_for` sleeps on.
        self._membership_changed = trio.Event()
        self._waiters: dict[int, _Waiter] = {}
        self._keyring_file = keyring_file
        #: Our open queries, by id, until their QueryFinished (or the node stops).
        self._queries: dict[int, QueryStream] = {}
        #: Ids of our open internal (``_swim_*``) queries: their events stay unpublished.
        self._internal_queries: set[int] = set()
        self._stream_limiter = trio.CapacityLimiter(MAX_CONCURRENT_STREAMS)
        self._events_published = 0
        self._subscriber_overflows = 0
        self._streams_in_flight = 0
        self._streams_failed = 0
        self._rng = random.Random(seed)
        self._policy = DriverPolicy(
            join_backoff_s=join_backoff_s,
            join_backoff_max_s=join_backoff_max_s,
            leave_timeout_s=leave_timeout_s,
        )

    # ============================================================== lifecycle

    async def __aenter__(self) -> Node:
        if self._entered:
            raise RuntimeError("a Node can only be started once")
        self._entered = True
        self._cm = self._run()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: object) -> bool | None:
        assert self._cm is not None
        return await self._cm.__aexit__(*exc_info)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[Node]:
        factory = self._transport_factory or _default_transport_factory(
            self._bind, self.config, self._overhead
        )
        security = self._security
        if isinstance(security, SecurityConfig):
            # A fresh replay namespace per run; sealed packets timestamped before this
            # start are refused (a capture replayed after a restart would otherwise find
            # no replay state to stop it).
            self._sealer = security.sealer(
                sender_id=os.urandom(8), random_bytes=os.urandom, not_before=self._wall_clock()
            )
        sealer = self._sealer
        assert sealer is not None
        body_error: BaseException | None = None
        try:
            async with factory(self._handle_stream) as transport:
                self._transport = transport
                addr = self._advertise or transport.local_addr
                _check_advertise(addr, "the advertise address")
                core = Core(
                    attrs.evolve(
                        self.config, packet_budget=self.config.packet_budget - self._overhead
                    ),
                    name=self.name,
                    addr=addr,
                    rng=self._rng,
                    now=trio.current_time(),
                    meta=self._meta,
                    policy=self._policy,
                )
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._core = core
                    nursery.start_soon(self._pump, core, transport, sealer)
                    nursery.start_soon(self._receive_loop, core, transport, sealer)
                    if self._seeds:
                        core.join(self._seeds, now=trio.current_time())
                    try:
                        yield self
                    except BaseException as exc:
                        body_error = exc
                        raise
                    if not core.leaving:
                        await self.leave(self._leave_timeout_s)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The nurseries (ours, the transport's) wrap whatever the body raised; give
            # the caller their own exception back when nothing else went wrong.
            leaves = list(_leaves(group))
            if body_error is not None and body_error in leaves and all(
                exc is body_error or isinstance(exc, trio.Cancelled) for exc in leaves
            ):
                raise body_error from None
            raise
        finally:
            self._stopped = True
            self._nursery = None
            for sub in self._subscribers:
                sub._finish()
            self._subscribers.clear()
            self._local_subscribers.clear()
            self._membership_changed.set()  # waiters wake and see the node stopped
            for waiter in self._waiters.values():
                waiter.done.set()
            for stream in self._queries.values():
                stream._finish(at=trio.current_time(), complete=False)
            self._queries.clear()

    # ================================================================ application API

    @property
    def addr(self) -> Address:
        """The address this member announces (known once the node is running)."""
        if self._core is not None:
            return self._core.addr
        if self._advertise is not None:
            return self._advertise
        raise RuntimeError("the address is known once the node is running")

    @property
    def core(self) -> Core:
        """The protocol core (for read-outs; drive it only through this node)."""
        return self._require_core()

    def members(
        self,
        *,
        status: StatusFilter | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> list[MemberState]:
        """The members this node knows, itself included, that pass the filters given.

        With no filter, every member, dead and left ones included until they are
        reaped (as before filters existed). `status` is a `MemberStatus` or a
        collection of them; `tags` maps tag keys to shell-style patterns their values
        must match; `name` is a shell-style pattern (see `swim.runtime.views`).
        """
        members = self._require_core().members()
        if status is None and not tags and name is None:
            return members
        return filter_members(members, status=status, tags=tags, name=name)

    def alive_members(self) -> list[MemberState]:
        """The members whose status is ALIVE, this one included. (Suspects are usually
        alive too: ``members(status=swim.UP_STATUSES)`` counts them.)"""
        return filter_members(self._require_core().members(), status=MemberStatus.ALIVE)

    def view(self) -> MemberView:
        """An immutable snapshot of every member (see `MemberView`)."""
        return MemberView(self._require_core().members())

    def tags(self, name: str | None = None) -> dict[str, str]:
        """The tags of member `name` (this node's own by default), decoded from its
        metadata by `swim.core.tags` (empty if it holds none). Raises `LookupError`
        for an unknown member."""
        core = self._require_core()
        member = core.member(core.name if name is None else name)
        if member is None:
            raise LookupError(f"unknown member {name!r}")
        return tags_of(member.meta)

    def update_tags(self, tags: Mapping[str, str]) -> None:
        """Replace our metadata with `tags` (`swim.encode_tags`; raises `TagError` if
        they do not fit in 512 bytes); gossiped with a new incarnation. Once the node has
        a health source (`set_health`, a running check) it keeps its health tags: the
        mapping's own ``health`` and ``health_note`` are replaced by the node's."""
        if self._health_sources:
            tags = with_health(tags, worst(self._health_sources))
        self.update_metadata(encode_tags(tags))

    # ================================================================ health

    def set_health(self, status: HealthStatus | str, note: str = "") -> None:
        """Set this member's health (passing, warning or critical; a `HealthStatus` or
        its text) with an optional note, and publish it to the cluster in our metadata
        as the ``health`` (and ``health_note``) tags, next to the others (see
        `swim.runtime.health`).

        Health is not liveness: the member keeps answering probes and stays alive in
        every view; a critical one leaves placement rings (`swim.ring`) until it passes
        again. What is published is the worst of this status and the latest result of
        each running check. Nothing is gossiped if that does not change. Raises
        `ValueError` for an unknown status, `TagError` if the tags no longer fit in the
        metadata (a note that does not fit is dropped first). Metadata that holds no
        tags (raw bytes from `update_metadata`) is replaced by the health tags.
        """
        self._set_health_source(MANUAL_SOURCE, HealthResult(HealthStatus.parse(status), note))

    def health(self, name: str | None = None) -> HealthStatus:
        """The health member `name` (this one by default) publishes: passing if it
        publishes none. Raises `LookupError` for an unknown member."""
        return health_of(self.tags(name))

    def health_note(self, name: str | None = None) -> str:
        """The note published with member `name`'s health ("" if none)."""
        return note_of(self.tags(name))

    def start_health_check(
        self,
        check: Check,
        *,
        interval_s: float,
        timeout_s: float,
        name: str | None = None,
        in_thread: bool | None = None,
    ) -> HealthCheck:
        """Run `check` every `interval_s` as a task of this node (it stops with the node,
        or at `HealthCheck.stop`); each result is one of the node's health sources.

        `check` returns a `HealthStatus` (or its text) or an awaitable of one; a run that
        raises, takes longer than `timeout_s` or returns anything else is critical, with
        a note saying why. Coroutine functions run in the loop, other callables in a
        worker thread (`in_thread` forces either; see `swim.runtime.checks`). `name`
        names the source (default ``check-N``); running checks must have distinct names.
        A result whose tags no longer fit in the metadata is kept on the handle but not
        published.
        """
        self._require_running()
        nursery = self._nursery
        assert nursery is not None
        if not (0 < interval_s < math.inf and 0 < timeout_s < math.inf):
            raise ValueError("interval_s and timeout_s must be positive and finite")
        if name is None:
            name = next(
                f"check-{i}" for i in itertools.count(1) if f"check-{i}" not in self._health_checks
            )
        elif name == MANUAL_SOURCE or name in self._health_checks:
            raise ValueError(f"a health check named {name!r} is already running")
        handle = HealthCheck(name, interval_s, timeout_s)
        self._health_checks[name] = handle
        nursery.start_soon(self._run_health_check, handle, check, in_thread)
        return handle

    @contextlib.asynccontextmanager
    async def run_health_check(
        self,
        check: Check,
        *,
        interval_s: float,
        timeout_s: float,
        name: str | None = None,
        in_thread: bool | None = None,
    ) -> AsyncIterator[HealthCheck]:
        """`start_health_check` for the duration of an ``async with`` block::

            async with node.run_health_check(check_db, interval_s=10, timeout_s=2):
                ...  # the node's health follows check_db's results

        Leaving the block stops the check and withdraws its result.
        """
        handle = self.start_health_check(
            check, interval_s=interval_s, timeout_s=timeout_s, name=name, in_thread=in_thread
        )
        try:
            yield handle
        finally:
            handle.stop()
            with trio.CancelScope(shield=True):
                await handle.wait_stopped()

    def health_events(self, max_buffer: int = DEFAULT_EVENT_BUFFER) -> Subscription[HealthChanged]:
        """Subscribe to health changes from now on, this member's own included: one
        `HealthChanged` (member, old, new, note, at, wall_time) per change of a member's
        health status (see `swim.runtime.health.HealthWatch`)."""
        members = self._require_core().members()
        return self.subscribe(HealthWatch(members), max_buffer, local_updates=True)

    async def _run_health_check(
        self, handle: HealthCheck, check: Check, in_thread: bool | None
    ) -> None:
        try:
            await run_check_loop(handle, check, self._check_result, in_thread=in_thread)
        finally:
            self._health_checks.pop(handle.name, None)

    def _check_result(self, source: str, result: HealthResult | None) -> None:
        """A check's result (None: the check stopped). Never raises into the check's
        task: a node that is stopping or leaving drops it, and a result whose tags do not
        fit is not published."""
        if self._stopped or self._core is None or self._core.leaving:
            self._health_sources.pop(source, None)
            return
        with contextlib.suppress(TagError):
            self._set_health_source(source, result)

    def _set_health_source(self, source: str, result: HealthResult | None) -> None:
        """Record one health source and publish the worst of them if that changes our
        tags (without sources, the health tags are removed)."""
        self._require_running()
        sources = dict(self._health_sources)
        if result is None:
            sources.pop(source, None)
        else:
            sources[source] = result
        current = self.tags()
        wanted = with_health(current, worst(sources))
        if wanted != current:
            try:
                meta = encode_tags(wanted)
            except TagError:
                if HEALTH_NOTE_TAG not in wanted:
                    raise
                del wanted[HEALTH_NOTE_TAG]
                meta = encode_tags(wanted)
            self._health_sources = sources
            self.update_metadata(meta)
        else:
            self._health_sources = sources

    async def wait_for(
        self, predicate: Callable[[MemberView], object], timeout_s: float | None = None
    ) -> MemberView:
        """Wait until `predicate(view)` is true of the membership; returns that view.

        The predicate is called at once, then again each time the node publishes a
        membership event (joined, suspect, alive, failed, left, updated), never on a
        timer; it must be quick and must not block. Raises `TimeoutError` if it is
        still false after `timeout_s` (the node's clock), and `RuntimeError` if the
        node stops first. A member reaped from the table (which raises no event) is
        seen at the next event.
        """
        view = MemberView(self._require_running().members())
        if predicate(view):
            await trio.lowlevel.checkpoint()
            return view
        with trio.move_on_after(math.inf if timeout_s is None else timeout_s):
            while True:
                await self._membership_changed.wait()
                view = MemberView(self._require_running().members())
                if predicate(view):
                    return view
        raise TimeoutError(f"the membership did not satisfy {predicate!r} in {timeout_s} s")

    async def wait_for_alive(self, n: int, timeout_s: float | None = None) -> MemberView:
        """Wait until at least `n` members (this one included) are ALIVE; see `wait_for`."""
        return await self.wait_for(lambda view: len(view.alive()) >= n, timeout_s=timeout_s)

    async def wait_for_member(
        self,
        name: str,
        status: StatusFilter = MemberStatus.ALIVE,
        *,
        timeout_s: float | None = None,
    ) -> MemberView:
        """Wait until member `name` has `status` (one, or any of several); see
        `wait_for`."""
        statuses = as_statuses(status)
        return await self.wait_for(
            lambda view: view.status_of(name) in statuses, timeout_s=timeout_s
        )

    def member(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown."""
        return self._require_core().member(name)

    def local_health(self) -> int:
        """The Lifeguard awareness score: 0 is healthy, higher means slower probing."""
        return self._require_core().local_health

    @property
    def encrypted(self) -> bool:
        """Whether this node holds keys: it seals (unless sending plaintext) and
        authenticates what it opens."""
        security = self._security
        return security.keyring is not None

    @property
    def label(self) -> str:
        """The cluster label every packet carries."""
        security = self._security
        if isinstance(security, SecurityConfig):
            return security.label
        return security.label.decode("utf-8", "replace")

    def update_security(
        self, *, accept_plaintext: bool | None = None, send_plaintext: bool | None = None
    ) -> None:
        """Turn the rolling-upgrade switches of a running node with keys on or off.

        The keyring itself is shared: rotate keys with `Keyring.install` / `use` /
        `remove` on it. A node started without keys cannot be given some (its packet
        budget has no room for the sealed overhead): restart it with a keyring.
        """
        self._require_running()
        sealer = self._sealer
        assert sealer is not None
        if sealer.keyring is None:
            raise ValueError("this node has no keyring; the plaintext switches need one")
        if accept_plaintext is not None:
            sealer.accept_plaintext = accept_plaintext
        if send_plaintext is not None:
            sealer.send_plaintext = send_plaintext

    def events(self, max_buffer: int = DEFAULT_EVENT_BUFFER) -> EventSubscription:
        """Subscribe to every event from now on, in order (see `EventSubscription`).

        Any number of subscribers may exist; each has its own bounded buffer.
        """
        return self._subscribe(EventSubscription(max_buffer, self._unsubscribe))

    def _subscribe(self, sub: _S) -> _S:
        if self._stopped:
            sub._finish()
        else:
            self._subscribers.append(sub)
        return sub

    def member_events(self, max_buffer: int = DEFAULT_EVENT_BUFFER) -> Subscription[MemberEvent]:
        """Subscribe to the membership changes from now on, in one shape: `MemberEvent`
        (kind, member, name, at, wall_time, accuser). Other events are skipped; the
        buffer and overflow are those of `events`."""
        return self.subscribe(member_events_only, max_buffer)

    def stamped_events(
        self, max_buffer: int = DEFAULT_EVENT_BUFFER
    ) -> Subscription[MemberEvent | Stamped]:
        """Subscribe to every event from now on, each with its wall-clock time:
        membership changes as `MemberEvent`, the rest as `Stamped` (the core's event
        and its ``wall_time``)."""
        return self.subscribe(every_event_stamped, max_buffer)

    def subscribe(
        self,
        convert: Converter[T],
        max_buffer: int = DEFAULT_EVENT_BUFFER,
        *,
        local_updates: bool = False,
    ) -> Subscription[T]:
        """Subscribe to what `convert(event, stamped)` makes of every event from now on
        (None skips it), where `event` is the core's event and `stamped` its published
        shape (`MemberEvent` or `Stamped`). `events`, `member_events` and
        `stamped_events` are this with a given converter; it runs in the pump, so it
        must be quick and must not raise.

        With `local_updates`, the subscription also sees this member's own metadata
        changes (`update_metadata`, `update_tags`, `set_health`) as a `MemberUpdated`
        about itself, which the core raises only for peers (a `RingTracker` fed from
        events needs them to follow our own health and weight)."""
        sub = self._subscribe(Subscription(max_buffer, self._unsubscribe, convert))
        if local_updates and not self._stopped:
            self._local_subscribers.append(sub)
        return sub

    def update_metadata(self, meta: bytes) -> None:
        """Replace our metadata; gossiped with a new incarnation. These are raw bytes:
        with health sources (`set_health`), `update_tags` is the call that keeps the
        health tags."""
        core = self._require_running()
        now = trio.current_time()
        core.update_metadata(meta, now=now)
        self._poke()
        self._publish_local_update(core, now)

    def _publish_local_update(self, core: Core, now: float) -> None:
        """Our metadata changed: tell the subscriptions that asked (``local_updates``),
        as the `MemberUpdated` the core raises only for peers, and wake `wait_for`."""
        me = core.member(self.name)
        assert me is not None
        event = MemberUpdated(member=me, at=now)
        stamped = stamp(event, self._wall_clock())
        for sub in [sub for sub in self._local_subscribers if not sub._push(event, stamped)]:
            self._subscriber_overflows += 1
            self._unsubscribe(sub)
        self._membership_changed.set()
        self._membership_changed = trio.Event()

    def broadcast(self, payload: bytes) -> int:
        """Gossip `payload` to every member (this one included); returns its id."""
        core = self._require_running()
        broadcast_id = core.broadcast(payload, now=trio.current_time())
        self._poke()
        return broadcast_id

    async def send(
        self, to: str | Address, payload: bytes, *, reliable: bool = False
    ) -> None:
        """Send `payload` to one member, by name or address.

        Unreliable messages go as a datagram (or an unacknowledged stream if too large)
        and return at once. Reliable ones go over a stream and return once the peer has
        received it; raises `DeliveryError` if it could not be delivered.
        """
        core = self._require_running()
        if isinstance(to, str):
            state = core.member(to)
            if state is None:
                raise LookupError(f"unknown member {to!r}")
            addr = state.addr
        else:
            addr = to
        stream_id = core.send_user_message(
            addr, payload, now=trio.current_time(), reliable=reliable
        )
        self._poke()
        if stream_id is None or not reliable:
            await trio.lowlevel.checkpoint()
            return
        waiter = self._waiters[stream_id] = _Waiter()
        try:
            await waiter.done.wait()
        finally:
            self._waiters.pop(stream_id, None)
        if not waiter.ok:
            raise DeliveryError(f"could not deliver a message to {to!r} at {addr}")

    def coordinate(self, name: str | None = None) -> Coordinate | None:
        """The Vivaldi network coordinate of member `name` (ours if None), learned from
        probe acks; `estimate_rtt(a, b)` turns two of them into an RTT estimate."""
        core = self._require_core()
        return core.coordinate if name is None else core.coordinate_of(name)

    def estimate_rtt(self, a: str, b: str | None = None) -> float | None:
        """The RTT (seconds) the coordinates predict between members `a` and `b` (us
        if None), or None while either coordinate is unknown (Serf's ``serf rtt``)."""
        first, second = self.coordinate(a), self.coordinate(b)
        if first is None or second is None:
            return None
        return estimate_rtt_s(first, second)

    def join(self, seeds: Iterable[Address]) -> list[int]:
        """Join (more of) the cluster through `seeds` while running; returns the
        exchanges' stream ids. Outcomes arrive as `JoinCompleted` events; a round that
        fails is retried with the core's backoff until some member is known."""
        core = self._require_running()
        ids = core.join(list(seeds), now=trio.current_time())
        self._poke()
        return ids

    def force_leave(self, name: str) -> bool:
        """Mark failed member `name` as left across the cluster (Serf's force-leave),
        so it is not reconnected; False if it is not failed (or not known)."""
        core = self._require_running()
        done = core.force_leave(name, now=trio.current_time())
        self._poke()
        return done

    async def leave(self, timeout_s: float = 5.0) -> bool:
        """Leave the cluster gracefully and wait until the news has spread.

        Returns True if the departure was sent its full count within `timeout_s`. The
        node keeps running (answering probes) until its context exits.
        """
        core = self._require_running()
        core.leave(now=trio.current_time(), timeout_s=timeout_s)
        self._poke()
        await self._left.wait()
        return core.leave_complete

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
    ) -> QueryStream:
        """Ask every member matching the filters (this one included); the results.

        `filter_nodes` limits the query to those member names; `filter_tags` maps tag
        keys to shell-style patterns their values must match. With `want_ack` members
        ack at once; answers come from the applications that call `respond`. Answers
        also travel through `relay_factor` random members (0..5). The default timeout
        is Serf's, ``gossip_interval * query_timeout_mult * ceil(log10(n + 1))``. With
        `reask`, the query is re-sent straight to every live matching member not heard
        from yet, until the timeout (for queries every member must answer; see
        `swim.core.queries`).

        Returns a `QueryStream` (an async iterator and context manager of
        `QueryResult`, ending at the deadline; see `swim.runtime.queries`). Raises
        `ProtocolError` for a bad query (too large, a name starting with ``_swim_``,
        which the runtime reserves, too many open).
        """
        if is_internal(name):
            raise ProtocolError(
                f"query names starting with {INTERNAL_PREFIX!r} are reserved for the "
                "runtime's own queries"
            )
        return self._open_query(
            name, payload, filter_nodes=tuple(filter_nodes), filter_tags=dict(filter_tags or {}),
            timeout_s=timeout_s, want_ack=want_ack, relay_factor=relay_factor,
            max_buffer=max_buffer, reask=reask,
        )

    def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None:
        """Answer the query `query_id` from `origin` (a `QueryReceived` event), once,
        before its deadline; raises `ProtocolError` otherwise or if it is too large."""
        core = self._require_running()
        core.respond(origin, query_id, payload, now=trio.current_time())
        self._poke()

    async def install_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Install `key` (raw, or base64 text) on every member's keyring: it opens,
        it does not seal yet. Returns each member's outcome (see `KeyReport`).

        Raises `swim.security.KeyringError` if this node has no keys or sends
        plaintext (the key travels in the cluster's gossip), or for a bad key;
        `ProtocolError` if too many queries are open.
        """
        from swim.runtime.keyops import KeyCommand

        return await self._key_command(KeyCommand.INSTALL, key, timeout_s)

    async def use_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Make the installed `key` every member's primary (the key that seals). A
        member that does not hold it refuses. Raises as `install_key`."""
        from swim.runtime.keyops import KeyCommand

        return await self._key_command(KeyCommand.USE, key, timeout_s)

    async def remove_key(self, key: bytes | str, *, timeout_s: float | None = None) -> KeyReport:
        """Remove `key` from every member's keyring; a member whose primary it is
        refuses. Raises as `install_key`."""
        from swim.runtime.keyops import KeyCommand

        return await self._key_command(KeyCommand.REMOVE, key, timeout_s)

    async def list_keys(self, *, timeout_s: float | None = None) -> KeyReport:
        """Every member's keys (`KeyReport.member_keys`, `keys`, `primary_keys`).
        Raises `swim.security.KeyringError` if this node has no keys or sends plaintext."""
        from swim.runtime.keyops import KeyCommand

        return await self._key_command(KeyCommand.LIST, None, timeout_s)

    async def _key_command(
        self, command: KeyCommand, key: bytes | str | None, timeout_s: float | None
    ) -> KeyReport:
        # keyops (and with it the keyring file code) is imported by the first key
        # command or internal query, not by every node.
        from swim.runtime import keyops

        core = self._require_running()
        payload = keyops.request_payload(command, key, self._sealer)
        # Serf's count: the members not known to be dead or gone when we ask.
        asked = [
            m.name for m in core.members()
            if m.status in (MemberStatus.ALIVE, MemberStatus.SUSPECT)
        ]
        stream = self._open_query(
            command.query_name, payload, filter_nodes=(), filter_tags={},
            timeout_s=timeout_s, want_ack=False, relay_factor=0,
            max_buffer=DEFAULT_QUERY_BUFFER, reask=True, internal=True,
        )
        if not keyops.deferred_on_asker(command.query_name):
            return keyops.build_report(command, asked, await keyops.gather(stream, asked))
        # The pump left our own copy unanswered: we switch last (see deferred_on_asker).
        answers = await keyops.gather(stream, [name for name in asked if name != self.name])
        if not self._stopped:  # a node that stopped meanwhile reports itself silent
            answers[self.name] = keyops.encode_answer(
                self._apply_internal(command.query_name, payload)
            )
        return keyops.build_report(command, asked, answers)

    def _open_query(
        self,
        name: str,
        payload: bytes,
        *,
        filter_nodes: tuple[str, ...],
        filter_tags: dict[str, str],
        timeout_s: float | None,
        want_ack: bool,
        relay_factor: int,
        max_buffer: int,
        reask: bool = False,
        internal: bool = False,
    ) -> QueryStream:
        core = self._require_running()
        now = trio.current_time()
        if timeout_s is None:
            timeout_s = default_timeout_s(core.config, len(core.members()))
        query_id = core.query(
            name, payload, now=now, filter_names=filter_nodes, filter_tags=filter_tags,
            timeout_s=timeout_s, want_ack=want_ack, relay_factor=relay_factor, reask=reask,
        )
        # The streams load with the first query (not at every node's start).
        from swim.runtime.queries import QueryStream

        # Registered before the pump runs again, so no result of ours can be missed.
        stream = QueryStream(
            query_id=query_id, name=name, deadline=now + max(1, round(timeout_s * 1000)) / 1000,
            max_buffer=max_buffer,
        )
        self._queries[query_id] = stream
        if internal:
            self._internal_queries.add(query_id)
        self._poke()
        return stream

    def stats(self) -> NodeStats:
        """A snapshot of the core's, the transport's and the runtime's counters."""
        core = self._require_core()
        assert self._transport is not None
        return NodeStats(
            core=_copy_stats(core.stats),
            transport=attrs.evolve(self._transport.stats),
            events_published=self._events_published,
            subscriber_overflows=self._subscriber_overflows,
            join_attempts=core.join_rounds,
            streams_in_flight=self._streams_in_flight,
            streams_failed=self._streams_failed,
            security=attrs.evolve(self._sealer.stats) if self._sealer else SealStats(),
        )

    # ================================================================ the tasks

    def _poke(self) -> None:
        """An application input happened: wake the pump to flush outputs and re-arm the
        timer. (Network inputs, datagrams and streams, are flushed by the task that
        took them in: `_flush`.)"""
        self._dirty = True
        if self._timer_scope is not None:
            self._timer_scope.cancel()

    async def _pump(self, core: Core, transport: Transport, sealer: Sealer) -> None:
        """Run the core's timer when due, send what it gives, repeat.

        The pump sleeps until the core's deadline; a task that feeds the core a network
        input flushes the outputs itself and moves the pump's wake-up time in place
        (`_flush`), so an idle node wakes once per timer and once per datagram, not
        twice per datagram."""
        policy = self._policy
        while True:
            if not self._dirty:
                wake_at = policy.wake_at(self._deadline, self._handled_at)
                with trio.CancelScope(deadline=wake_at) as scope:
                    self._timer_scope = scope
                    await trio.sleep_forever()
                self._timer_scope = None
            self._dirty = False
            now = trio.current_time()
            if now >= self._deadline:
                core.handle_timer(now=now)
                self._handled_at = now
            await self._flush(core, transport, sealer)

    async def _flush(self, core: Core, transport: Transport, sealer: Sealer) -> None:
        """Take the core's outputs: move the pump's wake-up to the core's (new) deadline,
        hand the events on and start the streams (before any await, so events are
        published in the core's order even when two tasks flush), then send the
        datagrams."""
        out = core.poll()
        self._deadline = out.deadline
        scope = self._timer_scope
        if scope is not None:
            wake_at = self._policy.wake_at(out.deadline, self._handled_at)
            if scope.deadline != wake_at:
                scope.deadline = wake_at
        for event in out.events:
            self._route(core, sealer, event)
        if out.streams:
            nursery = self._nursery
            assert nursery is not None
            for request in out.streams:
                nursery.start_soon(self._run_stream, core, transport, request)
        if out.datagrams:
            wall = self._wall_clock()
            for datagram in out.datagrams:
                wire = sealer.seal(datagram.data, now=wall)
                try:
                    sent = await transport.send(wire, datagram.addr)
                except OSError:  # transports should not raise it; count it if one does
                    sent = False
                if not sent:
                    core.note_send_error()
        if out.leave_done:
            self._left.set()

    async def _receive_loop(self, core: Core, transport: Transport, sealer: Sealer) -> None:
        wall_clock = self._wall_clock
        async for data, addr in transport.receive():
            try:
                payload = sealer.open_untrusted(data, now=wall_clock())
            except Rejected:
                continue  # counted in sealer.stats; the core never sees it
            core.receive_datagram(payload, addr, now=trio.current_time())
            await self._flush(core, transport, sealer)

    async def _handle_stream(self, data: bytes, addr: Address) -> bytes | None:
        """Answer a stream a peer opened (the transport calls this)."""
        core = self._core
        sealer = self._sealer
        if core is None or sealer is None or self._stopped:
            return None
        try:
            payload = sealer.open_untrusted(data, now=self._wall_clock())
        except Rejected:
            return None  # counted; the stream is closed unanswered
        reply = core.handle_stream_request(payload, addr, now=trio.current_time())
        transport = self._transport
        assert transport is not None
        await self._flush(core, transport, sealer)
        return None if reply is None else sealer.seal(reply.data, now=self._wall_clock())

    async def _run_stream(self, core: Core, transport: Transport, request: StreamRequest) -> None:
        response: bytes | None = None
        sealer = self._sealer
        assert sealer is not None
        self._streams_in_flight += 1
        try:
            async with self._stream_limiter:
                # Sealed once a slot is free, so the timestamp is fresh when it is sent.
                frame = sealer.seal(request.data, now=self._wall_clock())
                with trio.move_on_after(self.config.tcp_timeout_s):
                    try:
                        response = await transport.request(
                            request.addr, frame, timeout_s=self.config.tcp_timeout_s
                        )
                    except (TransportError, OSError):
                        response = None
        finally:
            self._streams_in_flight -= 1
        if response is not None:
            try:
                response = sealer.open_untrusted(response, now=self._wall_clock())
            except Rejected:
                response = None  # counted by the sealer; a failed stream for the core
        if response is None:
            self._streams_failed += 1
        core.receive_stream_response(request.id, response, now=trio.current_time())
        await self._flush(core, transport, sealer)
        waiter = self._waiters.get(request.id)
        if waiter is not None:
            waiter.ok = response is not None and request.kind is StreamKind.USER_MESSAGE
            waiter.done.set()

    # ============================================================== internals

    def _route(self, core: Core, sealer: Sealer, event: Event) -> None:
        """Hand one core event on: query results to their stream, internal queries to
        the runtime's own handler, everything else (and user queries' events too) to
        the subscribers."""
        if isinstance(event, QueryReceived) and is_internal(event.name):
            self._answer_internal(core, sealer, event)
            return
        if isinstance(event, QueryAcked | QueryResponded | QueryFinished):
            stream = self._queries.get(event.id)
            if stream is not None:
                from swim.runtime.queries import QueryResult, QueryResultKind

                if isinstance(event, QueryFinished):
                    del self._queries[event.id]
                    stream._finish(at=event.at, complete=True)
                elif isinstance(event, QueryAcked):
                    stream._push(QueryResult(
                        id=event.id, member=event.source, kind=QueryResultKind.ACK, at=event.at
                    ))
                else:
                    stream._push(QueryResult(
                        id=event.id, member=event.source, kind=QueryResultKind.RESPONSE,
                        payload=event.payload, at=event.at,
                    ))
            if event.id in self._internal_queries:
                if isinstance(event, QueryFinished):
                    self._internal_queries.discard(event.id)
                return
        self._publish(event)

    def _answer_internal(self, core: Core, sealer: Sealer, event: QueryReceived) -> None:
        """Apply an internal query (a key command) here and answer it. The keyring file
        is written synchronously: a few milliseconds, once per command, and it keeps
        commands applied and saved in the order they came."""
        from swim.runtime import keyops

        if event.origin == self.name and keyops.deferred_on_asker(event.name):
            return  # applied by _key_command once the others have answered
        answer = self._apply_internal(event.name, event.payload)
        # Past its deadline (a slow pump) or answered already: nothing more to do.
        with contextlib.suppress(ProtocolError):
            core.respond(event.origin, event.id, keyops.encode_answer(answer),
                         now=trio.current_time())
        self._poke()

    def _apply_internal(self, query_name: str, payload: bytes) -> keyops.MemberAnswer:
        from swim.runtime import keyops

        return keyops.answer_key_query(
            query_name, payload, self._sealer, keyring_file=self._keyring_file,
            size_limit=self._require_core().config.query_response_size_limit,
        )

    def _publish(self, event: Event) -> None:
        self._events_published += 1
        # The wall-clock time of the event's `at`: now on the wall clock, less the time
        # since `at` on ours (the pump publishes a little after the input it came from).
        wall_time = self._wall_clock() - (trio.current_time() - event.at)
        stamped = stamp(event, wall_time)
        overflowed = [sub for sub in self._subscribers if not sub._push(event, stamped)]
        for sub in overflowed:
            self._subscriber_overflows += 1
            self._unsubscribe(sub)
        if is_membership_event(event):
            # Wake every `wait_for`; they re-check once the pump yields.
            self._membership_changed.set()
            self._membership_changed = trio.Event()

    def _unsubscribe(self, sub: Subscription[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)
        with contextlib.suppress(ValueError):
            self._local_subscribers.remove(sub)

    def _require_core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the node is not running (use `async with Node(...)`)")
        return self._core

    def _require_running(self) -> Core:
        core = self._require_core()
        if self._stopped:
            raise RuntimeError("the node has stopped")
        return core


def _default_transport_factory(bind: Address, config: Config, overhead: int) -> TransportFactory:
    from transport.udp import open_udp_tcp_transport

    # A sealed frame is the codec's largest frame plus the sealer's overhead.
    max_frame_bytes = MAX_STREAM_BYTES + overhead

    def factory(handler: StreamHandler) -> AbstractAsyncContextManager[Transport]:
        # Incoming streams get the same bound as ours (a stalled peer is cut off).
        return open_udp_tcp_transport(
            bind,
            handler,
            stream_timeout_s=config.tcp_timeout_s,
            max_frame_bytes=max_frame_bytes,
            max_buffered_bytes=2 * max_frame_bytes,
        )

    return factory


def _check_advertise(addr: Address, what: str) -> None:
    host, port = addr
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} must be an IP literal, got {host!r}") from None
    if ip.is_unspecified:
        raise ValueError(
            f"{what} is {host!r}, which other members cannot reach; bind to a specific "
            "address or pass advertise=(ip, port)"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} has an invalid port {port}")


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _copy_stats(stats: Stats) -> Stats:
    copy = attrs.evolve(stats)
    for field in attrs.fields(Stats):
        value = getattr(stats, field.name)
        if isinstance(value, collections.Counter):
            setattr(copy, field.name, collections.Counter(value))
    return copy

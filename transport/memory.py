"""An in-process network for tests: many transports in one trio run, under MockClock.

`MemoryNetwork` moves bytes between `MemoryTransport` objects. Every decision about a
packet (delay, jitter, loss, duplication, partitions symmetric or one-way, one-way loss
and blocks, clogs, zones) is made by one `transport.links.Links` model over addresses,
`network.links`: the same model the simulator's engine and the core tests' router use,
so the three networks treat traffic alike. This module only delivers what it decides.

For each datagram, in order:

1. the model's reachability: a partition (`partition`, or `links.partition` for several
   at once and one-way ones) or a one-way block or loss (`block`, `links.set_loss`)
   drops it; `heal` ends them all;
2. the route hook ``network.route(packet) -> Route``. The default, `default_route`, is
   the model's own link draws (loss, duplication, jitter from the network's seeded
   `random.Random`); a custom hook replaces them (its extra delays are on top of the
   link's fixed delay, ``latency_s``);
3. a clog on the link (`links.clog`) holds the copies until it ends;
4. delivery: each copy arrives at its time, in send order for equal arrival times,
   into the destination's bounded receive queue (full: dropped and counted in
   ``receive_overflows``, as over UDP).

`latency_s`, `loss`, `duplication` and `jitter_s` are views of the model's link class
(``jitter_s`` is the width of a uniform jitter, so a mean of ``jitter_s / 2``; `loss`
also fails stream exchanges with that probability); pass ``link=`` (a
`transport.links.LinkClass`) for exponential jitter or finer control, or ``links=`` for a
prebuilt model (zones, permanent one-way loss).

Streams (`request`) model a TCP exchange: the model must find it `connectable` (both
directions reachable: a handshake needs both) and not lost at random when it starts, or
the request hangs until its timeout, as a connect into a black hole would. Each leg
takes the model's `Links.delay`. An unknown or closed address refuses the request after
one leg. The handler runs in the destination's own tasks, bounded by its
``stream_timeout_s``, ``max_concurrent_streams``, ``max_streams_per_source`` and
``max_buffered_bytes`` (a request holds its length of the budget until its handler is
done), counted as over TCP; frames arrive whole, so there is no header deadline. The
response travels back and is lost (the requester times out) if the exchange is cut by
then.

Time is read only through `trio.current_time`, so under `trio.testing.MockClock` with
``autojump_threshold=0`` a test of many nodes runs in no wall time. Randomness comes only
from the seeded rng and the order of sends, and ties between packets are broken by a
sequence number, never by hashing or set order. (The order of sends across tasks is
trio's to choose: it shuffles tasks that become runnable together, so a multi-task run is
reproducible only as far as its tasks do not race.)
"""

from __future__ import annotations

import contextlib
import enum
import errno
import heapq
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable

import attrs
import trio

from transport._common import (
    FRAME_LENGTH_LIMIT,
    MAX_BUFFERED_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_FRAME_BYTES,
    Inbox,
    Limits,
    StreamBuffer,
    StreamSlots,
    background_nursery,
)
from transport.base import Address, StreamHandler, Transport, TransportError, TransportStats
from transport.links import Drop, LinkClass, Links

logger = logging.getLogger(__name__)


class PacketKind(enum.Enum):
    """What the route hook is asked about."""

    #: One datagram (`Transport.send`).
    DATAGRAM = "datagram"
    #: A whole stream exchange (`Transport.request`), judged on the request bytes.
    STREAM = "stream"


@attrs.frozen
class Packet:
    """A packet offered to the route hook."""

    kind: PacketKind
    src: Address
    dst: Address
    data: bytes


@attrs.frozen
class Route:
    """The network's decision for one packet: one entry per delivered copy.

    Each entry is the extra delay (seconds, on top of the latency) of one copy: ``()``
    drops the packet, ``(0.0,)`` delivers it normally, ``(0.0, 0.0)`` duplicates it,
    ``(0.5,)`` delays it. Streams use the first copy only.
    """

    extra_delays_s: tuple[float, ...] = (0.0,)

    @classmethod
    def deliver(cls) -> Route:
        return cls((0.0,))

    @classmethod
    def drop(cls) -> Route:
        return cls(())

    @classmethod
    def delay(cls, extra_s: float) -> Route:
        return cls((extra_s,))

    @classmethod
    def duplicate(cls, copies: int = 2, *, spacing_s: float = 0.0) -> Route:
        """`copies` copies, each `spacing_s` after the previous one."""
        return cls(tuple(i * spacing_s for i in range(copies)))

    @property
    def dropped(self) -> bool:
        return not self.extra_delays_s


#: Decides the fate of one packet (see `Route`).
RouteHook = Callable[[Packet], Route]


@attrs.define(eq=False)
class NetworkStats:
    """What the network did to the traffic it carried (transports count the rest)."""

    datagrams_routed: int = 0
    #: Dropped by a partition, a one-way block or loss, or the route hook.
    datagrams_dropped: int = 0
    #: Of those, dropped by a partition or one-way block or loss (`Drop.blocked`).
    datagrams_blocked: int = 0
    #: Extra copies delivered (duplicates drawn by the model or made by the route hook).
    datagrams_duplicated: int = 0
    #: Copies held by a clog.
    datagrams_clogged: int = 0
    #: Sent to an address with no open transport.
    datagrams_undeliverable: int = 0
    streams_routed: int = 0
    #: Stream exchanges lost to a partition, a block or the route hook (they time out).
    streams_dropped: int = 0
    #: Stream requests to an address with no open transport (refused).
    streams_refused: int = 0


class MemoryNetwork:
    """An in-process network of `MemoryTransport` objects (see the module docstring).

    `latency_s`, `loss`, `duplication` and `jitter_s` parametrize the model's link
    class and may be changed at any time; set `route` to take over the link draws.
    ``link=`` gives the whole link class instead (then `latency_s` is its
    ``delay_min_s``), ``links=`` a prebuilt model (its own rng, zones, one-way loss).
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.001,
        rng: random.Random | None = None,
        loss: float = 0.0,
        duplication: float = 0.0,
        jitter_s: float = 0.0,
        link: LinkClass | None = None,
        links: Links[Address] | None = None,
    ) -> None:
        if latency_s < 0 or not math.isfinite(latency_s):
            raise ValueError(f"latency_s must be a finite non-negative number: {latency_s!r}")
        if links is not None:
            if link is not None or rng is not None or loss or duplication or jitter_s:
                raise ValueError("pass either a prebuilt links model or the link's "
                                 "parameters (link, rng, loss, duplication, jitter_s)")
            self.links = links
        else:
            if link is None:
                link = attrs.evolve(LinkClass.fixed(latency_s, name="memory"), loss=loss,
                                    stream_loss=loss, duplicate=duplication)
                if jitter_s:
                    link = attrs.evolve(link, jitter="uniform", jitter_s=jitter_s / 2)
            elif loss or duplication or jitter_s:
                raise ValueError("a link class carries its own loss, duplication and jitter")
            #: The link model: every routing decision is its.
            self.links = Links(rng=rng if rng is not None else random.Random(0), link=link)
        #: The route hook; replace it to script drops, delays and duplicates.
        self.route: RouteHook = self.default_route
        self.stats = NetworkStats()
        self._transports: dict[Address, MemoryTransport] = {}
        # The partition `partition` made (replaced by the next call).
        self._partition: int | None = None
        self._seq = 0
        self._next_port = 40_000

    # ------------------------------------------------------------------ the link

    @property
    def rng(self) -> random.Random:
        """The model's random stream."""
        return self.links.rng

    @property
    def latency_s(self) -> float:
        """The fixed one-way delay (the link class's ``delay_min_s``)."""
        return self.links.link.delay_min_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        self.links.link = attrs.evolve(self.links.link, delay_min_s=value)

    @property
    def loss(self) -> float:
        """Probability that a datagram, or a stream exchange, is lost."""
        return self.links.link.loss

    @loss.setter
    def loss(self, value: float) -> None:
        self.links.link = attrs.evolve(self.links.link, loss=value, stream_loss=value)

    @property
    def duplication(self) -> float:
        """Probability that a datagram is delivered twice."""
        return self.links.link.duplicate

    @duplication.setter
    def duplication(self, value: float) -> None:
        self.links.link = attrs.evolve(self.links.link, duplicate=value)

    @property
    def jitter_s(self) -> float:
        """Width of the extra uniform delay in [0, jitter_s] (twice the link class's mean
        jitter; setting it makes the jitter uniform)."""
        link = self.links.link
        return 0.0 if link.jitter == "none" else 2 * link.jitter_s

    @jitter_s.setter
    def jitter_s(self, value: float) -> None:
        self.links.link = attrs.evolve(
            self.links.link, jitter="uniform" if value else "none", jitter_s=value / 2)

    # ------------------------------------------------------------------ topology

    def partition(self, groups: Iterable[Iterable[Address]]) -> None:
        """Split the network: addresses talk only within their own group.

        Addresses named in no group form one more group together. Replaces the previous
        partition made here (those made through `links` stay, as do one-way blocks).
        Packets already in flight still arrive.
        """
        pid = self.links.partition(groups)
        if self._partition is not None:
            self.links.heal(self._partition)
        self._partition = pid

    def block(self, src: Address, dst: Address) -> None:
        """Drop everything sent from `src` to `dst` (one way) until `unblock` or `heal`."""
        self.links.set_loss(src, dst, 1.0)

    def unblock(self, src: Address, dst: Address) -> None:
        self.links.set_loss(src, dst, 0.0)

    def heal(self) -> None:
        """Remove every partition, one-way block or loss and clog."""
        self._partition = None
        self.links.heal_all()

    def reachable(self, src: Address, dst: Address) -> bool:
        """Whether partitions and blocks let a packet go from `src` to `dst` now."""
        return self.links.reachable(src, dst, _now())

    def default_route(self, packet: Packet) -> Route:
        """The model's link draws: loss, duplication and jitter from the seeded rng (no
        draw when 0). For a stream: its random loss and the first leg's jitter."""
        links = self.links
        if packet.kind is PacketKind.STREAM:
            if links.stream_lost(packet.src, packet.dst):
                return Route.drop()
            return Route((links.jitter(packet.src, packet.dst),))
        return Route(links.sample(packet.src, packet.dst))

    # ------------------------------------------------------------------ transports

    @contextlib.asynccontextmanager
    async def open(
        self,
        addr: Address,
        stream_handler: StreamHandler,
        *,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
        receive_queue: int = 1024,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        stream_timeout_s: float = 10.0,
        max_concurrent_streams: int = 64,
        header_timeout_s: float = 1.0,
        max_streams_per_source: int = 32,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
    ) -> AsyncIterator[MemoryTransport]:
        """Attach a transport at `addr` (port 0: a free port is chosen) for the block.

        Raises `OSError` (EADDRINUSE) if a transport is already open at `addr`. On exit
        the address is released, queued and in-flight datagrams to it are lost and its
        running stream handlers are cancelled.
        """
        limits = Limits(
            max_datagram_bytes=max_datagram_bytes,
            receive_queue=receive_queue,
            max_frame_bytes=max_frame_bytes,
            stream_timeout_s=stream_timeout_s,
            max_concurrent_streams=max_concurrent_streams,
            header_timeout_s=header_timeout_s,
            max_streams_per_source=max_streams_per_source,
            max_buffered_bytes=max_buffered_bytes,
        )
        host, port = addr
        if port == 0:
            port = self._free_port(host)
        addr = (host, port)
        if addr in self._transports:
            raise OSError(errno.EADDRINUSE, f"address already in use: {addr}")
        async with background_nursery() as nursery:
            transport = MemoryTransport(
                self,
                addr,
                stream_handler,
                nursery,
                limits=limits,
            )
            self._transports[addr] = transport
            nursery.start_soon(transport._delivery_loop)
            try:
                yield transport
            finally:
                transport._close()
                if self._transports.get(addr) is transport:
                    del self._transports[addr]

    def _free_port(self, host: str) -> int:
        for _ in range(65_536):
            port = self._next_port
            self._next_port = 40_000 if port >= 65_535 else port + 1
            if (host, port) not in self._transports:
                return port
        raise OSError(errno.EADDRNOTAVAIL, f"no free port on {host}")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _route_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        stats = self.stats
        stats.datagrams_routed += 1
        now = trio.current_time()
        hook = self.route
        if hook == self.default_route:
            fate = self.links.datagram(src, dst, now)
        else:
            packet = Packet(PacketKind.DATAGRAM, src, dst, data)
            fate = self.links.datagram(src, dst, now, lambda: hook(packet).extra_delays_s)
        if fate.drop is not None:
            stats.datagrams_dropped += 1
            if fate.drop.blocked:
                stats.datagrams_blocked += 1
            return
        target = self._transports.get(dst)
        if target is None:
            stats.datagrams_undeliverable += 1
            return
        stats.datagrams_duplicated += len(fate.arrivals) - 1
        if fate.clogged:
            stats.datagrams_clogged += len(fate.arrivals)
        for at in fate.arrivals:
            target._schedule(at, self._next_seq(), data, src)

    async def _exchange(self, src: MemoryTransport, dst: Address, data: bytes) -> bytes:
        """One stream exchange; raises TransportError, or hangs if the packet is lost."""
        self.stats.streams_routed += 1
        links = self.links
        here = src.local_addr
        hook = self.route
        now = trio.current_time()
        leg_s = 0.0
        if hook == self.default_route:
            drop = links.stream(here, dst, now)
            leg_s = 0.0 if drop is not None else links.delay(here, dst)
        else:
            drop = links.connectable(here, dst, now)
            if drop is None:
                route = hook(Packet(PacketKind.STREAM, here, dst, data))
                if route.dropped:
                    drop = Drop.LOST
                else:
                    leg_s = links.params(here, dst).delay_min_s \
                        + max(0.0, route.extra_delays_s[0])
        if drop is not None:
            self.stats.streams_dropped += 1
            await trio.sleep_forever()
        await trio.sleep(leg_s)
        target = self._transports.get(dst)
        if target is None:
            self.stats.streams_refused += 1
            raise TransportError(f"connection refused by {dst}")
        exchange = target._accept_stream(data, here)
        await exchange.done.wait()
        if links.connectable(here, dst, trio.current_time()) is not None:
            self.stats.streams_dropped += 1
            await trio.sleep_forever()
        await trio.sleep(links.delay(dst, here))
        if exchange.error is not None:
            raise TransportError(f"{exchange.error} ({dst})")
        assert exchange.response is not None
        return exchange.response


def _now() -> float:
    """trio's clock inside a run; outside one, timed state counts as not yet ended."""
    try:
        return trio.current_time()
    except RuntimeError:
        return -math.inf


@attrs.define(eq=False)
class _Exchange:
    """One incoming stream's outcome, filled in by the handler task."""

    done: trio.Event = attrs.field(factory=trio.Event)
    response: bytes | None = None
    error: str | None = "connection reset"


class MemoryTransport(Transport):
    """One endpoint of a `MemoryNetwork`; made by `MemoryNetwork.open`."""

    def __init__(
        self,
        network: MemoryNetwork,
        addr: Address,
        stream_handler: StreamHandler,
        nursery: trio.Nursery,
        *,
        limits: Limits,
    ) -> None:
        self.stats = TransportStats()
        self.limits = limits
        self._received = Inbox(limits, self.stats)
        self.network = network
        self._addr = addr
        self._handler = stream_handler
        self._nursery = nursery
        # Datagrams in flight to this transport: (arrival time, sequence, data, source).
        self._inbox: list[tuple[float, int, bytes, Address]] = []
        self._wake = trio.Event()
        self._slots = StreamSlots(limits, self.stats)
        #: Bytes of requests being handled (``in_use``, ``peak``) against
        #: ``limits.max_buffered_bytes``.
        self.stream_buffer = StreamBuffer(limits.max_buffered_bytes)
        self._closed = False

    @property
    def local_addr(self) -> Address:
        return self._addr

    @property
    def active_streams(self) -> int:
        """Incoming streams being served now."""
        return self._slots.active

    async def send(self, data: bytes, addr: Address) -> bool:
        await trio.lowlevel.checkpoint()
        if self._closed or len(data) > MAX_DATAGRAM_BYTES:
            # What the OS does for a closed socket or a payload no datagram can carry.
            self.stats.send_errors += 1
            return False
        self.stats.datagrams_sent += 1
        self.network._route_datagram(self._addr, addr, data)
        return True

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._received.receiver

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        self.stats.streams_opened += 1
        try:
            if self._closed:
                raise TransportError("transport is closed")
            if len(data) > min(self.limits.max_frame_bytes, FRAME_LENGTH_LIMIT):
                raise TransportError(f"request of {len(data)} bytes exceeds the frame limit")
            try:
                with trio.fail_after(timeout_s):
                    response = await self.network._exchange(self, addr, data)
            except trio.TooSlowError:
                raise TransportError(f"request to {addr} timed out") from None
            if len(response) > self.limits.max_frame_bytes:
                raise TransportError(f"response of {len(response)} bytes exceeds the limit")
        except TransportError:
            self.stats.requests_failed += 1
            raise
        return response

    # ------------------------------------------------------------------ internals

    def _schedule(self, at: float, seq: int, data: bytes, src: Address) -> None:
        if self._closed:
            return
        if not self._inbox or (at, seq) < self._inbox[0][:2]:
            self._wake.set()
        heapq.heappush(self._inbox, (at, seq, data, src))

    async def _delivery_loop(self) -> None:
        while True:
            deadline = self._inbox[0][0] if self._inbox else math.inf
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while self._inbox and self._inbox[0][0] <= now:
                _, _, data, src = heapq.heappop(self._inbox)
                self._deliver(data, src)

    def _deliver(self, data: bytes, src: Address) -> None:
        self._received.offer(data, src)

    def _accept_stream(self, data: bytes, src: Address) -> _Exchange:
        exchange = _Exchange()
        self.stats.streams_accepted += 1
        if self._closed:
            self.stats.streams_rejected += 1
            exchange.error = "connection reset (transport closed)"
            exchange.done.set()
        elif not self._slots.admit(src[0]):
            exchange.error = "connection reset (too many streams)"
            exchange.done.set()
        elif len(data) > self.limits.max_frame_bytes:
            self._slots.release(src[0])
            self.stats.streams_rejected += 1
            exchange.error = "connection reset (request too large)"
            exchange.done.set()
        else:
            self._nursery.start_soon(self._serve_stream, data, src, exchange)
        return exchange

    async def _serve_stream(self, data: bytes, src: Address, exchange: _Exchange) -> None:
        try:
            with self.stream_buffer.lease() as lease:
                if not lease.reserve(len(data)):
                    self.stats.streams_rejected += 1
                    self.stats.streams_over_buffer_budget += 1
                    exchange.error = "connection reset (stream buffer budget exhausted)"
                    return
                with trio.move_on_after(self.limits.stream_timeout_s) as scope:
                    response = await self._handler(data, src)
            if scope.cancelled_caught:
                self.stats.streams_rejected += 1
                exchange.error = "connection reset (handler timed out)"
            elif response is None:
                exchange.error = "connection closed without a response"
            elif len(response) > min(self.limits.max_frame_bytes, FRAME_LENGTH_LIMIT):
                self.stats.streams_rejected += 1
                exchange.error = "connection reset (response too large)"
            else:
                exchange.response = response
                exchange.error = None
        except Exception:
            self.stats.streams_rejected += 1
            logger.warning("stream handler failed for a request from %s", src, exc_info=True)
        finally:
            # Also reached on cancellation (this transport closing): the requester
            # then sees the default error, a reset.
            self._slots.release(src[0])
            exchange.done.set()

    def _close(self) -> None:
        self._closed = True
        self._inbox.clear()
        self._received.close()

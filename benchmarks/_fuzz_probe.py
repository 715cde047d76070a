"""The fuzzer's view of its target (`benchmarks.fuzz_node`): what each input did to it.

Every member's transport is wrapped in a `Tap`, a pass-through that records the datagrams
and frames members send each other into `Captures` (the material of truncations, bit
flips and replays). The target's tap also hands its receive path to a `Probe`: the node
handles each datagram synchronously between two reads of the transport's queue, and each
stream frame within one call of its handler (no checkpoint inside either), so the
target's counters read just before and just after one input (`Probe.snapshot`: its
`Sealer`'s counters, ``Stats.malformed`` and the news-carrying kinds of
``Stats.messages_in``) give that input's outcome alone (`outcome_of`). Fuzzed datagrams
are matched to what was sent in order (loopback UDP does not reorder); fuzzed streams by
the client's port. Members' packets are told apart by their source address.
"""

from __future__ import annotations

import collections
import contextlib
import operator
import traceback
from collections.abc import AsyncIterator
from typing import Final

import trio

from benchmarks._fuzz_inputs import (
    HANDLER_ERROR,
    HARMLESS,
    HARMLESS_KINDS,
    LOST,
    MALFORMED,
    NEWS,
    Captures,
    Datagram,
    Variant,
    allowed_datagram,
    allowed_stream,
    seal_outcome,
)
from swim import Config, Core
from swim.core.codec import MAX_STREAM_BYTES
from swim.runtime import TransportFactory
from swim.security import Reason, Sealer
from transport.base import Address, StreamHandler, Transport
from transport.udp import open_udp_tcp_transport

#: Where the members listen.
CLUSTER_HOST: Final = "127.0.0.1"
#: Where the fuzzer sends from (loopback too, another address).
FUZZ_HOST: Final = "127.0.0.2"
#: The target's outcome for an input that reached neither its sealer nor its core.
UNSEEN: Final = "unseen"
#: How many violations (and crash texts) are kept in full; all are counted.
KEEP: Final = 40
REASONS: Final = tuple(Reason)
#: The sealer's counters a snapshot begins with: opened, then one per reason.
_SEAL_COUNTERS: Final = operator.attrgetter("opened", *(reason.value for reason in REASONS))



def outcome_of(before: tuple[int, ...], after: tuple[int, ...]) -> str:
    """What one input did, from the target's counters around it (see `Probe.snapshot`)."""
    for index, reason in enumerate(REASONS, start=1):
        if after[index] != before[index]:
            return seal_outcome(reason)
    if after[0] == before[0]:
        return UNSEEN
    if after[-2] != before[-2]:
        return MALFORMED
    return NEWS if after[-1] != before[-1] else HARMLESS


class Probe:
    """Watches the target's receive path and attributes each input's effect to it."""

    def __init__(self, variant: Variant, sealer: Sealer, captures: Captures) -> None:
        self.variant = variant
        self.sealer = sealer
        self.captures = captures
        self.core: Core | None = None  # the target's, once it runs
        #: Fuzzed datagrams sent and not yet seen, in order.
        self.pending: collections.deque[Datagram] = collections.deque()
        self.caught_up = trio.Event()
        self.outcomes: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.violations = 0
        self.violation_samples: list[str] = []
        self.handler_errors: list[str] = []
        #: Outcome of each fuzzed stream the target's handler saw, by client port.
        self.stream_outcomes: dict[int, str] = {}
        self.member_rejections: collections.Counter[str] = collections.Counter()
        #: Fuzzed datagrams that arrived after they had been given up as lost.
        self.late = 0
        #: Members' datagrams and streams that reached the target.
        self.member_datagrams = 0
        self.member_streams = 0
        self._queue: object = None
        self._observed: Observed | None = None

    def snapshot(self) -> tuple[int, ...]:
        """opened, one counter per rejection reason, malformed, news messages taken in."""
        assert self.core is not None
        core = self.core.stats
        taken = core.messages_in
        news = sum(taken.values()) - sum(map(taken.__getitem__, HARMLESS_KINDS))
        return (*_SEAL_COUNTERS(self.sealer.stats), core.malformed, news)

    def record(self, channel: str, kind: str, outcome: str, data: bytes) -> None:
        self.outcomes[channel, kind, outcome] += 1
        allowed = (allowed_datagram if channel == "datagram" else allowed_stream)(
            self.variant, kind
        )
        # A lost datagram is accounted for by the drop counters instead (see `_account`).
        if outcome not in allowed and outcome != LOST:
            self.violations += 1
            if len(self.violation_samples) < KEEP:
                self.violation_samples.append(f"{channel} {kind} -> {outcome}: {data[:120].hex()}")

    def datagram_seen(self, data: bytes, addr: Address, before: tuple[int, ...]) -> None:
        """The target has handled one datagram (called before it reads the next)."""
        after = self.snapshot()
        if addr[0] != FUZZ_HOST:
            self.member_datagrams += 1
            if after[0] != before[0]:
                self.captures.accepted.add(data)
            else:
                self.member_rejections[outcome_of(before, after)] += 1
            return
        pending = self.pending
        while pending and pending[0].data != data:
            lost = pending.popleft()
            self.record("datagram", lost.kind, LOST, lost.data)
        if not pending:
            self.late += 1
            return
        item = pending.popleft()
        self.record("datagram", item.kind, outcome_of(before, after), data)
        if not pending:
            self.caught_up.set()

    def give_up(self) -> None:
        """The datagrams still pending never arrived."""
        while self.pending:
            lost = self.pending.popleft()
            self.record("datagram", lost.kind, LOST, lost.data)

    def observe(self, inner: AsyncIterator[tuple[bytes, Address]]) -> Observed:
        self._queue = inner
        self._observed = Observed(self, inner)
        return self._observed

    def in_flight(self) -> str:
        """The datagram the node was handling, if it was handling one (after a crash)."""
        last = None if self._observed is None else self._observed.last
        return "" if last is None else f"handling a datagram from {last[1]}: {last[0].hex()}"

    def queued(self) -> int:
        """Datagrams in the target's receive queue, not yet read by the node."""
        statistics = getattr(self._queue, "statistics", None)  # a trio memory channel
        return 0 if statistics is None else int(statistics().current_buffer_used)

    def members_seen(self) -> tuple[int, int, collections.Counter[str]]:
        return self.member_datagrams, self.member_streams, collections.Counter(
            self.member_rejections
        )

    def wrap_handler(self, handler: StreamHandler) -> StreamHandler:
        async def observed(data: bytes, addr: Address) -> bytes | None:
            before = self.snapshot() if self.core is not None else None
            try:
                reply = await handler(data, addr)  # no checkpoint inside: one input at a time
            except Exception as exc:
                self.handler_errors.append(
                    f"the target's stream handler raised {exc!r} on a frame from {addr}: "
                    f"{data[:4096].hex()}\n{traceback.format_exc()}"
                )
                if addr[0] == FUZZ_HOST:
                    self.stream_outcomes[addr[1]] = HANDLER_ERROR
                raise
            if before is not None:
                after = self.snapshot()
                if addr[0] == FUZZ_HOST:
                    self.stream_outcomes[addr[1]] = outcome_of(before, after)
                    return reply
                self.member_streams += 1
                if after[0] != before[0]:
                    self.captures.accepted_frames.add(data)
                else:
                    self.member_rejections[outcome_of(before, after)] += 1
            return reply

        return observed


class Observed:
    """The target's datagram queue as the node reads it, with `Probe` told of each."""

    def __init__(self, probe: Probe, inner: AsyncIterator[tuple[bytes, Address]]) -> None:
        self._probe = probe
        self._inner = inner
        #: The datagram last handed to the node, until it asks for the next one.
        self.last: tuple[bytes, Address, tuple[int, ...]] | None = None

    def __aiter__(self) -> Observed:
        return self

    async def __anext__(self) -> tuple[bytes, Address]:
        # The node asks for the next datagram only once it has handled the last one,
        # with no checkpoint in between: the counters now show that one's effect alone.
        last = self.last
        if last is not None:
            self.last = None
            self._probe.datagram_seen(*last)
        data, addr = await self._inner.__anext__()
        if self._probe.core is not None:
            self.last = (data, addr, self._probe.snapshot())
        return data, addr


class Tap(Transport):
    """A member's real transport, with what it sends recorded (and, for the target, its
    receive path observed)."""

    def __init__(self, inner: Transport, captures: Captures, probe: Probe | None) -> None:
        self._inner = inner
        self._captures = captures
        self._probe = probe
        self.stats = inner.stats

    @property
    def local_addr(self) -> Address:
        return self._inner.local_addr

    async def send(self, data: bytes, addr: Address) -> bool:
        if addr[0] != FUZZ_HOST:
            self._captures.datagrams.add(data)
        return await self._inner.send(data, addr)

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        inner = self._inner.receive()
        return inner if self._probe is None else self._probe.observe(inner)

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        self._captures.frames.add(data)
        response = await self._inner.request(addr, data, timeout_s=timeout_s)
        self._captures.frames.add(response)
        return response


def tapped_factory(
    config: Config, overhead: int, captures: Captures, probe: Probe | None
) -> TransportFactory:
    # The limits `swim.Node` gives its default transport: the codec's largest frame plus
    # the sealer's overhead, two of them buffered at once, the stream timeout of the profile.
    max_frame = MAX_STREAM_BYTES + overhead

    @contextlib.asynccontextmanager
    async def factory(handler: StreamHandler) -> AsyncIterator[Transport]:
        if probe is not None:
            handler = probe.wrap_handler(handler)
        async with open_udp_tcp_transport(
            (CLUSTER_HOST, 0),
            handler,
            stream_timeout_s=config.tcp_timeout_s,
            max_frame_bytes=max_frame,
            max_buffered_bytes=2 * max_frame,
        ) as inner:
            yield Tap(inner, captures, probe)

    return factory

"""Forwarding (issue 9, item 2): serve each key's requests on the member that owns it.

``await forwarder.handle_or_forward(key, request)`` serves the request with the local
handler if this member owns `key`, and otherwise sends it to the owner over the node's
reliable channel and returns the owner's answer. Owners come from a placement ring
(`swim.ring`) built from the node's current view and kept current by a `RingTracker` fed
with the node's membership events (this member's own metadata changes included, so its
own health and weight count at once). If the owner cannot be reached (`DeliveryError`),
does not answer in time or refuses (busy, stopping), the next of ``ring.owners(key, n)``
is tried; when all have failed, `OwnersUnavailable` lists each attempt.

    async with Forwarder(node, RingOptions(replicas_default=2), handler) as forwarder:
        answer = await forwarder.handle_or_forward(b"user:42", b"GET user:42")

Protocol
--------
The runtime has no request/response primitive: a reliable user message (``Node.send(...,
reliable=True)``) returns once the peer's node has received it, with no answer from its
application. Forwarded requests are therefore built from two reliable user messages, one
each way, matched by a request id. Every frame starts with a header::

    magic    3 bytes   0xFF 'F' 'W'   (0xFF never starts UTF-8 text, and our tags and
                                       user events use 0xFF 0x01 / 0xFF 0x02)
    version  1 byte    1
    kind     1 byte    1 request, 2 answer, 3 error (the handler raised), 4 refused
    id       8 bytes   big-endian, chosen by the asker
    body     the rest  the request, the answer, or UTF-8 text for error and refused

User messages without the magic are not ours and are left to the application, which
still sees them in its events (so do ours: skip them with `is_forwarding_frame`). Ours
with another version or kind, or shorter than the header, are dropped and counted
(`ForwarderStats.malformed`).

* The asker picks ids from a counter with a random 64-bit start (seeded), so ids do
  not repeat within a run, nor, in practice, across restarts.
* The owner answers with one reliable user message to the asker *by name*: only a member
  in its view gets an answer, at the address the membership gives, never at an address
  a frame names.
* An answer is accepted only from the member asked and only while its request is
  pending; late answers (after the attempt's timeout) and strays are dropped and counted.
* Each attempt is bounded by `attempt_timeout_s` (delivery, the owner's handler and the
  answer's delivery together).
* Bounded state: at most `max_pending` requests of ours in flight (beyond that
  `ForwardBusy` is raised at once, never queued); at most `max_serving` requests from
  others handled at once (beyond that they are refused, and their asker moves on to the
  next owner). Bodies are at most `MAX_BODY_BYTES` (the user message limit less the
  header).

Semantics: at least once. An answer lost after the owner ran the request makes the asker
try the next owner, which runs it again: handlers should be idempotent (or the
application must tolerate a repeat). A member serves every request it is sent, whether
or not its own ring still names it the owner (views differ for a moment while news
spreads; forwarding again could loop), so a request takes one hop at most. A handler that
raises on the owner gives `RemoteError` at the asker, not a retry: the owner was reached
and answered. Run locally, a handler's exception propagates as it is.

What the core could give instead (a change for the core's owner, not made here): a
request/response stream kind whose reply frame carries the application's answer would
halve the connections per request and remove the pending table and the reply-by-name
lookup.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Self, cast

import attrs
import trio

from swim.core import Event, UserMessageReceived
from swim.core.codec import MAX_USER_PAYLOAD_BYTES
from swim.ring import Key, Ring, RingChanged, RingOptions, RingTracker
from swim.runtime.events import MemberEvent, Stamped
from swim.runtime.node import DeliveryError, Node
from swim.runtime.subscriptions import EventOverflow, Subscription

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "Attempt",
    "ForwardBusy",
    "ForwardError",
    "ForwardTimeout",
    "Forwarder",
    "ForwarderStats",
    "Frame",
    "FrameKind",
    "Handler",
    "MalformedFrame",
    "NoOwnerError",
    "OwnersUnavailable",
    "Refused",
    "RemoteError",
    "decode_frame_untrusted",
    "encode_frame",
    "is_forwarding_frame",
]

MAGIC: Final = b"\xffFW"
VERSION: Final = 1
_HEADER: Final = struct.Struct(">3sBBQ")
#: Bytes before the body.
HEADER_BYTES: Final = _HEADER.size
#: The largest request or answer body (a user message's limit less the header).
MAX_BODY_BYTES: Final = MAX_USER_PAYLOAD_BYTES - HEADER_BYTES
#: Default bound of one attempt: delivery, the owner's handler and the answer.
DEFAULT_ATTEMPT_TIMEOUT_S: Final = 5.0

#: Serves a request locally: its answer, or an awaitable of it.
Handler = Callable[[bytes], Awaitable[bytes] | bytes]


class FrameKind:
    """The kind byte of a frame."""

    #: A request for the handler.
    REQUEST: Final = 1
    #: The handler's answer.
    ANSWER: Final = 2
    #: The handler raised; the body is its error text.
    ERROR: Final = 3
    #: Not served (busy, stopping); the body says why. The asker tries the next owner.
    REFUSED: Final = 4


_KINDS: Final = frozenset({FrameKind.REQUEST, FrameKind.ANSWER, FrameKind.ERROR, FrameKind.REFUSED})


class MalformedFrame(ValueError):
    """A user message carries our magic but is not a well-formed frame."""


@attrs.frozen
class Frame:
    """One forwarding frame: its kind (`FrameKind`), request id and body."""

    kind: int
    id: int
    body: bytes


def encode_frame(frame: Frame) -> bytes:
    """The user message payload of `frame`. Raises `ValueError` for a bad kind, id or
    a body over `MAX_BODY_BYTES` (the caller's mistake)."""
    if frame.kind not in _KINDS or not 0 <= frame.id < 1 << 64:
        raise ValueError(f"bad frame kind {frame.kind!r} or id {frame.id!r}")
    if len(frame.body) > MAX_BODY_BYTES:
        raise ValueError(f"a body holds at most {MAX_BODY_BYTES} bytes, got {len(frame.body)}")
    return _HEADER.pack(MAGIC, VERSION, frame.kind, frame.id) + frame.body


def is_forwarding_frame(payload: bytes) -> bool:
    """Whether a user message belongs to the forwarding protocol (starts with its magic)."""
    return payload.startswith(MAGIC)


def decode_frame_untrusted(payload: bytes) -> Frame:
    """The frame in a peer's user message. Raises `MalformedFrame` if it is not one
    (call `is_forwarding_frame` first to tell other messages apart)."""
    if len(payload) < HEADER_BYTES or not payload.startswith(MAGIC):
        raise MalformedFrame("not a forwarding frame")
    _, version, kind, rid = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise MalformedFrame(f"unknown forwarding version {version}")
    if kind not in _KINDS:
        raise MalformedFrame(f"unknown frame kind {kind}")
    return Frame(kind, rid, payload[HEADER_BYTES:])


class ForwardError(Exception):
    """A forwarded request failed."""


class NoOwnerError(ForwardError):
    """No member is on the ring, so the key has no owner."""


class ForwardBusy(ForwardError):
    """Too many of our requests are in flight (`Forwarder.max_pending`)."""


class ForwardTimeout(ForwardError):
    """The member asked did not answer within the attempt's timeout."""


class Refused(ForwardError):
    """The member asked refused to serve (busy, stopping)."""


class RemoteError(ForwardError):
    """The owner's handler raised; its error text is the message. Not retried."""

    def __init__(self, member: str, text: str) -> None:
        super().__init__(f"{member}: {text}")
        self.member = member
        self.text = text


@attrs.frozen
class Attempt:
    """One failed attempt of a request: whom it went to and why it failed."""

    member: str
    reason: str


class OwnersUnavailable(ForwardError):
    """Every owner tried failed; `attempts` says how, in order."""

    def __init__(self, key: Key, attempts: tuple[Attempt, ...]) -> None:
        tried = "; ".join(f"{a.member}: {a.reason}" for a in attempts)
        super().__init__(f"no owner of {key!r} answered ({tried})")
        self.key = key
        self.attempts = attempts


@attrs.define
class ForwarderStats:
    """A forwarder's counters."""

    #: Requests served by the local handler (ours, from handle_or_forward).
    served_locally: int = 0
    #: Requests served for other members.
    served_for_others: int = 0
    #: Requests sent to another member (each attempt counts).
    forwarded: int = 0
    #: Answers received for our requests.
    answered: int = 0
    #: Attempts that failed and moved on to the next owner.
    failovers: int = 0
    #: handle_or_forward calls that ran out of owners.
    exhausted: int = 0
    #: Attempts that failed by delivery error, timeout or refusal.
    delivery_errors: int = 0
    timeouts: int = 0
    refused: int = 0
    #: Error answers (the owner's handler raised).
    remote_errors: int = 0
    #: Requests refused at once because `max_pending` were in flight.
    busy: int = 0
    #: Requests from others we refused because `max_serving` were being served.
    refused_busy: int = 0
    #: Answers for no pending request of ours (late, or duplicated).
    late_answers: int = 0
    #: Answers from a member other than the one asked.
    stray_answers: int = 0
    #: Frames with our magic that did not decode.
    malformed: int = 0
    #: Answers we could not deliver to their asker.
    answer_send_failures: int = 0
    #: Times the event subscription overflowed and the ring was rebuilt from the view.
    resyncs: int = 0


@attrs.define(eq=False)
class _Pending:
    member: str
    done: trio.Event = attrs.Factory(trio.Event)
    frame: Frame | None = None


class Forwarder:
    """Serves requests for the keys this member owns and forwards the others (see the
    module docs). Run it as an async context manager around the code that uses it::

        async with swim.Node(...) as node, Forwarder(node, RingOptions(), handler) as fw:
            ...

    Args:
        node: the running node whose view places keys and whose reliable messages carry
            the requests.
        ring_options: how the ring is built (`swim.ring.RingOptions`; by default
            alive and suspect members, ``health=critical`` excluded).
        handler: serves a request here, ``handler(request) -> answer`` (or an awaitable
            of it); it runs for our own keys and for requests other members send us.
        attempts: how many owners `handle_or_forward` tries (default
            ``ring_options.replicas_default``).
        attempt_timeout_s: the bound of one attempt (delivery, handler and answer).
        max_pending: our requests in flight at most.
        max_serving: requests from others served at once at most.
        on_ring_change: called with each `RingChanged` (the first with the ring at
            start); it runs in the forwarder's event task: quick, never raising.
        seed: seeds the request ids (None: from `os.urandom`).
        max_buffer: the event subscription's buffer.
    """

    def __init__(
        self,
        node: Node,
        ring_options: RingOptions | None = None,
        handler: Handler | None = None,
        *,
        attempts: int | None = None,
        attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
        max_pending: int = 1024,
        max_serving: int = 64,
        on_ring_change: Callable[[RingChanged], object] | None = None,
        seed: int | None = None,
        max_buffer: int = 1024,
    ) -> None:
        options = ring_options if ring_options is not None else RingOptions()
        if attempts is None:
            attempts = options.replicas_default
        if attempts < 1 or max_pending < 1 or max_serving < 1:
            raise ValueError("attempts, max_pending and max_serving must be at least 1")
        if not attempt_timeout_s > 0:
            raise ValueError("attempt_timeout_s must be positive")
        self.node: Final = node
        self.handler = handler
        self.attempts: Final = attempts
        self.attempt_timeout_s: Final = attempt_timeout_s
        self.max_pending: Final = max_pending
        self.max_serving: Final = max_serving
        self._on_ring_change = on_ring_change
        self._max_buffer = max_buffer
        self._tracker = RingTracker(options)
        rng = random.Random(int.from_bytes(os.urandom(8)) if seed is None else seed)
        self._next_id = rng.getrandbits(64)
        self._pending: dict[int, _Pending] = {}
        self._serving = 0
        self._stats = ForwarderStats()
        self._ring_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._cm: contextlib.AbstractAsyncContextManager[Self] | None = None
        self._closed = False

    # ================================================================ lifecycle

    async def __aenter__(self) -> Self:
        if self._cm is not None:
            raise RuntimeError("a Forwarder can only be started once")
        self._cm = self._run()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: object) -> bool | None:
        assert self._cm is not None
        return await self._cm.__aexit__(*exc_info)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[Self]:
        # Subscribed and synced in one step (no checkpoint between), so no event falls
        # between the snapshot and the subscription; the ring is ready on entry.
        subscription = self._subscribe()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._event_loop, subscription)
                yield self
                nursery.cancel_scope.cancel()
        finally:
            self._closed = True
            self._nursery = None
            for pending in self._pending.values():
                pending.done.set()

    def _subscribe(self) -> Subscription[Event]:
        # (mypy cannot solve the converter's T for a union such as Event.)
        subscription = cast(
            "Subscription[Event]",
            self.node.subscribe(_core_event, self._max_buffer, local_updates=True),
        )
        self._changed(self._tracker.update(self.node.members(), at=trio.current_time()))
        return subscription

    async def _event_loop(self, subscription: Subscription[Event]) -> None:
        while True:
            try:
                with subscription:
                    async for event in subscription:
                        if isinstance(event, UserMessageReceived):
                            self._on_message(event)
                        else:
                            self._changed(self._tracker.observe(event))
            except EventOverflow:
                # Membership news was lost: rebuild from the view. Lost requests and
                # answers time out at their askers, who move on.
                self._stats.resyncs += 1
                subscription = self._subscribe()
                continue
            return  # the node stopped

    def _changed(self, change: RingChanged | None) -> None:
        if change is None:
            return
        self._ring_changed.set()
        self._ring_changed = trio.Event()
        if self._on_ring_change is not None:
            self._on_ring_change(change)

    # ================================================================ placement

    @property
    def ring(self) -> Ring:
        """The current ring (this node's view, as the forwarder last saw it)."""
        return self._tracker.ring

    def owners(self, key: Key, n: int | None = None) -> list[str]:
        """`n` owners of `key` (default `attempts`), the owner first; [] if none."""
        return self.ring.owners(key, self.attempts if n is None else n)

    def is_local(self, key: Key) -> bool:
        """Whether this member owns `key`."""
        owners = self.ring.owners(key, 1)
        return bool(owners) and owners[0] == self.node.name

    async def wait_for_ring(
        self, predicate: Callable[[Ring], object], timeout_s: float | None = None
    ) -> Ring:
        """Wait until `predicate(ring)` holds (checked now and after each change);
        returns that ring. Raises `TimeoutError` after `timeout_s`."""
        with trio.move_on_after(math.inf if timeout_s is None else timeout_s):
            while True:
                ring = self.ring
                if predicate(ring):
                    await trio.lowlevel.checkpoint()
                    return ring
                await self._ring_changed.wait()
        raise TimeoutError(f"the ring did not satisfy {predicate!r} in {timeout_s} s")

    def stats(self) -> ForwarderStats:
        """A copy of the counters."""
        return attrs.evolve(self._stats)

    # ================================================================ requests

    async def handle_or_forward(self, key: Key, request: bytes) -> bytes:
        """Serve `request` here if this member owns `key`, else ask its owner; on the
        owner's failure ask the next of `owners(key)`.

        Returns the answer. Raises `NoOwnerError` if no member is on the ring,
        `OwnersUnavailable` when every owner tried failed, `RemoteError` if an owner's
        handler raised, `ForwardBusy` if `max_pending` requests are in flight; a local
        handler's exception propagates as it is.
        """
        owners = self.owners(key)
        if not owners:
            raise NoOwnerError(f"no member is on the ring to own {key!r}")
        failed: list[Attempt] = []
        for member in owners:
            if member == self.node.name:
                self._stats.served_locally += 1
                return await self._serve(request)
            try:
                return await self._ask(member, request, self.attempt_timeout_s)
            except (DeliveryError, ForwardTimeout, Refused, LookupError) as exc:
                failed.append(Attempt(member, _reason(exc)))
                self._stats.failovers += 1
        self._stats.exhausted += 1
        raise OwnersUnavailable(key, tuple(failed))

    async def request(
        self, member: str, request: bytes, *, timeout_s: float | None = None
    ) -> bytes:
        """Ask one member, by name, to serve `request` (served here if it is this one);
        its answer. No failover: raises `DeliveryError` or `LookupError` if it cannot
        be reached, `ForwardTimeout`, `Refused`, `RemoteError` or `ForwardBusy`."""
        if member == self.node.name:
            self._stats.served_locally += 1
            return await self._serve(request)
        return await self._ask(
            member, request, self.attempt_timeout_s if timeout_s is None else timeout_s
        )

    async def _ask(self, member: str, request: bytes, timeout_s: float) -> bytes:
        if self._closed or self._nursery is None:
            raise RuntimeError("the forwarder is not running (use `async with Forwarder(...)`)")
        if len(self._pending) >= self.max_pending:
            self._stats.busy += 1
            raise ForwardBusy(f"{len(self._pending)} requests in flight (max_pending)")
        rid = self._take_id()
        payload = encode_frame(Frame(FrameKind.REQUEST, rid, request))
        pending = self._pending[rid] = _Pending(member)
        self._stats.forwarded += 1
        try:
            with trio.move_on_after(timeout_s) as scope:
                try:
                    await self.node.send(member, payload, reliable=True)
                except (DeliveryError, LookupError):
                    self._stats.delivery_errors += 1
                    raise
                await pending.done.wait()
        finally:
            del self._pending[rid]
        frame = pending.frame
        if frame is None:
            if scope.cancelled_caught:
                self._stats.timeouts += 1
                raise ForwardTimeout(f"{member} did not answer within {timeout_s:g} s")
            raise RuntimeError("the forwarder stopped")
        if frame.kind == FrameKind.ANSWER:
            self._stats.answered += 1
            return frame.body
        text = frame.body.decode("utf-8", "replace")
        if frame.kind == FrameKind.ERROR:
            self._stats.remote_errors += 1
            raise RemoteError(member, text)
        self._stats.refused += 1
        raise Refused(f"{member} refused: {text}")

    def _take_id(self) -> int:
        rid = self._next_id
        self._next_id = (rid + 1) & ((1 << 64) - 1)
        return rid

    async def _serve(self, request: bytes) -> bytes:
        handler = self.handler
        if handler is None:
            raise RuntimeError("this forwarder has no handler to serve requests")
        answer = handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, bytes):
            raise TypeError(f"the handler returned {type(answer).__name__}, not bytes")
        return answer

    # ================================================================ incoming frames

    def _on_message(self, event: UserMessageReceived) -> None:
        if not is_forwarding_frame(event.payload):
            return  # not ours: the application's
        try:
            frame = decode_frame_untrusted(event.payload)
        except MalformedFrame:
            self._stats.malformed += 1
            return
        if frame.kind == FrameKind.REQUEST:
            self._on_request(event.source, frame)
            return
        pending = self._pending.get(frame.id)
        if pending is None or pending.done.is_set():
            self._stats.late_answers += 1
        elif pending.member != event.source:
            self._stats.stray_answers += 1
        else:
            pending.frame = frame
            pending.done.set()

    def _on_request(self, source: str, frame: Frame) -> None:
        nursery = self._nursery
        if nursery is None or self._closed:
            return
        if self.handler is None or self._serving >= self.max_serving:
            self._stats.refused_busy += 1
            why = b"busy" if self.handler is not None else b"no handler"
            nursery.start_soon(self._answer, source, Frame(FrameKind.REFUSED, frame.id, why))
            return
        self._serving += 1
        nursery.start_soon(self._serve_for, source, frame)

    async def _serve_for(self, source: str, frame: Frame) -> None:
        try:
            try:
                answer = Frame(FrameKind.ANSWER, frame.id, await self._serve(frame.body))
                if len(answer.body) > MAX_BODY_BYTES:
                    raise ValueError(f"answer of {len(answer.body)} bytes is over {MAX_BODY_BYTES}")
                self._stats.served_for_others += 1
            except Exception as exc:  # the handler's failure is the asker's answer
                text = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:1024]
                answer = Frame(FrameKind.ERROR, frame.id, text)
        finally:
            self._serving -= 1
        await self._answer(source, answer)

    async def _answer(self, source: str, frame: Frame) -> None:
        try:
            with trio.move_on_after(self.attempt_timeout_s):
                await self.node.send(source, encode_frame(frame), reliable=True)
                return
        except (DeliveryError, LookupError, RuntimeError):
            pass
        self._stats.answer_send_failures += 1


def _core_event(event: Event, stamped: MemberEvent | Stamped) -> Event | None:
    """The forwarder's converter: membership changes and user messages."""
    if isinstance(stamped, MemberEvent) or isinstance(event, UserMessageReceived):
        return event
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return "not delivered"
    if isinstance(exc, LookupError):
        return "unknown member"
    return str(exc)


"""What the core asks its driver to send: drained as values, never sent by the core."""

from __future__ import annotations

import enum
from typing import NamedTuple

import attrs

from swim.core.events import Event
from swim.core.messages import Address, Message


class Datagram(NamedTuple):
    """One datagram for `addr`: the encoded bytes and the messages they carry.

    Drivers send `data`. A simulator may hand `messages` straight to the receiving core
    (object mode) and account `len(data)` bytes; both must give the same trace. A named
    tuple rather than an attrs value, like `Output`: one is made for every datagram.
    """

    addr: Address
    data: bytes
    messages: tuple[Message, ...]


class StreamKind(enum.Enum):
    """Why the core wants a stream (a TCP connection in production)."""

    #: Full-state exchange sent when joining through a seed.
    JOIN = "join"
    #: Periodic full-state anti-entropy exchange.
    PUSH_PULL = "push-pull"
    #: Fallback ping over the reliable transport, in parallel with indirect probes.
    PING = "ping"
    #: A reliable (or too large for a datagram) user message.
    USER_MESSAGE = "user-message"


@attrs.frozen(slots=True)
class StreamRequest:
    """Open a stream to `addr`, send `data`, and hand the response back.

    The driver calls ``core.receive_stream_response(request.id, response, now=now)``
    once, with the response bytes or ``None`` on failure. The core also times the
    stream out by itself after ``Config.tcp_timeout_s`` (a later outcome is ignored).
    """

    id: int
    kind: StreamKind
    addr: Address
    data: bytes
    messages: tuple[Message, ...]


@attrs.frozen(slots=True)
class StreamReply:
    """The answer to a stream a peer opened: the frame to send back, and its messages.

    Drivers send `data`; a simulator may hand `messages` to the requester (object
    mode), which accounts ``len(data)`` bytes either way.
    """

    data: bytes
    messages: tuple[Message, ...]


class Output(NamedTuple):
    """Everything the core has for its driver, drained by `Core.poll`.

    A named tuple rather than an attrs value: a simulator polls every member after
    every input, so its construction cost counts.
    """

    #: Datagrams to send, in order.
    datagrams: list[Datagram]
    #: Streams to open; each outcome goes back through `Core.receive_stream_response`.
    streams: list[StreamRequest]
    #: Application events, oldest first.
    events: list[Event]
    #: When `Core.handle_timer` must next run (absolute; inf: never).
    deadline: float
    #: True once a graceful leave is over (its news sent its full count, or the leave
    #: timed out): the driver may stop the member.
    leave_done: bool

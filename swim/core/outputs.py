"""What the core asks its driver to send: drained as values, never sent by the core."""

from __future__ import annotations

import enum

import attrs

from swim.core.messages import Address, Message


@attrs.frozen(slots=True)
class Datagram:
    """One datagram for `addr`: the encoded bytes and the messages they carry.

    Drivers send `data`. A simulator may hand `messages` straight to the receiving core
    (object mode) and account `len(data)` bytes; both must give the same trace.
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

    The driver must call ``core.receive_stream_response(request.id, response, now)``
    exactly once, with the response bytes or ``None`` on failure or timeout
    (``Config.tcp_timeout_s``).
    """

    id: int
    kind: StreamKind
    addr: Address
    data: bytes
    messages: tuple[Message, ...]

"""The inputs of the node fuzzer (`benchmarks.fuzz_node`): hostile datagrams and stream
connections drawn from a seeded `random.Random` and from traffic captured on a real
cluster.

Every input has a *class* (what was done to it) and a set of outcomes it may have at
the target (`ALLOWED_DATAGRAM`, `ALLOWED_STREAM`); the harness records the outcome each
one actually had and reports every input whose outcome is not allowed. Outcomes:

* ``seal:<reason>``: the target's `Sealer` rejected it (a `swim.security.Reason`);
* ``malformed``: the sealer opened it and the codec refused it (``Stats.malformed``);
* ``harmless``: it decoded, and held no news (only pings, acks, nacks or ping-reqs, or
  no message at all);
* ``news``: it decoded into news (alive, suspect, dead, a broadcast...), never allowed;
* ``transport``: a stream the transport cut off before the node saw a frame;
* ``lost``: a datagram the target never received (socket buffer or queue overflow).

The classes are built so that their outcome is known: a 1-3 bit flip of a plaintext
packet is always caught by the CRC-32 (at these sizes), a truncated CBOR item is never a
complete one, a value of another CBOR type where the format wants an int, a string, bytes,
a bool or an array is always refused, and so on. Random bytes inside a valid frame are the
one class allowed to decode (to an empty datagram, say), and then only into no news.
"""

from __future__ import annotations

import enum
import math
import random
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import cbor2

from swim.core import codec
from swim.security import (
    LABEL_MAX_BYTES,
    PLAINTEXT_V1,
    SEALED_OVERHEAD,
    SEALED_V1,
    SENDER_ID_BYTES,
    Keyring,
    Reason,
    Rejected,
    Sealer,
)

MALFORMED: Final = "malformed"
HARMLESS: Final = "harmless"
NEWS: Final = "news"
TRANSPORT: Final = "transport"
LOST: Final = "lost"
#: A stream the target never closed within the harness's bound.
HUNG: Final = "hung"
#: The target's stream handler raised (a bug: the transport logs it and keeps serving).
HANDLER_ERROR: Final = "handler_error"


def seal_outcome(reason: Reason) -> str:
    return f"seal:{reason.value}"


#: Any rejection by the sealer.
SEAL_ANY: Final = frozenset(seal_outcome(r) for r in Reason)
#: Message kinds that carry no news (``Stats.messages_in`` keys).
HARMLESS_KINDS: Final = frozenset({"ping", "ack", "nack", "ping_req"})

#: Largest UDP payload over IPv4.
MAX_UDP_PAYLOAD: Final = 65_507
#: Packets of these labels are sent to a cluster labelled `LABEL`.
LABEL: Final = "fuzz"
OTHER_LABELS: Final = ("", "fuzz2", "FUZZ", "f" * LABEL_MAX_BYTES)
_HEADER: Final = struct.Struct(">I")


class Variant(enum.Enum):
    """Which cluster is fuzzed."""

    #: No keys: packets carry the label and a CRC-32.
    PLAINTEXT = "plaintext"
    #: AES-256-GCM with one shared key; the fuzzer also holds the key for the insider
    #: classes (well-sealed garbage), as a member gone bad would.
    ENCRYPTED = "encrypted"


def _one(reason: Reason) -> frozenset[str]:
    return frozenset({seal_outcome(reason)})


_FRAMED_GARBAGE: Final = frozenset({MALFORMED})

@attrs.frozen
class _Class:
    #: Weight in the plaintext variant and in the encrypted one (0: not drawn).
    plaintext: int
    encrypted: int
    #: The outcomes an input of this class may have.
    allowed: frozenset[str]


#: Datagram classes (each is sent as a stream frame too).
DATAGRAM_CLASSES: Final[dict[str, _Class]] = {
    # raw random bytes, 0 to 1,500 bytes long (one in a hundred up to 64 KB)
    "random": _Class(10, 8, SEAL_ANY),
    # a captured wire datagram cut short
    "truncated": _Class(14, 10, SEAL_ANY),
    # a captured wire datagram with 1 to 3 bits flipped
    "bitflip": _Class(20, 16, SEAL_ANY),
    # a real payload framed for another cluster's label
    "other_label": _Class(5, 5, _one(Reason.WRONG_LABEL)),
    # a bare codec datagram, as a node that does not frame at all would send it
    "unframed": _Class(4, 3, _one(Reason.UNKNOWN_VERSION)),
    # a valid frame whose body looks like a real packet with a well-formed prefix and
    # then random bytes and a bad checksum (plaintext) or tag (sealed)
    "forged": _Class(5, 8, frozenset()),  # set per variant below
    # valid framing (sealed with the key in the encrypted variant), then:
    # valid CBOR of a wrong shape, made from a captured datagram
    "wrong_shape": _Class(24, 10, _FRAMED_GARBAGE),
    # a captured payload cut short
    "truncated_payload": _Class(8, 4, _FRAMED_GARBAGE),
    # CBOR edge cases: huge declared lengths, deep nesting, indefinite lengths, reserved
    # bytes, trailing bytes
    "cbor_edge": _Class(5, 3, _FRAMED_GARBAGE),
    # random bytes
    "random_payload": _Class(5, 3, frozenset({MALFORMED, HARMLESS})),
    # encrypted variant only:
    # a sealed datagram the target already accepted, sent again
    "replay": _Class(0, 14, frozenset({seal_outcome(Reason.REPLAYED), seal_outcome(Reason.STALE)})),
    # a real payload in a plaintext packet of the right label
    "plaintext": _Class(0, 5, _one(Reason.PLAINTEXT_REFUSED)),
    # a real payload sealed with another key
    "wrong_key": _Class(0, 5, _one(Reason.UNAUTHENTICATED)),
    # a real payload sealed with the key, timestamped outside the window (or NaN, inf)
    "stale": _Class(0, 4, _one(Reason.STALE)),
}
_FORGED: Final = {
    Variant.PLAINTEXT: _one(Reason.CORRUPT),
    Variant.ENCRYPTED: _one(Reason.UNAUTHENTICATED),
}

#: Stream-only classes (the datagram classes are sent as frames too): weight, allowed.
STREAM_ONLY_CLASSES: Final[dict[str, tuple[int, frozenset[str]]]] = {
    # a length prefix over the frame limit (refused unread)
    "huge_length": (6, frozenset({TRANSPORT})),
    # 1 to 3 bytes of a length prefix, then end of stream
    "short_header": (5, frozenset({TRANSPORT})),
    # a length prefix, then fewer bytes than it declares, then end of stream
    "short_body": (6, frozenset({TRANSPORT})),
    # a zero-length frame
    "zero_length": (3, _one(Reason.TOO_SHORT)),
    # a validly framed body of 256 KB to 2 MB of random bytes
    "large_frame": (1, _FRAMED_GARBAGE | {HARMLESS}),
    # connect and say nothing (cut off at the transport's header deadline)
    "silent": (0, frozenset({TRANSPORT})),  # scheduled apart, see `Inputs.silent_share`
}
#: Weight of the datagram classes, taken together, among stream inputs.
STREAM_FRAME_WEIGHT: Final = 60


def allowed_datagram(variant: Variant, kind: str) -> frozenset[str]:
    if kind == "forged":
        return _FORGED[variant]
    return DATAGRAM_CLASSES[kind].allowed


def allowed_stream(variant: Variant, kind: str) -> frozenset[str]:
    if kind in STREAM_ONLY_CLASSES:
        return STREAM_ONLY_CLASSES[kind][1]
    allowed = allowed_datagram(variant, kind)
    if kind in ("random", "truncated", "bitflip"):
        # A frame that ends inside its own length prefix or declares a length it does not
        # carry is the transport's to refuse.
        allowed = allowed | {TRANSPORT}
    return allowed


# ====================================================================== captures


@attrs.define(eq=False)
class Ring:
    """The last `size` items added; a random one on request."""

    size: int
    items: list[bytes] = attrs.Factory(list)
    _next: int = 0

    def add(self, item: bytes) -> None:
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            self.items[self._next] = item
            self._next = (self._next + 1) % self.size

    def __len__(self) -> int:
        return len(self.items)


@attrs.define(eq=False)
class Captures:
    """Real traffic seen on the cluster, the raw material of most classes."""

    #: Wire datagrams members sent each other (the last half minute or so: most replay
    #: headers stay inside the receiver's window, and mutations reach the AES-GCM check).
    datagrams: Ring = attrs.Factory(lambda: Ring(512))
    #: Wire stream frames members sent each other (requests and responses).
    frames: Ring = attrs.Factory(lambda: Ring(256))
    #: Wire datagrams and frames the target accepted from members (to be replayed), the
    #: last few dozen seconds' worth, so most replays fall inside the replay window.
    accepted: Ring = attrs.Factory(lambda: Ring(128))
    accepted_frames: Ring = attrs.Factory(lambda: Ring(32))


# ====================================================================== inputs


@attrs.frozen
class Datagram:
    kind: str
    data: bytes


@attrs.frozen
class Stream:
    """One connection: write `data`, half-close, read until the target closes; a
    `silent` one writes nothing and waits."""

    kind: str
    data: bytes
    silent: bool = False


def _copy(tree: Any) -> Any:
    if type(tree) is list:
        return [_copy(item) for item in tree]
    return tree


#: Values of every CBOR type cbor2 decodes to a distinct Python type.
_SAMPLES: Final[tuple[Any, ...]] = (
    0, 7, 2**40, 1.0, math.nan, -0.0, True, False, None, cbor2.undefined, "x",
    "alpha-member", b"", b"\x7f\x00\x00\x01", [], [1], [[2, 0]], {}, {1: 2}, {"a": b"b"},
)
_HUGE_COUNTS: Final = (2**20, 2**24, 2**28, 2**31, 2**32, 2**40, 2**63, 2**64 - 1)
#: Acks (3 bytes each) that fit in the largest sealed datagram.
_MOST_ACKS: Final = (MAX_UDP_PAYLOAD - SEALED_OVERHEAD - LABEL_MAX_BYTES - 8) // 3
#: Kinds whose every string field is a non-empty name (kinds 0 to 10).
_KNOWN_KINDS: Final = range(11)


class Inputs:
    """Draws inputs of every class for one variant from a seeded rng and `Captures`.

    `prepare` must be called once the captures hold traffic: it opens the captured
    packets with a sealer of the cluster's settings to get the real payloads (and their
    CBOR trees) that the framed classes mutate.
    """

    def __init__(
        self,
        variant: Variant,
        rng: random.Random,
        captures: Captures,
        *,
        keyring: Keyring | None,
        wall_clock: Callable[[], float],
        max_frame_bytes: int,
    ) -> None:
        self.variant = variant
        self._rng = rng
        self._captures = captures
        self._clock = wall_clock
        self._max_frame_bytes = max_frame_bytes
        ids = iter(range(1 << 20))

        def sealer(ring: Keyring | None, label: str = LABEL) -> Sealer:
            sender = b"fuzz" + next(ids).to_bytes(SENDER_ID_BYTES - 4, "big")
            return Sealer(keyring=ring, label=label, sender_id=sender, random_bytes=rng.randbytes)

        # Frames garbage well (in the encrypted variant, as an insider with the key).
        self._framer = sealer(keyring)
        self._other_label = [sealer(keyring, label) for label in OTHER_LABELS]
        self._plaintext = sealer(None)
        self._wrong_key = sealer(Keyring(bytes(31 - i for i in range(32))))
        self._label_field = bytes([len(LABEL)]) + LABEL.encode()
        self.payloads: list[bytes] = []
        self.trees: list[Any] = []
        self.frame_payloads: list[bytes] = []
        self.frame_trees: list[Any] = []
        weights = {
            kind: row.plaintext if variant is Variant.PLAINTEXT else row.encrypted
            for kind, row in DATAGRAM_CLASSES.items()
        }
        self._datagram_kinds = [k for k, w in weights.items() if w]
        self._datagram_weights = [weights[k] for k in self._datagram_kinds]
        frame_total = sum(self._datagram_weights)
        self._stream_kinds = [*self._datagram_kinds, *STREAM_ONLY_CLASSES]
        self._stream_weights = [
            *(w * STREAM_FRAME_WEIGHT / frame_total for w in self._datagram_weights),
            *(w for w, _ in STREAM_ONLY_CLASSES.values()),
        ]

    def prepare(self, shadow: Sealer) -> None:
        """Open the captured packets with *shadow* (the cluster's settings, a replay state
        of its own) and keep their payloads and CBOR trees."""
        now = self._clock()
        for wire in self._captures.datagrams.items:
            payload = _open(shadow, wire, now)
            if payload is not None:
                self.payloads.append(payload)
                self.trees.append(cbor2.loads(payload))
        for wire in self._captures.frames.items:
            payload = _open(shadow, wire, now)
            if payload is not None:
                self.frame_payloads.append(payload)
                self.frame_trees.append(cbor2.loads(payload))
        if not self.payloads or not self.frame_payloads:
            raise RuntimeError("no traffic was captured to mutate")

    # -------------------------------------------------------------- datagrams

    def datagram(self) -> Datagram:
        rng = self._rng
        kind: str = rng.choices(self._datagram_kinds, self._datagram_weights)[0]
        return Datagram(kind, self._body(kind, stream=False))

    def _body(self, kind: str, *, stream: bool) -> bytes:
        rng = self._rng
        caps = self._captures
        wires = caps.frames if stream else caps.datagrams
        payloads = self.frame_payloads if stream and rng.random() < 0.5 else self.payloads
        match kind:
            case "random":
                high = MAX_UDP_PAYLOAD if rng.random() < 0.01 else 1500
                return rng.randbytes(rng.randint(0, high))
            case "truncated":
                wire = rng.choice(wires.items)
                return wire[: rng.randrange(len(wire))]
            case "bitflip":
                wire = rng.choice(wires.items)
                return flip(wire, rng.sample(range(len(wire) * 8), rng.randint(1, 3)))
            case "other_label":
                return rng.choice(self._other_label).seal(rng.choice(payloads), now=self._clock())
            case "unframed":
                return rng.choice(payloads)
            case "forged":
                return self._forged()
            case "wrong_shape":
                if stream and rng.random() < 0.5:
                    tree = self.wrong_shape(rng.choice(self.frame_trees), stream=True)
                else:
                    tree = self.wrong_shape(rng.choice(self.trees), stream=stream)
                return self._frame(self._dumps(tree))
            case "truncated_payload":
                payload = rng.choice(payloads)
                return self._frame(payload[: rng.randrange(len(payload))])
            case "cbor_edge":
                return self._frame(self.cbor_edge())
            case "random_payload":
                return self._frame(rng.randbytes(rng.randint(0, 1400)))
            case "replay":
                frames = caps.accepted_frames
                pool = frames if stream and len(frames) and rng.random() < 0.5 else caps.accepted
                return rng.choice(pool.items)
            case "plaintext":
                return self._plaintext.seal(rng.choice(payloads), now=self._clock())
            case "wrong_key":
                return self._wrong_key.seal(rng.choice(payloads), now=self._clock())
            case "stale":
                now = self._clock()
                stamp = rng.choice([
                    now - 61.0, now + 61.0, now - 3600.0, 0.0, -now, math.nan, math.inf,
                    -math.inf, now - 1e9 * rng.random() - 61.0,
                ])
                return self._framer.seal(rng.choice(payloads), now=stamp)
        raise AssertionError(kind)

    def _frame(self, payload: bytes) -> bytes:
        return self._framer.seal(payload, now=self._clock())

    def _forged(self) -> bytes:
        """A packet whose clear parts are right and whose protected parts are random."""
        rng = self._rng
        body = rng.randbytes(rng.randint(0, 1400))
        if self.variant is Variant.PLAINTEXT:
            packet = bytes([PLAINTEXT_V1]) + self._label_field + body
            crc = zlib.crc32(packet)
            return packet + ((crc + rng.randint(1, 2**32 - 1)) % 2**32).to_bytes(4, "big")
        header = (
            bytes([SEALED_V1]) + self._label_field + rng.randbytes(SENDER_ID_BYTES)
            + struct.pack(">Qd", rng.getrandbits(64), self._clock())
        )
        return header + rng.randbytes(SEALED_OVERHEAD - 2 - 24) + body

    # -------------------------------------------------------------- streams

    def stream(self) -> Stream:
        rng = self._rng
        kind: str = rng.choices(self._stream_kinds, self._stream_weights)[0]
        limit = self._max_frame_bytes
        match kind:
            case "huge_length":
                declared = rng.randint(limit + 1, 2**32 - 1)
                return Stream(kind, _HEADER.pack(declared) + rng.randbytes(rng.randint(0, 64)))
            case "short_header":
                return Stream(kind, rng.randbytes(rng.randint(1, 3)))
            case "short_body":
                declared = rng.choice([rng.randint(1, 2000), rng.randint(1, limit)])
                sent = rng.randrange(min(declared, 4096))
                return Stream(kind, _HEADER.pack(declared) + rng.randbytes(sent))
            case "zero_length":
                return Stream(kind, _HEADER.pack(0))
            case "large_frame":
                body = self._frame(rng.randbytes(rng.randint(256 * 1024, 2 * 1024 * 1024)))
                return Stream(kind, _HEADER.pack(len(body)) + body)
            case "silent":
                return self.silent()
        body = self._body(kind, stream=True)
        if kind in ("random", "truncated", "bitflip") and rng.random() < 0.1:
            # Sometimes the bytes go out as they are, without a length prefix.
            return Stream(kind, body)
        return Stream(kind, _HEADER.pack(len(body)) + body)

    def silent(self) -> Stream:
        return Stream("silent", b"", silent=True)

    # -------------------------------------------------------------- wrong shapes

    def _other_type(self, value: Any) -> Any:
        """A value of a CBOR type other than *value*'s (never valid where it stood)."""
        t = type(value)
        return self._rng.choice([v for v in _SAMPLES if type(v) is not t])

    def wrong_shape(self, tree: Any, *, stream: bool) -> Any:
        """A copy of a decoded frame, changed so that the codec must refuse it."""
        rng = self._rng
        top = _copy(tree)
        if type(top) is not list or len(top) < 2:
            return [*top, None] if type(top) is list else [top]
        index = rng.randrange(1, len(top))
        message = top[index]
        choice = rng.randrange(12)
        if choice == 0:
            return self._other_type(top)
        if choice == 1:
            top[0] = rng.choice([0, 2, 255, 1.0, True, "1", b"\x01", -1, None, [1]])
            return top
        if choice == 2:
            top[index] = rng.choice([self._other_type(message), []])
            return top
        if choice == 3:
            kind = message[0]
            top[index][0] = rng.choice([
                float(kind), True, False, str(kind), -1, rng.randint(64, 2**16), 2**32,
                2**64 - 1, None, [kind],
            ])
            return top
        if choice == 4:
            # No kind has 1 item or more than 17.
            top[index] = message[:1] if rng.random() < 0.5 else [*message, *[None] * 17]
            return top
        if choice == 5 and not stream:
            # A kind only streams may carry.
            extra = rng.choice([[10, "x-member", b"\x7f\x00\x00\x01", 7946], [9, False, []]])
            top.insert(rng.randint(1, len(top)), extra)
            return top
        if choice == 6 and rng.random() < 0.1:
            # Now and then as many as the largest datagram holds (the costliest to refuse).
            most = _MOST_ACKS if rng.random() < 0.1 else 5000
            return _TooMany(rng.randint(codec.MAX_MESSAGES + 1, most))
        if choice == 7:
            field = rng.randrange(1, len(message))
            message[field] = cbor2.CBORTag(
                rng.choice([0, 1, 2, 3, 24, 25, 28, 55799, rng.randint(26, 2**32)]), message[field]
            )
            return top
        if choice == 8 and type(message[0]) is int and message[0] in _KNOWN_KINDS:
            fields = [i for i in range(1, len(message)) if type(message[i]) in (int, str)]
            if fields:
                field = rng.choice(fields)
                if type(message[field]) is int:
                    message[field] = rng.choice([-1, -(2**63), 2**64 - 1])
                else:
                    message[field] = rng.choice(["", "é" * 128, "x" * 256])
                return top
        if choice == 9:
            entries = [
                entry for item in message[1:] if type(item) is list
                for entry in item if type(entry) is list and entry
            ]
            if entries:
                entry = rng.choice(entries)
                states = message[2] if message[0] == codec.KIND_PUSH_PULL else []
                how = rng.randrange(4) if any(entry is s for s in states) else 0
                if how == 0:
                    field = rng.randrange(len(entry))
                    entry[field] = self._other_type(entry[field])
                elif how == 1:
                    del entry[rng.randrange(len(entry)) :]  # a member state of < 6 items
                elif how == 2:
                    entry.append(None)  # ... or of 7
                else:
                    entry[2] = rng.randint(4, 255)  # a member status that does not exist
                return top
        field = rng.randrange(1, len(message))
        message[field] = self._other_type(message[field])
        return top

    def _dumps(self, tree: Any) -> bytes:
        rng = self._rng
        if type(tree) is _TooMany:
            # [1, ack, ack, ...] with more acks than a frame may hold, written directly
            # (cbor2 takes milliseconds over thousands of small arrays).
            header = b"\x99" + (tree.acks + 1).to_bytes(2, "big")
            return header + b"\x01" + b"\x82\x02\x00" * tree.acks
        data: bytes = cbor2.dumps(tree)
        roll = rng.random()
        if roll < 0.05 and type(tree) is list:
            # The same items in an indefinite-length array, which the codec refuses.
            return b"\x9f" + b"".join(cbor2.dumps(item) for item in tree) + b"\xff"
        if roll < 0.1:
            # The format refuses trailing bytes; the encoding of the shape is not changed.
            return data + rng.randbytes(rng.randint(1, 8))
        return data

    def cbor_edge(self) -> bytes:
        rng = self._rng
        huge = rng.choice(_HUGE_COUNTS)
        tail = rng.randbytes(rng.randint(0, 32))
        choice = rng.randrange(9)
        if choice == 0:
            return b"\x9b" + huge.to_bytes(8, "big") + b"\x01" + tail
        if choice in (1, 2, 3, 4):
            major = (b"\x5b", b"\x7b", b"\xbb", b"\x9b")[choice - 1]
            return b"\x82\x01" + major + huge.to_bytes(8, "big") + tail
        if choice == 5:
            depth = rng.randint(6, 60_000)
            return b"\x81" * depth + b"\x01"
        if choice == 6:
            return rng.choice([
                b"\x9f\x01\x82\x02\x00\xff", b"\x82\x01\x5f\x41\x00\xff", b"\x82\x01\x7f\xff",
                b"\x82\x01\xbf\xff", b"\x9f\xff",
            ])
        if choice == 7:
            return rng.choice([
                b"\x82\x01\xff", b"\x82\x01\xfc", b"\x82\x01\xfd", b"\x82\x01\xfe",
                b"\x82\x01\x1c", b"\x82\x01\x5c", b"\x82\x01\xf8\x10", b"\xf9\x7e\x00",
                b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\x82\x01\xd8\x18\x42\x81\x01",
            ])
        payload = rng.choice(self.payloads)
        return payload + tail + b"\x00"


@attrs.frozen
class _TooMany:
    """A frame of `acks` acks (more than `codec.MAX_MESSAGES`), encoded by `_dumps`."""

    acks: int


def flip(data: bytes, bits: Sequence[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _open(shadow: Sealer, wire: bytes, now: float) -> bytes | None:
    try:
        return shadow.open_untrusted(wire, now=now)
    except Rejected:
        return None

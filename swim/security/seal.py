"""The packet layer between the codec and the transport: label, checksum, AES-GCM, replay.

A `Sealer` turns an encoded datagram (or stream frame) into the bytes put on the wire
(`Sealer.seal`) and the bytes taken off the wire back into an encoded datagram
(`Sealer.open_untrusted`, which returns the payload or raises `Rejected`, and nothing
else). It is sans-IO: bytes in, bytes out, keys and counters as state. It reads no clock
(``now`` is an argument) and draws no randomness of its own (nonces come from the
``random_bytes`` callable it is given), so the simulator runs sealed clusters with virtual
time and a seeded rng, and the runtime passes ``time.time()`` and ``os.urandom``.

Wire formats
============

Every packet starts with a format byte and the cluster label (a length byte and up to
255 bytes), so packets of another cluster are dropped before anything else is done, with
keys or without. Neither format byte starts a bare codec datagram (a CBOR array,
0x80-0x9F), so traffic from a node that does not frame at all is rejected as
``UNKNOWN_VERSION``, never misread.

Plaintext (no keyring, or ``send_plaintext``), overhead ``PLAINTEXT_OVERHEAD + L``
(6 + L) bytes::

    offset   size  field
    0        1     format     0xD1 (plaintext, version 1)
    1        1     L          label length, 0..255
    2        L     label
    2+L      n     payload    the codec's bytes
    2+L+n    4     crc32      zlib.crc32 of bytes [0, 2+L+n), big-endian

Sealed (a keyring and not ``send_plaintext``), overhead ``SEALED_OVERHEAD + L``
(54 + L) bytes::

    offset   size  field
    0        1     format     0xD2 (sealed, AES-GCM, version 1)   ┐
    1        1     L          label length, 0..255                │ authenticated
    2        L     label                                          │ data, sent in
    2+L      8     sender_id  the sealer's per-process id         │ clear
    10+L     8     counter    uint64 big-endian, +1 per packet    │
    18+L     8     timestamp  float64 big-endian, ``now`` at seal ┘
    26+L     12    nonce      from ``random_bytes(12)``
    38+L     n     ciphertext AES-GCM of the payload under the primary key
    38+L+n   16    tag        GCM tag over the authenticated data and ciphertext

The key size (16, 24 or 32 bytes) picks AES-128/192/256; the format is the same.

Opening, and what each `Reason` means
=====================================

Checks run in this order; a packet is rejected with the first that fails, counted in
`SealStats` under that reason. Cheap checks come first, and nothing about a sender is
remembered until its packet has been authenticated.

The stale and replay checks read the clear header before authenticating it, so a forgery
may be counted as ``STALE`` or ``REPLAYED`` instead of ``UNAUTHENTICATED``; either way it
is dropped and changes no state.

1. ``TOO_SHORT`` if there are fewer than 2 bytes; ``UNKNOWN_VERSION`` if the first byte
   is neither format.
2. Plaintext: ``TOO_SHORT`` below the 6 fixed bytes, ``CORRUPT`` if the CRC does not
   match (checked before the label, so a damaged label counts as corruption),
   ``TOO_SHORT`` if the label runs past the payload, ``WRONG_LABEL``, then
   ``PLAINTEXT_REFUSED`` if this sealer has a keyring and ``accept_plaintext`` is off.
3. Sealed: ``WRONG_LABEL`` (read in clear, before any decryption; ``TOO_SHORT`` if the
   packet ends inside its label), ``TOO_SHORT`` below the fixed fields,
   ``UNAUTHENTICATED`` if this sealer has no keyring, ``STALE`` if the timestamp is
   outside ``[now - replay_window_s, now + replay_window_s]``, ``REPLAYED`` if the
   (sender_id, counter) was or may have been accepted already (see below), then
   ``UNAUTHENTICATED`` if no key opens it (the primary is tried first, then the others
   in order).

What it guarantees
==================

Sealed, an attacker without a key **cannot**: read a payload; forge or alter any byte of
a packet, the label and the replay header included (GCM bounds a forgery's chance per try
by about one in 2**128 per 16-byte block of the packet); move a packet into a cluster with
another label; get a packet accepted by a receiver outside its timestamp window; or get
one packet accepted twice by the same receiver while that receiver runs.

Such an attacker **can**: see the label, each packet's sender_id (a random id that links
the packets of one process), its counter (how many packets that process sealed), its
timestamp (the sender's clock) and its length; drop, delay (within the window) and reorder
packets; deliver a captured packet, once, to a member it was not addressed to (packets are
not bound to a destination); replay a packet captured in the last window to a receiver that
restarted since (its replay state is gone) unless that receiver was made with
``not_before`` set to its start time; and send garbage, each datagram of which costs the
receiver at most one AES-GCM attempt per key before it is dropped and counted.

Anyone with a key can do everything a member can: keys are shared by the cluster and the
sender_id is a replay namespace, not an identity.

Plaintext has integrity against accidents, not against attackers: CRC-32 catches every
error of 1 to 3 bits in a packet up to 11 KB, every burst up to 32 bits, and anything else
but for a 2**-32 chance, so a corrupted datagram is dropped, never decoded as news. The
label keeps two clusters apart. Nobody is authenticated: anyone can write a valid packet.

Replay protection, and the clock it needs
=========================================

A sealed packet is accepted only if its timestamp lies within ``replay_window_s`` (60 s by
default) of the receiver's ``now``, and within the window at most once per (sender_id,
counter): each tracked sender has an IPsec-style sliding bitmap ``replay_bitmap_bits``
(1,024) counters wide below the highest counter accepted from it. A counter below the
bitmap is rejected as replayed, so one sender's packets may arrive up to 1,023 of its
packets (to this receiver) out of order.

At most ``max_senders`` (16,384) senders are tracked, least recently accepted evicted
first. An eviction raises a floor to the evicted sender's last accepted timestamp; a sender
not tracked is accepted only with a timestamp above the floor and keeps the floor it was
admitted under, so no packet an evicted sender sent before its eviction is accepted
again. The cost: after evictions (more senders within one window than ``max_senders``,
which takes a flood by a key holder or a huge cluster), a new sender's packets timestamped
at or below the floor are dropped as replayed. The state is bounded: 280 to 420 bytes per
sender with the default bitmap (measured), under 7 MB at ``max_senders``.

So the timestamps are wall-clock times shared by the cluster (the runtime passes
``time.time()``; the simulator one virtual clock for every node), and **every member's
clock must agree with every other's to within the window minus the one-way delay**; a
member whose clock is off by more has its every packet dropped as ``STALE`` (watch that
counter; run NTP). A restarted process must use a new random sender_id: its counter starts
again at 0, below what receivers remember of its old id.

Nonces are 96 random bits (as in memberlist). After q packets sealed under one key,
cluster-wide, the chance that two share a nonce (which would expose those two payloads and
GCM's authentication key) is about q**2 / 2**97. NIST SP 800-38D caps random nonces at
2**32 packets per key (a chance under 2**-32); at 3,000 packets/s cluster-wide that is 16
days, so a busy cluster rotates its key within that (`Keyring` rotation has no downtime).

Streams
=======

A stream frame is sealed and opened by the same `Sealer` with the same calls: one frame per
direction, each sealed as one unit, inside the transport's length prefix (whose limit grows
by the overhead). Frames and datagrams share the sender's counter and the receiver's replay
state, so a datagram replayed as a frame, or a frame as a datagram, is caught too.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import attrs

from swim.security.keyring import Keyring, SecurityError

#: First byte of a plaintext packet (format version 1).
PLAINTEXT_V1: Final = 0xD1
#: First byte of a sealed packet (AES-GCM, format version 1).
SEALED_V1: Final = 0xD2
#: Longest cluster label, in bytes (it is sent with a one-byte length).
LABEL_MAX_BYTES: Final = 255
#: Size of the per-process sender id that names a replay namespace.
SENDER_ID_BYTES: Final = 8
#: Size of the replay header: sender id, counter (uint64), timestamp (float64).
REPLAY_HEADER_BYTES: Final = SENDER_ID_BYTES + 8 + 8
#: AES-GCM nonce size.
NONCE_BYTES: Final = 12
#: AES-GCM tag size.
TAG_BYTES: Final = 16
#: CRC-32 trailer of a plaintext packet.
CRC_BYTES: Final = 4
#: Bytes a plaintext packet adds to its payload, not counting the label itself.
PLAINTEXT_OVERHEAD: Final = 1 + 1 + CRC_BYTES
#: Bytes a sealed packet adds to its payload, not counting the label itself.
SEALED_OVERHEAD: Final = 1 + 1 + REPLAY_HEADER_BYTES + NONCE_BYTES + TAG_BYTES
#: Default half-width of the accepted timestamp window.
DEFAULT_REPLAY_WINDOW_S: Final = 60.0
#: Default width of each sender's replay bitmap, in counters.
DEFAULT_REPLAY_BITMAP_BITS: Final = 1024
#: Default number of senders whose replay state is kept.
DEFAULT_MAX_SENDERS: Final = 16384

_COUNTER_MAX: Final = (1 << 64) - 1
_COUNTER_TIMESTAMP = struct.Struct(">Qd")


class Reason(enum.Enum):
    """Why `Sealer.open_untrusted` rejected a packet (each is a `SealStats` counter)."""

    #: Shorter than its format's fixed fields or than its own label.
    TOO_SHORT = "too_short"
    #: The first byte is not a format this sealer knows.
    UNKNOWN_VERSION = "unknown_version"
    #: Another cluster's label.
    WRONG_LABEL = "wrong_label"
    #: A plaintext packet whose CRC-32 does not match: damaged in transit.
    CORRUPT = "corrupt"
    #: A plaintext packet, and this sealer has keys and does not accept plaintext.
    PLAINTEXT_REFUSED = "plaintext_refused"
    #: A sealed packet that no key of this sealer opens (or it has no keys).
    UNAUTHENTICATED = "unauthenticated"
    #: A sealed packet whose (sender_id, counter) was already accepted, or may have been.
    REPLAYED = "replayed"
    #: A sealed packet whose timestamp is outside the replay window.
    STALE = "stale"


class Rejected(Exception):
    """A packet `Sealer.open_untrusted` dropped: a peer's (or the network's) fault."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        #: Why it was dropped.
        self.reason: Final = reason


@attrs.define
class SealStats:
    """Counts of what a `Sealer` did, one counter per rejection reason."""

    #: Packets made by `Sealer.seal` (plaintext or sealed).
    sealed: int = 0
    #: Of those, plaintext ones.
    sent_plaintext: int = 0
    #: Packets `Sealer.open_untrusted` accepted (plaintext or sealed).
    opened: int = 0
    #: Of those, plaintext ones.
    opened_plaintext: int = 0
    #: Of those, sealed ones that a secondary key opened (zero for a while: the old key
    #: can be removed).
    opened_by_secondary: int = 0
    too_short: int = 0
    unknown_version: int = 0
    wrong_label: int = 0
    corrupt: int = 0
    plaintext_refused: int = 0
    unauthenticated: int = 0
    replayed: int = 0
    stale: int = 0

    @property
    def rejected(self) -> int:
        """Packets rejected, for every reason."""
        return sum(getattr(self, reason.value) for reason in Reason)

    def count(self, reason: Reason) -> int:
        """Packets rejected for *reason*."""
        value: int = getattr(self, reason.value)
        return value


def _label_bytes(label: object) -> bytes:
    if isinstance(label, str):
        raw = label.encode("utf-8")
    elif isinstance(label, bytes | bytearray | memoryview):
        raw = bytes(label)
    else:
        raise SecurityError(f"a label is str or bytes, not {type(label).__name__}")
    if len(raw) > LABEL_MAX_BYTES:
        raise SecurityError(f"a label is at most {LABEL_MAX_BYTES} bytes, not {len(raw)}")
    return raw


def _check_sender_id(_: object, __: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != SENDER_ID_BYTES:
        raise SecurityError(
            f"sender_id is {SENDER_ID_BYTES} bytes, fresh per process "
            "(e.g. os.urandom(8), or a seeded rng's randbytes(8) in the simulator)"
        )


def _check_positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise SecurityError(f"{attribute.name} must be positive and finite, not {value!r}")


@attrs.define(eq=False, slots=True)
class _SenderWindow:
    """Replay state of one sender: its sliding bitmap and timestamps."""

    #: Highest counter accepted.
    top: int
    #: Bit i set: counter ``top - i`` was accepted.
    bitmap: int
    #: Highest timestamp accepted.
    last_at: float
    #: Packets timestamped at or below this are refused (the floor when first admitted).
    floor: float


@attrs.define(eq=False, kw_only=True)
class Sealer:
    """Seals outgoing packets and opens incoming ones for one process.

    *keyring* ``None`` is plaintext mode: every packet is sent as plaintext and plaintext
    is accepted, whatever the switches say (as in memberlist). With a keyring,
    *send_plaintext* sends plaintext anyway and *accept_plaintext* accepts it too: the
    rolling upgrade is to give every member the keyring with both switches on, then turn
    *send_plaintext* off everywhere, then *accept_plaintext* off everywhere. The keyring
    and both switches may be changed at any time.

    *sender_id* must be fresh per process (8 random bytes); *random_bytes* supplies the
    nonces. *not_before* refuses sealed packets timestamped at or before it (pass the start
    time to refuse replays of packets captured before a restart).
    """

    keyring: Keyring | None
    sender_id: bytes = attrs.field(
        validator=_check_sender_id, on_setattr=attrs.setters.frozen
    )
    random_bytes: Callable[[int], bytes] = attrs.field(repr=False)
    label: bytes = attrs.field(
        default=b"", converter=_label_bytes, on_setattr=attrs.setters.frozen
    )
    accept_plaintext: bool = False
    send_plaintext: bool = False
    replay_window_s: float = attrs.field(
        default=DEFAULT_REPLAY_WINDOW_S, validator=_check_positive
    )
    replay_bitmap_bits: int = attrs.field(
        default=DEFAULT_REPLAY_BITMAP_BITS, on_setattr=attrs.setters.frozen
    )
    max_senders: int = attrs.field(
        default=DEFAULT_MAX_SENDERS, on_setattr=attrs.setters.frozen
    )
    not_before: float = attrs.field(default=-math.inf, on_setattr=attrs.setters.frozen)
    stats: SealStats = attrs.field(factory=SealStats)

    _counter: int = attrs.field(repr=False, default=0, init=False)
    _senders: OrderedDict[bytes, _SenderWindow] = attrs.field(
        repr=False, factory=OrderedDict, init=False
    )
    _floor: float = attrs.field(repr=False, default=-math.inf, init=False)
    #: Length byte and label, as on the wire.
    _label_field: bytes = attrs.field(repr=False, default=b"", init=False)
    _plain_prefix: bytes = attrs.field(repr=False, default=b"", init=False)
    _sealed_prefix: bytes = attrs.field(repr=False, default=b"", init=False)
    _bitmap_mask: int = attrs.field(repr=False, default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.replay_bitmap_bits < 1:
            raise SecurityError("replay_bitmap_bits must be at least 1")
        if self.max_senders < 1:
            raise SecurityError("max_senders must be at least 1")
        if math.isnan(self.not_before):
            raise SecurityError("not_before must be a number")
        self._floor = self.not_before
        self._label_field = bytes([len(self.label)]) + self.label
        self._plain_prefix = bytes([PLAINTEXT_V1]) + self._label_field
        self._sealed_prefix = bytes([SEALED_V1]) + self._label_field + self.sender_id
        self._bitmap_mask = (1 << self.replay_bitmap_bits) - 1

    @property
    def overhead(self) -> int:
        """Bytes `seal` adds to a payload in the current mode (label included).

        A packet budget that must hold across a switch of mode uses the sealed figure,
        ``SEALED_OVERHEAD + len(label)``.
        """
        if self.keyring is None or self.send_plaintext:
            return PLAINTEXT_OVERHEAD + len(self.label)
        return SEALED_OVERHEAD + len(self.label)

    @property
    def senders_tracked(self) -> int:
        """Senders whose replay state is held (at most ``max_senders``)."""
        return len(self._senders)

    # -- sealing ----------------------------------------------------------------------

    def seal(self, payload: bytes, *, now: float) -> bytes:
        """The packet carrying *payload*: sealed with the primary key, or plaintext."""
        ring = self.keyring
        stats = self.stats
        stats.sealed += 1
        if ring is None or self.send_plaintext:
            stats.sent_plaintext += 1
            body = self._plain_prefix + payload
            return body + zlib.crc32(body).to_bytes(CRC_BYTES, "big")
        counter = self._counter
        if counter > _COUNTER_MAX:
            raise SecurityError("this sealer's counter is exhausted; make a new sender_id")
        self._counter = counter + 1
        header = self._sealed_prefix + _COUNTER_TIMESTAMP.pack(counter, now)
        nonce = self.random_bytes(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise SecurityError(f"random_bytes({NONCE_BYTES}) returned {len(nonce)} bytes")
        return header + nonce + ring._aeads[0].encrypt(nonce, payload, header)

    # -- opening ----------------------------------------------------------------------

    def open_untrusted(self, data: bytes, *, now: float) -> bytes:
        """The payload of the packet *data*, or `Rejected` (counted in `stats`).

        Raises nothing but `Rejected`, whatever *data* holds.
        """
        if len(data) < 2:
            raise self._reject(Reason.TOO_SHORT)
        fmt = data[0]
        if fmt == SEALED_V1:
            return self._open_sealed(data, now)
        if fmt == PLAINTEXT_V1:
            return self._open_plaintext(data)
        raise self._reject(Reason.UNKNOWN_VERSION)

    def _open_plaintext(self, data: bytes) -> bytes:
        size = len(data)
        if size < PLAINTEXT_OVERHEAD:
            raise self._reject(Reason.TOO_SHORT)
        end = size - CRC_BYTES
        if zlib.crc32(memoryview(data)[:end]) != int.from_bytes(data[end:], "big"):
            raise self._reject(Reason.CORRUPT)
        start = 2 + data[1]
        if start > end:
            raise self._reject(Reason.TOO_SHORT)
        if data[1:start] != self._label_field:
            raise self._reject(Reason.WRONG_LABEL)
        if self.keyring is not None and not self.accept_plaintext:
            raise self._reject(Reason.PLAINTEXT_REFUSED)
        stats = self.stats
        stats.opened += 1
        stats.opened_plaintext += 1
        return bytes(data[start:end])

    def _open_sealed(self, data: bytes, now: float) -> bytes:
        size = len(data)
        field = self._label_field
        start = 1 + len(field)  # where the replay header begins
        if data[1:start] != field:
            if size < 2 + data[1]:
                raise self._reject(Reason.TOO_SHORT)
            raise self._reject(Reason.WRONG_LABEL)
        if size < start + REPLAY_HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
            raise self._reject(Reason.TOO_SHORT)
        ring = self.keyring
        if ring is None:
            raise self._reject(Reason.UNAUTHENTICATED)
        counter, stamp = _COUNTER_TIMESTAMP.unpack_from(data, start + SENDER_ID_BYTES)
        window = self.replay_window_s
        # Written so that a NaN timestamp fails too.
        if not now - window <= stamp <= now + window:
            raise self._reject(Reason.STALE)
        sender = bytes(data[start : start + SENDER_ID_BYTES])
        if self._replayed(sender, counter, stamp):
            raise self._reject(Reason.REPLAYED)
        # Only reached with a keyring, which has loaded cryptography already; plaintext
        # mode never imports it.
        from cryptography.exceptions import InvalidTag

        nonce_at = start + REPLAY_HEADER_BYTES
        view = memoryview(data)
        aad = view[:nonce_at]
        nonce = view[nonce_at : nonce_at + NONCE_BYTES]
        sealed = view[nonce_at + NONCE_BYTES :]
        for index, aead in enumerate(ring._aeads):
            try:
                payload = aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            self._accept(sender, counter, stamp)
            stats = self.stats
            stats.opened += 1
            if index:
                stats.opened_by_secondary += 1
            return payload
        raise self._reject(Reason.UNAUTHENTICATED)

    def _reject(self, reason: Reason) -> Rejected:
        attr = reason.value
        setattr(self.stats, attr, getattr(self.stats, attr) + 1)
        return Rejected(reason)

    # -- replay state -----------------------------------------------------------------

    def _replayed(self, sender: bytes, counter: int, stamp: float) -> bool:
        """Whether (sender, counter) was, or may have been, accepted already. Read-only."""
        window = self._senders.get(sender)
        if window is None:
            return stamp <= self._floor
        if stamp <= window.floor:
            return True
        behind = window.top - counter
        if behind < 0:
            return False
        if behind >= self.replay_bitmap_bits:
            return True
        return bool((window.bitmap >> behind) & 1)

    def _accept(self, sender: bytes, counter: int, stamp: float) -> None:
        """Remember an authenticated (sender, counter) as accepted."""
        senders = self._senders
        window = senders.get(sender)
        if window is None:
            if len(senders) >= self.max_senders:
                _, evicted = senders.popitem(last=False)
                # Every packet of the evicted sender accepted so far is timestamped at or
                # below its last_at; refusing unknown senders up to there keeps them out.
                self._floor = max(self._floor, evicted.last_at)
            senders[sender] = _SenderWindow(
                top=counter, bitmap=1, last_at=stamp, floor=self._floor
            )
            return
        senders.move_to_end(sender)
        ahead = counter - window.top
        if ahead > 0:
            if ahead < self.replay_bitmap_bits:
                window.bitmap = ((window.bitmap << ahead) | 1) & self._bitmap_mask
            else:
                window.bitmap = 1
            window.top = counter
        else:
            window.bitmap |= 1 << -ahead
        window.last_at = max(window.last_at, stamp)

"""The sealer: wire formats, every rejection reason, replay protection, rotation, upgrade.

Each test reads as a transcript: what one side seals, what the other side is handed, and
what it must return or why it must reject. Randomized tests use seeded sources only.
"""

from __future__ import annotations

import ast
import itertools
import math
import pathlib
import random
import struct
import zlib
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim.security import (
    DEFAULT_REPLAY_WINDOW_S,
    PLAINTEXT_OVERHEAD,
    PLAINTEXT_V1,
    SEALED_OVERHEAD,
    SEALED_V1,
    Keyring,
    Reason,
    Rejected,
    Sealer,
    SealStats,
    SecurityError,
)

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
K_OTHER = bytes(range(200, 232))
NOW = 1_700_000_000.0
WINDOW = DEFAULT_REPLAY_WINDOW_S

_ids = itertools.count(1)


def sealer(
    ring: Keyring | None,
    *,
    label: str | bytes = "prod",
    seed: int | None = None,
    **options: object,
) -> Sealer:
    """A sealer with a fresh sender id and a seeded nonce source."""
    n = next(_ids) if seed is None else seed
    rng = random.Random(n)
    return Sealer(
        keyring=ring,
        label=label,
        sender_id=n.to_bytes(8, "big"),
        random_bytes=rng.randbytes,
        **options,  # type: ignore[arg-type]
    )


def rejects(receiver: Sealer, data: bytes, now: float = NOW) -> Reason:
    """The reason *receiver* rejects *data*; fails if it accepts it."""
    with pytest.raises(Rejected) as info:
        receiver.open_untrusted(data, now=now)
    return info.value.reason


def only_count(stats: SealStats, reason: Reason) -> None:
    """*reason* was counted once and no other rejection was."""
    assert stats.count(reason) == 1
    assert stats.rejected == 1


# -- round trips and overhead ---------------------------------------------------------


@pytest.mark.parametrize("key_size", [16, 24, 32])
@pytest.mark.parametrize("size", [0, 1, 1400, 65_507])
def test_sealed_round_trip(key_size: int, size: int) -> None:
    ring = Keyring(bytes(range(key_size)))
    alice, bob = sealer(ring), sealer(ring)
    payload = random.Random(size).randbytes(size)
    packet = alice.seal(payload, now=NOW)
    assert packet[0] == SEALED_V1
    assert len(packet) == size + SEALED_OVERHEAD + len(b"prod") == size + alice.overhead
    assert payload not in packet or size < 2
    assert bob.open_untrusted(packet, now=NOW) == payload
    assert (alice.stats.sealed, bob.stats.opened, bob.stats.rejected) == (1, 1, 0)


@pytest.mark.parametrize("size", [0, 1, 1400, 65_507])
def test_plaintext_round_trip(size: int) -> None:
    alice, bob = sealer(None), sealer(None)
    payload = random.Random(size).randbytes(size)
    packet = alice.seal(payload, now=NOW)
    assert packet[0] == PLAINTEXT_V1
    assert len(packet) == size + PLAINTEXT_OVERHEAD + 4 == size + alice.overhead
    assert bob.open_untrusted(packet, now=NOW) == payload
    assert (alice.stats.sent_plaintext, bob.stats.opened_plaintext) == (1, 1)


def test_overhead_constants() -> None:
    # Budgeted by the core: plaintext 6 + label, sealed 54 + label.
    assert PLAINTEXT_OVERHEAD == 6
    assert SEALED_OVERHEAD == 54
    assert sealer(Keyring(K1), label="").overhead == 54
    assert sealer(Keyring(K1), label="x" * 255).overhead == 54 + 255
    assert sealer(Keyring(K1), send_plaintext=True).overhead == 6 + 4
    assert sealer(None, label=b"").overhead == 6


def test_sealed_layout_matches_the_documented_diagram() -> None:
    # Parse a packet by the module docstring alone and open it with a bare AES-GCM.
    alice = sealer(Keyring(K1), label="blue")
    packet = alice.seal(b"payload", now=NOW + 0.25)
    assert packet[0] == 0xD2 and packet[1] == 4 and packet[2:6] == b"blue"
    assert packet[6:14] == alice.sender_id
    counter, stamp = struct.unpack(">Qd", packet[14:30])
    assert (counter, stamp) == (0, NOW + 0.25)
    nonce, sealed = packet[30:42], packet[42:]
    assert AESGCM(K1).decrypt(nonce, sealed, packet[:30]) == b"payload"
    assert struct.unpack(">Q", alice.seal(b"", now=NOW)[14:22]) == (1,)


def test_plaintext_layout_matches_the_documented_diagram() -> None:
    packet = sealer(None, label="blue").seal(b"payload", now=NOW)
    assert packet[:6] == b"\xd1\x04blue"
    assert packet[6:-4] == b"payload"
    assert packet[-4:] == zlib.crc32(packet[:-4]).to_bytes(4, "big")


def nonces() -> Callable[[int], bytes]:
    """A fixed nonce source for golden vectors: 0x01 * 12, then 0x02 * 12, ..."""
    count = itertools.count(1)
    return lambda n: bytes([next(count)]) * n


GOLDEN_SEALED = [
    "d206676f6c64656e0102030405060708000000000000000041d954fc40200000"
    "0101010101010101010101011fa6895907a94815a33d0a5a91be08b3753282fd"
    "bd06700d29c614",
    "d206676f6c64656e0102030405060708000000000000000141d954fc40500000"
    "020202020202020202020202b95a487f8aeabc26049c75221a478836",
]


def test_golden_sealed_vectors() -> None:
    ring = Keyring(K1)
    alice = Sealer(
        keyring=ring, label="golden", sender_id=bytes.fromhex("0102030405060708"),
        random_bytes=nonces(),
    )
    first = alice.seal(b"hello, swim", now=1_700_000_000.5)
    second = alice.seal(b"", now=1_700_000_001.25)
    assert [first.hex(), second.hex()] == GOLDEN_SEALED
    bob = sealer(ring, label="golden")
    assert bob.open_untrusted(first, now=1_700_000_000.5) == b"hello, swim"
    assert bob.open_untrusted(second, now=1_700_000_000.5) == b""


def test_golden_aes128_vector() -> None:
    alice = Sealer(
        keyring=Keyring(bytes(range(16))), sender_id=bytes.fromhex("0102030405060708"),
        random_bytes=lambda n: b"\x03" * n,
    )
    assert alice.seal(b"hello, swim", now=0.0).hex() == (
        "d200010203040506070800000000000000000000000000000000030303030303"
        "03030303030314907cfb096273e17a530e7222f5b3866d5d5c2d507e20d6750c7c"
    )


def test_golden_plaintext_vectors() -> None:
    assert sealer(None, label="golden").seal(b"hello, swim", now=0).hex() == (
        "d106676f6c64656e68656c6c6f2c207377696de08714b2"
    )
    assert sealer(None, label="").seal(b"", now=0).hex() == "d100d9fae6a1"


# -- every rejection reason, from a real packet -----------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\xd1", b"\xd2", b"\xd1\x00\x00", b"\xd1\x00\x00\x00\x00"],
    ids=["empty", "plain-1", "sealed-1", "plain-3", "plain-5"],
)
def test_too_short_fixed(data: bytes) -> None:
    bob = sealer(Keyring(K1), accept_plaintext=True)
    assert rejects(bob, data) is Reason.TOO_SHORT
    only_count(bob.stats, Reason.TOO_SHORT)


def test_too_short_sealed_truncations() -> None:
    ring = Keyring(K1)
    packet = sealer(ring).seal(b"", now=NOW)
    for cut in range(2, len(packet)):
        bob = sealer(ring)
        reason = rejects(bob, packet[:cut])
        # Cut inside the label, or anywhere before the tag is complete.
        assert reason is (Reason.TOO_SHORT if cut < len(packet) else Reason.UNAUTHENTICATED)
    assert sealer(ring).open_untrusted(packet, now=NOW) == b""


def test_too_short_plaintext_label_past_the_end() -> None:
    # A valid CRC over a packet whose label length runs past the payload.
    body = b"\xd1\x09prod"
    packet = body + zlib.crc32(body).to_bytes(4, "big")
    bob = sealer(None)
    assert rejects(bob, packet) is Reason.TOO_SHORT
    only_count(bob.stats, Reason.TOO_SHORT)


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\x01\x80",  # a bare codec datagram (CBOR array) from a node that does not frame
        b"\x00\x00" + bytes(100),
        b"\xd3\x04prod" + bytes(80),
        b"\xf4\x04prod" + bytes(80),  # memberlist's label byte
    ],
    ids=["cbor", "zeros", "next-version", "memberlist-label"],
)
def test_unknown_version(data: bytes) -> None:
    bob = sealer(Keyring(K1), accept_plaintext=True)
    assert rejects(bob, data) is Reason.UNKNOWN_VERSION
    only_count(bob.stats, Reason.UNKNOWN_VERSION)


@pytest.mark.parametrize("keyed", [True, False], ids=["with-keys", "without-keys"])
@pytest.mark.parametrize(
    ("ours", "theirs"), [("prod", "test"), ("prod", ""), ("", "prod"), ("prod", "prod2")]
)
def test_wrong_label(keyed: bool, ours: str, theirs: str) -> None:
    ring = Keyring(K1) if keyed else None
    alice = sealer(ring, label=theirs)
    bob = sealer(ring, label=ours)
    assert rejects(bob, alice.seal(b"news", now=NOW)) is Reason.WRONG_LABEL
    only_count(bob.stats, Reason.WRONG_LABEL)


def test_wrong_label_plaintext_to_keyed_receiver() -> None:
    alice = sealer(None, label="test")
    bob = sealer(Keyring(K1), label="prod", accept_plaintext=True)
    assert rejects(bob, alice.seal(b"news", now=NOW)) is Reason.WRONG_LABEL


def test_label_as_str_or_bytes_is_the_same() -> None:
    alice = sealer(Keyring(K1), label="prod")
    bob = sealer(Keyring(K1), label=b"prod")
    assert bob.label == alice.label == b"prod"
    assert bob.open_untrusted(alice.seal(b"x", now=NOW), now=NOW) == b"x"
    utf8 = sealer(None, label="ünïcode")
    assert utf8.label == "ünïcode".encode()


def test_corrupt_plaintext() -> None:
    alice, bob = sealer(None), sealer(None)
    packet = bytearray(alice.seal(b"alive member-7 incarnation 3", now=NOW))
    packet[12] ^= 0x01
    assert rejects(bob, bytes(packet)) is Reason.CORRUPT
    only_count(bob.stats, Reason.CORRUPT)


def test_corrupt_label_of_plaintext_counts_as_corrupt() -> None:
    packet = bytearray(sealer(None).seal(b"x", now=NOW))
    packet[3] ^= 0x20  # "prod" -> "pRod"
    bob = sealer(None)
    assert rejects(bob, bytes(packet)) is Reason.CORRUPT


def test_plaintext_refused_by_keyed_receiver() -> None:
    alice = sealer(None)
    bob = sealer(Keyring(K1))  # accept_plaintext defaults to off
    assert rejects(bob, alice.seal(b"news", now=NOW)) is Reason.PLAINTEXT_REFUSED
    only_count(bob.stats, Reason.PLAINTEXT_REFUSED)


def test_unauthenticated_other_key() -> None:
    alice, bob = sealer(Keyring(K_OTHER)), sealer(Keyring(K1, [K2]))
    assert rejects(bob, alice.seal(b"news", now=NOW)) is Reason.UNAUTHENTICATED
    only_count(bob.stats, Reason.UNAUTHENTICATED)


def test_unauthenticated_at_a_keyless_receiver() -> None:
    alice, bob = sealer(Keyring(K1)), sealer(None)
    assert rejects(bob, alice.seal(b"news", now=NOW)) is Reason.UNAUTHENTICATED


@pytest.mark.parametrize(
    "offset",
    [6, 13, 14, 21, 28, 29, 30, 41, 42, -17, -16, -1],
    ids=lambda o: f"byte{o}",
)
def test_unauthenticated_tampered(offset: int) -> None:
    # Sender id, counter, low bits of the timestamp, nonce, ciphertext and tag are all
    # authenticated; a change to any of them fails the tag.
    ring = Keyring(K1)
    packet = bytearray(sealer(ring).seal(b"0123456789abcdef", now=NOW))
    packet[offset] ^= 0x01
    bob = sealer(ring)
    assert rejects(bob, bytes(packet)) is Reason.UNAUTHENTICATED
    only_count(bob.stats, Reason.UNAUTHENTICATED)
    assert bob.senders_tracked == 0  # nothing remembered of a forgery


def test_replayed_capture() -> None:
    ring = Keyring(K1)
    alice, bob = sealer(ring), sealer(ring)
    packet = alice.seal(b"dead member-3", now=NOW)
    assert bob.open_untrusted(packet, now=NOW) == b"dead member-3"
    assert rejects(bob, packet, now=NOW + 1) is Reason.REPLAYED
    assert rejects(bob, packet, now=NOW + WINDOW) is Reason.REPLAYED
    assert (bob.stats.replayed, bob.stats.rejected, bob.stats.opened) == (2, 2, 1)


def test_replay_after_the_window_is_stale() -> None:
    ring = Keyring(K1)
    alice, bob = sealer(ring), sealer(ring)
    packet = alice.seal(b"dead member-3", now=NOW)
    bob.open_untrusted(packet, now=NOW)
    assert rejects(bob, packet, now=NOW + WINDOW + 0.001) is Reason.STALE
    # Also at a receiver that never saw it (or restarted since).
    carol = sealer(ring)
    assert rejects(carol, packet, now=NOW + WINDOW + 0.001) is Reason.STALE
    only_count(carol.stats, Reason.STALE)


@pytest.mark.parametrize(
    ("sent_at", "accepted"),
    [
        (NOW - WINDOW, True),
        (NOW + WINDOW, True),
        (NOW - WINDOW - 0.01, False),
        (NOW + WINDOW + 0.01, False),
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
    ],
)
def test_timestamp_window(sent_at: float, accepted: bool) -> None:
    ring = Keyring(K1)
    packet = sealer(ring).seal(b"x", now=sent_at)
    bob = sealer(ring)
    if accepted:
        assert bob.open_untrusted(packet, now=NOW) == b"x"
    else:
        assert rejects(bob, packet) is Reason.STALE


def test_window_is_configurable() -> None:
    ring = Keyring(K1)
    bob = sealer(ring, replay_window_s=5.0)
    assert rejects(bob, sealer(ring).seal(b"x", now=NOW - 6)) is Reason.STALE
    assert bob.open_untrusted(sealer(ring).seal(b"x", now=NOW - 4), now=NOW) == b"x"


def test_not_before_refuses_captures_from_before_a_restart() -> None:
    ring = Keyring(K1)
    captured = sealer(ring).seal(b"old news", now=NOW - 10)
    restarted = sealer(ring, not_before=NOW - 1)
    assert rejects(restarted, captured) is Reason.REPLAYED
    assert restarted.open_untrusted(sealer(ring).seal(b"new", now=NOW), now=NOW) == b"new"


# -- the sliding window -----------------------------------------------------------------


def test_out_of_order_within_the_bitmap_is_accepted_once() -> None:
    ring = Keyring(K1)
    alice = sealer(ring)
    bob = sealer(ring, replay_bitmap_bits=8)
    packets = [alice.seal(bytes([i]), now=NOW) for i in range(20)]
    assert bob.open_untrusted(packets[10], now=NOW) == b"\x0a"
    for i in range(3, 10):  # 1..7 behind the top: inside an 8-wide bitmap
        assert bob.open_untrusted(packets[i], now=NOW) == bytes([i])
    for i in range(3, 11):
        assert rejects(bob, packets[i]) is Reason.REPLAYED
    assert rejects(bob, packets[2]) is Reason.REPLAYED  # 8 behind: below the bitmap
    # A jump further than the bitmap forgets everything below the new top.
    assert bob.open_untrusted(packets[19], now=NOW) == b"\x13"
    assert rejects(bob, packets[11]) is Reason.REPLAYED
    assert bob.open_untrusted(packets[12], now=NOW) == b"\x0c"


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.lists(st.integers(0, 39), min_size=1, max_size=120),
    width=st.sampled_from([1, 2, 8, 64]),
)
def test_bitmap_against_a_model(order: list[int], width: int) -> None:
    # The model: accept counter c iff not seen before and c > highest seen - width.
    ring = Keyring(K1)
    alice = sealer(ring, seed=1)
    packets = [alice.seal(bytes([i]), now=NOW) for i in range(40)]
    bob = sealer(ring, seed=2, replay_bitmap_bits=width)
    seen: set[int] = set()
    top = -1
    for c in order:
        expect = c not in seen and c > top - width
        try:
            bob.open_untrusted(packets[c], now=NOW)
            got = True
        except Rejected as exc:
            assert exc.reason is Reason.REPLAYED
            got = False
        assert got == expect, (c, sorted(seen), top)
        if got:
            seen.add(c)
            top = max(top, c)


# -- bounded sender state -------------------------------------------------------------


def test_eviction_raises_a_floor_so_evicted_senders_stay_protected() -> None:
    ring = Keyring(K1)
    a, b, c, d = (sealer(ring) for _ in range(4))
    bob = sealer(ring, max_senders=2)
    a_old = a.seal(b"a0", now=NOW + 1)
    bob.open_untrusted(a_old, now=NOW + 1)
    bob.open_untrusted(b.seal(b"b0", now=NOW + 2), now=NOW + 2)
    bob.open_untrusted(c.seal(b"c0", now=NOW + 3), now=NOW + 3)  # evicts a: floor = NOW + 1
    assert bob.senders_tracked == 2
    assert rejects(bob, a_old, now=NOW + 3) is Reason.REPLAYED  # a is forgotten, not reopened
    # a comes back with a newer packet (evicting b: floor = NOW + 2) ...
    assert bob.open_untrusted(a.seal(b"a1", now=NOW + 4), now=NOW + 4) == b"a1"
    # ... and its old packet, inside its new bitmap, is still refused by its floor.
    assert rejects(bob, a_old, now=NOW + 4) is Reason.REPLAYED
    # A new sender whose clock is behind the floor is refused until it passes it.
    assert rejects(bob, d.seal(b"d0", now=NOW + 1.5), now=NOW + 4) is Reason.REPLAYED
    assert bob.open_untrusted(d.seal(b"d1", now=NOW + 4), now=NOW + 4) == b"d1"
    assert bob.senders_tracked == 2
    assert bob.stats.replayed == 3


def test_least_recently_accepted_sender_is_evicted() -> None:
    ring = Keyring(K1)
    a, b, c = (sealer(ring) for _ in range(3))
    bob = sealer(ring, max_senders=2)
    bob.open_untrusted(a.seal(b"", now=NOW), now=NOW)
    bob.open_untrusted(b.seal(b"", now=NOW), now=NOW)
    bob.open_untrusted(a.seal(b"", now=NOW), now=NOW)  # a is now the most recent
    b_late = b.seal(b"", now=NOW + 0.5)
    bob.open_untrusted(c.seal(b"", now=NOW + 1), now=NOW + 1)  # evicts b
    # a is still tracked (an out-of-order packet of a opens); b is not.
    a_next = a.seal(b"a", now=NOW + 1)
    assert bob.open_untrusted(a_next, now=NOW + 1) == b"a"
    assert bob.open_untrusted(b_late, now=NOW + 1) == b""  # above the floor: readmitted


@settings(max_examples=80, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["send", "drop", "replay"]), st.integers(0, 4),
                  st.floats(0, 2)),
        min_size=1, max_size=80,
    ),
    max_senders=st.integers(1, 3),
    width=st.sampled_from([1, 4]),
)
def test_no_packet_is_ever_accepted_twice(
    ops: list[tuple[str, int, float]], max_senders: int, width: int
) -> None:
    # Senders, deliveries, losses and replays in any order, with eviction pressure: every
    # accepted (sender, counter) is accepted once. Time stays inside the window.
    ring = Keyring(K1)
    senders = [sealer(ring, seed=10 + i) for i in range(5)]
    bob = sealer(ring, seed=99, max_senders=max_senders, replay_bitmap_bits=width)
    now = NOW
    captured: list[bytes] = []
    accepted: set[bytes] = set()
    for op, who, step in ops:
        now += step
        if op == "replay" and captured:
            packet = captured[who % len(captured)]
        else:
            packet = senders[who].seal(b"", now=now)
            captured.append(packet)
            if op == "drop":
                continue
        try:
            bob.open_untrusted(packet, now=now)
        except Rejected as exc:
            assert exc.reason is Reason.REPLAYED
            continue
        key = packet[6:22]  # sender id and counter
        assert key not in accepted
        accepted.add(key)
    assert bob.senders_tracked <= max_senders


# -- bit flips and arbitrary bytes ----------------------------------------------------


def flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=300)
@given(
    payload=st.binary(max_size=1500),
    bits=st.lists(st.integers(0, 8 * 1600), min_size=1, max_size=3, unique=True),
    keyed=st.booleans(),
)
def test_bit_flips_anywhere_are_rejected(payload: bytes, bits: list[int], keyed: bool) -> None:
    ring = Keyring(K1) if keyed else None
    packet = sealer(ring, seed=1).seal(payload, now=NOW)
    positions = {(b // 8) % len(packet) * 8 + b % 8 for b in bits}
    damaged = flip(packet, sorted(positions))
    if damaged == packet:
        return  # flips that cancel out
    bob = sealer(ring, seed=2, accept_plaintext=True)
    with pytest.raises(Rejected):
        bob.open_untrusted(damaged, now=NOW)
    assert bob.stats.opened == 0


def receivers() -> Iterator[Sealer]:
    yield sealer(None, seed=1)
    yield sealer(Keyring(K1), seed=2)
    yield sealer(Keyring(K1, [K2]), seed=3, accept_plaintext=True)
    yield sealer(Keyring(K1), seed=4, label="")


@settings(max_examples=400)
@given(data=st.binary(max_size=300), now=st.floats(allow_nan=True, allow_infinity=True))
def test_arbitrary_bytes_raise_only_rejected(data: bytes, now: float) -> None:
    for bob in receivers():
        try:
            bob.open_untrusted(data, now=now)
        except Rejected as exc:
            assert isinstance(exc.reason, Reason)


@settings(max_examples=400)
@given(
    fmt=st.sampled_from([PLAINTEXT_V1, SEALED_V1]),
    label=st.sampled_from([b"", b"prod", b"prod2", bytes(255)]),
    tail=st.binary(max_size=200),
    stamp=st.floats(allow_nan=True, allow_infinity=True),
    fix_crc=st.booleans(),
)
def test_well_framed_garbage_raises_only_rejected(
    fmt: int, label: bytes, tail: bytes, stamp: float, fix_crc: bool
) -> None:
    # Past the cheap checks: right format, label, a timestamp, and (plaintext) a valid CRC.
    data = bytes([fmt, len(label)]) + label
    if fmt == SEALED_V1:
        data += tail[:16] + struct.pack(">d", stamp) + tail[16:]
    else:
        data += tail
        if fix_crc:
            data += zlib.crc32(data).to_bytes(4, "big")
    for bob in receivers():
        try:
            bob.open_untrusted(data, now=stamp)
        except Rejected:
            pass
        else:
            assert fmt == PLAINTEXT_V1 and fix_crc


def test_accepts_buffers_other_than_bytes() -> None:
    ring = Keyring(K1)
    packet = sealer(ring).seal(b"x", now=NOW)
    assert sealer(ring).open_untrusted(memoryview(packet), now=NOW) == b"x"  # type: ignore[arg-type]
    assert sealer(ring).open_untrusted(bytearray(packet), now=NOW) == b"x"  # type: ignore[arg-type]


# -- key rotation ---------------------------------------------------------------------


def test_older_key_opens_after_use_and_fails_after_remove() -> None:
    old_ring = Keyring(K1)
    laggard = sealer(old_ring)  # a member that has not switched yet
    ring = Keyring(K1)
    alice, bob = sealer(ring), sealer(ring)
    ring.install(K2)
    ring.use(K2)
    assert bob.open_untrusted(alice.seal(b"new key", now=NOW), now=NOW) == b"new key"
    assert bob.open_untrusted(laggard.seal(b"old key", now=NOW), now=NOW) == b"old key"
    assert bob.stats.opened_by_secondary == 1
    ring.remove(K1)
    assert rejects(bob, laggard.seal(b"old key", now=NOW)) is Reason.UNAUTHENTICATED
    assert bob.open_untrusted(alice.seal(b"new key", now=NOW), now=NOW) == b"new key"


def test_rotation_across_members_has_no_gap() -> None:
    # Serf's order: install everywhere, use everywhere, remove everywhere; members switch
    # one at a time and every packet between any two of them opens throughout.
    rings = [Keyring(K1) for _ in range(3)]
    nodes = [sealer(r) for r in rings]
    now = NOW

    def everyone_talks() -> None:
        nonlocal now
        now += 0.1
        for a, b in itertools.permutations(nodes, 2):
            assert b.open_untrusted(a.seal(b"ping", now=now), now=now) == b"ping"

    for step in ("install", "use", "remove"):
        for ring in rings:
            if step == "install":
                ring.install(K2)
            elif step == "use":
                ring.use(K2)
            else:
                ring.remove(K1)
            everyone_talks()
    assert all(r.keys == (K2,) for r in rings)
    assert sum(n.stats.rejected for n in nodes) == 0


# -- rolling upgrade from plaintext ---------------------------------------------------


def test_rolling_upgrade_from_plaintext() -> None:
    # memberlist's GossipVerifyIncoming/Outgoing path: keys with both switches on, then
    # send_plaintext off everywhere, then accept_plaintext off everywhere.
    old = sealer(None)  # still plaintext
    new = sealer(None)
    now = NOW

    def exchange(a: Sealer, b: Sealer) -> bytes:
        nonlocal now
        now += 0.01
        return b.open_untrusted(a.seal(b"gossip", now=now), now=now)

    assert exchange(old, new) == exchange(new, old) == b"gossip"
    # Step 1: new gets the key, still sends plaintext and accepts it.
    new.keyring = Keyring(K1)
    new.accept_plaintext = new.send_plaintext = True
    assert exchange(old, new) == exchange(new, old) == b"gossip"
    # Step 1 on old too.
    old.keyring = Keyring(K1)
    old.accept_plaintext = old.send_plaintext = True
    # Step 2: new starts sealing; old (keyed, accepting plaintext) opens both.
    new.send_plaintext = False
    assert exchange(new, old) == exchange(old, new) == b"gossip"
    assert old.stats.opened_plaintext == 2 and new.stats.opened_plaintext == 3
    old.send_plaintext = False
    # Step 3: both refuse plaintext; the cluster is sealed.
    new.accept_plaintext = old.accept_plaintext = False
    assert exchange(new, old) == exchange(old, new) == b"gossip"
    stranger = sealer(None)
    assert rejects(old, stranger.seal(b"forged", now=now)) is Reason.PLAINTEXT_REFUSED
    assert (old.stats.rejected, new.stats.rejected) == (1, 0)


def test_plaintext_sender_to_sealed_receiver_with_accept_plaintext() -> None:
    plain = sealer(None)
    keyed = sealer(Keyring(K1), accept_plaintext=True)
    assert keyed.open_untrusted(plain.seal(b"hi", now=NOW), now=NOW) == b"hi"
    keyed.accept_plaintext = False
    assert rejects(keyed, plain.seal(b"hi", now=NOW)) is Reason.PLAINTEXT_REFUSED


def test_keyless_sealer_ignores_the_switches() -> None:
    alice = sealer(None, send_plaintext=False, accept_plaintext=False)
    bob = sealer(None, accept_plaintext=False)
    packet = alice.seal(b"x", now=NOW)
    assert packet[0] == PLAINTEXT_V1
    assert bob.open_untrusted(packet, now=NOW) == b"x"


def test_keyring_changes_are_seen_at_once() -> None:
    ring = Keyring(K_OTHER)
    alice, bob = sealer(Keyring(K1)), sealer(ring)
    assert rejects(bob, alice.seal(b"x", now=NOW)) is Reason.UNAUTHENTICATED
    ring.install(K1)
    assert bob.open_untrusted(alice.seal(b"x", now=NOW), now=NOW) == b"x"


# -- streams --------------------------------------------------------------------------


def test_a_stream_frame_is_sealed_like_a_datagram() -> None:
    ring = Keyring(K1)
    alice, bob = sealer(ring), sealer(ring)
    frame = random.Random(3).randbytes(2 * 1024 * 1024)  # a large push-pull frame
    datagram = alice.seal(b"ping", now=NOW)
    sealed_frame = alice.seal(frame, now=NOW)
    assert bob.open_untrusted(sealed_frame, now=NOW) == frame
    assert bob.open_untrusted(datagram, now=NOW) == b"ping"  # out of order, once
    assert rejects(bob, sealed_frame) is Reason.REPLAYED


# -- configuration errors (the caller's) ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label": "x" * 256}, "at most 255 bytes"),
        ({"label": 5}, "str or bytes"),
        ({"sender_id": b"short"}, "sender_id is 8 bytes"),
        ({"sender_id": "8 chars!"}, "sender_id is 8 bytes"),
        ({"replay_window_s": 0.0}, "positive"),
        ({"replay_window_s": math.nan}, "positive"),
        ({"replay_window_s": math.inf}, "positive"),
        ({"replay_bitmap_bits": 0}, "at least 1"),
        ({"max_senders": 0}, "at least 1"),
        ({"not_before": math.nan}, "a number"),
    ],
)
def test_configuration_errors(options: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "keyring": Keyring(K1), "sender_id": bytes(8), "random_bytes": random.Random(0).randbytes,
    }
    with pytest.raises(SecurityError, match=message):
        Sealer(**(base | options))  # type: ignore[arg-type]


def test_label_and_sender_id_are_fixed_after_creation() -> None:
    import attrs

    bob = sealer(None)
    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        bob.label = b"other"
    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        bob.sender_id = bytes(8)


def test_bad_nonce_source_is_a_caller_error() -> None:
    alice = Sealer(keyring=Keyring(K1), sender_id=bytes(8), random_bytes=lambda n: b"\x00")
    with pytest.raises(SecurityError, match="returned 1 bytes"):
        alice.seal(b"x", now=NOW)


def test_rejected_carries_its_reason() -> None:
    exc = Rejected(Reason.STALE)
    assert exc.reason is Reason.STALE and str(exc) == "stale"
    assert not issubclass(Rejected, SecurityError)
    assert {r.value for r in Reason} <= set(attrs_fields(SealStats))


def attrs_fields(cls: type) -> list[str]:
    import attrs

    return [f.name for f in attrs.fields(cls)]


# -- purity ---------------------------------------------------------------------------

SECURITY = pathlib.Path(__file__).resolve().parent.parent / "swim" / "security"
#: Modules that must stay sans-IO: no I/O, clock, threads or unseeded randomness.
SANS_IO = ["keyring.py", "seal.py"]
FORBIDDEN = frozenset({
    "os", "time", "datetime", "random", "secrets", "socket", "trio", "asyncio", "threading",
    "io", "pathlib", "tempfile", "shutil", "subprocess", "uuid", "logging", "sys",
})


@pytest.mark.parametrize("name", SANS_IO)
def test_sealing_modules_are_sans_io(name: str) -> None:
    tree = ast.parse((SECURITY / name).read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [node.module or ""] if (node.module or "").split(".")[0] in FORBIDDEN else []
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "print", "__import__", "exec", "eval"}
        ):
            found.append(node.func.id)
    assert found == []

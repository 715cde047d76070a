"""The wire codec: round trips, packet capacity, and hostile input.

`decode_untrusted` must return messages or raise `MalformedMessage`, nothing else, for
any bytes at all; and every bound (sizes, counts, depth, ranges, types) is enforced.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import cbor2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from swim.core import Config, Core
from swim.core.codec import (
    DATAGRAM_OVERHEAD,
    MAX_INCARNATION,
    MAX_MESSAGES,
    MAX_SEQ,
    MalformedMessage,
    assemble,
    decode_untrusted,
    encode,
    encode_message,
    message_kind,
)
from swim.core.messages import (
    Ack,
    Alive,
    Dead,
    MemberState,
    MemberStatus,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    UserBroadcast,
    UserMessage,
)
from tests.drain import out_datagrams

# --------------------------------------------------------------------------- strategies

names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
) | st.sampled_from(["node-0042", "x" * 255, "ünïcödé-名前"])
hosts = st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str)
addrs = st.tuples(hosts, st.integers(1, 65535))
incarnations = st.integers(0, MAX_INCARNATION)
seqs = st.integers(0, MAX_SEQ)
payloads = st.binary(max_size=300)
metas = st.binary(max_size=512)
states = st.builds(
    MemberState, names, addrs, incarnations, st.sampled_from(list(MemberStatus)), metas
)
alive_states = st.builds(
    MemberState, names, addrs, incarnations, st.just(MemberStatus.ALIVE), metas
)

datagram_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, seqs, names),
    st.builds(PingReq, seqs, names, addrs, st.booleans()),
    st.builds(Ack, seqs),
    st.builds(Nack, seqs),
    st.builds(Alive, alive_states),
    st.builds(Suspect, names, incarnations, names),
    st.builds(Dead, names, incarnations, names),
    st.builds(UserBroadcast, names, incarnations, payloads),
    st.builds(UserMessage, names, payloads),
)
push_pulls = st.builds(PushPull, st.booleans(), st.lists(states, max_size=5).map(tuple))


@given(st.lists(datagram_messages, min_size=0, max_size=8))
def test_datagram_round_trip(messages: list[Message]) -> None:
    assert decode_untrusted(encode(messages)) == tuple(messages)


@given(st.lists(datagram_messages | push_pulls, min_size=1, max_size=4))
def test_stream_round_trip(messages: list[Message]) -> None:
    assert decode_untrusted(encode(messages), stream=True) == tuple(messages)


def test_round_trip_extremes() -> None:
    msgs: list[Message] = [
        Ping(MAX_SEQ, "n"),
        Ack(0),
        PingReq(0, "x" * 255, ("::1", 65535), False),
        Alive(MemberState("n", ("255.255.255.255", 1), MAX_INCARNATION, meta=b"m" * 512)),
        Dead("é" * 127, MAX_INCARNATION, "a"),
        UserBroadcast("o", MAX_INCARNATION, b""),
    ]
    assert decode_untrusted(encode(msgs)) == tuple(msgs)
    # IPv6 literals are normalised by the packing: the canonical form comes back.
    (alive,) = decode_untrusted(encode([Alive(MemberState("n", ("0:0::1", 5), 0))]))
    assert alive == Alive(MemberState("n", ("::1", 5), 0))


def test_assemble_equals_encode() -> None:
    msgs: list[Message] = [Ping(1, "a"), Suspect("b", 2, "c"), Ack(3)]
    assert assemble([encode_message(m) for m in msgs]) == encode(msgs)
    many = [Ack(i) for i in range(300)]  # 2-byte array header
    assert decode_untrusted(encode(many)) == tuple(many)


def test_message_kind_names() -> None:
    assert message_kind(Ping(1, "a")) == "ping"
    assert message_kind(PushPull(True, ())) == "push_pull"


# ----------------------------------------------------------------------- packet capacity


def realistic_alive(i: int) -> Alive:
    return Alive(MemberState(f"node-{i:04d}", (f"10.0.{i // 250}.{i % 250 + 1}", 7946), 0))


def test_alive_updates_per_1400_byte_datagram() -> None:
    """How much membership news one datagram carries (memberlist fits about 15-20)."""
    config = Config.lan()
    core = Core(config, name="node-0000", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    # 300 members' Alive news queued (as after a large join), then one ping to answer.
    for start in range(1, 301, 50):
        core.receive_datagram(encode([realistic_alive(i) for i in range(start, start + 50)]),
                              ("10.0.0.2", 7946), now=0.0)
    out_datagrams(core)
    core.receive_datagram(encode([Ping(123_456_789, "node-0000")]), ("10.0.0.2", 7946), now=0.0)
    (ack,) = out_datagrams(core)
    alive = [m for m in ack.messages if isinstance(m, Alive)]
    assert len(ack.data) <= config.packet_budget
    # Each update is 22 bytes: [4, "node-0042", 0, h'0a000001', 7946, h''].
    assert len(encode_message(realistic_alive(42))) == 22
    # The Ack carries our network coordinate: 7 bytes plus 46 for the coordinate, so
    # (1400 - 4 overhead - 53 for the Ack) // 22 = 61 updates ride on one ack (a gossip
    # packet, with no probe message, carries 63).
    ack_bytes = len(encode_message(ack.messages[0]))
    assert ack_bytes == 7 + 46
    assert len(alive) == (config.packet_budget - DATAGRAM_OVERHEAD - ack_bytes) // 22 == 61
    # And the budget is used: no room left for one more update.
    assert config.packet_budget - len(ack.data) < 22


# -------------------------------------------------------------------------- hostile input


def frame(*items: object) -> bytes:
    return cbor2.dumps([1, *items])


HOST = b"\x0a\x00\x00\x01"

HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "one byte": b"\x81",
    "not an array": cbor2.dumps({"a": 1}),
    "empty array": b"\x80",
    "wrong version": cbor2.dumps([2, [2, 1]]),
    "version as float": cbor2.dumps([1.0, [2, 1]]),
    "version as bool": cbor2.dumps([True, [2, 1]]),
    "trailing bytes": frame([2, 1]) + b"\x00",
    "two top-level items": frame([2, 1]) + frame([2, 1]),
    "truncated": frame([0, 1, "abc"])[:-1],
    "array claims 2**60 items": b"\x9b" + struct.pack(">Q", 1 << 60),
    "inner array claims 2**32 items": b"\x82\x01\x9b" + struct.pack(">Q", 1 << 32),
    "bytes claim 2**60": b"\x82\x01\x5b" + struct.pack(">Q", 1 << 60),
    "text claims 2**60": b"\x82\x01\x7b" + struct.pack(">Q", 1 << 60),
    "map claims 2**40": b"\x82\x01\xbb" + struct.pack(">Q", 1 << 40),
    "deep nesting": b"\x82\x01" + b"\x81" * 10_000 + b"\x00",
    "nesting just over the cap": b"\x82\x01" + b"\x81" * 5 + b"\x00",
    "indefinite array": b"\x9f\x01\x82\x02\x01\xff",
    "indefinite bytes": b"\x82\x01\x84\x08\x61a\x5f\x41a\xff",
    "tag 1 (datetime)": b"\x82\x01\x82\x02\xc1\x01",
    "tag 2 (bignum seq)": b"\x82\x01\x82\x02\xc2\x41\x01",
    "tag 28 (shareable)": b"\x82\x01\xd8\x1c\x82\x02\x01",
    "tag 55799 (self-describe)": b"\xd9\xd9\xf7" + frame([2, 1]),
    "tag 258 (set)": b"\x82\x01\xd9\x01\x02\x81\x01",
    "unknown tag 9999": b"\x82\x01\xd9\x27\x0f\x01",
    "undefined simple": b"\x82\x01\x82\x02\xf7",
    "float seq": frame([2, 1.0]),
    "NaN seq": frame([2, float("nan")]),
    "bool seq": frame([2, True]),
    "negative seq": frame([2, -1]),
    "seq 2**32": frame([2, 1 << 32]),
    "incarnation 2**63": frame([5, "a", 1 << 63, "b"]),
    "incarnation -1": frame([6, "a", -1, "b"]),
    "port 0": frame([4, "a", 0, HOST, 0, b""]),
    "port 65536": frame([4, "a", 0, HOST, 65536, b""]),
    "host as text": frame([4, "a", 0, "10.0.0.1", 7946, b""]),
    "host 5 bytes": frame([4, "a", 0, b"\x01\x02\x03\x04\x05", 7946, b""]),
    "meta 513 bytes": frame([4, "a", 0, HOST, 7946, b"m" * 513]),
    "meta as text": frame([4, "a", 0, HOST, 7946, "meta"]),
    "empty name": frame([0, 1, ""]),
    "name 256 bytes": frame([0, 1, "x" * 256]),
    "name 128 two-byte chars": frame([0, 1, "é" * 128]),
    "name as bytes": frame([0, 1, b"abc"]),
    "bad UTF-8": b"\x82\x01\x83\x00\x01\x62\xc3\x28",
    "lone surrogate UTF-8": b"\x82\x01\x83\x00\x01\x63\xed\xa0\x80",
    "unknown kind": frame([42, 1]),
    "kind as float": frame([0.0, 1, "a"]),
    "kind as bool": frame([True, 1, "a", HOST, 7946, True]),
    "kind as text": frame(["ping", 1, "a"]),
    "message not an array": frame(7),
    "empty message": frame([]),
    "ack with extra field": frame([2, 1, 2]),
    "ping missing target": frame([0, 1]),
    "nack flag not bool": frame([1, 1, "a", HOST, 7946, 1]),
    "push-pull in a datagram": frame([9, True, []]),
    "broadcast payload as text": frame([7, "o", 1, "payload"]),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_datagram_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_untrusted(data)


STREAM_HOSTILE: dict[str, bytes] = {
    "unknown status": frame([9, True, [["a", 0, 4, HOST, 7946, b""]]]),
    "status as bool": frame([9, True, [["a", 0, True, HOST, 7946, b""]]]),
    "member not array": frame([9, True, ["a"]]),
    "member 5 fields": frame([9, True, [["a", 0, 0, HOST, 7946]]]),
    "members not array": frame([9, True, {"a": 1}]),
    "join not bool": frame([9, 1, []]),
    "too many messages": assemble([encode_message(Ack(1))] * (MAX_MESSAGES + 1)),
}


@pytest.mark.parametrize("data", STREAM_HOSTILE.values(), ids=STREAM_HOSTILE.keys())
def test_hostile_stream_frame_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_untrusted(data, stream=True)


def test_size_limits() -> None:
    with pytest.raises(MalformedMessage):
        decode_untrusted(b"\x00" * 65_508)
    big = encode([UserMessage("a", b"x" * 60_000)])
    assert len(decode_untrusted(big)) == 1
    with pytest.raises(MalformedMessage):
        decode_untrusted("not bytes")
    # Any bytes-like input is accepted.
    view = memoryview(encode([Ack(1)]))
    assert decode_untrusted(view) == (Ack(1),)


def test_maximum_message_count_is_accepted() -> None:
    data = assemble([encode_message(Ack(1))] * MAX_MESSAGES)
    assert len(decode_untrusted(data, stream=True)) == MAX_MESSAGES


def test_encoding_a_bad_host_is_the_callers_error() -> None:
    with pytest.raises(ValueError):
        encode([PingReq(1, "a", ("example.com", 1), True)])


# ------------------------------------------------------------------------------- fuzz

VALID = [
    encode([Ping(7, "node-1"), Alive(MemberState("node-2", ("10.0.0.2", 7946), 3, meta=b"m"))]),
    encode([Suspect("a", 1, "b"), Dead("c", 2, "d"), UserBroadcast("e", 5, b"hi")]),
    encode([PingReq(1, "t", ("fe80::1", 9), True), Nack(2), UserMessage("s", b"p")]),
    encode([PushPull(False, (MemberState("x", ("10.0.0.1", 1), 1, MemberStatus.DEAD),))]),
]


def outcome(data: bytes, stream: bool) -> tuple[Message, ...] | None:
    try:
        return decode_untrusted(data, stream=stream)
    except MalformedMessage:
        return None


@settings(max_examples=2000)
@given(st.binary(max_size=200), st.booleans())
@example(b"\x82\x01\x82\xfb\x00\x00\x00\x00\x00\x00\x00\x00\x01", False)
def test_fuzz_random_bytes(data: bytes, stream: bool) -> None:
    result = outcome(data, stream)
    assert result is None or isinstance(result, tuple)


@settings(max_examples=2000)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 3),
    st.booleans(),
)
def test_fuzz_mutated_valid_frames(
    base: bytes, edits: list[tuple[int, int]], truncate: int, stream: bool
) -> None:
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    mutated = bytes(data[: len(data) - truncate])
    result = outcome(mutated, stream)
    if result is not None:
        # Whatever decodes is a valid value that encodes back to a decodable frame.
        assert decode_untrusted(encode(result), stream=True) == result


@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65_535, 65_536])
@pytest.mark.parametrize("join", [True, False])
@pytest.mark.parametrize("replay", [0, 1, 30])
def test_push_pull_fast_path_is_byte_identical_to_cbor2(n: int, join: bool, replay: int) -> None:
    states = tuple(
        MemberState(f"m{i}", ("10.0.0.1", 7946), i, MemberStatus(i % 4), b"x" * (i % 3))
        for i in range(n)
    )
    broadcasts = tuple(UserBroadcast("o", i, b"p" * i) for i in range(replay))
    msg = PushPull(join, states, broadcasts)
    # The format, built here from the codec's description rather than by the codec:
    # [9, join, [[name, incarnation, status, packed host, port, meta]...],
    #  [[7, origin, id, payload]...]], the last item left out when there is no broadcast.
    items: list[object] = [
        9,
        join,
        [
            [m.name, m.incarnation, int(m.status), ipaddress.ip_address(m.addr[0]).packed,
             m.addr[1], m.meta]
            for m in states
        ],
    ]
    if broadcasts:
        items.append([[7, b.origin, b.id, b.payload] for b in broadcasts])
    expected = cbor2.dumps(items)
    assert encode_message(msg) == expected
    # Twice: the second time comes from the per-state cache.
    assert encode_message(msg) == expected


def test_ping_names_its_source_when_known() -> None:
    named = Ping(5, "b", "a")
    assert decode_untrusted(encode([named])) == (named,)
    anonymous = Ping(5, "b")
    assert decode_untrusted(encode([anonymous])) == (anonymous,)
    assert len(encode([named])) == len(encode([anonymous])) + 2  # "a": 1 header + 1 byte


@pytest.mark.parametrize(
    "frame",
    [
        # An ack whose seq is 2,000,000 empty arrays (found by the fuzzer at 33.5M: cbor2
        # built the whole tree first, 2.5 GB, before any field was checked).
        bytes.fromhex("82 01 82 02 9a") + (2_000_000).to_bytes(4, "big") + b"\x80" * 2_000_000,
        # 700,000 acks in one frame.
        bytes.fromhex("9a") + (700_001).to_bytes(4, "big") + b"\x01"
        + bytes.fromhex("820200") * 700_000,
        # A declared array far longer than the frame.
        bytes.fromhex("82 01 9b") + (2**60).to_bytes(8, "big"),
    ],
    ids=["empty-arrays", "many-acks", "long-declared"],
)
def test_a_hostile_stream_frame_is_refused_before_it_is_built(frame: bytes) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessage):
            decode_untrusted(frame, stream=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # bytes: nothing of the frame's tree was built

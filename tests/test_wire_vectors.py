"""Golden wire vectors: each message kind and a multi-message datagram, byte for byte.

These pin the format described in `swim.core.codec`: a datagram (or stream frame) is
the CBOR array ``[VERSION, message, ...]``, each message the positional array
``[kind, field, ...]``, hosts packed IPv4 (4 bytes) or IPv6 (16 bytes). A change that
breaks one of them breaks every deployed peer: bump `VERSION` instead of editing a vector.

The hex was produced once by the codec and then checked by hand against that format;
the comment above each vector reads its bytes. CBOR reminders (RFC 8949): ``8n`` is an
array of n items, ``6n`` a text string of n bytes, ``4n`` a byte string of n bytes,
``00``-``17`` the integers 0-23, ``18 xx`` / ``19 xxxx`` / ``1a xxxxxxxx`` /
``1b xxxxxxxxxxxxxxxx`` larger unsigned integers, ``f4`` false and ``f5`` true.
"""

from __future__ import annotations

import pytest

from swim.core.codec import VERSION, MalformedMessage, decode_untrusted, encode, encode_message
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
    Refusal,
    StableAlert,
    StableAlerts,
    StableVote,
    Suspect,
    UserBroadcast,
    UserMessage,
    ViewDigest,
    ViewSync,
)

PORT = 7946  # 0x1f0a, so every port below reads "19 1f0a"

A = MemberState(name="a", addr=("10.0.0.1", PORT), incarnation=3, meta=b"role=web")

#: (id, message, its encoding as one item of a datagram): every kind, and its variants.
MESSAGES: list[tuple[str, Message, str]] = [
    # [0, seq, target]: 83 array(3) | 00 kind ping | 07 seq 7 | 61 62 "b"
    ("ping", Ping(seq=7, target="b"), "83 00 07 6162"),
    # [0, seq, target, source]: the prober's name is a fourth item only when known.
    ("ping-with-source", Ping(seq=7, target="b", source="a"), "84 00 07 6162 6161"),
    # [1, seq, target, host, port, nack]: 86 array(6) | 01 kind ping-req | 08 seq |
    # 61 63 "c" | 44 0a000003 bytes(4) 10.0.0.3 | 19 1f0a port 7946 | f5 nack true
    (
        "ping-req-ipv4",
        PingReq(seq=8, target="c", target_addr=("10.0.0.3", PORT), nack=True),
        "86 01 08 6163 44 0a000003 19 1f0a f5",
    ),
    # 50 + 16 bytes: an IPv6 host 2001:db8::3; f4 nack false
    (
        "ping-req-ipv6",
        PingReq(seq=9, target="c", target_addr=("2001:db8::3", PORT), nack=False),
        "86 01 09 6163 50 20010db8000000000000000000000003 19 1f0a f4",
    ),
    # [1, seq, target, host, port, nack, source]: 87 array(7); the requester's name is a
    # seventh item when given (helpers serve only members they know)
    (
        "ping-req-with-source",
        PingReq(seq=8, target="c", target_addr=("10.0.0.3", PORT), nack=True, source="a"),
        "87 01 08 6163 44 0a000003 19 1f0a f5 6161",
    ),
    # [2, seq] and [3, seq]
    ("ack", Ack(seq=7), "82 02 07"),
    ("nack", Nack(seq=8), "82 03 08"),
    # The largest seq, 2**32 - 1, in its 4-byte form.
    ("ack-max-seq", Ack(seq=2**32 - 1), "82 02 1a ffffffff"),
    # [4, name, incarnation, host, port, meta]: 61 61 "a" | 03 incarnation |
    # 44 0a000001 10.0.0.1 | 19 1f0a | 48 "role=web" as bytes(8). No status: always alive.
    ("alive-with-meta", Alive(member=A), "86 04 6161 03 44 0a000001 19 1f0a 48 726f6c653d776562"),
    # [5, name, incarnation, accuser]: "a" suspects "b" at incarnation 2
    ("suspect", Suspect(name="b", incarnation=2, accuser="a"), "84 05 6162 02 6161"),
    # The largest incarnation, 2**63 - 1, in its 8-byte form.
    (
        "suspect-max-incarnation",
        Suspect(name="b", incarnation=2**63 - 1, accuser="a"),
        "84 05 6162 1b 7fffffffffffffff 6161",
    ),
    # [6, name, incarnation, accuser]
    ("dead", Dead(name="b", incarnation=2, accuser="c"), "84 06 6162 02 6163"),
    # A leave is a Dead whose accuser is the member itself.
    ("left", Dead(name="b", incarnation=3, accuser="b"), "84 06 6162 03 6162"),
    # [7, origin, id, payload]: 42 6869 b"hi"
    ("user-broadcast", UserBroadcast(origin="a", id=5, payload=b"hi"), "84 07 6161 05 42 6869"),
    # [8, source, payload]: 45 68656c6c6f b"hello"
    ("user-message", UserMessage(source="a", payload=b"hello"), "83 08 6161 45 68656c6c6f"),
    # Stable views. [14, config id, observer, subject, up, [ring, ...]]: 86 array(6) |
    # 0e kind alert | 05 config id | 6161 "a" | 6162 "b" | f4 down | 82 00 03 rings 0, 3
    ("stable-alert", StableAlert(config_id=5, observer="a", subject="b", up=False,
                                 rings=(0, 3)), "86 0e 05 6161 6162 f4 82 00 03"),
    # [18, config id, subject, up, rings bitmap]: 85 array(5) | 12 kind alert bundle |
    # 05 config id | 6162 "b" | f4 down | 09 rings 0 and 3 (0b1001): the subject's
    # observers on those rings (in configuration 5) reported it
    ("stable-alerts", StableAlerts(config_id=5, subject="b", up=False, rings=0b1001),
     "85 12 05 6162 f4 09"),
    # Ring 63 of 64 as well: 1b 8000000000000009, a 64-bit bitmap
    ("stable-alerts-ring-63", StableAlerts(config_id=5, subject="b", up=True,
                                           rings=(1 << 63) | 0b1001),
     "85 12 05 6162 f5 1b 8000000000000009"),
    # [15, config id, [[name, up], ...], voters]: 84 | 0f kind vote | 05 |
    # 82 two entries: 82 6162 f4 ("b" leaves), 82 6163 f5 ("c" joins) |
    # 41 05 bitmap(1): members 0 and 2 of the configuration voted for it
    ("stable-vote", StableVote(config_id=5, cut=(("b", False), ("c", True)), voters=b"\x05"),
     "84 0f 05 82 82 6162 f4 82 6163 f5 41 05"),
    # A later voting round is a fifth item: 85 | ... | 02 round 2
    ("stable-vote-round-2",
     StableVote(config_id=5, cut=(("b", False),), voters=b"\x05", round=2),
     "85 0f 05 81 82 6162 f4 41 05 02"),
    # [16, config id, epoch, evidence]: 84 | 10 kind digest | 05 | 02 | 07 alerts + votes
    ("view-digest", ViewDigest(config_id=5, epoch=2, evidence=7), "84 10 05 02 07"),
    # [17, config id, epoch, part, parts, [name, ...]]: 86 | 11 kind sync | 05 | 02 |
    # 00 part 0 | 01 of 1 | 82 6161 6162 "a", "b"
    ("view-sync", ViewSync(config_id=5, epoch=2, part=0, parts=1, names=("a", "b")),
     "86 11 05 02 00 01 82 6161 6162"),
]

#: Push-pull exchanges, valid in stream frames only.
PUSH_PULLS: list[tuple[str, PushPull, str]] = [
    # [9, join, [state, ...]], each state [name, incarnation, status, host, port, meta]:
    # 83 array(3) | 09 kind push-pull | f5 join true | 82 two states:
    #   86 | 6161 "a" | 03 inc | 00 alive | 44 0a000001 | 19 1f0a | 40 no meta
    #   86 | 6162 "b" | 02 inc | 01 suspect | 50 2001:db8::2 | 19 1f0a | 41 78 b"x"
    # No broadcasts: the fourth item is left out, not sent empty.
    (
        "push-pull-join",
        PushPull(
            join=True,
            members=(
                MemberState(name="a", addr=("10.0.0.1", PORT), incarnation=3),
                MemberState(
                    name="b",
                    addr=("2001:db8::2", PORT),
                    incarnation=2,
                    status=MemberStatus.SUSPECT,
                    meta=b"x",
                ),
            ),
        ),
        "83 09 f5 82"
        " 86 6161 03 00 44 0a000001 19 1f0a 40"
        " 86 6162 02 01 50 20010db8000000000000000000000002 19 1f0a 4178",
    ),
    # [9, join, [state, ...], [broadcast, ...]]: 84 array(4) | 09 | f4 join false |
    # 82 two states, dead (02) and left (03) | 81 one replayed [7, "a", 5, b"hi"]
    (
        "push-pull-with-broadcasts",
        PushPull(
            join=False,
            members=(
                MemberState(
                    name="c", addr=("10.0.0.3", PORT), incarnation=1, status=MemberStatus.DEAD
                ),
                MemberState(
                    name="d", addr=("10.0.0.4", PORT), incarnation=4, status=MemberStatus.LEFT
                ),
            ),
            broadcasts=(UserBroadcast(origin="a", id=5, payload=b"hi"),),
        ),
        "84 09 f4 82"
        " 86 6163 01 02 44 0a000003 19 1f0a 40"
        " 86 6164 04 03 44 0a000004 19 1f0a 40"
        " 81 84 07 6161 05 42 6869",
    ),
]

#: A probe with piggybacked news, as the core sends them: 84 array(4) | 01 version |
#: then the three messages' encodings, concatenated.
MULTI_MESSAGES: list[Message] = [
    Ping(seq=7, target="b", source="a"),
    Alive(member=A),
    Suspect(name="c", incarnation=1, accuser="a"),
]
MULTI_GOLDEN = (
    "84 01"
    " 84 00 07 6162 6161"
    " 86 04 6161 03 44 0a000001 19 1f0a 48 726f6c653d776562"
    " 84 05 6163 01 6161"
)


def test_the_version_is_one() -> None:
    # Every vector below starts with it; a new version needs new vectors.
    assert VERSION == 1
    assert encode([]) == bytes.fromhex("81 01")
    assert decode_untrusted(bytes.fromhex("81 01")) == ()


@pytest.mark.parametrize(("message", "golden"), [pytest.param(m, g, id=i) for i, m, g in MESSAGES])
def test_datagram_messages(message: Message, golden: str) -> None:
    item = bytes.fromhex(golden)
    datagram = bytes.fromhex("82 01") + item  # [VERSION, message]
    assert encode_message(message) == item
    assert encode([message]) == datagram
    assert decode_untrusted(datagram) == (message,)
    assert decode_untrusted(datagram, stream=True) == (message,)  # streams carry them too


@pytest.mark.parametrize(
    ("message", "golden"), [pytest.param(m, g, id=i) for i, m, g in PUSH_PULLS]
)
def test_push_pull_frames(message: PushPull, golden: str) -> None:
    item = bytes.fromhex(golden)
    frame = bytes.fromhex("82 01") + item
    assert encode_message(message) == item
    assert encode([message]) == frame
    assert encode([message]) == frame  # again: the second time from cached state encodings
    assert decode_untrusted(frame, stream=True) == (message,)
    with pytest.raises(MalformedMessage):
        decode_untrusted(frame)  # never in a datagram


def test_refusal_is_a_stream_answer_only() -> None:
    # [10, name, host, port]: 84 array(4) | 0a kind refusal | 61 61 "a" | 44 0a000001 | 19 1f0a
    message = Refusal(name="a", addr=("10.0.0.1", PORT))
    frame = bytes.fromhex("82 01 84 0a 6161 44 0a000001 19 1f0a")
    assert encode([message]) == frame
    assert decode_untrusted(frame, stream=True) == (message,)
    with pytest.raises(MalformedMessage):
        decode_untrusted(frame)


def test_multi_message_datagram() -> None:
    golden = bytes.fromhex(MULTI_GOLDEN)
    assert encode(MULTI_MESSAGES) == golden
    assert decode_untrusted(golden) == tuple(MULTI_MESSAGES)
    # The datagram is its messages' encodings behind one header: nothing is re-encoded.
    assert golden == bytes.fromhex("84 01") + b"".join(map(encode_message, MULTI_MESSAGES))

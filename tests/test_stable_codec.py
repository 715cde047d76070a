"""The stable-view messages on the wire: round trips, bounds, and malformed input
dropped as `MalformedMessage` (never another error)."""

from __future__ import annotations

import cbor2
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from swim.core.codec import (
    MAX_INCARNATION,
    MAX_SYNC_NAMES,
    MalformedMessage,
    decode_untrusted,
    encode,
    message_kind,
)
from swim.core.messages import (
    Message,
    StableAlert,
    StableAlerts,
    StableVote,
    ViewDigest,
    ViewSync,
)

names = st.text(min_size=1, max_size=20)
ids = st.integers(0, MAX_INCARNATION)
cuts = st.dictionaries(names, st.booleans(), max_size=20).map(
    lambda d: tuple(sorted(d.items()))
)


@st.composite
def syncs(draw: st.DrawFn) -> ViewSync:
    parts = draw(st.integers(1, 50))
    return ViewSync(draw(ids), draw(ids), draw(st.integers(0, parts - 1)), parts,
                    tuple(draw(st.lists(names, max_size=30))))


stable_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(StableAlert, ids, names, names, st.booleans(),
              st.lists(st.integers(0, 63), max_size=10).map(tuple)),
    st.builds(StableAlerts, ids, names, st.booleans(), st.integers(1, (1 << 64) - 1)),
    st.builds(StableVote, ids, cuts, st.binary(max_size=40), st.integers(1, MAX_INCARNATION)),
    st.builds(ViewDigest, ids, ids, ids),
    syncs(),
)


@given(st.lists(stable_messages, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_round_trip(messages: list[Message]) -> None:
    assert decode_untrusted(encode(messages)) == tuple(messages)


def test_kind_names() -> None:
    assert message_kind(ViewDigest(1, 1)) == "view_digest"
    assert message_kind(StableVote(1, (), b"")) == "stable_vote"
    assert message_kind(StableAlerts(1, "a", False, 1)) == "stable_alerts"


def frame(*items: object) -> bytes:
    return cbor2.dumps([1, list(items)])


@pytest.mark.parametrize("data", [
    frame(14, 1, "a", "b", False, [64]),            # ring out of range
    frame(14, 1, "a", "b", False, list(range(65))),  # too many rings
    frame(14, 1, "a", "b", 0, [0]),                  # up must be a boolean
    frame(14, -1, "a", "b", False, [0]),             # negative configuration id
    frame(14, 1, "", "b", False, [0]),               # empty observer
    frame(18, 1, "b", False, 0),                      # a bundle of no ring
    frame(18, 1, "b", False, 1 << 64),                # ring 64 of at most 64
    frame(18, 1, "b", False, -1),                     # a negative bitmap
    frame(18, 1, "b", False, [0, 3]),                 # a bitmap, not a list
    frame(18, 1, "b", 1, 9),                          # up must be a boolean
    frame(18, 1, "", False, 9),                       # empty subject
    frame(18, 1, "b", False),                         # wrong arity
    frame(18, 1, "b", False, 9, 1),                   # wrong arity
    frame(15, 1, [["c", True], ["b", False]], b""),   # cut not sorted
    frame(15, 1, [["b", True], ["b", False]], b""),   # a member twice
    frame(15, 1, [["b"]], b""),                       # not a pair
    frame(15, 1, [["b", True]] * 300, b""),           # too many entries
    frame(15, 1, [["b", True]], "voters"),            # the bitmap is bytes
    frame(15, 1, [["b", True]], b"", 0),              # rounds start at 1
    frame(16, 1, 1),                                  # wrong arity
    frame(17, 1, 1, 2, 2, ["a"]),                     # part past the parts
    frame(17, 1, 1, 0, 2000, ["a"]),                  # too many parts
    frame(17, 1, 1, 0, 1, ["a"] * (MAX_SYNC_NAMES + 1)),
    frame(17, 1, 1, 0, 1, [3]),                       # a name must be text
])
def test_malformed_stable_messages_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_untrusted(data)


@given(st.lists(stable_messages, min_size=1, max_size=3), st.data())
@settings(max_examples=150, deadline=None)
def test_mutated_frames_decode_or_raise_malformed_only(
    messages: list[Message], data: st.DataObject
) -> None:
    raw = bytearray(encode(messages))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = decode_untrusted(bytes(raw))
    except MalformedMessage:
        return
    # Whatever decodes re-encodes to the same bytes (canonical form, nothing lost).
    assert encode(out) == bytes(raw) or decode_untrusted(encode(out)) == out

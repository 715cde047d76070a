"""A configuration split into `ViewSync` parts and put back together: any names, parts
that fit a datagram, and refusals for what does not add up."""

from __future__ import annotations

import random

import hypothesis.strategies as st
from hypothesis import given, settings

from swim.core.codec import DATAGRAM_OVERHEAD, decode_untrusted, encode, encode_message
from swim.core.messages import ViewSync
from swim.core.stable.rings import Configuration
from swim.core.stable.sync import SyncAssembly, sync_parts

NAMES = st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=300, unique=True)


@given(NAMES, st.integers(1, 1000), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_parts_in_any_order_give_back_the_configuration(
    names: list[str], epoch: int, rng: random.Random
) -> None:
    conf = Configuration.of(names, epoch)
    parts = sync_parts(conf)
    assert [p.part for p in parts] == list(range(len(parts)))
    for p in parts:
        assert len(encode_message(p)) + DATAGRAM_OVERHEAD <= 1400
        assert decode_untrusted(encode([p])) == (p,)
    shuffled = list(parts)
    rng.shuffle(shuffled)
    assembly = SyncAssembly()
    results = [assembly.add(p) for p in shuffled]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == conf and assembly.rejected == 0


def test_long_names_still_fit() -> None:
    conf = Configuration.of([("é" * 127) + str(i) for i in range(50)], 2)
    for p in sync_parts(conf):
        assert len(encode_message(p)) + DATAGRAM_OVERHEAD <= 1400


def test_a_whole_that_does_not_match_its_id_is_refused() -> None:
    conf = Configuration.of(["a", "b", "c"], 4)
    (part,) = sync_parts(conf)
    assembly = SyncAssembly()
    assert assembly.add(ViewSync(conf.id, 4, 0, 1, ("a", "b"))) is None
    assert assembly.add(ViewSync(conf.id, 4, 0, 1, ("a", "b", "b", "c"))) is None
    assert assembly.rejected == 2
    assert assembly.add(part) == conf


def test_an_older_configuration_does_not_interrupt_a_newer_one() -> None:
    new = Configuration.of([f"n{i}" for i in range(200)], 9)
    old = Configuration.of([f"n{i}" for i in range(150)], 8)
    new_parts, old_parts = sync_parts(new), sync_parts(old)
    assert len(new_parts) > 1
    assembly = SyncAssembly()
    assert assembly.add(new_parts[0]) is None
    assert assembly.add(old_parts[0]) is None  # refused: older than the one in progress
    assert assembly.rejected == 1
    results = [assembly.add(p) for p in new_parts[1:]]
    assert results[-1] == new

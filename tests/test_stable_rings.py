"""The K-ring overlay and configuration ids of the stable-view mode."""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from swim.core.stable import Configuration, Rings, config_id, rings_of

NAMES = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True)


@given(NAMES, st.integers(0, 1000), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_config_id_is_independent_of_order_and_tied_to_epoch(
    names: list[str], epoch: int, rng: random.Random
) -> None:
    shuffled = list(names)
    rng.shuffle(shuffled)
    assert config_id(names, epoch) == config_id(shuffled, epoch)
    assert Configuration.of(shuffled, epoch) == Configuration.of(names, epoch)
    assert config_id(names, epoch) != config_id(names, epoch + 1)
    if len(names) > 1:
        assert config_id(names[1:], epoch) != config_id(names, epoch)


def test_config_id_separates_names_that_concatenate_alike() -> None:
    assert config_id(["ab", "c"], 0) != config_id(["a", "bc"], 0)


@given(NAMES, st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_observers_and_subjects_mirror_each_other_on_every_ring(
    names: list[str], k: int
) -> None:
    conf = Configuration.of(names)
    rings = Rings(conf, k)
    for name in conf.members:
        observers = rings.observers_of(name)
        subjects = rings.subjects_of(name)
        if len(conf) == 1:
            assert observers == () and subjects == ()
            continue
        assert len(observers) == len(subjects) == k
        for i in range(k):
            assert observers[i] != name and subjects[i] != name
            # The observer of my subject on ring i is me; my observer's subject is me.
            assert rings.observers_of(subjects[i])[i] == name
            assert rings.subjects_of(observers[i])[i] == name
        for i in range(k):
            assert sorted(rings.ring(i)) == list(conf.members)


def test_rings_are_deterministic_and_differ_from_each_other() -> None:
    names = [f"node-{i}" for i in range(50)]
    a = Rings(Configuration.of(names), 10)
    b = Rings(Configuration.of(reversed(names)), 10)
    for i in range(10):
        assert a.ring(i) == b.ring(i)
    assert len({tuple(a.ring(i)) for i in range(10)}) == 10
    # Pseudo-random: a member's observers are spread, not always the same one.
    assert len(set(a.observers_of("node-7"))) > 5


def test_outsiders_get_the_members_that_would_precede_them() -> None:
    names = [f"node-{i}" for i in range(30)]
    conf = Configuration.of(names)
    rings = rings_of(conf, 10)
    temporary = rings.observers_of("joiner")
    assert len(temporary) == 10 and all(t in conf for t in temporary)
    # Once the joiner is in, the same members are its observers.
    grown = rings_of(conf.apply([("joiner", True)]), 10)
    assert grown.observers_of("joiner") == temporary
    assert rings.rings_observed_by(temporary[0], "joiner")[0] == 0
    assert rings.subjects_of("joiner") == ()


def test_apply_moves_to_the_next_epoch_with_the_cut_applied() -> None:
    conf = Configuration.of(["a", "b", "c"], 4)
    nxt = conf.apply([("b", False), ("d", True)])
    assert nxt.members == ("a", "c", "d") and nxt.epoch == 5
    assert nxt.id == config_id(["d", "c", "a"], 5)
    assert "b" not in nxt and "d" in nxt


def test_cache_returns_the_same_overlay_and_rejects_bad_k() -> None:
    conf = Configuration.of(["a", "b"])
    assert rings_of(conf, 3) is rings_of(conf, 3)
    with pytest.raises(ValueError, match="rings"):
        Rings(conf, 0)
    with pytest.raises(ValueError, match="epoch"):
        Configuration.of(["a"], -1)

"""Tables for every formula in swim.core.timing, and Config's named profiles.

Expected values are computed by hand from REFERENCE.md's formulas (memberlist's util.go
and suspicion.go), not by calling the code under test.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swim.core import Config
from swim.core.awareness import Awareness
from swim.core.timing import (
    awareness_delta_for_failed_probe,
    awareness_scaled_s,
    push_pull_scale,
    remaining_suspicion_time_s,
    retransmit_limit,
    suspicion_confirmations_needed,
    suspicion_timeout_min_s,
)

# ------------------------------------------------------------------ suspicion timeout

# n = 128: log10(128) = 2.10721; min = 4 * 2.10721 * 1 s; max = 6 * min; K = 2.
MIN_128 = 4 * 2.1072099696478683
# n = 1000: log10(1000) = 3 exactly; min = 12 s, max = 72 s.
MIN_1000 = 12.0


@pytest.mark.parametrize(
    ("n", "expected_min"),
    [(1, 4.0), (2, 4.0), (10, 4.0), (11, 4 * 1.0413926851582251), (128, MIN_128),
     (1000, MIN_1000)],
)
def test_suspicion_min_lan(n: int, expected_min: float) -> None:
    assert suspicion_timeout_min_s(4, n, 1.0) == pytest.approx(expected_min)


def test_suspicion_min_wan_scales_with_interval() -> None:
    # WAN: mult 6, T = 5 s, n = 1000: 6 * 3 * 5 = 90 s.
    assert suspicion_timeout_min_s(6, 1000, 5.0) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("mult", "n", "k"),
    [(4, 1, 0), (4, 2, 0), (4, 3, 0), (4, 4, 2), (4, 128, 2), (4, 1000, 2),
     (6, 5, 0), (6, 6, 4), (3, 3, 1), (2, 100, 0), (1, 100, 0)],
)
def test_confirmations_needed(mult: int, n: int, k: int) -> None:
    # K = mult - 2, or 0 when n - 2 < K (too few members to ever confirm).
    assert suspicion_confirmations_needed(mult, n) == k


@pytest.mark.parametrize(
    ("n", "mn", "mx", "by_confirmations"),
    [
        # remaining(C) = max(min, max - (max - min) * log(C + 1) / log(K + 1)), K = 2
        (128, MIN_128, 6 * MIN_128, [
            6 * MIN_128,
            6 * MIN_128 - 5 * MIN_128 * math.log(2) / math.log(3),
            MIN_128,
        ]),
        (1000, 12.0, 72.0, [72.0, 72.0 - 60.0 * 0.6309297535714574, 12.0]),
    ],
)
def test_remaining_suspicion_time_table(
    n: int, mn: float, mx: float, by_confirmations: list[float]
) -> None:
    k = suspicion_confirmations_needed(4, n)
    assert k == 2
    assert suspicion_timeout_min_s(4, n, 1.0) == pytest.approx(mn)
    for c, expected in enumerate(by_confirmations):
        assert remaining_suspicion_time_s(c, k, 0.0, mn, mx) == pytest.approx(expected)
    # More than K confirmations never go below the minimum.
    assert remaining_suspicion_time_s(5, k, 0.0, mn, mx) == pytest.approx(mn)
    # Elapsed time is subtracted and may make the result negative (overdue).
    assert remaining_suspicion_time_s(2, k, 20.0, mn, mx) == pytest.approx(mn - 20.0)


def test_remaining_with_k_zero_is_the_minimum() -> None:
    assert remaining_suspicion_time_s(0, 0, 0.0, 4.0, 24.0) == 4.0


@given(
    k=st.integers(1, 10),
    mn=st.floats(0.1, 100.0),
    mult=st.integers(1, 10),
    c=st.integers(0, 20),
)
def test_remaining_is_monotone_and_bounded(k: int, mn: float, mult: int, c: int) -> None:
    mx = mn * mult
    r0 = remaining_suspicion_time_s(c, k, 0.0, mn, mx)
    r1 = remaining_suspicion_time_s(c + 1, k, 0.0, mn, mx)
    assert mn - 1e-9 <= r1 <= r0 <= mx + 1e-9


# ------------------------------------------------------------------- retransmit limit


@pytest.mark.parametrize(
    ("mult", "n", "limit"),
    [(4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12), (4, 128, 12),
     (4, 999, 12), (4, 1000, 16), (2, 5, 2), (2, 1000, 8)],
)
def test_retransmit_limit(mult: int, n: int, limit: int) -> None:
    # mult * ceil(log10(n + 1))
    assert retransmit_limit(mult, n) == limit


# ---------------------------------------------------------------------- push-pull


@pytest.mark.parametrize(
    ("n", "scaled"),
    [(1, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0), (128, 90.0),
     (1000, 6 * 30.0), (1024, 6 * 30.0), (1025, 7 * 30.0)],
)
def test_push_pull_scale(n: int, scaled: float) -> None:
    # x (ceil(log2 n - 5) + 1) above 32 members
    assert push_pull_scale(30.0, n) == scaled


# -------------------------------------------------------------------------- awareness


@pytest.mark.parametrize(
    ("expected", "received", "delta"),
    [(3, 0, 3), (3, 1, 2), (3, 3, 0), (3, 4, 0), (0, 0, 1), (1, 0, 1)],
)
def test_awareness_delta_for_failed_probe(expected: int, received: int, delta: int) -> None:
    assert awareness_delta_for_failed_probe(expected, received) == delta


def test_awareness_bounds_and_scaling() -> None:
    a = Awareness(8)
    assert a.apply_delta(-1) == 0
    assert a.apply_delta(3) == 3
    assert a.scale(1.0) == 4.0 == awareness_scaled_s(1.0, 3)
    assert a.apply_delta(100) == 7  # max - 1
    assert a.scale(0.5) == 4.0
    assert a.apply_delta(-2) == 5
    assert a.apply_delta(-100) == 0
    assert Awareness(1).apply_delta(5) == 0  # max 1: awareness can never slow probing


@given(st.lists(st.integers(-10, 10), max_size=50), st.integers(1, 16))
def test_awareness_always_within_bounds(deltas: list[int], max_mult: int) -> None:
    a = Awareness(max_mult)
    for d in deltas:
        assert 0 <= a.apply_delta(d) <= max_mult - 1


# ----------------------------------------------------------------------------- Config

PROFILES = {
    # probe interval, probe timeout, k, suspicion mult, max-timeout mult, retransmit mult,
    # gossip interval, gossip nodes, push-pull interval, gossip to the dead, TCP timeout,
    # awareness max, packet budget (REFERENCE.md's table)
    "lan": (1.0, 0.5, 3, 4, 6, 4, 0.2, 3, 30.0, 30.0, 10.0, 8, 1400),
    "wan": (5.0, 3.0, 3, 6, 6, 4, 0.5, 4, 60.0, 60.0, 30.0, 8, 1400),
    "local": (1.0, 0.2, 1, 3, 6, 2, 0.1, 3, 15.0, 15.0, 1.0, 8, 1400),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_match_reference_table(name: str) -> None:
    c = Config.profile(name)
    assert c == getattr(Config, name)()
    assert (
        c.probe_interval_s, c.probe_timeout_s, c.indirect_probes, c.suspicion_mult,
        c.suspicion_max_timeout_mult, c.retransmit_mult, c.gossip_interval_s,
        c.gossip_nodes, c.push_pull_interval_s, c.gossip_to_the_dead_s, c.tcp_timeout_s,
        c.awareness_max_multiplier, c.packet_budget,
    ) == PROFILES[name]
    # Every Lifeguard extension is on in the profiles.
    assert c.nacks and c.awareness and c.dynamic_suspicion and c.buddy_system
    assert c.dead_node_reclaim_s is None


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Config.profile("lab")


@pytest.mark.parametrize(
    "bad",
    [
        {"probe_interval_s": 0},
        {"probe_interval_s": -1.0},
        {"probe_timeout_s": 0},
        {"probe_timeout_s": 2.0},  # longer than the interval
        {"indirect_probes": -1},
        {"suspicion_mult": 0},
        {"suspicion_max_timeout_mult": 0},
        {"retransmit_mult": 0},
        {"gossip_interval_s": 0},
        {"gossip_nodes": -1},
        {"push_pull_interval_s": 0},
        {"gossip_to_the_dead_s": -1},
        {"tcp_timeout_s": 0},
        {"awareness_max_multiplier": 0},
        {"packet_budget": 63},
        {"packet_budget": 65_001},
        {"user_broadcast_share": -0.1},
        {"user_broadcast_share": 1.5},
        {"incarnation_window": 0},
        {"user_broadcast_memory": 0},
        {"dead_node_reclaim_s": -1.0},
        {"probe_interval_s": float("nan")},
    ],
)
def test_bad_config_values_raise(bad: dict[str, Any]) -> None:  # fields of several types
    with pytest.raises(ValueError):
        attrs.evolve(Config.lan(), **bad)


def test_config_is_frozen_and_keyword_only() -> None:
    c = Config.lan()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.probe_interval_s = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config(1.0)  # type: ignore[call-arg]

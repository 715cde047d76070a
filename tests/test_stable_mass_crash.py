"""Simultaneous crashes in the stable-view mode: removed together, in one view change
at every live member, with no live member ever missing from a live view."""

from __future__ import annotations

import pytest

from simulations.mass_crash import crashed_members, run_mass_crash
from swim.core import Config


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_six_simultaneous_crashes_are_one_view_change(seed: int) -> None:
    r = run_mass_crash(Config.stable_views(), nodes=60, crashes=6, seed=seed)
    assert r.all_removed_s is not None and r.all_removed_s <= 40.0, (seed, r)
    assert (r.view_changes_min, r.view_changes_max) == (1, 1), (seed, r)
    assert r.live_removed == 0, (seed, r)
    # Every live member removed each crashed member once.
    assert r.failure_events == (60 - 6) * 6, (seed, r)


def test_crashed_members_are_spread_and_spare_the_seed() -> None:
    assert crashed_members(100, 4) == [20, 40, 60, 80]
    assert 0 not in crashed_members(7, 6)

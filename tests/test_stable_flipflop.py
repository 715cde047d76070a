"""The flip-flop scenario at small scale, over several seeds: in the stable-view mode
two flapping members are removed in one view change, no healthy member is removed, and
every healthy member holds the identical view afterwards (SWIM + Lifeguard, on the same
seeds, keeps oscillating: `benchmarks/stable_views.py` prints both)."""

from __future__ import annotations

import pytest

from simulations.flipflop import FlipFlop, run_flip_flop
from swim.core import Config

NODES = 24
FLAPPERS = (7, 16)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_flappers_are_removed_once_and_views_stay_identical(seed: int) -> None:
    r = run_flip_flop(Config.stable_views(), nodes=NODES, flappers=FLAPPERS, seed=seed,
                      duration_s=150.0, onset=20.0, settle_s=60.0)
    assert r.transition_s is not None and r.transition_s <= 60.0, (seed, r)
    assert r.healthy_removed == 0, (seed, r)
    # One view change at every healthy member, for the whole run (4 flaps).
    assert (r.view_changes_min, r.view_changes_max) == (1, 1), (seed, r)
    assert r.view_sizes_settled == (NODES - len(FLAPPERS),), (seed, r)
    assert r.identical_settled == 1.0 and r.at_target_settled == 1.0, (seed, r)
    # Each member removes each flapper at most once.
    assert r.failure_events <= NODES * len(FLAPPERS), (seed, r)


def test_the_same_seed_gives_the_same_figures() -> None:
    def figures() -> dict[str, object]:
        r = run_flip_flop(Config.stable_views(), nodes=12, flappers=(3,), seed=9,
                          duration_s=60.0)
        row = r.row()
        del row["wall_s"]
        return row
    assert figures() == figures()


def test_flip_flop_windows() -> None:
    fault = FlipFlop(members=(1,), at=10.0, down_s=20.0, up_s=20.0)
    assert fault.windows(100.0) == [(10.0, 30.0), (50.0, 70.0), (90.0, 100.0)]

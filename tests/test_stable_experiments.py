"""The stable-view experiments the notebook runs (`simulations.stable_experiments`):
traced runs account for every observer at every sample, and the conflict grid covers
every (H, L, F) cell with consistent shares."""

from __future__ import annotations

import itertools

from simulations import stable_experiments as sx
from simulations.sweep import InlineExecutor


def test_a_traced_flip_flop_counts_every_healthy_view_at_every_sample() -> None:
    nodes, flappers = 16, sx.flappers_for(16, 2)
    modes = {k: v for k, v in sx.variants().items() if k in ("swim", "stable")}
    results = sx.flip_flops(modes, nodes=nodes, flappers=flappers, seeds=[3],
                            duration_s=60.0, executor=InlineExecutor())
    assert [r.mode for r in results] == ["swim", "stable"]
    for r in results:
        rows = sx.trace_rows([r])
        by_t = {t: sum(x["observers"] for x in group)
                for t, group in itertools.groupby(rows, key=lambda x: x["t"])}
        assert len(by_t) == 60 and set(by_t.values()) == {nodes - len(flappers)}, r.mode
        assert all(1 <= x["view_size"] <= nodes for x in rows)
        assert "samples" not in r.row()
    stable = sx.trace_rows([results[1]])
    # After its one view change, every healthy stable view is exactly the healthy members.
    assert results[1].transition_s is not None
    settled = [x for x in stable if x["t"] >= 20.0 + results[1].transition_s]
    assert settled and {x["view_size"] for x in settled} == {nodes - len(flappers)}


def test_a_traced_mass_crash_ends_with_only_the_live_members() -> None:
    (r,) = sx.mass_crashes({"stable": sx.variants()["stable"]}, nodes=16, crashes=3,
                           seeds=[2], executor=InlineExecutor())
    assert r.all_removed_s is not None and r.samples
    last_t = r.samples[-1][0]
    assert [(size, count) for t, size, count in r.samples if t == last_t] == [(13, 13)]


def test_the_conflict_grid_covers_every_cell() -> None:
    rows = sx.conflict_grid(nodes=60, k=10, hs=[6, 9], ls=[1, 7], fs=[2, 4], trials=2,
                            receivers=3, seed=1)
    assert [(r["h"], r["l"], r["f"]) for r in rows] == [
        (6, 1, 2), (6, 1, 4), (9, 1, 2), (9, 1, 4), (9, 7, 2), (9, 7, 4)]
    for r in rows:
        assert 0 <= r["receivers_conflicting"] <= r["trials_with_conflict"] <= 1
        # A trial conflicts only if at least one of its receivers did.
        assert (r["trials_with_conflict"] > 0) == (r["receivers_conflicting"] > 0)

"""Stable views through the trio runtime: real `swim.Node` objects in stable-view mode
over the in-memory network, on trio's MockClock (`simulations.trio_mode`).

The simulator's stable-view tests drive `Core` from the engine's heap; here the same
mode runs through the runtime's pump, receive loop and join loop. Every member joins
through the seed (no converged start), so the cluster first has to agree on one view of
everyone, then a crash or a flapping member must give every healthy member exactly one
`ViewChanged` per change, carrying the same cut and configuration id everywhere.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simulations import Crash, Leave, Partition, Scenario
from simulations.experiments import flip_flop_faults
from simulations.trio_mode import TrioResult, run_nodes
from swim.core import Config
from swim.core.events import ViewChanged
from swim.core.stable.rings import Configuration

NODES = 12
CONFIG = Config.stable_views()
NAMES = [f"node-{i}" for i in range(NODES)]


def changes_after(result: TrioResult, t: float) -> dict[int, list[ViewChanged]]:
    """The view changes each member published after `t` (every member has a list)."""
    out: dict[int, list[ViewChanged]] = {i: [] for i in range(NODES)}
    for i, at, event in result.view_changes:
        if at > t:
            out[i].append(event)
    return out


def view_at(result: TrioResult, i: int, t: float) -> tuple[int, int, tuple[str, ...]] | None:
    """Member `i`'s view (configuration id, epoch, members) after the last change it
    published by `t` (None: none yet)."""
    last = None
    for j, at, event in result.view_changes:
        if j == i and at <= t:
            last = (event.config_id, event.epoch, event.members)
    return last


def assert_one_view(views: dict[int, Configuration | None], members: list[int],
                    where: str) -> Configuration:
    """Every one of `members` holds the same configuration, of exactly `members`."""
    held = {views.get(i) for i in members}
    assert len(held) == 1, f"{where}: {len(held)} distinct final views"
    (conf,) = held
    assert conf is not None, f"{where}: still joining at the end"
    assert conf.members == tuple(sorted(NAMES[i] for i in members)), where
    return conf


def assert_only_view_events(result: TrioResult, where: str) -> None:
    """Members published view changes and their join completions, nothing per member
    (no SWIM joined/suspected/failed events reach the application in this mode)."""
    counts = result.event_counts
    assert set(counts) == {"join_completed", "other"}, f"{where}: {counts}"
    assert counts["other"] == len(result.view_changes), f"{where}: {counts}"


def assert_one_removal(result: TrioResult, gone: int, at: float, where: str) -> float:
    """The cluster held one view of all twelve at `at`; after it, every other member
    made exactly one change, removing `gone` alone, to the same next configuration, and
    holds it at the end. Returns when the last member made the change."""
    before = {view_at(result, i, at) for i in range(NODES)}
    assert len(before) == 1, f"{where}: {before}"
    (view,) = before
    assert view is not None and view[2] == tuple(sorted(NAMES)), where
    rest = [i for i in range(NODES) if i != gone]
    after = changes_after(result, at)
    ids = set()
    for i in rest:
        (change,) = after[i]
        assert change.removed == (NAMES[gone],), f"{where}, member {i}"
        assert change.joined == (), f"{where}, member {i}"
        assert change.epoch == view[1] + 1, f"{where}, member {i}"
        ids.add(change.config_id)
    assert len(ids) == 1, f"{where}: configuration ids {ids}"
    conf = assert_one_view(result.final_views, rest, where)
    assert {conf.id} == ids, where
    assert_only_view_events(result, where)
    return max(t for _, t, _ in result.view_changes if t > at)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_crash_is_one_view_change_everywhere_with_the_same_id(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    crashed, crash_at = 10, 25.0
    sc = Scenario(nodes=NODES, duration_s=60.0, seed=seed, config=CONFIG,
                  faults=(Crash(member=crashed, at=crash_at),))
    result = await run_nodes(sc)
    # The join storm settled into one view of all twelve before the crash; then exactly
    # one change at every survivor: the crashed member's removal, whole.
    last_at = assert_one_removal(result, crashed, crash_at, f"seed {seed}")
    # A loose budget for the removal, from the mode's own timing: each observer probes
    # its (at most K) subjects in turn, one per period T, and needs `edge_failures`
    # failed probes; a slow observer is covered by reinforcement, a split vote by the
    # classic fallback.
    params = CONFIG.stable
    budget_s = (params.edge_failures * params.k * CONFIG.probe_interval_s
                + params.reinforce_after_s + params.vote_fallback_s)
    assert last_at - crash_at <= budget_s, f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_graceful_leave_is_one_view_change_everywhere(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    # The leaver's own alert removes it: no observer has to notice it gone, so every
    # member changes its view within one protocol period, sooner than any observer could
    # alert (that takes `edge_failures` = 2 failed probes, a period apart at least).
    leaver, leave_at = 5, 25.0
    sc = Scenario(nodes=NODES, duration_s=40.0, seed=seed, config=CONFIG,
                  faults=(Leave(member=leaver, at=leave_at),))
    result = await run_nodes(sc)
    last_at = assert_one_removal(result, leaver, leave_at, f"seed {seed}")
    assert last_at - leave_at < CONFIG.probe_interval_s, f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_flapping_member_is_removed_once_and_readmitted_once_after_it_settles(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    # Member 7 loses all ingress for 10 s, has it back for 10 s, four times (20-90 s),
    # then stays healthy: removed once, kept out while it flaps (readmission needs
    # `readmit_after_s` of answered probes, longer than any of its good spells), and
    # readmitted once, no sooner than that long after its last outage.
    flapper, onset, last_heal = 7, 20.0, 90.0
    faults = flip_flop_faults(NODES, [flapper], start_s=onset, on_s=10.0, off_s=10.0,
                              until_s=100.0)
    last = faults[-1]
    assert isinstance(last, Partition) and last.heal_at == last_heal
    sc = Scenario(nodes=NODES, duration_s=200.0, seed=seed, config=CONFIG, faults=faults)
    result = await run_nodes(sc)
    where = f"seed {seed}"
    healthy = [i for i in range(NODES) if i != flapper]
    before = {view_at(result, i, onset) for i in range(NODES)}
    assert len(before) == 1 and None not in before, f"{where}: {before}"
    after = changes_after(result, onset)
    removals, readmissions = set(), set()
    for i in healthy:
        removal, readmission = after[i]  # exactly two changes, no oscillation
        assert (removal.removed, removal.joined) == ((NAMES[flapper],), ()), where
        assert (readmission.removed, readmission.joined) == ((), (NAMES[flapper],)), where
        removals.add(removal.config_id)
        readmissions.add(readmission.config_id)
    assert len(removals) == 1 and len(readmissions) == 1, f"{where}: {removals} {readmissions}"
    # Removed during the flapping, readmitted only after it had settled.
    for i, at, event in result.view_changes:
        if i in healthy and at > onset:
            if event.removed:
                assert at < last_heal, f"{where}, member {i}: removed at {at}"
            else:
                assert at >= last_heal + CONFIG.stable.readmit_after_s, \
                    f"{where}, member {i}: readmitted at {at}"
    # The flapper ends in the same view as everyone (the whole cluster, once more).
    conf = assert_one_view(result.final_views, list(range(NODES)), where)
    assert {conf.id} == readmissions
    assert_only_view_events(result, where)
